"""Face boxes of the labeled images, for FaceMix, as fractions (x0, y0, x1, y1) of the image side.

- Crops of a manifest's videos written by ``abawkit extract-faces``: from its per-frame index
  (``<faces>/index/<video>.csv`` beside the crops folder): the face box, mapped into the loose crop
  (``cropped``) or through the 5-point alignment into the aligned crop (``cropped_aligned``).
- Images of a ``--labeled-csv``: mediapipe's face detector, run once and cached beside the CSV as
  ``<csv stem>.faceboxes.csv`` (in the run's OUT folder when the CSV's folder is read-only).
- Fallback, where neither gives exactly one face (the organizers' crops carry no box; a detector that finds no
  face or several): the whole image, (0, 0, 1, 1). Two such images have IoU 1, so FaceMix adds no real-image
  term for that pair: the pair is plain mixup.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_csv
from ..readers import read_csv, read_image

WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)
BOX_COLUMNS = ["x0", "y0", "x1", "y1"]
_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def boxes_from_index(crops_dir: str | os.PathLike, video_id: str, frames: np.ndarray) -> np.ndarray:
    """(len(frames), 4) boxes in crop fractions from extract-faces' index of ``video_id``; NaN rows where the index,
    or its box, is missing (the organizers' crops)."""
    from ..faces.align import align_matrix, apply, loose_matrix

    crops_dir = Path(crops_dir)
    out = np.full((len(frames), 4), np.nan)
    index = crops_dir.parent / "index" / f"{video_id}.csv"
    if not index.is_file():
        return out
    table = read_csv(index, f"the face index of {video_id} (CSV)", "re-run abawkit extract-faces for it")
    table = table.set_index("frame")
    aligned = crops_dir.name != "cropped"
    for k, f in enumerate(frames):
        if f not in table.index:
            continue
        row = table.loc[f]
        box = row[["box_x0", "box_y0", "box_x1", "box_y1"]].to_numpy(float)
        if np.isnan(box).any():
            continue
        side = 112.0 if aligned else 224.0  # the matrices scale with the side: fractions do not depend on it
        if aligned:
            points = np.array([[row[f"{p}_x"], row[f"{p}_y"]] for p in _POINTS], float)
            if np.isnan(points).any():
                continue
            matrix = align_matrix(points, int(side))
        else:
            matrix = loose_matrix(box, int(side))
        corners = apply(matrix, np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]]))
        lo, hi = corners.min(0) / side, corners.max(0) / side
        out[k] = np.clip([lo[0], lo[1], hi[0], hi[1]], 0.0, 1.0)
    return out


def detect_boxes(paths: list[str], progress: bool = True) -> np.ndarray:
    """mediapipe's face box of each image in fractions of its side; NaN unless exactly one face is found."""
    from tqdm.auto import tqdm

    from ..faces.detect import FaceDetector

    detector = FaceDetector(max_side=640, model="short")
    out = np.full((len(paths), 4), np.nan)
    try:
        for k, path in enumerate(tqdm(paths, desc="face boxes", unit="image", disable=not progress, mininterval=3)):
            image = read_image(path).permute(1, 2, 0).numpy()
            found = detector.detect(np.ascontiguousarray(image), bgr=False)
            if len(found) == 1:
                h, w = image.shape[:2]
                out[k] = found[0].box / np.array([w, h, w, h], float)
    finally:
        detector.close()
    return out


def csv_boxes(csv: str | os.PathLike, paths: list[str], out_dir: str | os.PathLike,
              progress: bool = True) -> np.ndarray:
    """The detector's boxes of a labeled CSV's images, from its cache when that lists exactly these images."""
    csv = Path(csv)
    cache = csv.with_name(f"{csv.stem}.faceboxes.csv")
    if not os.access(csv.parent, os.W_OK):
        cache = Path(out_dir) / "face_boxes" / cache.name
    if cache.is_file():
        table = read_csv(cache, "a face-box cache (path,x0,y0,x1,y1)", f"delete {cache} to detect again",
                         columns=("path", *BOX_COLUMNS))
        if table["path"].astype(str).tolist() == list(paths):
            return table[BOX_COLUMNS].to_numpy(float)
    boxes = detect_boxes(paths, progress)
    write_csv(cache, pd.DataFrame({"path": paths, **{c: boxes[:, i] for i, c in enumerate(BOX_COLUMNS)}}))
    return boxes


def face_boxes(table: pd.DataFrame, crops_dir: str | None, out_dir: str | os.PathLike,
               progress: bool = True) -> tuple[np.ndarray, dict[str, int]]:
    """(n, 4) boxes of a training table (``abawkit.semisup.train.load_tables``'s, with its ``source`` column) and
    the count of images per origin (index, detector, whole image: the fallback)."""
    boxes = np.full((len(table), 4), np.nan)
    counts = {"index": 0, "detector": 0, "whole_image": 0}
    for source, rows in table.groupby("source", sort=False).groups.items():
        rows = np.asarray(rows)
        part = table.loc[rows]
        if source == "manifest":
            for vid, sub in part.groupby("video_id", sort=False).groups.items():
                sub = np.asarray(sub)
                boxes[sub] = boxes_from_index(crops_dir, vid, table.loc[sub, "frame"].to_numpy(int))
            counts["index"] += int((~np.isnan(boxes[rows]).any(1)).sum())
        else:
            boxes[rows] = csv_boxes(source, part["path"].tolist(), out_dir, progress)
            counts["detector"] += int((~np.isnan(boxes[rows]).any(1)).sum())
    missing = np.isnan(boxes).any(1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    boxes[missing] = WHOLE_IMAGE
    counts["whole_image"] = int(missing.sum())
    return boxes, counts
