"""Training: the loop behind ``hydranet train``, optimisers, schedules, logs and plots."""

from .plots import plot_run
from .settings import LOSS_DEFAULTS, TRAIN_DEFAULTS, apply_overrides, training_settings
from .trainer import Trainer, TrainingError, train

__all__ = [
    "train",
    "Trainer",
    "TrainingError",
    "plot_run",
    "TRAIN_DEFAULTS",
    "LOSS_DEFAULTS",
    "apply_overrides",
    "training_settings",
]
