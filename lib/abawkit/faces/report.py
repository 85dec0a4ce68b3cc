"""Figures of notebook 01, read back from a faces folder: detection rate, crop montages, has_face timelines."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from ..crops import CROP_FOLDERS, crop_path
from .extract import is_done, load_index


def overall_detection_rate(summary: pd.DataFrame) -> float:
    """Frames with a face over frames decoded, over every done subject (0 when none is done)."""
    done = summary[summary["status"] == "done"]
    return float(done["faces_found"].sum() / max(1, done["frames_decoded"].sum()))


def plot_detection_rate(summary: pd.DataFrame):
    import matplotlib.pyplot as plt

    done = summary[summary["status"] == "done"]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(done) + 1.2))
    ax.barh(done["video_id"], done["detection_rate"].astype(float), color="tab:blue")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("frames with a face / frames decoded")
    ax.set_title("Detection rate per subject")
    fig.tight_layout()
    return fig


def _read(path: Path, side: int) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        return np.zeros((side, side, 3), np.uint8)
    return cv2.cvtColor(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def plot_montage(faces_dir: str | os.PathLike, video_ids: list[str], per_video: int = 8, side: int = 96):
    """For each subject, evenly spaced frames with a face: aligned crops on one row, loose crops below."""
    import matplotlib.pyplot as plt

    faces_dir = Path(faces_dir)
    ids = [v for v in video_ids if is_done(faces_dir, v)]
    kinds = [k for k in CROP_FOLDERS.values() if (faces_dir / k).is_dir()]
    fig, axes = plt.subplots(max(1, len(ids)), 1, figsize=(per_video * 1.1, 1.2 * len(kinds) * max(1, len(ids)) + 0.3),
                             squeeze=False)
    for ax, vid in zip(axes[:, 0], ids):
        index = load_index(faces_dir, vid)
        frames = index.loc[index["has_face"].astype(bool), "frame"].to_numpy()
        pick = frames[np.linspace(0, len(frames) - 1, min(per_video, len(frames))).round().astype(int)] if len(frames) else []
        grid = np.zeros((side * len(kinds), side * per_video, 3), np.uint8)
        for j, f in enumerate(pick):
            for i, kind in enumerate(kinds):
                grid[i * side:(i + 1) * side, j * side:(j + 1) * side] = _read(crop_path(faces_dir / kind, vid, int(f)), side)
        ax.imshow(grid)
        ax.set_title(f"{vid}: {' / '.join(kinds)} (frames {', '.join(str(int(f)) for f in pick)})", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_timeline(faces_dir: str | os.PathLike, video_ids: list[str]):
    """has_face over the frames of each subject (dark = a face, light = none), with track changes marked."""
    import matplotlib.pyplot as plt

    faces_dir = Path(faces_dir)
    ids = [v for v in video_ids if is_done(faces_dir, v)]
    tables = [load_index(faces_dir, v) for v in ids]
    n = max((len(t) for t in tables), default=1)
    image = np.full((max(1, len(ids)), n), np.nan)
    for i, t in enumerate(tables):
        image[i, :len(t)] = t["has_face"].astype(float).to_numpy()
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(ids) + 1.2))
    ax.imshow(image, aspect="auto", interpolation="nearest", cmap="Greys", vmin=-0.3, vmax=1,
              extent=(0.5, n + 0.5, len(ids) - 0.5, -0.5))
    for i, t in enumerate(tables):
        tid = t["track_id"].to_numpy()
        prev_max = np.maximum.accumulate(np.r_[-1, tid[:-1]])
        starts = t["frame"].to_numpy()[tid > prev_max]
        ax.plot(starts, np.full(len(starts), i), "r|", markersize=10)
    ax.set_yticks(range(len(ids)), ids)
    ax.set_xlabel("frame")
    ax.set_title("has_face per frame (red tick: a new track starts)")
    ax.grid(False)
    fig.tight_layout()
    return fig
