"""Family and kind registries, settings a family does not read, and meta-training variants."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import yaml

from metaloss.config import ConfigError, TaskConfig, load_config, parse, setting, to_dict
from metaloss.losses.kinds import kind_spec
from metaloss.outer.supervised import SupervisedProblem
from metaloss.outer.trainer import MetaTrainer
from metaloss.tasks import FAMILIES, family_spec
from metaloss.tasks.registry import FamilySpec, register_family
from metaloss.tasks.sine import SineFamily


def test_every_family_names_a_registered_kind_and_parses_from_its_name() -> None:
    for name, spec in FAMILIES.items():
        assert kind_spec(spec.kind).name == spec.kind
        assert type(parse({"task": {"family": name}}).task) is spec.config


def test_a_family_whose_config_does_not_declare_its_name_is_refused() -> None:
    @dataclass(frozen=True)
    class Forgetful(TaskConfig):
        """No ``family`` default of its own."""

    with pytest.raises(TypeError, match='family: str = setting\\("forgetful"'):
        register_family(FamilySpec("forgetful", Forgetful, SineFamily, kind="regression"))
    assert "forgetful" not in FAMILIES

    @dataclass(frozen=True)
    class Careful(TaskConfig):
        """Declares its name."""

        family: str = setting("careful", "name of the task family")

    try:
        register_family(FamilySpec("careful", Careful, SineFamily, kind="regression"))
        assert family_spec("careful").config is Careful
    finally:
        FAMILIES.pop("careful")


def test_a_setting_the_family_does_not_read_is_refused_unless_it_is_the_default() -> None:
    with pytest.raises(ConfigError, match=r"^learner: not used by the cartpole family"):
        parse({"task": {"family": "cartpole"}, "learner": {"hidden": [3]}})
    # a resolved config (every setting written out, defaults included) still loads as is
    resolved = to_dict(load_config("configs/cartpole.yaml"))
    assert parse(yaml.safe_load(yaml.safe_dump(resolved))) == load_config("configs/cartpole.yaml")


def _small(**outer: object) -> dict:
    return {
        "learner": {"hidden": [4]},
        "loss": {"hidden": [4]},
        "inner": {"steps": 2},
        "outer": {"meta_batch": 3, "val_tasks": 2, **outer},
    }


def test_without_variants_the_meta_batches_are_those_of_the_run_itself() -> None:
    plain = SupervisedProblem(parse(_small()))
    one = SupervisedProblem(parse(_small(variants=[{"name": "same", "set": []}])))
    a = plain.sample(torch.Generator().manual_seed(5))
    b = one.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a.tasks.train.x, b.tasks.train.x)
    assert all(torch.equal(a.inits[k], b.inits[k]) for k in a.inits)


def test_variants_are_drawn_by_weight_and_shape_each_meta_batch() -> None:
    config = parse(
        _small(
            variants=[
                {"name": "wide", "weight": 3, "set": ["learner.hidden=[7]", "task.n_train=5"]},
                {
                    "name": "outliers",
                    "weight": 1,
                    "set": ["task.family=outliers", "inner.optimizer=adam"],
                },
            ]
        )
    )
    problem = SupervisedProblem(config)
    generator = torch.Generator().manual_seed(0)
    drawn = [problem.sample(generator) for _ in range(400)]
    share = sum(b.variant == 0 for b in drawn) / len(drawn)
    assert 0.68 < share < 0.82  # 3:1
    wide = next(b for b in drawn if b.variant == 0)
    assert wide.tasks.train.x.shape[1] == 5 and wide.inits["0.weight"].shape[1] == 7
    other = next(b for b in drawn if b.variant == 1)
    assert other.tasks.train.x.shape[-1] == 2  # the outlier family's input size
    assert problem.variants[1].config.inner.optimizer == "adam"


def test_validation_averages_over_its_conditions() -> None:
    both = [{"name": "a", "set": []}, {"name": "b", "set": ["inner.steps=5"]}]
    trainer = MetaTrainer(parse(_small(valid_variants=both)))
    singles = [
        MetaTrainer(parse(_small(valid_variants=[v]))).problem.validate(trainer.loss) for v in both
    ]
    assert trainer.validate() == pytest.approx(sum(singles) / 2)
    assert singles[0] != pytest.approx(singles[1])


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            {"set": ["outer.steps=3"]},
            r"outer\.variants\[0\]: expected overrides under task\., learner\., inner\.",
        ),
        (
            {"set": ["task.family=digits"]},
            r"outer\.variants\[0\]: expected a regression task family",
        ),
        (
            {"set": ["inner.steps=0"]},
            r"outer\.variants\[0\]: inner\.steps: expected an integer >= 1",
        ),
    ],
)
def test_bad_variants_are_refused_with_one_line(variant: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SupervisedProblem(parse(_small(variants=[variant])))


def test_the_inner_learning_rate_is_drawn_per_meta_step_when_asked() -> None:
    fixed = SupervisedProblem(parse(_small()))
    assert fixed.sample(torch.Generator().manual_seed(1)).lr is None
    problem = SupervisedProblem(parse(_small(inner_lr_scale=[0.1, 10.0])))
    generator = torch.Generator().manual_seed(1)
    rates = [problem.sample(generator).lr for _ in range(200)]
    base = problem.config.inner.lr
    assert all(r is not None and base * 0.1 <= r <= base * 10 for r in rates)
    logs = torch.tensor([float(r) / base for r in rates if r is not None]).log10()
    assert abs(float(logs.mean())) < 0.2 and float(logs.min()) < -0.8 and float(logs.max()) > 0.8
    with pytest.raises(ConfigError, match=r"outer\.inner_lr_scale: expected \[low, high\]"):
        parse(_small(inner_lr_scale=[2.0, 1.0]))


def test_the_drawn_learning_rate_is_the_one_the_inner_loop_uses() -> None:
    problem = SupervisedProblem(parse(_small()))
    loss = problem.make_loss(torch.Generator().manual_seed(0))
    batch = problem.sample(torch.Generator().manual_seed(2))
    params = {k: v.detach() for k, v in loss.named_parameters()}
    at = {lr: problem.objective(loss, batch._replace(lr=lr))(params) for lr in (None, 0.01, 1e-9)}
    torch.testing.assert_close(at[None], at[0.01])  # 0.01 is inner.lr
    untrained = problem.objective(loss, batch._replace(lr=1e-9))(params)
    assert not torch.allclose(at[0.01], untrained)
