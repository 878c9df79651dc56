"""The ``metaloss`` command line.

Every failure ends in exactly one line on stderr, never a traceback (``--debug`` or
``METALOSS_DEBUG=1`` adds the traceback). Exit status:

- 0: done;
- 1: an error (bad loss file, run folder, storage; a failure while working; an internal error);
- 2: a bad config, override or command-line argument, refused before any work;
- 3: ``metaloss train`` finished, but meta-training diverged (see the warnings it printed);
- 130: interrupted (Ctrl-C), 143: terminated (SIGTERM); finished work is in the last
  checkpoint, and no file is left half-written. Meta-training stops after the meta-step under
  way and checkpoints it (:mod:`metaloss.stopping`); a second signal stops at once;
- 141: the reader of the output went away (``metaloss config NAME | head -1``): the rest of the
  output is dropped without a word, as for a program the shell's SIGPIPE ends.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn

from metaloss import stopping
from metaloss.commands import COMMANDS
from metaloss.errors import ConfigError, InputError, printable

__all__ = ["EXIT_DIVERGED", "error_line", "main"]

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program a closed pipe ended
DEBUG_ENV = "METALOSS_DEBUG"
_MAX_LINE = 400


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        line = printable(f"{self.prog}: error: {message} (see {self.prog} --help)", _MAX_LINE)
        self.exit(EXIT_USAGE, line + "\n")


def build_parser() -> argparse.ArgumentParser:
    from metaloss import __version__

    parser = _Parser(prog="metaloss", description="Meta-learned loss functions.")
    parser.add_argument("--version", action="version", version=f"metaloss {__version__}")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op CPU threads for torch (default 1, or $METALOSS_THREADS): meta-learning "
        "here is many small operations, where more threads mostly add synchronisation",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the traceback of an error (also with {DEBUG_ENV}=1)",
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


def _threads(parser: argparse.ArgumentParser, value: int | None) -> int:
    if value is None:
        raw = os.environ.get("METALOSS_THREADS", "1")
        try:
            value = int(raw)
        except ValueError:
            parser.error(f"$METALOSS_THREADS: expected an integer >= 1, got {raw!r}")
    if not 1 <= value <= 1024:
        parser.error(f"--threads: expected an integer from 1 to 1024, got {value}")
    return value


def error_line(error: BaseException) -> tuple[str, int]:
    """The one line ``metaloss`` prints for ``error`` (without the ``metaloss:`` prefix), and
    the exit status."""
    if isinstance(error, ConfigError):
        return f"config error: {_first_line(error)}", EXIT_USAGE
    if isinstance(error, InputError):
        return f"error: {_first_line(error)}", EXIT_ERROR
    if isinstance(error, OSError) and error.errno is not None:
        return f"error: {_os_error(error)}", EXIT_ERROR
    if isinstance(error, MemoryError):
        return "error: out of memory (lower the sizes in the config)", EXIT_ERROR
    if isinstance(error, (ValueError, RuntimeError, ImportError, OSError)) and not isinstance(
        error, (RecursionError, NotImplementedError)
    ):
        return f"error: {_first_line(error)}", EXIT_ERROR
    return (
        f"internal error: {type(error).__name__}: {_first_line(error)} (a bug: please report "
        f"it with the traceback from --debug)",
        EXIT_ERROR,
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _os_error(error: OSError) -> str:
    where = f"{error.filename}: " if error.filename is not None else ""
    reason = error.strerror or os.strerror(error.errno or 0)
    if error.errno == errno.ENOSPC:
        return f"{where}no space left on the device (free some, then run again; a run continues with --resume)"
    if error.errno == errno.EDQUOT:
        return f"{where}disk quota exceeded (free some, then run again)"
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{where}cannot write here ({reason}); choose another folder with --out"
    return f"{where}{reason}"


def _report(line: str, error: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    print(printable(f"metaloss: {line}", _MAX_LINE), file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After a broken pipe (``metaloss ... | head``), drop the rest of the output quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_debug = [False]  # --debug of the running command, for background threads


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT or SIGTERM: a loop marked with safe points stops at its next one (a second signal
    stops at once); anywhere else the stop is raised here, in the main thread."""
    if not stopping.defer(signum):
        stopping.stop(signum)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    main_thread = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(s, _on_signal) for s in _SIGNALS] if main_thread else []
    thread_hook = threading.excepthook
    threading.excepthook = _quiet_thread_error
    try:
        return _main(argv)
    finally:
        _debug[0] = False
        threading.excepthook = thread_hook
        for sig, handler in zip(_SIGNALS, previous, strict=False):
            signal.signal(sig, handler)


def _quiet_thread_error(hook_args: threading.ExceptHookArgs) -> None:
    """A background thread's error (e.g. TensorBoard's writer on a full disk) reaches the main
    thread, which reports it in one line; the thread's own traceback only with --debug."""
    if _debug[0] or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        threading.__excepthook__(hook_args)


def _main(argv: Sequence[str] | None) -> int:
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = ["metaloss", *(sys.argv[1:] if argv is None else argv)]  # recorded by train
        debug = debug or args.debug
        _debug[0] = debug  # background threads show their tracebacks too
        threads = _threads(parser, args.threads)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        import torch

        torch.set_num_threads(threads)
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a broken pipe surfaces here, not at interpreter exit
        return status
    except SystemExit as done:  # argparse: --help and --version exit; a usage error returns 2
        if done.code in (0, None):
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _silence_stdout()
                return EXIT_BROKEN_PIPE
            raise
        return done.code if isinstance(done.code, int) else EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "metaloss: interrupted; finished work is in the last checkpoint (resume with --resume)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except stopping.Terminated:
        print(
            "metaloss: terminated (SIGTERM); finished work is in the last checkpoint (resume "
            "with --resume)",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as error:
        line, status = error_line(error)
        _report(line, error, debug)
        return status


if __name__ == "__main__":
    sys.exit(main())
