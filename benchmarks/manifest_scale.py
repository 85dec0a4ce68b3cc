"""How the data layer scales to the real Aff-Wild2: ~550 subjects and 2.7 M annotated frames.

Builds annotation files of that size (no videos: container probing is per video and measured by the
extraction benchmark), then times the manifest, the submission writer and checker, and the metric, and
prints the peak memory. Usage: python benchmarks/manifest_scale.py [--subjects 550] [--frames 2700000]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from abawkit.annotations import write_annotation
from abawkit.manifest import build_manifest, load_manifest
from abawkit.metrics import f1_report
from abawkit.submission import check_submission, rows_from_counts, write_submission


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=550)
    parser.add_argument("--frames", type=int, default=2_700_000, help="total annotated frames")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    lengths = rng.multinomial(args.frames, np.ones(args.subjects) / args.subjects)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "affwild2"
        ann = root / "annotations" / "EXPR_Recognition_Challenge"
        t0 = time.perf_counter()
        ids = []
        for i, n in enumerate(lengths):
            split = "Train_Set" if i % 5 else "Validation_Set"
            vid = f"{i}-30-1280x720"
            write_annotation(ann / split / f"{vid}.txt", rng.integers(-1, 8, size=int(n)))
            ids.append(vid)
        print(f"wrote {args.subjects} annotation files, {args.frames} lines: {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        build_manifest(root, Path(tmp) / "manifest", probe_videos=False, progress=False)
        print(f"manifest build (no video probing): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        m = load_manifest(Path(tmp) / "manifest")
        labels = {vid: m.labels(vid) for vid in ids}
        print(f"manifest load + per-video labels: {time.perf_counter() - t0:.1f} s")
        rows = rows_from_counts(ids, {v: len(labels[v]) for v in ids})
        preds = {v: rng.integers(0, 8, size=len(labels[v])) for v in ids}
        t0 = time.perf_counter()
        txt, _ = write_submission(preds, rows, Path(tmp) / "sub")
        print(f"submission writer ({len(rows)} rows, txt + zip): {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        problems = check_submission(txt, rows)
        print(f"submission checker: {time.perf_counter() - t0:.1f} s ({len(problems)} problems)")
        t0 = time.perf_counter()
        rep = f1_report(np.concatenate(list(labels.values())), np.concatenate(list(preds.values())))
        print(f"metric over {rep.n_frames} annotated frames: {time.perf_counter() - t0:.2f} s")
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
