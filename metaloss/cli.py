"""The ``metaloss`` command line. Errors in user input end in one line on stderr, not a traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import torch

from metaloss.commands import COMMANDS
from metaloss.config import ConfigError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from metaloss import __version__

    parser = argparse.ArgumentParser(prog="metaloss", description="Meta-learned loss functions.")
    parser.add_argument("--version", action="version", version=f"metaloss {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("METALOSS_THREADS", "1")),
        help="intra-op CPU threads for torch (default 1, or $METALOSS_THREADS): meta-learning "
        "here is many small operations, where more threads mostly add synchronisation",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ImportError as error:  # one command's optional dependency must not break the rest
            _register_unavailable(subparsers, name.rsplit(".", 1)[-1], error)
            continue
        module.register(subparsers)
    return parser


def _register_unavailable(
    subparsers: argparse._SubParsersAction, command: str, error: ImportError
) -> None:  # type: ignore[type-arg]
    reason = f"{command}: needs a package that is not installed ({error}); reinstall with scripts/setup.sh"

    def fail(args: argparse.Namespace) -> int:
        raise ImportError(reason)

    parser = subparsers.add_parser(command, help=f"(unavailable: {error})", add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(func=fail)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["metaloss", *(sys.argv[1:] if argv is None else argv)]  # recorded by train
    if args.threads < 1:
        parser.error(f"--threads: expected an integer >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as error:
        print(f"metaloss: config error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError, ImportError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"metaloss: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "metaloss: interrupted; finished work is in the last checkpoint (resume with --resume)",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
