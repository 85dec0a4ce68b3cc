"""Overlap-averaged inference of a temporal encoder over cached features, and predictions for whole splits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..labels import NUM_CLASSES
from .data import cut_window, window_starts
from .model import TemporalEncoder


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@torch.inference_mode()
def predict_logits(model: TemporalEncoder, embeddings: np.ndarray, has_face: np.ndarray,
                   frame_logits: np.ndarray | None = None, stride: int | None = None,
                   batch_windows: int = 256) -> np.ndarray:
    """Per-frame logits (n, 8): windows of the model's T at ``stride`` (default T/2), logits of overlapping
    windows averaged per frame."""
    from .data import VideoFeatures

    model.eval()
    window = model.config.window
    stride = stride or max(1, window // 2)
    n = len(embeddings)
    if frame_logits is None:
        frame_logits = np.zeros((n, NUM_CLASSES), np.float32)
    v = VideoFeatures("", embeddings, np.asarray(has_face, bool), frame_logits, np.zeros(n, np.int64))
    starts = window_starts(n, window, stride)
    total = np.zeros((n, NUM_CLASSES), np.float64)
    count = np.zeros(n, np.float64)
    device = next(model.parameters()).device
    for b in range(0, len(starts), batch_windows):
        chunk = starts[b:b + batch_windows]
        parts = [cut_window(v, s, window) for s in chunk]
        x = torch.from_numpy(np.stack([p[0] for p in parts])).to(device)
        face = torch.from_numpy(np.stack([p[1] for p in parts])).to(device)
        lg = torch.from_numpy(np.stack([p[2] for p in parts])).to(device)
        out = model(x, face, lg).float().cpu().numpy()
        for s, o in zip(chunk, out):
            k = min(n, s + window) - s
            total[s:s + k] += o[:k]
            count[s:s + k] += 1
    return (total / np.maximum(count, 1)[:, None]).astype(np.float32)


def predict_split(temporal_dir: str | os.PathLike, features_dir: str | os.PathLike, manifest,
                  splits: Sequence[str], out_dir: str | os.PathLike, checkpoint: str = "best.pt",
                  postprocess: bool = True, progress: bool = True) -> list[Path]:
    """Write ``<out_dir>/<video_id>.npz`` (post-processed ``probs``, ``probs_raw``, ``has_face``) for every
    subject of ``splits``, with the post-processing fitted at training time (``postprocess.json``)."""
    from tqdm.auto import tqdm

    from ..features import open_video_features
    from ..postprocess import PostProcess
    from ..predictions import save_video_predictions
    from .model import load_temporal_model

    temporal_dir = Path(temporal_dir)
    model, _ = load_temporal_model(temporal_dir / checkpoint)
    post = PostProcess.load(temporal_dir / "postprocess.json") if postprocess else PostProcess()
    ids = [v for s in splits for v in manifest.video_ids(s)]
    written = []
    for vid in tqdm(ids, desc="predict", unit="video", disable=not progress):
        f = open_video_features(features_dir, vid)
        raw = softmax(predict_logits(model, f["embeddings"], f["has_face"], f["logits"]))
        probs = post.apply(raw, f["has_face"])
        written.append(save_video_predictions(out_dir, vid, probs, f["has_face"], probs_raw=raw))
    return written
