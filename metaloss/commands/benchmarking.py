"""What ``metaloss benchmark`` and its variants (``--meta-seeds``, RL configs) share: the
report names and loading of the learned losses, the default losses of a config, and one
benchmark run with its staged report (:func:`benchmark_and_report`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaloss.commands.common import FolderPlan, staged_folder, staged_target, write_marker
from metaloss.commands.progress import progress_bar
from metaloss.config import RunConfig, to_dict
from metaloss.device import resolve_device
from metaloss.errors import LossFileError, RunFolderError, printable
from metaloss.evaluation.benchmark import (
    BenchmarkResult,
    Contender,
    PerSampleLoss,
    Row,
    contenders_from_config,
    plan_size,
    rows_from_config,
    run_benchmark,
)
from metaloss.evaluation.report import write_report
from metaloss.evaluation.row_store import RowStore, run_fingerprint
from metaloss.export import load_loss, zoo_names

__all__ = [
    "benchmark_and_report",
    "check_kinds",
    "load_learned",
    "loss_sources",
    "source_name",
]


def _row_store(
    out: FolderPlan | Path,
    config: RunConfig,
    contenders: list[Contender],
    modules: dict[str, PerSampleLoss],
) -> RowStore | None:
    """Where this benchmark keeps its finished rows until its report is written: beside the
    report folder named by ``--out`` (hidden), or inside a ``--meta-seeds`` folder; none for a
    report folder named at run time (no later run could find it)."""
    if isinstance(out, FolderPlan):
        if out.path is None:
            return None
        target = staged_target(out)
        folder = target.parent / f".{target.name}.rows"
    else:
        folder = out / ".benchmark-rows"
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            f"--out: {folder} is a file where this benchmark keeps its finished rows; "
            "expected a folder or nothing there"
        )
    fingerprint = run_fingerprint(to_dict(config), contenders, dict(modules))
    return RowStore(folder, fingerprint)


def source_name(source: str, taken: set[str], prefix: str = "") -> str:
    """The report name of a loss given as ``source``: ``prefix`` + the file's stem (the run
    folder's name for ``runs/<run>/loss.safetensors``) or the zoo name, with ``-2``, ``-3``, ...
    appended while it is in ``taken``."""
    path = Path(source)
    name = path.stem if path.suffix == ".safetensors" else source
    if name == "loss" and path.parent.name:
        name = path.parent.name  # runs/<run>/loss.safetensors -> <run>
    base = name = prefix + name
    i = 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def load_learned(sources: list[str], device: str = "cpu") -> dict[str, PerSampleLoss]:
    """Learned losses by report name, each as its per-sample function, on ``device`` (the
    ``device`` setting's name)."""
    losses: dict[str, PerSampleLoss] = {}
    for source in sources:
        module = load_loss(source, reduction="none", map_location=resolve_device(device))
        losses[source_name(source, set(losses))] = module
    return losses


def check_kinds(losses: list[tuple[str, PerSampleLoss]], rows: list[Row]) -> None:
    """Every learned loss (source, module) must be of the kind of every row's family (a
    classification loss on a regression benchmark is refused before any work, naming it)."""
    for source, module in losses:
        kind = getattr(module, "kind", None)
        for row in rows:
            if kind != row.family.kind:
                raise LossFileError(
                    f"--loss: {printable(str(source), 120)} is a {printable(str(kind), 40)} loss, "
                    f"but benchmark row {printable(row.name, 60)!r} has {row.family.kind} tasks"
                )


def loss_sources(
    given: list[str] | None, configured: tuple[str, ...], default: str | None, what: str = "loss"
) -> list[str]:
    """The learned losses to benchmark: ``--loss`` if ``given``, else the config's
    ``benchmark.losses``, else the family's zoo entry ``default`` (the ``what`` it names, e.g. an
    RL family's objective), refused in one line if not installed."""
    if given:
        return list(given)
    if configured:
        return list(configured)
    if default is None:
        raise ValueError(
            "--loss: expected a loss file or zoo name (the config has no benchmark.losses)"
        )
    if default not in zoo_names():
        raise ValueError(
            f"--loss: the family's zoo {what} {default!r} is not installed; pass a loss file "
            f"(zoo: {', '.join(zoo_names()) or 'none installed'})"
        )
    return [default]


def benchmark_and_report(
    args: argparse.Namespace,
    config: RunConfig,
    learned: dict[str, PerSampleLoss],
    sources: list[str],
    out: FolderPlan | Path,
) -> BenchmarkResult:
    """Benchmark ``learned`` (loaded from ``sources``) against the config's baselines, write the
    report and print it; ``args.tuned`` applies a tuning folder.

    ``out`` is either a checked :class:`FolderPlan` (the report is staged: it appears complete in
    its folder or not at all) or a folder the caller owns and already checked (``--meta-seeds``
    writes the report beside its seed folders)."""
    rows = rows_from_config(config)
    references = load_learned(list(config.benchmark.learned_baselines), config.device)
    named = list(zip(sources, learned.values(), strict=True))
    named += zip(config.benchmark.learned_baselines, references.values(), strict=True)
    check_kinds(named, rows)
    contenders = contenders_from_config(config, learned, rows[0].family, references)
    tuned_notes: dict[str, str] = {}
    if args.tuned is not None:  # tuned vs tuned (metaloss tune, docs/tuning.md)
        from metaloss.tuning.tuned import apply_tuned, read_tuned

        contenders, tuned_notes = apply_tuned(contenders, read_tuned(args.tuned))
        print("\n".join(f"  {name}: {note}" for name, note in tuned_notes.items()), file=sys.stderr)
    shown = staged_target(out) if isinstance(out, FolderPlan) else out
    print(
        f"metaloss benchmark: {len(contenders)} losses x {len(rows)} rows, {config.evaluation.test_tasks} "
        f"{'meta-validation' if config.benchmark.split == 'meta_valid' else 'test'} tasks x "
        f"{config.evaluation.seeds} seed(s), writing to {shown}",
        file=sys.stderr,
    )
    store = _row_store(out, config, contenders, {**learned, **references})
    if store is not None and store.rows():
        print(
            f"metaloss benchmark: continuing an earlier run of this benchmark: {store.rows()} "
            f"finished row(s) kept in {store.folder}",
            file=sys.stderr,
        )
    bar = progress_bar(plan_size(rows, contenders), "benchmark", "run")

    def progress(message: str) -> None:
        bar.set_postfix_str(message, refresh=False)
        bar.update(1)

    def benchmark() -> BenchmarkResult:
        try:
            result = run_benchmark(rows, contenders, progress, store)
        finally:
            bar.close()
        result.extra["losses"] = dict(zip(learned, sources, strict=True))
        if tuned_notes:
            result.extra["tuned"] = {"folder": str(args.tuned), **tuned_notes}
        return result

    try:
        if isinstance(out, FolderPlan):
            with staged_folder(out, shown) as staged:  # the report appears complete, or not at all
                result = benchmark()
                write_marker(staged.staging, out)
                written = write_report(result, staged.staging, to_dict(config))
            assert staged.final is not None
            folder = staged.final
            paths = [folder / p.relative_to(staged.staging) for p in written]
        else:
            result = benchmark()
            folder = out
            paths = write_report(result, folder, to_dict(config))
    except BaseException:
        if store is not None and store.rows():
            print(
                f"metaloss benchmark: {store.rows()} finished row(s) of {len(rows)} kept in "
                f"{store.folder}; the same command continues from them",
                file=sys.stderr,
            )
        raise
    if store is not None:
        store.remove()  # the report is complete
    print((folder / "results.md").read_text())
    print("outputs:\n" + "\n".join(f"  {p}" for p in paths))
    print(f"  {folder}/events.out.tfevents.*  (view: tensorboard --logdir {folder})")
    return result
