"""Test/benchmark helper: face crops cut around the demo's TRUE face boxes (render_truth), in the crops layout.

Stage 01 (face extraction) writes the real crops; this stands in for it so stage 03 can be tested alone.
It reads ``render_truth/``, which the pipeline itself never does.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from abawkit.crops import crop_path
from abawkit.video import iter_frames


def truth_crops(demo_root: str | os.PathLike, manifest, faces_dir: str | os.PathLike, size: int = 112,
                splits: tuple[str, ...] = ("Train_Set", "Validation_Set", "Test_Set"), every: int = 1) -> Path:
    """Write ``<faces_dir>/cropped_aligned/<video_id>/00001.jpg`` (size x size) for every frame with a face
    (every ``every``-th frame); returns the ``cropped_aligned`` folder."""
    demo_root, out = Path(demo_root), Path(faces_dir) / "cropped_aligned"
    for vid in [v for s in splits for v in manifest.video_ids(s)]:
        truth = pd.read_csv(demo_root / "render_truth" / f"{vid}.csv").set_index("frame")
        path = manifest.row(vid)["video_path"]
        (out / vid).mkdir(parents=True, exist_ok=True)
        for first, frames in iter_frames(path):
            for k, rgb in enumerate(frames):
                f = first + k
                if f not in truth.index or not bool(truth.at[f, "has_face"]) or (f - 1) % every:
                    continue
                r = truth.loc[f]
                cx, cy = (r.box_x0 + r.box_x1) / 2, (r.box_y0 + r.box_y1) / 2
                half = max(r.box_x1 - r.box_x0, r.box_y1 - r.box_y0) * 0.55
                m = np.float32([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)],
                                [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])
                crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
                cv2.imwrite(str(crop_path(out, vid, f)), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 92])
    return out


if __name__ == "__main__":  # python tests/helpers_semisup.py data/demo data_manifests/demo data/faces/demo
    import sys

    from abawkit.manifest import load_manifest

    print(truth_crops(sys.argv[1], load_manifest(sys.argv[2]), sys.argv[3]))
