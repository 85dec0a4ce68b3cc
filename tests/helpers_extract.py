"""Test-only scoring of an extraction against the demo's render truth (the product never reads render_truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from abawkit.faces.align import align_matrix, apply, template
from abawkit.faces.extract import POINT_NAMES, load_index


def score_subject(faces_dir: Path, demo_root: Path, video_id: str, size: int = 112) -> dict:
    """Detection on face frames, false faces on no-face frames, eye error (px in the aligned crop), identity."""
    truth = pd.read_csv(Path(demo_root) / "render_truth" / f"{video_id}.csv")
    index = load_index(faces_dir, video_id)
    both = truth.merge(index, on="frame", how="inner", suffixes=("_true", ""))
    face = both["has_face_true"].astype(bool).to_numpy()
    got = both["has_face"].astype(bool).to_numpy()
    eye_err, right_person = [], []
    tmpl = template(size)[:2]
    for row in both[face & got].itertuples(index=False):
        pts = np.array([[getattr(row, f"{p}_x"), getattr(row, f"{p}_y")] for p in POINT_NAMES])
        m = align_matrix(pts, size)
        eyes = apply(m, np.array([[row.left_eye_x_true, row.left_eye_y_true], [row.right_eye_x_true, row.right_eye_y_true]]))
        eye_err.append(float(np.linalg.norm(eyes - tmpl, axis=1).max()))
        cx, cy = (row.box_x0 + row.box_x1) / 2, (row.box_y0 + row.box_y1) / 2
        right_person.append(row.box_x0_true <= cx <= row.box_x1_true and row.box_y0_true <= cy <= row.box_y1_true)
    return {"video_id": video_id, "face_frames": int(face.sum()), "found": int((face & got).sum()),
            "rate": float((face & got).sum() / max(1, face.sum())), "no_face_frames": int((~face).sum()),
            "false_faces": int((~face & got).sum()),
            "eye_err_median": float(np.median(eye_err)) if eye_err else float("nan"),
            "eye_err_p95": float(np.percentile(eye_err, 95)) if eye_err else float("nan"),
            "right_person": float(np.mean(right_person)) if right_person else float("nan")}
