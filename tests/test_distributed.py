"""Data-parallel meta-training: two gloo processes on loopback give the single-process
meta-gradient (float64), and stay in step over several meta-steps."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from _distributed import spawn_gloo

from metaloss.config import ConfigError, RunConfig, parse
from metaloss.outer import MetaTrainer
from metaloss.outer.distributed import DistributedMetaTrainer, shard_bounds

DATA = {
    "dtype": "float64",
    "learner": {"hidden": [8], "activation": "tanh"},
    "loss": {"hidden": [8]},
    "inner": {"steps": 3, "lr": 0.05},
    "outer": {
        "meta_batch": 5,
        "val_tasks": 3,
        "steps": 3,
        "val_every": 2,
        "checkpoint_every": 100,
        "truncation": 2,
    },
}


ESTIMATORS = ("full_grad", "truncated_grad")


def config(**outer) -> RunConfig:
    return parse({**DATA, "outer": {**DATA["outer"], **outer}})


def _gradients(trainer: MetaTrainer) -> dict[str, torch.Tensor]:
    batch = trainer.problem.sample(trainer.generator)
    params = dict(trainer.loss.named_parameters())
    objective = trainer.problem.objective(trainer.loss, batch)
    out = trainer.estimator.estimate(params, objective, trainer.generator)
    return {"meta_loss": out.meta_loss, **{f"grad.{k}": v for k, v in out.grads.items()}}


def _steps(trainer: MetaTrainer, count: int = 3) -> dict[str, torch.Tensor]:
    for _ in range(count):
        trainer.meta_step()
    state = {f"trained.{k}": v for k, v in trainer.loss.state_dict().items()}
    return {**state, "valid": torch.tensor(trainer.validate(), dtype=torch.float64)}


def _results(make: type[MetaTrainer]) -> dict[str, dict[str, torch.Tensor]]:
    results = {}
    for estimator in ESTIMATORS:
        first = _gradients(make(config(estimator=estimator)))
        results[estimator] = {**first, **_steps(make(config(estimator=estimator)))}
    return results


def _worker(rank: int, out: str) -> None:
    torch.save(_results(DistributedMetaTrainer), Path(out) / f"rank{rank}.pt")


def test_shards_cover_the_meta_batch_once() -> None:
    for count in range(1, 9):
        for world in range(1, 4):
            bounds = [shard_bounds(count, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == count
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


def test_two_processes_give_the_single_process_meta_gradient(tmp_path: Path) -> None:
    spawn_gloo(_worker, 2, str(tmp_path))
    single = _results(MetaTrainer)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for estimator in ESTIMATORS:
            assert got[estimator].keys() == single[estimator].keys()
            for key, value in single[estimator].items():
                torch.testing.assert_close(got[estimator][key], value, rtol=1e-9, atol=1e-12)
    grads = [v for k, v in single["full_grad"].items() if k.startswith("grad.")]
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert not torch.equal(
        single["full_grad"]["grad.net.0.weight"], single["truncated_grad"]["grad.net.0.weight"]
    )


def test_rank_shaped_es_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"outer\.es_rank_shaping: expected false"):
        DistributedMetaTrainer(config(estimator="antithetic_es"))
