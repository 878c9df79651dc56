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
import time
import warnings
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
from optuna.trial import TrialState

__all__ = ["HEARTBEAT_ATTR", "HeartbeatJournalStorage", "journal_path", "make_storage"]

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

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is not None and now - float(beat) > self.grace_period:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        return self._stale_callback


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
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return HeartbeatJournalStorage(journal_path(out_dir), heartbeat_interval, grace, max_retry)
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are "experimental"
            return RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                    max_retry=max_retry
                ),
            )
    except SQLAlchemyError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RuntimeError(f"--storage: cannot open {url!r}: {reason}") from None
