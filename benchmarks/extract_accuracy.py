"""Face-extraction accuracy on the demo data: score an extraction folder (stage 01's output) against the
renderer's truth that `abawkit demo-data` keeps in `render_truth/` (no stage reads it), per subject and in all.

    PYTHONPATH=lib python benchmarks/extract_accuracy.py --faces data/faces/demo --demo data/demo

Figures: face frames that got a face, no-face frames given one, eye error in the aligned crop (true eye centre
to the template's eye, pixels) and, for `_left`/`_right` subjects, the share of frames on the right person.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", default="data/faces/demo", help="extraction output (notebook 01 / extract-faces)")
    ap.add_argument("--demo", default="data/demo", help="the demo data tree (abawkit demo-data)")
    ap.add_argument("--size", type=int, default=112, help="side of the aligned crops")
    args = ap.parse_args()

    import pandas as pd
    from helpers_extract import score_subject

    truth = Path(args.demo) / "render_truth"
    if not truth.is_dir():
        sys.exit(f"{truth} not found: --demo must be a tree written by abawkit demo-data")
    index = Path(args.faces) / "index"
    ids = sorted(p.stem for p in index.glob("*.csv"))
    if not ids:
        sys.exit(f"no finished subject under {index}: run abawkit extract-faces (or notebook 01) first")
    table = pd.DataFrame([score_subject(Path(args.faces), Path(args.demo), vid, args.size) for vid in ids])
    print(table.round(3).to_string(index=False))
    print(f"\nface frames that got a face: {table.found.sum()} / {table.face_frames.sum()} "
          f"({table.found.sum() / max(1, table.face_frames.sum()):.1%})")
    print(f"no-face frames given a face: {table.false_faces.sum()} / {table.no_face_frames.sum()}")
    print(f"eye error in the aligned crop, median of the subjects' medians: {table.eye_err_median.median():.2f} px "
          f"(per-subject 95th percentiles {table.eye_err_p95.min():.1f}-{table.eye_err_p95.max():.1f} px)")
    sides = table[table.video_id.str.endswith(("_left", "_right"))]
    if len(sides):
        print(f"_left/_right subjects on the right person: {sides.right_person.mean():.1%} of frames "
              f"({len(sides)} subjects)")


if __name__ == "__main__":
    main()
