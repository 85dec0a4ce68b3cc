"""The ABAW EXPR submission file: write it from per-frame predictions, and check one.

The file's first line is ``image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other``; then one
``<video>/<frame:05d>.jpg,<label 0..7>`` row for every row of the organizers' test-set example file, in its order
(frames without a face included). Teams upload it zipped.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import UserError
from .io import atomic_path
from .labels import ANNOTATION_HEADER, IGNORE, NUM_CLASSES
from .readers import read_text

SUBMISSION_HEADER = "image_location," + ANNOTATION_HEADER
_LOCATION = re.compile(r"^(?P<video>[^/\\,\s]+)/(?P<frame>\d{5})\.jpg$")
FILL_POLICIES = ("nearest", "none")

Row = tuple[str, int]


class SubmissionError(UserError, ValueError):
    """Predictions cannot be turned into a valid submission; the message says which video/frames and what to do."""


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line in the file; 0 for problems about the whole file (missing frames)
    kind: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.kind}: {self.message}" if self.line else f"{self.kind}: {self.message}"


def location(video_id: str, frame: int) -> str:
    return f"{video_id}/{frame:05d}.jpg"


def parse_location(text: str) -> Row | None:
    """``video59_right/00012.jpg`` -> (``video59_right``, 12); None when the syntax is wrong."""
    m = _LOCATION.match(text.strip())
    if not m or int(m.group("frame")) < 1:
        return None
    return m.group("video"), int(m.group("frame"))


def rows_from_counts(video_ids: Sequence[str], n_frames: Mapping[str, int]) -> list[Row]:
    """Submission rows when only the test list is known: frames 1..n of each video, in list order."""
    return [(vid, k) for vid in video_ids for k in range(1, int(n_frames[vid]) + 1)]


def fill_nearest(labels: np.ndarray) -> np.ndarray:
    """Give each frame without a prediction (-1) the label of the nearest predicted frame (ties: earlier)."""
    labels = np.asarray(labels, dtype=np.int64)
    have = np.flatnonzero(labels != IGNORE)
    if have.size == 0 or have.size == labels.size:
        return labels.copy()
    idx = np.arange(labels.size)
    pos = np.searchsorted(have, idx)
    left = have[np.clip(pos - 1, 0, have.size - 1)]
    right = have[np.clip(pos, 0, have.size - 1)]
    nearest = np.where(np.abs(idx - left) <= np.abs(right - idx), left, right)
    return labels[nearest]


def submission_labels(predictions: Mapping[str, np.ndarray], rows: Sequence[Row], fill: str = "nearest") -> list[int]:
    """The label of every row. ``predictions[video]`` holds labels of frames 1..n (-1 = no prediction).

    With ``fill="none"`` a row without a prediction is an error; with ``"nearest"`` it takes the label of the
    nearest predicted frame of the same video.
    """
    if fill not in FILL_POLICIES:
        raise SubmissionError(f"unknown fill policy {fill!r}; use one of {', '.join(FILL_POLICIES)}")
    filled: dict[str, np.ndarray] = {}
    out: list[int] = []
    missing: dict[str, list[int]] = {}
    for vid, frame in rows:
        if vid not in predictions:
            raise SubmissionError(f"no predictions at all for video {vid!r}, which the test rows require; "
                                  "run the prediction stage on every test video")
        if vid not in filled:
            labels = np.asarray(predictions[vid], dtype=np.int64)
            bad = labels[(labels != IGNORE) & ((labels < 0) | (labels >= NUM_CLASSES))]
            if bad.size:
                raise SubmissionError(f"video {vid!r}: prediction {int(bad[0])} is outside 0..{NUM_CLASSES - 1}")
            if fill == "nearest":
                if not (labels != IGNORE).any():
                    raise SubmissionError(f"video {vid!r} has no predicted frame to fill from; predict it with a "
                                          "frame model or give it a constant label")
                labels = fill_nearest(labels)
            filled[vid] = labels
        labels = filled[vid]
        value = int(labels[frame - 1]) if frame <= labels.size else IGNORE
        if value == IGNORE and fill == "nearest" and labels.size:
            value = int(labels[-1])  # rows past the decoded end take the last frame's label
        if value == IGNORE:
            missing.setdefault(vid, []).append(frame)
            continue
        out.append(value)
    if missing:
        detail = "; ".join(f"{v}: {len(f)} frames (first {f[0]})" for v, f in list(missing.items())[:5])
        raise SubmissionError(f"{sum(len(f) for f in missing.values())} rows have no prediction ({detail}); "
                              "pass fill='nearest' to take the nearest predicted frame")
    return out


def write_submission(predictions: Mapping[str, np.ndarray], rows: Sequence[Row], out_dir: str | os.PathLike,
                     name: str = "predictions", fill: str = "nearest") -> tuple[Path, Path]:
    """Write ``out_dir/name.txt`` in the exact challenge format and ``out_dir/name.zip`` holding it."""
    labels = submission_labels(predictions, rows, fill=fill)
    out_dir = Path(out_dir)
    txt = out_dir / f"{name}.txt"
    with atomic_path(txt) as tmp:
        with open(tmp, "w", newline="\n") as fh:
            fh.write(SUBMISSION_HEADER + "\n")
            fh.writelines(f"{location(v, f)},{lab}\n" for (v, f), lab in zip(rows, labels))
    zpath = out_dir / f"{name}.zip"
    with atomic_path(zpath) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.write(txt, arcname=txt.name)
    return txt, zpath


def read_submission(path: str | os.PathLike) -> dict[Row, int]:
    """(video, frame) -> label of a submission file that passed the checker."""
    out: dict[Row, int] = {}
    for line in _submission_text(path).splitlines()[1:]:
        if line.strip():
            loc, lab = line.strip().split(",")
            row = parse_location(loc)
            if row is not None:
                out[row] = int(lab)
    return out


def _submission_text(path: str | os.PathLike) -> str:
    return read_text(path, f"a submission text file (first line {SUBMISSION_HEADER!r})",
                     "pass the .txt file (not the .zip) that abawkit submission writes", allow_empty=True)


def check_submission(path: str | os.PathLike, rows: Sequence[Row]) -> list[Problem]:
    """Every problem of a submission file against the expected rows, each with its line number."""
    expected = {row: i for i, row in enumerate(rows)}
    problems: list[Problem] = []
    path = Path(path)
    lines = _submission_text(path).splitlines()
    if not lines:
        return [Problem(1, "header", f"empty file; the first line must be {SUBMISSION_HEADER!r}")]
    if lines[0] != SUBMISSION_HEADER:
        problems.append(Problem(1, "header", f"{lines[0]!r} should be exactly {SUBMISSION_HEADER!r}"))
    seen: dict[Row, int] = {}
    last_index = -1
    last_row: Row | None = None
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            problems.append(Problem(lineno, "blank", "blank line; remove it"))
            continue
        parts = line.split(",")
        if len(parts) != 2:
            problems.append(Problem(lineno, "columns", f"{len(parts)} columns in {line!r}; expected "
                                                       "'<video>/<frame:05d>.jpg,<label>'"))
            continue
        row = parse_location(parts[0])
        if row is None:
            problems.append(Problem(lineno, "location", f"{parts[0]!r} is not '<video>/<frame:05d>.jpg'"))
            continue
        text = parts[1].strip()
        if not (text.isdigit() and 0 <= int(text) < NUM_CLASSES) or text != parts[1]:
            problems.append(Problem(lineno, "label", f"{parts[1]!r} is not an integer 0..{NUM_CLASSES - 1}"))
        if row in seen:
            problems.append(Problem(lineno, "duplicate", f"{parts[0]} already on line {seen[row]}"))
            continue
        seen[row] = lineno
        if row not in expected:
            problems.append(Problem(lineno, "extra", f"{parts[0]} is not a frame of the test set"))
            continue
        index = expected[row]
        if index < last_index:
            problems.append(Problem(lineno, "order", f"{parts[0]} comes after {location(*last_row)}; rows must follow "
                                                     "the example file's order"))
        else:
            last_index, last_row = index, row
    missing = [row for row in rows if row not in seen]
    if missing:
        by_video: dict[str, int] = {}
        for v, _ in missing:
            by_video[v] = by_video.get(v, 0) + 1
        detail = ", ".join(f"{v} ({n})" for v, n in list(by_video.items())[:10])
        problems.append(Problem(0, "missing", f"{len(missing)} frames of the test set are missing, first "
                                              f"{location(*missing[0])}; videos: {detail}"))
    return problems


def score_submission(path: str | os.PathLike, truth: Mapping[str, np.ndarray]):
    """Score a submission-format file against per-video true labels (frames 1..n, -1 ignored).

    Every annotated frame of every truth video must have a row; rows of other videos are ignored, so a
    file covering several splits can be scored on one.
    """
    from .metrics import f1_report

    problems = [p for p in check_submission(path, []) if p.kind not in {"extra", "missing"}]
    if problems:
        raise SubmissionError(f"{path} is not in submission format: " + "; ".join(str(p) for p in problems[:5]))
    predicted = read_submission(path)
    y_true, y_pred, missing = [], [], []
    for vid, labels in truth.items():
        for k in np.flatnonzero(np.asarray(labels) != IGNORE) + 1:
            lab = predicted.get((vid, int(k)))
            if lab is None:
                missing.append((vid, int(k)))
                continue
            y_true.append(int(labels[k - 1]))
            y_pred.append(lab)
    if missing:
        raise SubmissionError(f"{path}: {len(missing)} annotated frames have no row, first {location(*missing[0])}; "
                              "predict every frame of the evaluated videos")
    return f1_report(np.array(y_true, dtype=np.int64), np.array(y_pred, dtype=np.int64))
