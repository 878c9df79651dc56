"""The outer loop: gradient estimators, checkpoints and the meta-trainer. Only this package
holds meta-parameters."""

from metaloss.outer.checkpoint import load_checkpoint, save_checkpoint
from metaloss.outer.estimators import (
    AntitheticES,
    EstimatorOut,
    FullGrad,
    GradientEstimator,
    TruncatedGrad,
    centred_ranks,
    make_estimator,
)
from metaloss.outer.trainer import (
    Callback,
    MetaTrainer,
    NonFiniteError,
    StepRecord,
    TrainResult,
    ValidationRecord,
)

__all__ = [
    "AntitheticES",
    "Callback",
    "EstimatorOut",
    "FullGrad",
    "GradientEstimator",
    "MetaTrainer",
    "NonFiniteError",
    "StepRecord",
    "TrainResult",
    "TruncatedGrad",
    "ValidationRecord",
    "centred_ranks",
    "load_checkpoint",
    "make_estimator",
    "save_checkpoint",
]
