"""Use a learned classification loss from the zoo in a plain PyTorch training loop, outside metaloss.

An MLP is trained with Adam on mini-batches of a bundled classification data set (digits with all
10 classes, statsmodels' anes96 and fair, scikit-learn's make_classification; no download) whose
*training* labels carry symmetric or pair-flip noise; validation and test labels are clean. Every
loss gets its own learning rate, chosen from a grid by the clean validation cross-entropy. Printed
per data set and loss, mean ± std over seeds: test cross-entropy, accuracy, expected calibration
error (15 equal-width confidence bins, Guo et al. 2017), the median logit margin
``z_y - max_{k != y} z_k`` on the training rows after training, and the loss's gradient on the
labelled logit at margins 20 and 100 (5 classes, the other logits equal): cross-entropy's
vanishes, ``exp(-margin)``; a loss whose gradient does not vanish keeps pushing the margins up.

    python experiments/noisy_labels_in_plain_pytorch.py                         # clean data
    python experiments/noisy_labels_in_plain_pytorch.py --noise 0.4 --noise-type pair
    python experiments/noisy_labels_in_plain_pytorch.py --loss noisy-labels runs/x/loss.safetensors

Everything metaloss-specific is ``load_loss(name)`` (and ``baseline(name)`` for GCE/SCE).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn

from metaloss import LossFileError, baseline, load_loss
from metaloss.datasets.classification import load_classification
from metaloss.evaluation.decomposition import calibration_error

Criterion = Callable[[Tensor, Tensor], Tensor]


@dataclass
class Args:
    loss: str = "noisy-labels"
    """comma-separated zoo names or paths of learned loss files"""
    datasets: str = "digits,anes96,fair,make_classification"
    """comma-separated bundled data sets"""
    noise: float = 0.0
    """fraction of training labels flipped"""
    noise_type: str = "symmetric"
    """symmetric (uniform over the other classes) or pair (c -> c+1 mod C)"""
    seeds: int = 3
    """independent splits, noise draws and initialisations"""
    epochs: int = 30
    """passes over the training split"""
    batch_size: int = 32
    """mini-batch size"""
    lr_grid: str = "0.0003,0.001,0.003,0.01"
    """Adam learning rates tried for every loss"""
    hidden: int = 64
    """width of the MLP's hidden layer"""
    max_rows: int = 2000
    """rows used per data set (a random subset of larger ones)"""


def parse_args() -> Args:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for f in fields(Args):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default
        )
    return Args(**vars(parser.parse_args()))


def load_data(name: str, args: Args, seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """A 60/20/20 split, noisy training labels, features standardised on the training rows."""
    x, y = load_classification(name)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=generator)[: args.max_rows]
    x, y = x[order], y[order]
    classes = int(y.max()) + 1
    n_train, n_valid = int(0.6 * len(x)), int(0.2 * len(x))
    cuts = {
        "train": (0, n_train),
        "valid": (n_train, n_train + n_valid),
        "test": (n_train + n_valid, len(x)),
    }
    data = {k: (x[a:b], y[a:b].clone()) for k, (a, b) in cuts.items()}
    labels = data["train"][1]
    flipped = torch.randperm(len(labels), generator=generator)[: round(args.noise * len(labels))]
    if args.noise_type == "pair":
        shift = torch.ones(len(flipped), dtype=torch.long)
    elif args.noise_type == "symmetric":
        shift = torch.randint(1, classes, (len(flipped),), generator=generator)
    else:
        raise SystemExit(f"--noise-type: expected symmetric or pair, got {args.noise_type!r}")
    labels[flipped] = (labels[flipped] + shift) % classes
    mean, std = data["train"][0].mean(0), data["train"][0].std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return {k: ((xs - mean) / std, ys) for k, (xs, ys) in data.items()}


def train(
    criterion: Criterion, data: dict[str, tuple[Tensor, Tensor]], lr: float, args: Args, seed: int
) -> nn.Module:
    """Adam on mini-batches for ``args.epochs`` epochs; the same seed gives the same init and order."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = data["train"]
    classes = int(max(int(v[1].max()) for v in data.values())) + 1
    model = nn.Sequential(
        nn.Linear(x.shape[1], args.hidden), nn.ReLU(), nn.Linear(args.hidden, classes)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(args.epochs):
        for batch in torch.randperm(len(x), generator=generator).split(args.batch_size):
            loss = criterion(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model


def scores(model: nn.Module, split: tuple[Tensor, Tensor]) -> dict[str, float]:
    """Cross-entropy, accuracy, ECE and median logit margin of ``model`` on a split."""
    with torch.no_grad():
        logits = model(split[0])
    labels = split[1]
    label_logit = logits.gather(-1, labels[:, None]).squeeze(-1)
    others = logits.scatter(-1, labels[:, None], float("-inf")).amax(-1)
    return {
        "ce": float(nn.functional.cross_entropy(logits, labels)),
        "acc": float((logits.argmax(-1) == labels).float().mean()),
        "ece": float(calibration_error(logits, labels)),
        "margin": float((label_logit - others).median()),
    }


def labelled_logit_gradient(criterion: Criterion, margin: float, classes: int = 5) -> float:
    """``d loss / d z_y`` for one sample whose labelled logit leads the others by ``margin``."""
    logits = torch.zeros(1, classes)
    logits[0, 0] = margin
    logits.requires_grad_()
    (grad,) = torch.autograd.grad(criterion(logits, torch.zeros(1, dtype=torch.long)), logits)
    return float(grad[0, 0])


def criteria(args: Args) -> dict[str, Criterion]:
    out: dict[str, Criterion] = {}
    for name in args.loss.split(","):
        if name:
            out[f"learned ({name})"] = load_loss(name)
    out["CE"] = nn.CrossEntropyLoss()
    gce, sce = baseline("gce", q=0.7), baseline("sce", alpha=0.1)
    out["GCE (q=0.7)"] = lambda z, y: gce(z, y).mean()
    out["SCE (a=0.1, b=1)"] = lambda z, y: sce(z, y).mean()
    return out


def cell(rows: dict[str, list[float]], key: str) -> str:
    """``mean ± std`` over seeds."""
    t = torch.tensor(rows[key], dtype=torch.float64)
    return f"{float(t.mean()):.3f} ± {float(t.std()) if len(t) > 1 else 0.0:.3f}"


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    try:
        losses = criteria(args)
    except LossFileError as error:
        print(f"noisy_labels_in_plain_pytorch: {error}", file=sys.stderr)
        return 2
    lrs = [float(v) for v in args.lr_grid.split(",")]
    start = time.perf_counter()
    print(
        f"{args.noise:.0%} {args.noise_type} noise on training labels, clean valid/test; "
        f"{args.seeds} seeds, {args.epochs} epochs, batch {args.batch_size}, MLP {args.hidden}, "
        f"Adam lr by clean valid CE from {args.lr_grid}"
    )
    header = f"{'data set':<20} {'loss':<28} {'test CE':>15} {'accuracy':>15} {'ECE':>15} {'train margin':>16} {'lrs'}"
    print(header)
    for name in args.datasets.split(","):
        for loss_name, criterion in losses.items():
            rows: dict[str, list[float]] = {"ce": [], "acc": [], "ece": [], "margin": []}
            chosen = []
            for seed in range(args.seeds):
                data = load_data(name, args, seed)
                models = {lr: train(criterion, data, lr, args, seed) for lr in lrs}
                best = min(lrs, key=lambda lr: scores(models[lr], data["valid"])["ce"])
                test = scores(models[best], data["test"])
                test["margin"] = scores(models[best], data["train"])["margin"]
                for key in rows:
                    rows[key].append(test[key])
                chosen.append(best)

            lr_text = ",".join(f"{lr:g}" for lr in chosen)
            print(
                f"{name:<20} {loss_name:<28} {cell(rows, 'ce'):>15} {cell(rows, 'acc'):>15} "
                f"{cell(rows, 'ece'):>15} {cell(rows, 'margin'):>16} {lr_text}",
                flush=True,
            )
    print("d loss / d z_y at margin 20 and 100 (5 classes, float32: CE's underflows to 0):")
    for loss_name, criterion in losses.items():
        g20, g100 = (labelled_logit_gradient(criterion, m) for m in (20.0, 100.0))
        print(f"  {loss_name:<28} {g20:+.2e} {g100:+.2e}")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
