"""Settings of dataset distillation (``abawkit distill``): :class:`DistillConfig`, with the ``demo`` preset.
Torch-free, so that ``--help`` stays fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any, ClassVar

import tyro

#: The settings a finished class was distilled with; a re-run into the same OUT must use the same ones.
RESULT_FIELDS = ("per_class", "image_size", "iterations", "lr", "momentum", "real_batch", "network", "eval_draws",
                 "seed")


@dataclass(frozen=True)
class DistillConfig:
    """Distil labeled face images into PER_CLASS synthetic images per class by distribution matching (Zhao &
    Bilen, WACV 2023): the synthetic images start from real ones of their class; at every iteration a freshly
    initialised, never trained timm network embeds a real batch of the class and the synthetic images under one
    shared draw of a differentiable augmentation, and SGD on the pixels lowers the squared distance of the two
    embedding means. Classes are distilled one after the other; a finished class is skipped on a re-run. Writes
    OUT/images/<Class>/000.png..., OUT/distilled.csv (path,label, readable by train-frame --labeled-csv),
    OUT/summary.csv (losses, time, memory, warnings per class), OUT/distilled.png and OUT/run_record.json."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # About 45 s per class on one CPU core at 64 px, the loss 30-60 % lower on 7 of 8 classes (docs/omni.md).
        "demo": dict(image_size=64, per_class=5, iterations=150, real_batch=32, out_dir="runs/demo/distilled"),
    }

    labeled_csvs: Annotated[tuple[str, ...], tyro.conf.arg(name="labeled-csv", metavar="CSV"),
                            tyro.conf.UseAppendAction] = ()
    """CSV with columns path,label (label 0..7 or class name; paths relative to the CSV's folder); the
    rows of all of them are used"""
    per_class: int = 10
    """synthetic images per class (K); a class with fewer real images starts its extra ones from repeated real
    images plus a little noise (a warning in summary.csv)"""
    image_size: int = 112
    """side of the synthetic images in pixels (real images are resized to it)"""
    iterations: int = 20000
    """optimisation steps per class (the reference's 20000)"""
    lr: float = 1.0
    """SGD learning rate on the pixels (values in [0, 1])"""
    momentum: float = 0.5
    """SGD momentum"""
    real_batch: int = 256
    """real images of the class drawn afresh at every iteration (all of them when the class has fewer)"""
    network: str = "resnet10t"
    """timm model name of the randomly initialised embedding network (a new one at every iteration)"""
    eval_draws: int = 4
    """fixed draws (network, augmentation, real batch) on which summary.csv's initial and final losses are
    measured, the same draws before and after"""
    cache_images: int = 4096
    """decoded, resized real images kept in memory per class (least recently used dropped); a class with at
    most this many is read from disk once"""
    out_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/distilled"
    """output folder"""
    seed: int = 0
    """random seed (each class has its own stream, so a resumed run gives the same images)"""
    threads: int | None = None
    """torch CPU threads (None: torch's default)"""
    progress: bool = True
    """progress bar over the iterations"""

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size {self.image_size}: expected at least 16 pixels")
        for name in ("iterations", "per_class", "real_batch", "eval_draws"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: expected at least 1")
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"lr {self.lr} / momentum {self.momentum}: expected lr > 0 and 0 <= momentum < 1")
        if self.cache_images < 0 or (self.threads is not None and self.threads < 1):
            raise ValueError(f"cache_images {self.cache_images} / threads {self.threads}: expected cache_images "
                             f">= 0 and threads >= 1 (or None)")

    def result_settings(self) -> dict[str, Any]:
        """The settings the images depend on (recorded per finished class)."""
        return {name: getattr(self, name) for name in RESULT_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labeled_csvs"] = list(self.labeled_csvs)
        return data
