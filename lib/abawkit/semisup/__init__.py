"""Semi-supervised frame-model pretraining (SPEC 5.1-5.5): class-uniform sampling, dynamic thresholds,
debiased pseudo-labels and feedback learning, trained by :func:`abawkit.semisup.train.train`."""

from .config import ALGORITHM_PRESETS, SemiSupConfig, TrainConfig, preset

__all__ = ["ALGORITHM_PRESETS", "SemiSupConfig", "TrainConfig", "preset"]
