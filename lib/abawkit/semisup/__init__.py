"""Semi-supervised frame-model pretraining: class-uniform sampling, dynamic thresholds (FreeMatch, Wang et al.,
2023; FlexMatch, Zhang et al., 2021), debiased pseudo-labels (DebiasPL, Wang et al., 2022) and feedback learning
(Meta Pseudo Labels, Pham et al., 2021), trained by :func:`abawkit.semisup.train.train`."""

from .config import ALGORITHM_PRESETS, SemiSupConfig, TrainConfig, preset

__all__ = ["ALGORITHM_PRESETS", "SemiSupConfig", "TrainConfig", "preset"]
