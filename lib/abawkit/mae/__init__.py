"""Masked-autoencoder face pretraining (Song et al. 2024, after He et al. 2022): a timm Vision Transformer learns
faces from unlabeled face images by reconstructing masked patches; ``abawkit pretrain-mae`` writes the encoder
that ``abawkit train-frame --weights`` fine-tunes."""

from .config import MAEConfig

__all__ = ["MAEConfig"]
