"""Mixing of labeled batches: mixup (Zhang et al. 2018) and FaceMix (Song et al. 2024).

lambda ~ Beta(1, 1) once per batch; image i is paired with image N-1-i (the batch flipped);
mix_i = lambda x_i + (1 - lambda) x_{N-1-i} with the target lambda y_i + (1 - lambda) y_{N-1-i}. FaceMix adds
the two real images' losses weighted by how little their faces overlap:
loss = (1/N) sum_i [CE(f(mix_i), target_i) + (1 - IoU(box_i, box_{N-1-i})) (CE(f(x_i), y_i) + CE(f(x_{N-1-i}),
y_{N-1-i}))]. The real terms see the clean images (one forward over the mixed and the clean batch): the authors'
code mixes its batch in place, so that its "real" terms see mixed images, which is not repeated here."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

MIXES = ("none", "mixup", "facemix")


def sample_lambda(alpha: float = 1.0) -> float:
    """lambda ~ Beta(alpha, alpha) from the process's torch random state (restored on resume)."""
    return float(torch.distributions.Beta(alpha, alpha).sample())


def mix_images(x: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * x + (1 - lam) * x.flip(0)


def paired_iou(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of each box (x0, y0, x1, y1) with its partner's, box i with box N-1-i: (N,)."""
    from torchvision.ops import box_iou

    boxes = boxes.float()
    return box_iou(boxes, boxes.flip(0)).diagonal()


def mixed_loss(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, mode: str,
               lam: float | None = None, boxes: torch.Tensor | None = None, num_classes: int | None = None,
               autocast: Callable = None) -> torch.Tensor:
    """The labeled loss of ``mode`` (none | mixup | facemix) on the batch (x, y); ``boxes`` (N, 4) for facemix.
    ``lam`` defaults to a Beta(1, 1) draw."""
    import contextlib

    ctx = autocast or contextlib.nullcontext
    if mode == "none":
        with ctx():
            return F.cross_entropy(model(x).float(), y)
    if mode not in MIXES:
        raise ValueError(f"mix {mode!r}: expected one of {', '.join(MIXES)}")
    lam = sample_lambda() if lam is None else float(lam)
    n = x.shape[0]
    if mode == "facemix" and boxes is None:
        raise ValueError("facemix needs the face box of every image of the batch")
    with ctx():  # facemix: one forward over the mixed and the clean batch
        logits = model(torch.cat([mix_images(x, lam), x]) if mode == "facemix" else mix_images(x, lam)).float()
    onehot = F.one_hot(y, num_classes or logits.shape[1]).float()
    mixed = F.cross_entropy(logits[:n], lam * onehot + (1 - lam) * onehot.flip(0), reduction="none")
    if mode == "mixup":
        return mixed.mean()
    real = F.cross_entropy(logits[n:], y, reduction="none")
    weight = 1.0 - paired_iou(boxes.to(logits.device))
    return (mixed + weight * (real + real.flip(0))).mean()
