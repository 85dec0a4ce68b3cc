"""Per-frame class probabilities, one ``<video_id>.npz`` per subject, between prediction and submission.

Each file holds ``probs`` (n, 8) float32 over frames 1..n (row 0 is frame 1; rows sum to 1), ``has_face``
(n,) bool, and optionally ``probs_raw`` (before post-processing). numpy alone can open it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import UserError
from .io import save_npz
from .labels import NUM_CLASSES
from .readers import load_npz


class PredictionError(UserError, ValueError):
    """A predictions folder or file that cannot be used; the message names it and says what to do."""


def save_video_predictions(out_dir: str | os.PathLike, video_id: str, probs: np.ndarray,
                           has_face: np.ndarray | None = None, **extra: np.ndarray) -> Path:
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != NUM_CLASSES:
        raise PredictionError(f"{video_id}: probabilities must have shape (n, {NUM_CLASSES}), got {probs.shape}")
    if has_face is None:
        has_face = np.ones(len(probs), dtype=bool)
    return save_npz(Path(out_dir) / f"{video_id}.npz", probs=probs, has_face=np.asarray(has_face, dtype=bool),
                    **extra)


def load_video_predictions(pred_dir: str | os.PathLike, video_id: str) -> dict[str, np.ndarray]:
    path = Path(pred_dir) / f"{video_id}.npz"
    if not path.is_file():
        raise PredictionError(f"no predictions for {video_id}: {path} is missing; run the prediction stage "
                              f"(abawkit predict) for the split that holds this video")
    out = load_npz(path, f"the predictions of {video_id} (.npz with probs, has_face)",
                   f"re-run abawkit predict for the split that holds {video_id}")
    if "probs" not in out or out["probs"].ndim != 2 or out["probs"].shape[1] != NUM_CLASSES:
        raise PredictionError(f"{path} must hold 'probs' with shape (n, {NUM_CLASSES})")
    return out


def load_predictions(pred_dir: str | os.PathLike, video_ids: Iterable[str]) -> dict[str, np.ndarray]:
    """``{video_id: probs}`` for the given subjects; a missing subject is an error naming the file."""
    return {vid: load_video_predictions(pred_dir, vid)["probs"] for vid in video_ids}


def predicted_labels(probs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Arg-max class per frame, ``{video_id: (n,) int}``."""
    return {vid: np.asarray(p).argmax(axis=1).astype(np.int64) for vid, p in probs.items()}
