"""The uncertainty-weighting toy (Kendall, Gal & Cipolla, CVPR 2018): two linear targets of the
same inputs with noise standard deviations 10 and 1, one shared trunk.

Trains fresh learners on held-out toy problems with uncertainty weighting and prints, per head,
the learned noise scale ``sigma_t = exp(s_t / 2)`` next to the residual standard deviation on
the held-out test split (they agree when the implementation is right: the optimum of
``L / (2 sigma^2) + log sigma`` is ``sigma^2 = L``). With a learned multi-task loss it also
records the weight it gives each head at every inner step, and writes both weightings' per-head
weights over training to TensorBoard.

    python experiments/multitask_toy.py --logdir runs/multitask_toy
    tensorboard --logdir runs/multitask_toy
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap
from torch.utils.tensorboard import SummaryWriter

from metaloss.config import load_config
from metaloss.evaluation.stats import mean_ci
from metaloss.export import load_loss, zoo_names
from metaloss.inner.optim import make_optimizer
from metaloss.learners import init_params, make_learner
from metaloss.losses.multitask import MultiTaskLoss, uncertainty_weighting
from metaloss.tasks import Split, make_family
from metaloss.tasks.multitask import head_errors, log_variances


def train(loss_fn, learner, params, tasks, steps, lr, config, on_step):  # type: ignore[no-untyped-def]
    """Adam on each problem's train split (vmapped over problems); ``on_step(k, params)``."""
    optimizer = make_optimizer(config.inner, lr)

    def objective(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(learner, p, (x,)), y).mean()

    grads_of = vmap(grad(objective))
    state = optimizer.init(params)
    on_step(0, params)
    for k in range(steps):
        with torch.no_grad():
            grads = grads_of(params, tasks.train.x, tasks.train.y)
            params, state = optimizer.update(grads, state, params)
        on_step(k + 1, params)
    return params


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", nargs="?", default="configs/multitask.yaml")
    parser.add_argument(
        "--loss",
        default=None,
        help="learned multi-task loss (default: the zoo's multitask if installed)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="inner Adam steps")
    parser.add_argument("--lr", type=float, default=0.02, help="inner learning rate")
    parser.add_argument("--problems", type=int, default=16, help="held-out toy problems")
    parser.add_argument("--n-train", type=int, default=1024, help="training samples per problem")
    parser.add_argument(
        "--hidden", default="[16]", help="learner hidden widths (small: the toy is linear)"
    )
    parser.add_argument("--logdir", type=Path, default=Path("runs/multitask_toy"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(
        args.config,
        [
            "task.toy=true",
            f"task.n_train={args.n_train}",
            "task.heads=[2, 2]",
            f"learner.hidden={args.hidden}",
        ],
    )
    family = make_family(config.task)
    learner = make_learner(config.learner, family.in_features, family.out_features)
    tasks = family.tasks(Split.META_TEST, args.problems)
    inits = init_params(learner, args.problems, torch.Generator().manual_seed(2_000_033))
    truth = config.task.toy_noise  # type: ignore[attr-defined]
    writer = SummaryWriter(str(args.logdir))

    def predict(params: dict[str, Tensor], x: Tensor) -> Tensor:
        return vmap(lambda p, xi: functional_call(learner, p, (xi,)))(params, x)

    def log_uncertainty(k: int, params: dict[str, Tensor]) -> None:
        if k % 5 and k != args.steps:
            return
        pred = predict(params, tasks.train.x[:, :1])
        s = log_variances(pred, tasks.train.y[:, :1])[:, 0, :2]
        for t in range(2):
            writer.add_scalar(
                f"toy_uncertainty/sigma_head{t}", float(torch.exp(s[:, t] / 2).mean()), k
            )
            writer.add_scalar(
                f"toy_uncertainty/weight_head{t}", float((0.5 * torch.exp(-s[:, t])).mean()), k
            )

    final = train(
        uncertainty_weighting, learner, inits, tasks, args.steps, args.lr, config, log_uncertainty
    )
    pred = predict(final, tasks.test.x)
    residual = head_errors(pred, tasks.test.y).losses.mean(1).sqrt()[:, :2]
    train_residual = (
        head_errors(predict(final, tasks.train.x), tasks.train.y).losses.mean(1).sqrt()[:, :2]
    )
    sigma = torch.exp(log_variances(pred, tasks.test.y)[:, 0, :2] / 2)
    print(
        f"uncertainty weighting on the sigma=({truth[0]:g}, {truth[1]:g}) toy: {args.problems} held-out problems, "
        f"{args.steps} Adam steps at lr {args.lr:g}, {args.n_train} training samples (mean ± 95% CI over problems)\n"
    )
    print(
        "| head | true noise σ | learned σ = exp(s/2) | held-out residual std | train residual std |"
    )
    print("|---|---|---|---|---|")
    for t in range(2):
        print(
            f"| {t} | {truth[t]:g} | {mean_ci(sigma[:, t])} | {mean_ci(residual[:, t])} | {mean_ci(train_residual[:, t])} |"
        )

    source = args.loss or ("multitask" if "multitask" in zoo_names() else None)
    if source is None:
        print(
            "\nno learned multi-task loss given (and none in the zoo): skipping the learned weighting"
        )
        writer.close()
        return
    loss = load_loss(source, reduction="none")
    if not isinstance(loss, MultiTaskLoss):
        raise SystemExit(f"--loss: expected a multi-task loss file, got {type(loss).__name__}")
    weights_seen: list[Tensor] = []

    def log_learned(k: int, params: dict[str, Tensor]) -> None:
        with torch.no_grad():
            w = loss.weights(predict(params, tasks.train.x), tasks.train.y).mean(1)[
                :, :2
            ]  # [problems, 2]
        weights_seen.append(w)
        for t in range(2):
            writer.add_scalar(f"toy_learned/weight_head{t}", float(w[:, t].mean()), k)
        writer.add_scalar(
            "toy_learned/weight_ratio_head1_over_head0", float((w[:, 1] / w[:, 0]).mean()), k
        )

    final = train(loss, learner, inits, tasks, args.steps, args.lr, config, log_learned)
    residual = head_errors(predict(final, tasks.test.x), tasks.test.y).losses.mean(1).sqrt()[:, :2]
    first, last = weights_seen[0], weights_seen[-1]
    print(
        f"\nlearned weighting ({source}): per-head weight (mean over samples) at the first and last step, "
        "and the held-out residual std\n"
    )
    print("| head | weight at step 0 | weight at the last step | held-out residual std |")
    print("|---|---|---|---|")
    for t in range(2):
        print(
            f"| {t} | {mean_ci(first[:, t])} | {mean_ci(last[:, t])} | {mean_ci(residual[:, t])} |"
        )
    writer.close()
    print(f"\nTensorBoard: tensorboard --logdir {args.logdir}  (toy_uncertainty/*, toy_learned/*)")


if __name__ == "__main__":
    main()
