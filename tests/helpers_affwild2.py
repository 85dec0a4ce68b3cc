"""Build small Aff-Wild2 trees in the exact release layout for tests (real videos written with OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from abawkit.labels import ANNOTATION_HEADER


def write_video(path: Path, n_frames: int, size=(64, 48), fps: float = 30.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    for t in range(n_frames):
        frame = np.full((size[1], size[0], 3), (t * 7) % 255, np.uint8)
        writer.write(frame)
    writer.release()
    return path


def write_labels(path: Path, labels, header: str = ANNOTATION_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(f"{v}\n" for v in labels))
    return path


def make_tree(root: Path, expr_folder: str = "EXPR_Recognition_Challenge") -> Path:
    """Train: `1-30-64x48` (annotation 2 lines longer than its video), a `_left`/`_right` pair sharing
    `video7.avi`; validation: `video9` (no video file); test list + example file naming `video10`;
    organizers' crop folders for `1-30-64x48`."""
    ann = root / "annotations" / expr_folder
    write_video(root / "batch1" / "1-30-64x48.mp4", 20)
    write_video(root / "batch2" / "video7.avi", 15)
    write_video(root / "batch2" / "video10.mp4", 12)
    write_labels(ann / "Train_Set" / "1-30-64x48.txt", [0] * 10 + [4] * 8 + [-1] * 4)
    write_labels(ann / "Train_Set" / "video7_left.txt", [1] * 15)
    write_labels(ann / "Train_Set" / "video7_right.txt", [6] * 5 + [7] * 10)
    write_labels(ann / "Validation_Set" / "video9.txt", [5] * 6)
    (root / "Expression_Recognition_Challenge_test_set_release.txt").write_text("video10\n")
    (root / "CVPR_6th_ABAW_Expr_test_set_example.txt").write_text(
        "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
        + "".join(f"video10/{k:05d}.jpg,0\n" for k in range(1, 13)))
    for folder in ("cropped_aligned", "cropped"):
        d = root / folder / "1-30-64x48"
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "00001.jpg"), np.zeros((112, 112, 3), np.uint8))
    return root
