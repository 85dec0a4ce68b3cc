"""Looking at a trained frame model from the notebook: validation report of a checkpoint, the
teacher-style pseudo-labels it gives unlabeled faces (per class, most confident first, as an image grid), and
the training curves (``curves.png``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..frame_model import eval_transform, load_frame_model
from ..labels import CLASSES
from ..metrics import F1Report, f1_report
from ..readers import read_image
from .data import frames_from_csv, frames_from_manifest, unlabeled_images
from .train import predict


def evaluate_checkpoint(checkpoint: str | os.PathLike, manifest_dir: str | None = None, crops: str | None = None,
                        split: str = "Validation_Set", val_csv: str | None = None, stride: int = 1) -> F1Report:
    """Macro F1, per-class F1 and confusion of a checkpoint on a manifest split (frames with a crop) or a CSV."""
    model, _ = load_frame_model(checkpoint)
    if val_csv:
        table = frames_from_csv(val_csv)
    else:
        from ..manifest import load_manifest

        table = frames_from_manifest(load_manifest(manifest_dir), crops, split, stride)
    probs, labels = predict(model, table, model.config, torch.device("cpu"))
    return f1_report(labels, probs.argmax(1))


class _Images(Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(read_image(self.paths[i]))


@torch.no_grad()
def pseudo_label_faces(checkpoint: str | os.PathLike, unlabeled_dirs: list[str] | tuple[str, ...],
                       limit: int | None = None, batch_size: int = 128) -> pd.DataFrame:
    """Predicted class and confidence (max softmax) of every unlabeled face: columns path, label, class,
    confidence. These are the plain (not debiased, unthresholded) labels of the saved model."""
    model, _ = load_frame_model(checkpoint)
    paths = unlabeled_images(unlabeled_dirs)[:limit]
    probs = []
    for x in DataLoader(_Images(paths, eval_transform(model.config)), batch_size=batch_size):
        probs.append(torch.softmax(model(x).float(), dim=1))
    p = torch.cat(probs).numpy() if probs else np.zeros((0, len(CLASSES)))
    label = p.argmax(1)
    return pd.DataFrame({"path": paths, "label": label, "class": [CLASSES[k] for k in label],
                         "confidence": p.max(1) if len(p) else []})


def top_per_class(table: pd.DataFrame, per_class: int = 4) -> pd.DataFrame:
    """The ``per_class`` most confident faces of each predicted class."""
    return (table.sort_values("confidence", ascending=False).groupby("label", sort=True).head(per_class)
            .sort_values(["label", "confidence"], ascending=[True, False]).reset_index(drop=True))


def plot_pseudo_labels(table: pd.DataFrame, per_class: int = 4):
    """A grid: one row per class (empty when no face got that class), faces titled with their confidence."""
    import matplotlib.pyplot as plt

    top = top_per_class(table, per_class)
    fig, axes = plt.subplots(len(CLASSES), per_class, figsize=(1.6 * per_class, 1.7 * len(CLASSES)), squeeze=False)
    for k, name in enumerate(CLASSES):
        rows = top[top["label"] == k].to_dict("records")
        for j in range(per_class):
            ax = axes[k, j]
            ax.set_xticks([]), ax.set_yticks([]), ax.grid(False)
            if j == 0:
                ax.set_ylabel(f"{name}\n({int((table['label'] == k).sum())})", fontsize=9)
            if j < len(rows):
                ax.imshow(read_image(rows[j]["path"]).permute(1, 2, 0).numpy())
                ax.set_title(f"{rows[j]['confidence']:.2f}", fontsize=8)
            else:
                ax.set_frame_on(False)
    fig.suptitle("unlabeled faces by predicted class (confidence; count in brackets)")
    fig.tight_layout()
    return fig


def plot_per_class_f1(report: F1Report, title: str = "validation F1 per class"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(list(CLASSES), report.per_class_f1)
    ax.axhline(report.macro_f1, color="k", ls="--", label=f"macro F1 {report.macro_f1:.3f}")
    ax.set_ylim(0, 1), ax.set_title(title), ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(history: pd.DataFrame, path: Path) -> Path | None:
    """Training losses and validation macro F1 against the step, side by side."""
    if history.empty:
        return None
    # A bare Figure (no pyplot): works headless and leaves a notebook's inline backend alone.
    from matplotlib.figure import Figure

    from ..io import atomic_path

    fig = Figure(figsize=(10, 3.5))
    a, b = fig.subplots(1, 2)
    for col in ("loss", "loss_l", "loss_u"):
        if col in history and history[col].notna().any():
            a.plot(history["step"], history[col], label=col)
    a.set_xlabel("step"), a.set_title("training loss"), a.legend()
    if "val_macro_f1" in history and history["val_macro_f1"].notna().any():
        b.plot(history["step"], history["val_macro_f1"], marker="o", label="val macro F1")
    b.set_xlabel("step"), b.set_title("validation macro F1"), b.set_ylim(0, 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
