"""Sub-commands of the ``metaloss`` command line; each module has ``register(subparsers)``."""

COMMANDS = ["metaloss.commands.train", "metaloss.commands.tune", "metaloss.commands.benchmark"]
"""Modules that define a sub-command, in the order ``metaloss --help`` lists them."""
COMMANDS.append("metaloss.commands.inspect")
COMMANDS.append("metaloss.commands.config")
COMMANDS.append("metaloss.commands.export")
COMMANDS.append("metaloss.commands.rl_train")
COMMANDS.append("metaloss.commands.rl_benchmark")
