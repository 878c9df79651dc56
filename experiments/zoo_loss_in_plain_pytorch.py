"""Use a learned loss from the zoo in a plain PyTorch training loop, outside metaloss.

A small MLP (or, with ``--hidden 0``, a linear model) is fitted to a bundled real data set
(scikit-learn's diabetes by default; ``--dataset`` takes any name of
``metaloss.datasets.regression_names()``, e.g. statsmodels' fair, whose target is zero-inflated
and heavily skewed) whose *training and validation* targets carry injected outliers; the test
targets are clean. The same model, data, optimiser (``--optimizer adam|sgd``) and epoch budget
are trained with ``load_loss(<zoo name or file>)``, ``nn.MSELoss`` and ``nn.HuberLoss``; each loss
gets its own learning rate (and, with ``--scales`` / ``--huber-deltas``, the learned loss its
robustness scale and Huber its δ), chosen from small grids by the median absolute error on the
(corrupted) validation split, so no clean label is used for any choice. The script prints the
clean test MSE of each loss, mean ± std over seeds, in units of the standardised target.

    python experiments/zoo_loss_in_plain_pytorch.py                        # zoo: robust-regression
    python experiments/zoo_loss_in_plain_pytorch.py --loss runs/x/loss.safetensors --seeds 3
    python experiments/zoo_loss_in_plain_pytorch.py --dataset fair --hidden 0 --outlier-fraction 0
    python experiments/zoo_loss_in_plain_pytorch.py --loss robust-regression-transfer \
        --scales 0.25,0.5,1,2,4,8,16 --huber-deltas 0.1,0.3,1,3

Everything metaloss-specific in the training loop is the one line
``criterion = load_loss(args.loss)`` (the data come as plain tensors from
``metaloss.datasets.load_regression``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from metaloss import LossFileError, load_loss

Criterion = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Args:
    loss: str = "robust-regression"
    """zoo name or path of the learned loss file"""
    seeds: int = 5
    """independent data splits, outlier draws and initialisations"""
    outlier_fraction: float = 0.2
    """fraction of training and validation targets replaced by outliers"""
    outlier_kind: str = "one_sided"
    """one_sided (all outliers shifted up) or two_sided (random sign)"""
    outlier_scale: float = 6.0
    """outlier offset in units of the clean target's std (drawn in [scale, 2 * scale])"""
    epochs: int = 100
    """passes over the training split"""
    batch_size: int = 32
    """mini-batch size (learned losses with batch-level features see one mini-batch)"""
    lr_grid: str = "0.00001,0.00003,0.0001,0.0003,0.001,0.003,0.01"
    """Adam learning rates tried for every loss"""
    hidden: int = 32
    """width of the MLP's hidden layer (0: a linear model)"""
    dataset: str = "diabetes"
    """bundled regression data set (metaloss.datasets.regression_names())"""
    optimizer: str = "adam"
    """adam or sgd"""
    scales: str = ""
    """robustness scales c tried for the learned loss (``criterion.with_scale(c)``), selected
    with its learning rate on the validation split; empty: the loss as loaded"""
    huber_deltas: str = "1"
    """deltas tried for nn.HuberLoss, selected with its learning rate the same way"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in fields(Args):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    return Args(**vars(parser.parse_args()))


def load_data(args: Args, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """The data set split 60/20/20; outliers in train and valid targets; standardised."""
    from metaloss.datasets import load_regression

    table = load_regression(args.dataset)
    generator = torch.Generator().manual_seed(seed)
    x = table.x.float()
    y = table.y.float()[:, None]
    order = torch.randperm(len(x), generator=generator)
    n_train, n_valid = int(0.6 * len(x)), int(0.2 * len(x))
    parts = {
        "train": order[:n_train],
        "valid": order[n_train : n_train + n_valid],
        "test": order[n_train + n_valid :],
    }
    clean_std = float(y[parts["train"]].std())
    data = {}
    for name, index in parts.items():
        xs, ys = x[index], y[index].clone()
        if name != "test":
            ys = corrupt(ys, args, clean_std, generator)
        data[name] = (xs, ys)
    # Standardise with statistics a user could compute: mean/std of the inputs, median and
    # median absolute deviation of the (corrupted) training targets (their std when the MAD is
    # 0, as for zero-inflated targets).
    x_mean, x_std = data["train"][0].mean(0), data["train"][0].std(0).clamp_min(1e-6)
    y_median = data["train"][1].median()
    y_scale = 1.4826 * (data["train"][1] - y_median).abs().median()
    if float(y_scale) == 0.0:
        y_scale = data["train"][1].std()
    return {k: ((xs - x_mean) / x_std, (ys - y_median) / y_scale) for k, (xs, ys) in data.items()}


def corrupt(y: Tensor, args: Args, std: float, generator: torch.Generator) -> Tensor:
    """Replace a fraction of targets by ``y + offset`` with ``|offset|`` in [scale, 2 scale] std."""
    count = round(args.outlier_fraction * len(y))
    index = torch.randperm(len(y), generator=generator)[:count]
    offset = args.outlier_scale * std * (1 + torch.rand(count, 1, generator=generator))
    if args.outlier_kind == "two_sided":
        offset = offset * torch.where(torch.rand(count, 1, generator=generator) < 0.5, -1.0, 1.0)
    elif args.outlier_kind != "one_sided":
        raise SystemExit(
            f"--outlier-kind: expected one_sided or two_sided, got {args.outlier_kind!r}"
        )
    y[index] = y[index] + offset
    return y


def train(
    criterion: Criterion, data: dict[str, tuple[Tensor, Tensor]], lr: float, args: Args, seed: int
) -> nn.Module:
    """Adam on mini-batches for ``args.epochs`` epochs; the same seed gives the same init and order."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = data["train"]
    model: nn.Module = (
        nn.Linear(x.shape[1], 1)
        if args.hidden == 0
        else nn.Sequential(nn.Linear(x.shape[1], args.hidden), nn.ReLU(), nn.Linear(args.hidden, 1))
    )
    optimizer: torch.optim.Optimizer = (
        torch.optim.SGD(model.parameters(), lr=lr)
        if args.optimizer == "sgd"
        else torch.optim.Adam(model.parameters(), lr=lr)
    )
    for _ in range(args.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(args.batch_size):
            loss = criterion(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def evaluate(model: nn.Module, split: tuple[Tensor, Tensor]) -> tuple[float, float]:
    """(median absolute error, mean squared error) of ``model`` on a split."""
    with torch.no_grad():
        residual = model(split[0]) - split[1]
    return float(residual.abs().median()), float((residual**2).mean())


def main() -> int:
    args = parse_args()
    if args.optimizer not in ("adam", "sgd"):
        print(f"--optimizer: expected adam or sgd, got {args.optimizer!r}", file=sys.stderr)
        return 2
    from metaloss.datasets import regression_names

    if args.dataset not in regression_names():
        print(
            f"--dataset: expected one of {', '.join(regression_names())}, got {args.dataset!r}",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(1)  # tiny model: threads only add contention on a shared machine
    try:
        learned = load_loss(args.loss)
    except LossFileError as error:
        print(
            f"zoo_loss_in_plain_pytorch: {error}; train one with `metaloss train configs/outliers.yaml` "
            "or pass --loss PATH",
            file=sys.stderr,
        )
        return 2
    try:
        scales = [float(v) for v in args.scales.split(",")] if args.scales else []
        deltas = [float(v) for v in args.huber_deltas.split(",")]
        lrs = [float(v) for v in args.lr_grid.split(",")]
        learned_settings = {f"c={c:g} ": learned.with_scale(c) for c in scales} or {"": learned}
        huber_settings = {f"delta={d:g} ": nn.HuberLoss(delta=d) for d in deltas}
    except (ValueError, TypeError, AttributeError) as error:
        print(f"--scales / --huber-deltas / --lr-grid: {error}", file=sys.stderr)
        return 2
    huber = "nn.HuberLoss" + (f"(delta={deltas[0]:g})" if len(deltas) == 1 else " (delta selected)")
    criteria: dict[str, dict[str, Criterion]] = {
        f"learned ({args.loss})" + (" (scale selected)" if scales else ""): learned_settings,
        "nn.MSELoss": {"": nn.MSELoss()},
        huber: huber_settings,
    }
    results: dict[str, list[float]] = {name: [] for name in criteria}
    chosen: dict[str, list[tuple[str, float]]] = {name: [] for name in criteria}  # (setting, lr)
    start = time.perf_counter()
    for seed in range(args.seeds):
        data = load_data(args, seed)
        for name, settings in criteria.items():
            models = {
                (label, lr): train(criterion, data, lr, args, seed)
                for label, criterion in settings.items()
                for lr in lrs
            }
            best = min(models, key=lambda key: evaluate(models[key], data["valid"])[0])
            results[name].append(evaluate(models[best], data["test"])[1])
            chosen[name].append(best)
    print(
        f"{args.dataset}, {'linear' if args.hidden == 0 else f'MLP {args.hidden}'}, "
        f"{args.optimizer}, {args.outlier_fraction:.0%} {args.outlier_kind} outliers "
        f"(offset {args.outlier_scale:g}-{2 * args.outlier_scale:g} std) in train/valid targets, "
        f"clean test; {args.seeds} seeds, {args.epochs} epochs, lr by valid median |error| "
        f"from {args.lr_grid}; {time.perf_counter() - start:.0f} s"
    )
    width = max(len(name) for name in results)
    print(f"{'loss':<{width}}  {'clean test MSE (std. units)':<27}  settings chosen per seed")
    for name, values in results.items():
        t = torch.tensor(values, dtype=torch.float64)
        std = float(t.std()) if len(t) > 1 else 0.0
        settings_text = "; ".join(f"{label}lr={lr:g}" for label, lr in chosen[name])
        print(f"{name:<{width}}  {float(t.mean()):>8.4f} ± {std:<16.4f}  {settings_text}")
    for name, picked in chosen.items():
        edges = [lr for _, lr in picked if lr in (min(lrs), max(lrs))]
        if edges:
            print(
                f"note: {name} chose a learning rate at the edge of --lr-grid in {len(edges)} of {len(picked)} seeds"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
