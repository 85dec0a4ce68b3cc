"""Post-processing of per-frame probabilities, in this order: fill frames without a face by
interpolating between face neighbours, centered moving average, per-class logit bias tuned for macro F1."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .labels import CLASSES, IGNORE, NUM_CLASSES

#: Smoothing windows tried when fitting (odd, centered); 1 = no smoothing.
WINDOWS = (1, 3, 5, 9, 15, 25, 41, 61, 91)
#: Bias values tried per class and round of coordinate ascent (log-probability offsets).
BIAS_GRID = tuple(np.round(np.arange(-3.0, 3.01, 0.25), 2))
#: Guards against fitting the biases to a fold too small for them: biases are tuned only when the fold holds
#: at least this many labeled frames of every class, and each bias step must gain this much macro F1.
MIN_CLASS_FRAMES = 30
MIN_GAIN = 0.005


def fill_no_face(probs: np.ndarray, has_face: np.ndarray) -> np.ndarray:
    """Frames without a face take probabilities interpolated linearly between the nearest face frames before
    and after; before the first / after the last face frame they copy that frame. No face at all: unchanged."""
    probs = np.asarray(probs, dtype=np.float32)
    has_face = np.asarray(has_face, bool)
    have = np.flatnonzero(has_face)
    if have.size == 0 or have.size == len(probs):
        return probs.copy()
    idx = np.arange(len(probs))
    out = np.empty_like(probs)
    for c in range(probs.shape[1]):
        out[:, c] = np.interp(idx, have, probs[have, c])  # np.interp holds the end values outside
    return out


def smooth(probs: np.ndarray, window: int) -> np.ndarray:
    """Centered moving average over ``window`` frames (odd); near the ends the average covers the frames
    that exist, so no frame is pulled towards zero."""
    probs = np.asarray(probs, dtype=np.float32)
    if window <= 1 or len(probs) <= 1:
        return probs.copy()
    half = window // 2
    n = len(probs)
    csum = np.concatenate([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0, dtype=np.float64)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def apply_bias(probs: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities after adding ``bias`` to the log-probabilities (their argmax is the biased decision)."""
    z = np.log(np.maximum(probs, 1e-8)) + np.asarray(bias, np.float32)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fast_macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The challenge macro F1 (zero_division=0), via one bincount; y_true already without -1."""
    cm = np.bincount(y_true * NUM_CLASSES + y_pred, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


def tune_bias(logp: np.ndarray, y: np.ndarray, rounds: int = 3, grid: Sequence[float] = BIAS_GRID,
              min_gain: float = 0.0) -> tuple[np.ndarray, float]:
    """Coordinate ascent on per-class offsets to ``logp`` (N, 8) for macro F1 against ``y`` (no -1). Starts at
    zero and only accepts gains above ``min_gain`` (strict gains by default), so the result never scores below
    the unbiased argmax on this data."""
    bias = np.zeros(NUM_CLASSES, np.float32)
    best = fast_macro_f1(y, (logp + bias).argmax(1))
    needed = max(min_gain, 1e-9)
    for _ in range(rounds):
        improved = False
        for c in range(NUM_CLASSES):
            keep = bias[c]
            for value in grid:
                bias[c] = value
                score = fast_macro_f1(y, (logp + bias).argmax(1))
                if score > best + needed:
                    best, keep, improved = score, value, True
            bias[c] = keep
        if not improved:
            break
    return bias, best


@dataclass(frozen=True)
class PostProcess:
    """Fitted post-processing: smoothing window and per-class bias (saved as ``postprocess.json``)."""

    window: int = 1
    bias: tuple[float, ...] = (0.0,) * NUM_CLASSES
    fill: bool = True
    fit_info: dict = field(default_factory=dict)

    def apply(self, probs: np.ndarray, has_face: np.ndarray | None = None) -> np.ndarray:
        out = np.asarray(probs, np.float32)
        if self.fill and has_face is not None:
            out = fill_no_face(out, has_face)
        out = smooth(out, self.window)
        return apply_bias(out, np.asarray(self.bias, np.float32))

    def save(self, path: str | os.PathLike) -> Path:
        from .io import write_json

        return write_json(path, {**asdict(self), "bias": [float(b) for b in self.bias],
                                 "order": "fill no-face frames -> centered moving average -> per-class log-prob bias"})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PostProcess":
        from .readers import read_json

        data = read_json(path, "the post-processing fitted by abawkit train-temporal (JSON)",
                         "train first (notebook 06) or predict without post-processing")
        bias = tuple(float(b) for b in data.get("bias", [0.0] * NUM_CLASSES))
        if len(bias) != NUM_CLASSES:
            raise ValueError(f"{path}: 'bias' must have {NUM_CLASSES} values, got {len(bias)}")
        return cls(window=int(data.get("window", 1)), bias=bias, fill=bool(data.get("fill", True)),
                   fit_info=data.get("fit_info", {}))


def fit_postprocess(probs: Sequence[np.ndarray], has_face: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                    windows: Sequence[int] = WINDOWS, fill: bool = True, min_class_frames: int = MIN_CLASS_FRAMES,
                    min_gain: float = MIN_GAIN) -> PostProcess:
    """Fit the smoothing window, then the biases, on a held-out fold (lists of per-video arrays).

    The biases are left at 0 when some class has fewer than ``min_class_frames`` labeled frames in the fold:
    on such a fold (a video or two) the search "gains" macro F1 by steering predictions away from the classes
    the fold lacks, which does not carry over (seen on the demo: fold 0.28 -> 0.61, validation 0.73 -> 0.56)."""
    filled = [fill_no_face(p, f) if fill else np.asarray(p, np.float32) for p, f in zip(probs, has_face)]
    y_all = np.concatenate([np.asarray(y) for y in labels])
    keep = y_all != IGNORE
    y = y_all[keep]
    if y.size == 0:
        return PostProcess(fill=fill, fit_info={"note": "no labeled frame in the fold: identity"})
    scores = {}
    for w in windows:
        pred = np.concatenate([smooth(p, w) for p in filled])[keep].argmax(1)
        scores[int(w)] = fast_macro_f1(y, pred)
    window = max(scores, key=lambda w: (scores[w], -w))  # ties: the smaller window
    logp = np.log(np.maximum(np.concatenate([smooth(p, window) for p in filled])[keep], 1e-8))
    before = fast_macro_f1(y, logp.argmax(1))
    support = np.bincount(y, minlength=NUM_CLASSES)
    info = {"window_scores": scores, "fold_f1_smoothed": before, "fold_frames": int(y.size),
            "fold_videos": len(filled), "fold_class_frames": support.tolist(), "min_class_frames": int(min_class_frames)}
    if support.min() < min_class_frames:
        short = [CLASSES[c] for c in np.flatnonzero(support < min_class_frames)]
        return PostProcess(window=window, fill=fill,
                           fit_info={**info, "fold_f1_biased": before,
                                     "bias": f"not tuned: fewer than {min_class_frames} fold frames of {', '.join(short)}"})
    bias, after = tune_bias(logp, y, min_gain=min_gain)
    return PostProcess(window=window, bias=tuple(float(b) for b in bias), fill=fill,
                       fit_info={**info, "fold_f1_biased": after, "min_gain": float(min_gain)})
