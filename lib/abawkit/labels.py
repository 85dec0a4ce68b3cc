"""The ABAW EXPR class list, its fixed index order, the ignore value, and conversions between them."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Class names in the official index order (the header line of every Aff-Wild2 EXPR annotation file). Never reorder.
CLASSES: tuple[str, ...] = (
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
)
NUM_CLASSES: int = len(CLASSES)
#: Label of a frame that is not annotated: ignored in training and in the metric.
IGNORE: int = -1
#: Header line of annotation files and (after ``image_location,``) of submission files.
ANNOTATION_HEADER: str = ",".join(CLASSES)

_INDEX = {name.lower(): i for i, name in enumerate(CLASSES)}


def class_index(name_or_index: str | int) -> int:
    """Return the class index of a class name (case-insensitive) or a valid integer index."""
    if isinstance(name_or_index, (int, np.integer)):
        value = int(name_or_index)
        if not 0 <= value < NUM_CLASSES:
            raise ValueError(f"class index {value} is outside 0..{NUM_CLASSES - 1}")
        return value
    key = str(name_or_index).strip().lower()
    if key.lstrip("-").isdigit():
        return class_index(int(key))
    if key not in _INDEX:
        raise ValueError(f"unknown class {name_or_index!r}; expected one of {', '.join(CLASSES)}")
    return _INDEX[key]


def class_name(index: int) -> str:
    """Return the class name of an index in 0..7."""
    return CLASSES[class_index(int(index))]


def class_counts(labels: Iterable[int] | np.ndarray) -> np.ndarray:
    """Per-class counts (length 8) of an array of labels; ignored frames are not counted."""
    arr = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=np.int64)
    arr = arr[arr != IGNORE]
    return np.bincount(arr, minlength=NUM_CLASSES)[:NUM_CLASSES]


def one_hot(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """One-hot float32 matrix (n, 8); rows of ignored frames are all zero."""
    arr = np.asarray(labels, dtype=np.int64)
    out = np.zeros((arr.size, NUM_CLASSES), dtype=np.float32)
    keep = arr != IGNORE
    out[np.flatnonzero(keep), arr[keep]] = 1.0
    return out
