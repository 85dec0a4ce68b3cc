"""A transformer over windows of cached frame embeddings with a per-frame 8-class head: linear projection,
positional encoding, transformer encoder, per-frame linear head.

Frames without a face are replaced by a learned "no face" token and masked as attention keys, so their
features never reach another frame, yet every frame (face or not) gets a prediction.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from ..labels import NUM_CLASSES
from ..readers import load_checkpoint
from .config import TemporalConfig

CHECKPOINT_FORMAT = "abawkit-temporal/1"


def sinusoidal(length: int, width: int, device=None) -> torch.Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : width // 2]
    return pe


class TemporalEncoder(nn.Module):
    """``forward(x (B,T,D), has_face (B,T) bool, frame_logits (B,T,8) | None) -> logits (B,T,8)``."""

    def __init__(self, config: TemporalConfig, in_dim: int):
        super().__init__()
        self.config, self.in_dim = config, in_dim
        # Feature standardization fitted on the training frames; buffers so checkpoints carry them.
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        self.proj = nn.Linear(in_dim, config.width)
        self.no_face = nn.Parameter(torch.zeros(config.width))
        self.drop = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(config.width, config.heads, dim_feedforward=4 * config.width,
                                           dropout=config.dropout, batch_first=True, norm_first=True)
        # No nested tensors: they would zero the outputs of masked (no-face) frames.
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, NUM_CLASSES)
        self.logit_scale = nn.Parameter(torch.ones(1)) if config.residual_logits else None
        if config.residual_logits:  # the correction starts at zero: before training, the frame model's logits
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    @staticmethod
    def input_dim(config: TemporalConfig, embed_dim: int) -> int:
        """Features per frame the encoder reads (``config.inputs``) from embeddings of ``embed_dim``."""
        return {"embeddings": embed_dim, "logits": NUM_CLASSES, "both": embed_dim + NUM_CLASSES}[config.inputs]

    def inputs_of(self, x, frame_logits):
        """The per-frame input (numpy or torch, (..., D) embeddings and (..., 8) logits) of ``config.inputs``."""
        kind = self.config.inputs
        if kind == "embeddings":
            return x
        if kind == "logits":
            return frame_logits
        if isinstance(x, np.ndarray):
            return np.concatenate([x.astype(np.float32), frame_logits.astype(np.float32)], axis=-1)
        return torch.cat([x.float(), frame_logits.float()], dim=-1)

    def set_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.feat_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feat_std.copy_(torch.as_tensor(np.maximum(std, 1e-4), dtype=torch.float32))

    def forward(self, x: torch.Tensor, has_face: torch.Tensor, frame_logits: torch.Tensor | None = None,
                noise: float = 0.0) -> torch.Tensor:
        """``noise``: Gaussian noise added to the standardized input (units of each feature's std; training)."""
        has_face = has_face.bool()
        if frame_logits is None:
            if self.config.inputs != "embeddings":
                raise ValueError(f"this encoder reads the frame model's logits (inputs={self.config.inputs})")
            frame_logits = torch.zeros(*x.shape[:-1], NUM_CLASSES, device=x.device)
        z = (self.inputs_of(x, frame_logits).float() - self.feat_mean) / self.feat_std
        if noise > 0:
            z = z + noise * torch.randn_like(z)
        h = self.proj(z)
        h = torch.where(has_face[..., None], h, self.no_face.to(h.dtype))
        h = self.drop(h + sinusoidal(x.shape[1], self.config.width, x.device).to(h.dtype))
        key_mask = ~has_face
        # A window without any face: let its frames attend to each other (all hold the same no-face token).
        key_mask = key_mask & has_face.any(dim=1, keepdim=True)
        h = self.encoder(h, src_key_padding_mask=key_mask)
        out = self.head(self.norm(h))
        if self.logit_scale is not None and frame_logits is not None:
            out = out + self.logit_scale * torch.where(has_face[..., None], frame_logits.float(), 0.0)
        return out


def build_temporal_model(config: TemporalConfig, embed_dim: int) -> TemporalEncoder:
    """An encoder over frame embeddings of ``embed_dim`` (and/or logits, ``config.inputs``)."""
    return TemporalEncoder(config, TemporalEncoder.input_dim(config, embed_dim))


def save_temporal_checkpoint(path, model: TemporalEncoder, **extra: Any):
    from ..io import atomic_path

    payload = {"format": CHECKPOINT_FORMAT, "config": {**asdict(model.config), "in_dim": model.in_dim},
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_temporal_model(path, device: str | torch.device = "cpu") -> tuple[TemporalEncoder, dict[str, Any]]:
    """Rebuild a temporal encoder from a checkpoint (``torch.load(weights_only=True)``), in eval mode."""
    payload = load_checkpoint(path, CHECKPOINT_FORMAT, "train one with abawkit train-temporal (notebook 06)")
    arch = dict(payload["config"])
    in_dim = int(arch.pop("in_dim"))
    model = TemporalEncoder(TemporalConfig(**arch), in_dim)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload
