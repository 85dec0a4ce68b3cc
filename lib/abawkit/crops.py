"""Face-crop folders, as the organizers ship them and as ``abawkit extract-faces`` writes them.

``<crops>/<video_id>/00001.jpg``: one JPEG per frame that has a face, numbered from 1 like the annotation
lines; a frame without a face has no file. ``cropped_aligned`` (112x112, aligned) and ``cropped`` (loose)
are the two kinds; every stage that reads crops takes the folder holding the ``<video_id>`` folders, and the
manifest records each subject's organizer folder of a kind in the column ``<folder>_dir``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

#: The crop kinds, by their ``--crops`` name, and the folder of each (the organizers' names, which we also write).
CROP_FOLDERS = {"aligned": "cropped_aligned", "loose": "cropped"}
_FRAME = re.compile(r"^(\d{5,})\.(jpg|jpeg|png)$", re.IGNORECASE)


def crop_name(frame: int) -> str:
    """File name of a 1-based frame: ``00001.jpg``."""
    return f"{frame:05d}.jpg"


def crop_path(crops: str | os.PathLike, video_id: str, frame: int) -> Path:
    return Path(crops) / video_id / crop_name(frame)


def crop_frames(crops: str | os.PathLike, video_id: str) -> np.ndarray:
    """Sorted 1-based frame numbers that have a crop for ``video_id`` (empty when the folder is missing)."""
    folder = Path(crops) / video_id
    if not folder.is_dir():
        return np.zeros(0, dtype=np.int64)
    frames = [int(m.group(1)) for entry in os.scandir(folder) if (m := _FRAME.match(entry.name))]
    return np.array(sorted(frames), dtype=np.int64)


def has_face_mask(crops: str | os.PathLike, video_id: str, n_frames: int) -> np.ndarray:
    """Boolean mask over frames 1..n_frames (index 0 is frame 1): True where a crop file exists."""
    mask = np.zeros(n_frames, dtype=bool)
    frames = crop_frames(crops, video_id)
    frames = frames[(frames >= 1) & (frames <= n_frames)]
    mask[frames - 1] = True
    return mask


def crop_video_ids(crops: str | os.PathLike) -> list[str]:
    """The ``<video_id>`` folders under a crops folder."""
    root = Path(crops)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


#: Still-image files the suite reads (unlabeled face folders, image corpora).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder``, recursively, sorted (a stable order: sample indices, crop numbers)."""
    return sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files
                  if f.lower().endswith(IMAGE_SUFFIXES))
