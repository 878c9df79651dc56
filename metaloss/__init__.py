"""metaloss: meta-learned loss functions.

A small network (the meta-loss) gives a loss for every sample; learners are trained with it for a
few differentiable steps, and their error on held-out data of the same task is back-propagated
through the unrolled inner loop into the meta-loss. The public API:

    >>> from metaloss import load_loss
    >>> criterion = load_loss("loss.safetensors")   # doctest: +SKIP
"""

__version__ = "0.1.0"

from metaloss.config import ConfigError, RunConfig, load_config, parse
from metaloss.export import LossFileError, load_loss, read_metadata, save_loss, zoo_names
from metaloss.losses import LearnedLoss, baseline
from metaloss.outer import MetaTrainer, TrainResult
from metaloss.rl import families as _rl_families  # noqa: F401  (registers cartpole, acrobot)
from metaloss.tasks import Split, make_family  # registers the supervised task families

__all__ = [
    "ConfigError",
    "LearnedLoss",
    "LossFileError",
    "MetaTrainer",
    "RunConfig",
    "Split",
    "TrainResult",
    "__version__",
    "baseline",
    "load_config",
    "load_loss",
    "make_family",
    "parse",
    "read_metadata",
    "save_loss",
    "zoo_names",
]
