"""The frame-level expression model: a timm backbone, its pre-logits embedding and an 8-class head.

Checkpoints are a plain dict readable with ``torch.load(weights_only=True)``: ``format``, ``config`` (the
:class:`FrameModelConfig` as a dict, timm name included) and ``state_dict``; trainers add their own keys
(optimizer, algorithm state, step) beside them. Never a pickled module: those break across timm versions.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .labels import NUM_CLASSES
from .readers import BadFileError, load_checkpoint, load_state_dict

CHECKPOINT_FORMAT = "abawkit-frame-model/1"
#: ``abawkit pretrain-mae``'s encoder file (abawkit.mae.model): a timm state_dict with the model's name and arguments.
ENCODER_FORMAT = "abawkit-mae-encoder/1"
#: Small enough to train on 2 CPU cores in minutes (the demo default).
CPU_BACKBONE = "resnet10t"


@dataclass(frozen=True)
class FrameModelConfig:
    backbone: str = CPU_BACKBONE
    image_size: int = 112
    num_classes: int = NUM_CLASSES
    pretrained: bool = False
    weights: str | None = None  # a local file of backbone weights (timm/torchvision state_dict); head skipped
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0  # stochastic depth (timm's drop_path_rate; ViT fine-tuning)
    patch_size: int | None = None  # a Vision Transformer built at image_size with these patches (None: timm's model)
    # "per-image": standardize each image per channel inside the model (our choice for the demo / from-scratch
    # runs): removes per-video colour casts and gain, which otherwise shift the BatchNorm statistics between
    # training and validation videos. "none" leaves the dataset-normalized input as it is (pretrained weights).
    input_norm: str = "none"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FrameModelConfig":
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if k in ("mean", "std") else v) for k, v in data.items() if k in known}
        return cls(**values)

    def __post_init__(self) -> None:
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm {self.input_norm!r}: expected one of {', '.join(INPUT_NORMS)}")


INPUT_NORMS = ("none", "per-image")


def standardize_per_image(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(x - mean) / std over each image's pixels, per channel: invariant to a per-channel gain and offset."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.var(dim=(2, 3), keepdim=True, unbiased=False).add(eps).sqrt()
    return (x - mean) / std


class FrameModel(nn.Module):
    """``forward(x)`` gives logits (``forward(x, with_embedding=True)``: the embedding and the logits, through the
    forward of a DDP wrapper); ``embed(x)`` the ``forward_head(pre_logits=True)`` embedding."""

    def __init__(self, config: FrameModelConfig):
        super().__init__()
        import timm

        self.config = config
        self.backbone = timm.create_model(config.backbone, pretrained=config.pretrained,
                                          num_classes=config.num_classes, **timm_kwargs(config))
        if config.weights:
            load_backbone_weights(self.backbone, config.weights)

    @property
    def embed_dim(self) -> int:
        return int(self.backbone.num_features)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return standardize_per_image(x) if self.config.input_norm == "per-image" else x

    def forward(self, x: torch.Tensor, with_embedding: bool = False):
        if with_embedding:
            return self.embed_and_logits(x)
        return self.backbone(self._prepare(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(self._prepare(x)), pre_logits=True)

    def embed_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and logits from one pass (the feature cache stores both)."""
        emb = self.embed(x)
        return emb, self.backbone.get_classifier()(emb)


def timm_kwargs(config: FrameModelConfig) -> dict[str, Any]:
    """``timm.create_model`` arguments besides the name, pretrained and the class count: dropout, stochastic
    depth (only when set: not every model takes it) and, with ``patch_size``, a ViT's image and patch size and
    average pooling of its patch tokens."""
    kwargs: dict[str, Any] = {"drop_rate": config.drop_rate}
    if config.drop_path_rate:
        kwargs["drop_path_rate"] = config.drop_path_rate
    if config.patch_size is not None:
        # MAE's fine-tuning: the mean of the patch tokens after the final norm (fc_norm off keeps the tensor names
        # of pretrain-mae's encoder); its class token is never trained by the reconstruction
        kwargs.update(img_size=config.image_size, patch_size=config.patch_size, global_pool="avg", fc_norm=False)
    return kwargs


#: The settings of a model's architecture and input that a weights file of abawkit's own can fix.
ARCHITECTURE = ("backbone", "image_size", "patch_size", "input_norm")


def read_weights(path: str | os.PathLike) -> dict[str, Any] | None:
    """What an abawkit weights file fixes, or None for plain weights (read by :func:`load_backbone_weights`):
    ``architecture`` (:data:`ARCHITECTURE`), ``mean``/``std``, ``state_dict`` (the timm network's names) and
    ``head`` (whether its classifier is ours to keep). Two kinds: pretrain-mae's ``encoder.pt`` (no head) and a
    train-frame checkpoint (``best.pt``: a second stage starts from the first, head included)."""
    from .readers import torch_file

    if Path(path).suffix == ".safetensors":
        return None
    payload = torch_file(path, "backbone weights (a state_dict in a .pth/.pt file, pretrain-mae's encoder.pt or "
                               "a train-frame checkpoint)", "pass the weights of the same timm model, or set weights "
                               "to None")
    if not isinstance(payload, dict):
        return None
    if payload.get("format") == ENCODER_FORMAT:
        given = payload["input"]
        arch = {"backbone": payload["model"], "image_size": int(given["image_size"]),
                "patch_size": int(given["patch_size"]), "input_norm": given["input_norm"]}
        return {"architecture": arch, "mean": tuple(given["mean"]), "std": tuple(given["std"]),
                "state_dict": payload["state_dict"], "head": False}
    if payload.get("format") == CHECKPOINT_FORMAT:
        config = FrameModelConfig.from_dict(payload["config"])
        return {"architecture": {name: getattr(config, name) for name in ARCHITECTURE}, "mean": config.mean,
                "std": config.std, "head": True,
                "state_dict": {k.removeprefix("backbone."): v for k, v in payload["state_dict"].items()}}
    return None


def load_backbone_weights(backbone: nn.Module, path: str | os.PathLike) -> None:
    """Load a local state_dict (or pretrain-mae's encoder.pt) into the backbone, leaving the classifier head
    (different class count) as built; a train-frame checkpoint brings its head too. Every other tensor of the
    backbone must be in the file with its shape: weights of another architecture are an error naming the first
    tensor that does not fit."""
    ours = read_weights(path)
    state = ours["state_dict"] if ours else load_state_dict(
        path, "give a local .pth/.pt/.safetensors file of the backbone's weights, or set weights to None")
    head = backbone.pretrained_cfg.get("classifier") or ""
    own = {k: v for k, v in backbone.state_dict().items() if not (head and k.startswith(head + "."))}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if ours and ours["head"]:  # a frame model's own 8-class head comes along
        usable.update({k: v for k, v in state.items() if head and k.startswith(head + ".")})
    arch = f"{backbone.pretrained_cfg.get('architecture', type(backbone).__name__)}"
    if len(usable) < len(own):
        bad = next(k for k in own if k not in usable)
        found = f"shape {tuple(state[bad].shape)} there" if bad in state else "absent there"
        raise BadFileError(path, f"does not fit the {arch} backbone as built ({len(usable)} of its {len(own)} tensors "
                                 f"match; {bad} {tuple(own[bad].shape)}: {found}): another model's weights, or "
                                 f"another image or patch size?",
                           f"weights of the backbone {arch}",
                           "pass the weights of the same timm model and sizes (an encoder.pt sets them itself when "
                           "--backbone, --image-size and --patch-size are left out), or set weights to None")
    backbone.load_state_dict(usable, strict=False)


def build_frame_model(config: FrameModelConfig = FrameModelConfig()) -> FrameModel:
    return FrameModel(config)


def save_frame_checkpoint(path: str | os.PathLike, model: FrameModel, **extra: Any) -> Path:
    """Write ``model`` (config + state_dict, plus any trainer ``extra`` keys) atomically to ``path``."""
    from .io import atomic_path

    model = getattr(model, "module", model)  # unwrap DDP
    payload = {"format": CHECKPOINT_FORMAT, "config": _plain(asdict(model.config)),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, **extra}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_frame_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    return load_checkpoint(path, CHECKPOINT_FORMAT, "train one with abawkit train-frame (notebook 03) or pass the "
                                                    "path of yours")


def load_frame_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[FrameModel, dict[str, Any]]:
    """Rebuild the model of a checkpoint (no download: ``pretrained`` is turned off) and return it in eval mode
    with the checkpoint dict."""
    payload = load_frame_checkpoint(path)
    config = FrameModelConfig.from_dict({**payload["config"], "pretrained": False, "weights": None})
    model = FrameModel(config)
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload


def eval_transform(config: FrameModelConfig):
    """uint8 CHW image tensor -> normalized float tensor at ``config.image_size`` (used for validation and caching)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((config.image_size, config.image_size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(config.mean), list(config.std))])


def autocast(device: torch.device):
    """bf16 autocast on CUDA, a no-op context on CPU."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
