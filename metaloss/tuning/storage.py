"""Where studies live: an embedded journal file by default, any SQLAlchemy URL otherwise.

The embedded storage is Optuna's :class:`~optuna.storages.JournalStorage` on a file (appends
under a file lock, so several ``metaloss tune`` processes on one machine can share a study, and
a killed run resumes from the file). It is extended here with the heartbeat protocol Optuna's
relational storage has: a running trial records a heartbeat every ``heartbeat_interval``
seconds, and a trial whose heartbeat is older than ``grace_period`` (its worker died) is marked
failed and re-queued with the same parameters by
:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`. Relational storages (PostgreSQL,
MySQL, SQLite) use Optuna's own heartbeat with the same settings.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from metaloss.errors import TuningStorageError, printable

__all__ = [
    "HEARTBEAT_ATTR",
    "HeartbeatJournalStorage",
    "HeartbeatRDBStorage",
    "corrupt_journal",
    "journal_path",
    "make_storage",
]

HEARTBEAT_ATTR = "metaloss:heartbeat"
"""System attribute of a running trial: the wall-clock time of its worker's last heartbeat."""

JOURNAL_NAME = "study.journal"


def journal_path(out_dir: Path) -> Path:
    """The embedded study file inside a tuning folder."""
    return Path(out_dir) / JOURNAL_NAME


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal-file storage whose running trials send heartbeats, so that trials of a dead
    worker are detected and retried (Optuna implements this for relational storages only).

    Args:
        path: the journal file (created if missing).
        heartbeat_interval: seconds between heartbeats of a running trial.
        grace_period: seconds without a heartbeat after which a running trial is stale.
        max_retry: how often a stale trial is re-queued.
    """

    def __init__(
        self, path: Path, heartbeat_interval: int, grace_period: int, max_retry: int
    ) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            self._stale_callback = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def record_heartbeat(self, trial_id: int) -> None:
        with contextlib.suppress(UpdateFinishedTrialError):  # another worker judged it stale
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """A new trial; a retried trial's template drops the dead worker's heartbeat."""
        if template_trial is not None and HEARTBEAT_ATTR in template_trial.system_attrs:
            template_trial = copy.copy(template_trial)
            template_trial.system_attrs = {
                k: v for k, v in template_trial.system_attrs.items() if k != HEARTBEAT_ATTR
            }
        return super().create_new_trial(study_id, template_trial)

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if _silent_for(trial, None if beat is None else float(beat), now) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        return self._stale_callback


def _check_journal_end(journal: Path) -> None:
    """A journal ends with a complete record: appending after a partial one would corrupt it."""
    if not journal.is_file() or journal.stat().st_size == 0:
        return
    with open(journal, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            raise TuningStorageError(
                f"--out: the study journal {printable(str(journal), 200)} ends in an incomplete "
                "record (not written by metaloss tune, or cut off); refusing to append to it"
            )


def corrupt_journal(journal: Path, error: Exception) -> TuningStorageError:
    """The one-line refusal of a study journal that is not one Optuna wrote."""
    reason = printable(str(error).splitlines()[0] if str(error) else type(error).__name__, 80)
    return TuningStorageError(
        f"--out: the study journal {printable(str(journal), 200)} is corrupt ({reason}); move it "
        "away to start a new study"
    )


def _silent_for(trial: FrozenTrial, beat: float | None, now: float) -> float:
    """Seconds since a running trial last showed life: its last heartbeat, or its start (a
    worker that died before its first beat), whichever is later (a retried trial's start is
    newer than any heartbeat its template carried)."""
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else None
    times = [t for t in (beat, started) if t is not None]
    return now - max(times) if times else 0.0


class HeartbeatRDBStorage(RDBStorage):
    """Optuna's relational storage whose running trials without any heartbeat yet (a worker died
    between creating the trial and its first beat) also become stale after the grace period;
    Optuna's own check skips them, so ``metaloss tune`` would wait for them forever."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        from optuna.storages._rdb import models

        stale = set(super()._get_stale_trial_ids(study_id))
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return sorted(stale)
        ids = [t._trial_id for t in running]
        session = self.scoped_session()
        try:
            query = session.query(models.TrialHeartbeatModel.trial_id)
            beating = {row[0] for row in query.filter(models.TrialHeartbeatModel.trial_id.in_(ids))}
        finally:
            session.close()
        now = time.time()
        for trial in running:
            if trial._trial_id not in beating and _silent_for(trial, None, now) > grace:
                stale.add(trial._trial_id)
        return sorted(stale)


def make_storage(
    url: str | None,
    out_dir: Path,
    heartbeat_interval: int = 30,
    grace_period: int | None = None,
    max_retry: int = 2,
) -> BaseStorage:
    """The study storage: ``url`` (any SQLAlchemy URL) or, without one, the journal file in
    ``out_dir``. Both detect dead workers by heartbeat and retry their trials."""
    grace = grace_period or 4 * heartbeat_interval
    if url is None:
        journal = journal_path(out_dir)
        if (os.path.lexists(journal) and not journal.is_file()) or journal.is_symlink():
            raise TuningStorageError(
                f"--out: {printable(str(journal), 200)} is not a regular file (a pipe, folder or "
                "link?); expected the study journal"
            )
        _check_journal_end(journal)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        try:
            return HeartbeatJournalStorage(journal, heartbeat_interval, grace, max_retry)
        except (ValueError, KeyError, TypeError, AssertionError) as error:  # not what Optuna wrote
            raise corrupt_journal(journal, error) from None
    return _open_rdb(url, heartbeat_interval, grace, max_retry)


_SCHEMA_LOCK = 0x6D6C6F7373  # "mloss": the PostgreSQL advisory lock held while creating tables
_RACE_WORDS = ("already exists", "duplicate key", "pg_type_typname_nsp_index", "UniqueViolation")


def _open_rdb(url: str, heartbeat_interval: int, grace: int, max_retry: int) -> RDBStorage:
    """The relational storage, creating Optuna's schema safely when several workers start on a
    fresh database at once: PostgreSQL serialises the creation with an advisory lock, and the
    known race errors (a table or type created by another worker meanwhile) are retried."""
    from sqlalchemy.exc import SQLAlchemyError

    where = printable(url.split("@")[-1], 200)  # never print a password
    for attempt in range(5):
        try:
            with _schema_lock(url), warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", ExperimentalWarning
                )  # heartbeats are "experimental"
                return HeartbeatRDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=max_retry
                    ),
                )
        except SQLAlchemyError as error:
            text = str(error)
            if attempt < 4 and any(word in text for word in _RACE_WORDS):
                time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
                continue
            reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
            raise TuningStorageError(
                f"--storage: cannot open {where}: {printable(reason, 200)}"
            ) from None
        except (ImportError, ValueError, TypeError) as error:  # no driver, a malformed URL
            reason = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise TuningStorageError(
                f"--storage: cannot open {where}: {printable(reason, 200)}"
            ) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock (other databases: no lock, the retry covers them)."""
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK}
            )
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK}
                )
    finally:
        engine.dispose()
