"""ES across processes: two gloo processes on loopback split the population's runs and get the
single-process fitness, estimate and meta-steps."""

from __future__ import annotations

from pathlib import Path

import torch
from _distributed import spawn_gloo

from metaloss.config import RunConfig, load_config
from metaloss.outer.trainer import MetaTrainer
from metaloss.rl.distributed import distributed_trainer

CONFIG = Path(__file__).parent.parent / "configs" / "cartpole.yaml"
TINY = [
    "outer.steps=1",
    "outer.es_population=2",  # 5 candidates x 2 variants = 10 runs, split 5/5
    "outer.meta_batch=2",
    "outer.val_every=1",
    "outer.val_tasks=3",  # 3 validation runs, split 2/1
    "task.meta_total_steps=512",
    "task.drift_init=random",
    "outer.es_sigma=20.0",  # candidates that differ, so a misplaced fitness changes the step
    "task.ppo.lr=0.01",
    "task.ppo.num_envs=2",
    "task.ppo.num_steps=32",
    "task.ppo.hidden=[8]",
    "loss.hidden=[4]",
]


def _config() -> RunConfig:
    return load_config(CONFIG, TINY)


def _summary(trainer: MetaTrainer) -> dict[str, torch.Tensor]:
    result = trainer.train()
    state = {f"loss.{k}": v for k, v in result.loss.state_dict().items()}
    steps = torch.tensor([[r.meta_loss, r.grad_norm, *r.extra.values()] for r in result.steps])
    valid = torch.tensor([v.value for v in result.validations])
    return {**state, "steps": steps, "valid": valid}


def _worker(rank: int, out: str) -> None:
    torch.save(_summary(distributed_trainer(_config(), None)), Path(out) / f"rank{rank}.pt")


def test_two_processes_give_the_single_process_es_run(tmp_path: Path) -> None:
    spawn_gloo(_worker, 2, str(tmp_path))
    single = _summary(MetaTrainer(_config()))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got.keys() == single.keys()
        for key, value in single.items():
            torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=f"rank {rank}: {key}")
    assert single["steps"].shape[0] == 1 and bool(torch.isfinite(single["steps"]).all())


def test_the_candidates_of_the_distributed_test_differ() -> None:
    """Guards the test above: its candidates must have different fitness, or an evaluator that
    mixed up runs could still pass."""
    trainer = MetaTrainer(_config())
    batch = trainer.problem.sample(trainer.generator)
    objective = trainer.problem.objective(trainer.loss, batch)
    params = {k: v.detach() for k, v in trainer.loss.named_parameters()}
    sigma = trainer.config.outer.es_sigma
    g = torch.Generator().manual_seed(0)
    noisy = [
        {k: v + sigma * torch.randn(v.shape, generator=g) for k, v in params.items()}
        for _ in range(4)
    ]
    values = objective.many([params, *noisy])
    assert values.flatten().unique().numel() >= 4
