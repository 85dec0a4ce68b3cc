"""Read and write Aff-Wild2 EXPR annotation files (one per subject: a header line, then one label per frame)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import UserError
from .io import atomic_path
from .labels import ANNOTATION_HEADER, IGNORE, NUM_CLASSES
from .readers import read_text

#: Both names the organizers have used for the EXPR annotation folder (newest first).
EXPR_FOLDERS = ("EXPR_Recognition_Challenge", "EXPR_Classification_Challenge")
SPLITS = ("Train_Set", "Validation_Set")
TEST_SPLIT = "Test_Set"
_SIDE = re.compile(r"^(?P<name>.+)_(?P<side>left|right)$")


class AnnotationError(UserError, ValueError):
    """A malformed annotation file; the message names the file and line and says what to do."""


def split_side(video_id: str) -> tuple[str, str]:
    """``video10_left`` -> (``video10``, ``left``); ``video59`` -> (``video59``, ``""``)."""
    m = _SIDE.match(video_id)
    return (m.group("name"), m.group("side")) if m else (video_id, "")


def read_annotation(path: str | os.PathLike) -> np.ndarray:
    """Labels of frames 1..n of one annotation file as int64 (-1 = not annotated).

    Raises :class:`AnnotationError` naming the file and line for an empty file, a wrong header, a line
    that is not an integer, or a label outside -1..7.
    """
    path = Path(path)
    lines = read_text(path, f"an EXPR annotation file (the header '{ANNOTATION_HEADER}', then one label per frame)",
                      "re-download or remove this file", allow_empty=True).splitlines()
    if not lines or not lines[0].strip():
        raise AnnotationError(f"{path}: empty annotation file; expected the header line "
                              f"'{ANNOTATION_HEADER}' then one label per frame")
    header = lines[0].strip().replace(" ", "")
    if header != ANNOTATION_HEADER:
        raise AnnotationError(f"{path}:1: header is {lines[0].strip()!r}; expected {ANNOTATION_HEADER!r} "
                              "(is this an EXPR file and not a VA or AU one?)")
    body = lines[1:]
    while body and not body[-1].strip():  # a trailing newline or blank tail is harmless
        body.pop()
    if not body:
        raise AnnotationError(f"{path}: header only, no frame labels; re-download or remove this file")
    labels = np.empty(len(body), dtype=np.int64)
    for i, raw in enumerate(body):
        text = raw.strip()
        try:
            value = int(text)
        except ValueError:
            raise AnnotationError(f"{path}:{i + 2}: {raw!r} is not an integer label; each line after the "
                                  f"header must hold one of -1..{NUM_CLASSES - 1}") from None
        if not (IGNORE <= value < NUM_CLASSES):
            raise AnnotationError(f"{path}:{i + 2}: label {value} is outside -1..{NUM_CLASSES - 1}")
        labels[i] = value
    return labels


def write_annotation(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write labels in the annotation format (header, then one label per frame), atomically."""
    labels = np.asarray(labels, dtype=np.int64)
    with atomic_path(path) as tmp:
        tmp.write_text(ANNOTATION_HEADER + "\n" + "".join(f"{int(v)}\n" for v in labels))
    return Path(path)


def find_annotation_root(root: str | os.PathLike) -> Path | None:
    """The EXPR annotation folder under ``root`` (either release name, at any depth up to 3), or None."""
    root = Path(root)
    for depth in range(4):
        for name in EXPR_FOLDERS:
            pattern = "/".join(["*"] * depth + [name])
            hits = sorted(p for p in root.glob(pattern) if p.is_dir())
            if hits:
                return hits[0]
    return None


def find_annotation_files(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Annotation files per split (``Train_Set``, ``Validation_Set``) under the EXPR folder of ``root``."""
    ann_root = find_annotation_root(root)
    if ann_root is None:
        return {s: [] for s in SPLITS}
    return {s: sorted((ann_root / s).glob("*.txt")) for s in SPLITS}


def load_label_folder(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every ``<video_id>.txt`` annotation file of one folder, e.g. ``test_ground_truth``."""
    return {p.stem: read_annotation(p) for p in sorted(Path(folder).glob("*.txt"))}
