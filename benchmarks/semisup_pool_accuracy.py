"""How the frame models of a semisup_ablation run label their own unlabeled pool, against validation.

For every run folder under OUT/runs (or those given): the last checkpoint's accuracy and macro F1 on the pool
images whose class the demo knows (the Train_Set frames left out of the few-label split and the aligned renders),
its validation macro F1, and how many validation frames it calls Neutral (the head class; true count beside it).
The demo's classes are used only for this measurement.

    PYTHONPATH=lib python benchmarks/semisup_pool_accuracy.py --out benchmarks/out/semisup_pc4L_a --per-class 4
    PYTHONPATH=lib python benchmarks/semisup_pool_accuracy.py --out benchmarks/out/semisup_pc4L_a --per-class 4 \
        --runs benchmarks/out/semisup_pc4L_*/runs/*_s0

Needs the folder a semisup_ablation.py run wrote (its --out, --per-class, --manifest and --crops).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semisup_ablation import few_label_split, render_truth  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="a semisup_ablation.py --out folder")
    ap.add_argument("--runs", nargs="*", help="run folders (default: every OUT/runs/*)")
    ap.add_argument("--per-class", type=int, default=25, help="the ablation's --per-class")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--unlabeled-dir", default="data/faces/demo_unlabeled/cropped_aligned")
    ap.add_argument("--raw-unlabeled-dir", default="data/demo/unlabeled_faces")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from abawkit.frame_model import load_frame_model
    from abawkit.labels import CLASSES
    from abawkit.metrics import macro_f1
    from abawkit.semisup.train import predict

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    _, _, truth = few_label_split(args.manifest, args.crops, out, args.per_class)
    aligned = {p: c for p, c in render_truth(args.raw_unlabeled_dir, args.unlabeled_dir).items()
               if Path(p).is_relative_to(args.unlabeled_dir)}  # the pool's renders, not their raw files
    truth.update(aligned)
    pool = pd.DataFrame([(p, c) for p, c in truth.items() if c >= 0], columns=["path", "label"])
    val = pd.read_csv(out / "val.csv")
    neutral = CLASSES.index("Neutral")
    device = torch.device("cpu")
    rows = []
    for run in sorted(Path(r) for r in (args.runs or (out / "runs").glob("*"))):
        if not (run / "last.pt").is_file():
            print(f"{run}: no last.pt yet (still training?), skipped")
            continue
        model, _ = load_frame_model(run / "last.pt")
        pool_probs, pool_y = predict(model, pool, model.config, device)
        val_probs, val_y = predict(model, val, model.config, device)
        pool_pred, val_pred = pool_probs.argmax(1), val_probs.argmax(1)
        rows.append({"run": run.name, "pool_accuracy": float(np.mean(pool_pred == pool_y)),
                     "pool_macro_f1": macro_f1(pool_y, pool_pred), "val_macro_f1": macro_f1(val_y, val_pred),
                     "val_neutral_predicted": int((val_pred == neutral).sum()),
                     "val_neutral_true": int((val_y == neutral).sum())})
        print(rows[-1], flush=True)
    print(f"\npool: {len(pool)} images of known class\n" + pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
