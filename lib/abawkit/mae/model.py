"""The masked autoencoder: a timm Vision Transformer as the encoder (its patch embedding, position embedding,
blocks and norm, run on the visible tokens only) and a light decoder of timm ``Block``s (He et al. 2022).

``encoder.pt``, the file later stages read, is a plain dict (``torch.load(weights_only=True)``): ``format``,
``model`` (the timm name), ``kwargs`` (what ``timm.create_model`` needs besides the name to rebuild it:
image size, patch size, no head), ``state_dict`` (the encoder's, loadable with ``strict=True``), ``input``
(the normalisation it learned with) and ``pretraining`` (what it was trained on)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..frame_model import ENCODER_FORMAT, standardize_per_image
from ..io import atomic_path
from .config import FACE_MEAN, FACE_STD, MAEConfig


class NotAVisionTransformer(ValueError):
    pass


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch * patch * C), patches in row-major order (the encoder's token order)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """The inverse of :func:`patchify` for a square grid."""
    b, n, _ = patches.shape
    side = int(round(n ** 0.5))
    x = patches.reshape(b, side, side, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, side * patch, side * patch)


def random_masking(batch: int, tokens: int, mask_ratio: float, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, a uniformly random subset of ``round(tokens * (1 - mask_ratio))`` tokens to keep (at least one):
    (kept token indices (B, n_keep), sorted; mask (B, tokens), 1 where a token is masked)."""
    keep = max(1, int(round(tokens * (1 - mask_ratio))))
    noise = torch.rand(batch, tokens, device=device, generator=generator)
    kept = noise.argsort(dim=1)[:, :keep].sort(dim=1).values
    mask = torch.ones(batch, tokens, device=device)
    mask.scatter_(1, kept, 0.0)
    return kept, mask


def build_vit(name: str, image_size: int, patch_size: int, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, img_size=image_size, patch_size=patch_size, **kwargs)``, checked to be a Vision
    Transformer (patch embedding, position embedding, blocks)."""
    import timm

    try:
        model = timm.create_model(name, pretrained=False, img_size=image_size, patch_size=patch_size, **kwargs)
    except (TypeError, RuntimeError) as exc:  # a CNN takes no img_size / patch_size
        raise NotAVisionTransformer(f"backbone {name!r} cannot be built as a Vision Transformer at {image_size} px "
                                    f"with {patch_size}-pixel patches ({type(exc).__name__}: {str(exc)[:160]}); pass "
                                    f"a timm ViT name, e.g. vit_tiny_patch16_224 or vit_base_patch16_224") from None
    if not all(hasattr(model, a) for a in ("patch_embed", "_pos_embed", "blocks", "norm", "num_prefix_tokens")):
        raise NotAVisionTransformer(f"backbone {name!r} is a {type(model).__name__}, not a timm Vision Transformer "
                                    f"(masked pretraining drops patch tokens); pass e.g. vit_base_patch16_224")
    return model


class MaskedAutoencoder(nn.Module):
    """``forward(images)`` -> (loss, predicted patches (B, L, P*P*3), mask (B, L)); the loss is the mean squared
    error of the masked patches only, on per-patch normalised pixels with ``norm_pix_loss``. ``images`` are
    dataset-normalised; with ``input_norm`` per-image they are standardised first, as the frame model does."""

    def __init__(self, cfg: MAEConfig):
        super().__init__()
        from timm.layers import build_sincos2d_pos_embed, trunc_normal_
        from timm.models.vision_transformer import Block

        self.cfg = cfg
        self.encoder = build_vit(cfg.backbone, cfg.image_size, cfg.patch_size, num_classes=0)
        self.patch = cfg.patch_size
        grid = tuple(self.encoder.patch_embed.grid_size)
        self.tokens = grid[0] * grid[1]
        width = cfg.decoder_width
        self.decoder_embed = nn.Linear(self.encoder.embed_dim, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        trunc_normal_(self.mask_token, std=0.02)
        # fixed 2-d sine-cosine positions of the patch grid (MAE's decoder)
        self.register_buffer("decoder_pos_embed", build_sincos2d_pos_embed(list(grid), width)[None], persistent=False)
        self.decoder_blocks = nn.Sequential(*[Block(width, cfg.decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(width)
        self.decoder_pred = nn.Linear(width, cfg.patch_size ** 2 * 3)
        for module in [self.decoder_embed, self.decoder_blocks, self.decoder_pred]:
            module.apply(_init_linear)

    def no_weight_decay(self) -> set[str]:
        """Names timm's optimizer factory leaves without weight decay (besides 1-d tensors)."""
        return {"mask_token", *(f"encoder.{n}" for n in getattr(self.encoder, "no_weight_decay", set)())}

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        return standardize_per_image(images) if self.cfg.input_norm == "per-image" else images

    def encode(self, x: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """The encoder on the prefix tokens and the kept patch tokens (their positions added before dropping)."""
        enc = self.encoder
        tokens = enc._pos_embed(enc.patch_embed(x))
        n_pre = enc.num_prefix_tokens
        prefix, patches = tokens[:, :n_pre], tokens[:, n_pre:]
        visible = torch.gather(patches, 1, kept[..., None].expand(-1, -1, patches.shape[-1]))
        out = enc.norm_pre(torch.cat([prefix, visible], dim=1))
        return enc.norm(enc.blocks(out))

    def decode(self, latent: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        n_pre = self.encoder.num_prefix_tokens
        y = self.decoder_embed(latent)
        prefix, visible = y[:, :n_pre], y[:, n_pre:]
        full = self.mask_token.to(y.dtype).expand(y.shape[0], self.tokens, -1).clone()
        full = full.scatter(1, kept[..., None].expand(-1, -1, y.shape[-1]), visible)
        y = torch.cat([prefix, full + self.decoder_pos_embed.to(y.dtype)], dim=1)
        return self.decoder_pred(self.decoder_norm(self.decoder_blocks(y)))[:, n_pre:]

    def target(self, x: torch.Tensor) -> torch.Tensor:
        target = patchify(x, self.patch)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        return target

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        x = self.prepare(images)
        kept, mask = random_masking(x.shape[0], self.tokens, self.cfg.mask_ratio, x.device, generator)
        pred = self.decode(self.encode(x, kept), kept)
        return masked_mse(pred.float(), self.target(x).float(), mask), pred, mask


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked patches (mask 1) of each patch's mean squared error; visible patches count 0."""
    per_patch = (pred - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def encoder_kwargs(cfg: MAEConfig) -> dict[str, Any]:
    """What ``timm.create_model(cfg.backbone, **kwargs)`` needs to rebuild the encoder (no head)."""
    return {"img_size": cfg.image_size, "patch_size": cfg.patch_size, "num_classes": 0}


def save_encoder(path: str | os.PathLike, model: MaskedAutoencoder, **pretraining: Any) -> Path:
    """Write ``encoder.pt`` atomically (the module docstring's format)."""
    model = getattr(model, "module", model)
    cfg = model.cfg
    payload = {"format": ENCODER_FORMAT, "model": cfg.backbone, "kwargs": encoder_kwargs(cfg),
               "state_dict": {k: v.detach().cpu() for k, v in model.encoder.state_dict().items()},
               "input": {"image_size": cfg.image_size, "patch_size": cfg.patch_size, "input_norm": cfg.input_norm,
                         "mean": list(FACE_MEAN), "std": list(FACE_STD)},
               "pretraining": {"mask_ratio": cfg.mask_ratio, "norm_pix_loss": cfg.norm_pix_loss, **pretraining}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
