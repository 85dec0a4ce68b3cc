"""Windows of T frames over cached features for training (stride T/2 by default), class weights and sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..labels import IGNORE, NUM_CLASSES


@dataclass
class VideoFeatures:
    video_id: str
    embeddings: np.ndarray  # (n, D) float16/float32; a read-only np.memmap when loaded with mmap=True
    has_face: np.ndarray  # (n,) bool
    logits: np.ndarray  # (n, 8) float32
    labels: np.ndarray  # (n,) int64, -1 = not annotated
    fold: int | None = None  # the fold left out of the training of the model behind them (-1: none; None: unrecorded)


def load_videos(features_dir, manifest, video_ids, mmap: bool = True) -> list[VideoFeatures]:
    """Cached features plus labels; the row count must equal the annotation length. ``mmap``: embeddings are
    memory-mapped from the feature files (windows then read only their rows), else read into memory."""
    from ..features import FeatureError, load_video_features, open_video_features

    load = open_video_features if mmap else load_video_features
    out = []
    for vid in video_ids:
        f = load(features_dir, vid)
        labels = manifest.labels(vid)
        n = len(f["embeddings"])
        if len(labels) != n:
            raise FeatureError(f"{features_dir}/{vid}.npz has {n} rows but the annotation has {len(labels)} frames; "
                               f"re-extract features with this manifest")
        out.append(VideoFeatures(vid, f["embeddings"], f["has_face"], f["logits"], labels,
                                 int(f["fold"]) if "fold" in f else None))
    return out


def face_feature_stats(videos: list[VideoFeatures], chunk: int = 16384, inputs=None,
                       dim: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-dimension mean and std (ddof 0) of the embeddings of all face frames (or of ``inputs(embeddings,
    logits)``, the encoder's input), and their count, streamed over ``chunk`` rows at a time (memory: one
    float64 chunk, whatever the number of frames). ``dim``: the width returned when no frame has a face.

    Float64 sums of x - k and (x - k)^2 with k the first face chunk's mean: mean = k + S1/N and
    var = S2/N - (S1/N)^2, the shift keeping the subtraction from cancelling when |mean| >> std."""
    s1 = s2 = shift = None
    total = 0
    for v in videos:
        for start in range(0, len(v.embeddings), chunk):
            face = np.asarray(v.has_face[start:start + chunk], bool)
            if not face.any():
                continue
            x = np.asarray(v.embeddings[start:start + chunk])
            if inputs is not None:
                x = inputs(x, v.logits[start:start + chunk])
            x = np.asarray(x)[face].astype(np.float64)
            if shift is None:
                shift, s1, s2 = x.mean(0), np.zeros(x.shape[1]), np.zeros(x.shape[1])
            x -= shift
            s1 += x.sum(0)
            x *= x
            s2 += x.sum(0)
            total += len(x)
    if not total:
        if dim is None:
            dim = int(videos[0].embeddings.shape[1]) if videos else 0
        return np.zeros(dim, np.float32), np.ones(dim, np.float32), 0
    m1 = s1 / total
    var = np.maximum(s2 / total - m1 * m1, 0.0)
    return (shift + m1).astype(np.float32), np.sqrt(var).astype(np.float32), total


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Starts of windows covering 0..n-1; the last window ends at the video's end."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] != n - window:
        starts.append(n - window)
    return starts


def cut_window(v: VideoFeatures, start: int, window: int) -> tuple[np.ndarray, ...]:
    """(x (T,D) float32, has_face (T,), logits (T,8), labels (T,), valid (T,)) padded past the video's end."""
    n = len(v.embeddings)
    end = min(n, start + window)
    k = end - start
    x = np.zeros((window, v.embeddings.shape[1]), np.float32)
    x[:k] = v.embeddings[start:end]
    face = np.zeros(window, bool)
    face[:k] = v.has_face[start:end]
    lg = np.zeros((window, NUM_CLASSES), np.float32)
    lg[:k] = v.logits[start:end]
    y = np.full(window, IGNORE, np.int64)
    y[:k] = v.labels[start:end]
    valid = np.zeros(window, bool)
    valid[:k] = True
    return x, face, lg, y, valid


class WindowDataset(torch.utils.data.Dataset):
    def __init__(self, videos: list[VideoFeatures], window: int, stride: int):
        self.videos, self.window = videos, window
        self.index = [(i, s) for i, v in enumerate(videos) for s in window_starts(len(v.embeddings), window, stride)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        vi, start = self.index[i]
        return tuple(torch.from_numpy(a) for a in cut_window(self.videos[vi], start, self.window))


def class_counts(videos: list[VideoFeatures]) -> np.ndarray:
    labels = np.concatenate([v.labels for v in videos])
    labels = labels[labels != IGNORE]
    return np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)


def class_weights(counts: np.ndarray, power: float) -> np.ndarray:
    """Inverse frequency to ``power`` (0: uniform, 1: fully balanced), mean 1 over present classes."""
    freq = counts / max(counts.sum(), 1.0)
    w = np.where(counts > 0, np.power(np.maximum(freq, 1e-12), -power), 0.0)
    present = counts > 0
    if present.any():
        w = w / w[present].mean()
    return w


def balanced_window_weights(dataset: WindowDataset, counts: np.ndarray) -> np.ndarray:
    """Sampling weight of each window: mean inverse class frequency of its labeled frames (class-balanced
    window sampling; our choice of how a window's weight follows from its frames)."""
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    out = np.zeros(len(dataset))
    for i, (vi, s) in enumerate(dataset.index):
        y = dataset.videos[vi].labels[s:s + dataset.window]
        y = y[y != IGNORE]
        out[i] = inv[y].mean() if y.size else 0.0
    if out.sum() == 0:
        out[:] = 1.0
    return out
