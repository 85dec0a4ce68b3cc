"""How the frame models of a semisup_ablation run label their own unlabeled pool, against validation.

For every run folder under OUT/runs (or those given): the last checkpoint's accuracy and macro F1 on the pool
images whose class the demo knows (the Train_Set frames left out of the few-label split and the aligned renders),
its validation macro F1, and how many validation frames it calls Neutral (the head class; true count beside it).
Then the same per source of the pool (the Train_Set frames, the renders): accuracy, how many images the model
labels with a confidence of at least --keep (FixMatch's threshold, the default's floor) and how many of those are
right, the images it calls Disgust and Neutral against their true counts; and the pool's class shares: true, the
model's mean prediction, and what EM (Saerens et al., 2002: the prior under which the model's posteriors, trained
class-uniform, are consistent) estimates from them; with --classes, the confusion rows of those classes on the pool
(where each model sends the pool's images of that class). The demo's classes are used only for this measurement.

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
from semisup_ablation import class_shares, few_label_split, render_truth  # noqa: E402

#: the pool's two sources: the Train_Set frames left out of the few-label split, and the aligned renders
SOURCES = ("Train_Set frames", "renders")


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
    ap.add_argument("--keep", type=float, default=0.95,
                    help="the confidence a pseudo-label is kept at in the per-source table (default: 0.95)")
    ap.add_argument("--classes", nargs="+", default=[], metavar="CLASS",
                    help="also print these classes' confusion rows on the pool, e.g. Neutral Happiness")
    args = ap.parse_args()

    import torch

    from abawkit.frame_model import load_frame_model
    from abawkit.labels import CLASSES
    from abawkit.metrics import f1_report, macro_f1
    from abawkit.semisup.train import predict

    for name in args.classes:
        if name not in CLASSES:
            ap.error(f"--classes {name}: expected class names among {', '.join(CLASSES)}")
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
    source = np.where(pool["path"].isin(list(aligned)), "renders", "Train_Set frames")
    shares = {**{f"true: {name}": class_shares(pool["label"][source == name]) for name in SOURCES},
              "true: the pool": class_shares(pool["label"])}
    rows, by_source, confusion = [], [], []
    for run in sorted(Path(r) for r in (args.runs or (out / "runs").glob("*"))):
        if not (run / "last.pt").is_file():
            print(f"{run}: no last.pt yet (still training?), skipped")
            continue
        model, _ = load_frame_model(run / "last.pt")
        pool_probs, pool_y = predict(model, pool, model.config, device)
        val_probs, val_y = predict(model, val, model.config, device)
        pool_pred, val_pred = pool_probs.argmax(1), val_probs.argmax(1)
        on_pool = f1_report(pool_y, pool_pred)
        rows.append({"run": run.name, "pool_accuracy": float(np.mean(pool_pred == pool_y)),
                     "pool_macro_f1": on_pool.macro_f1, "val_macro_f1": macro_f1(val_y, val_pred),
                     "val_neutral_predicted": int((val_pred == neutral).sum()),
                     "val_neutral_true": int((val_y == neutral).sum())})
        print(rows[-1], flush=True)
        by_source += [{"run": run.name, **source_row(name, pool_probs[source == name], pool_y[source == name],
                                                     args.keep)} for name in SOURCES]
        confusion += [{"run": run.name, "true": name, "images": int(row.sum()), **dict(zip(CLASSES, row.tolist()))}
                      for name, row in zip(args.classes, on_pool.confusion[[CLASSES.index(c) for c in args.classes]])]
        shares[f"{run.name}: mean prediction"] = pool_probs.mean(0)
        shares[f"{run.name}: EM estimate"] = em_prior(pool_probs)
    print(f"\npool: {len(pool)} images of known class\n" + pd.DataFrame(rows).round(3).to_string(index=False))
    print(f"\nper source of the pool (kept: confidence >= {args.keep})\n"
          + pd.DataFrame(by_source).round(3).to_string(index=False))
    print("\nthe pool's class shares\n" + pd.DataFrame(shares, index=CLASSES).T.round(3).to_string())
    if confusion:
        print("\nwhere the pool's images of each class go (last checkpoints)\n"
              + pd.DataFrame(confusion).to_string(index=False))


def source_row(name: str, probs: np.ndarray, y: np.ndarray, keep: float) -> dict:
    """One source of the pool: accuracy, the pseudo-labels a threshold ``keep`` keeps and their precision, the
    images called Disgust and Neutral against their true counts."""
    from abawkit.labels import CLASSES

    pred, kept = probs.argmax(1), probs.max(1) >= keep
    disgust, neutral = CLASSES.index("Disgust"), CLASSES.index("Neutral")
    return {"source": name, "images": len(y), "accuracy": float(np.mean(pred == y)), "kept": int(kept.sum()),
            "kept_precision": float(np.mean(pred[kept] == y[kept])) if kept.any() else float("nan"),
            "kept_disgust": int((pred[kept] == disgust).sum()), "called_disgust": int((pred == disgust).sum()),
            "true_disgust": int((y == disgust).sum()), "called_neutral": int((pred == neutral).sum()),
            "true_neutral": int((y == neutral).sum())}


def em_prior(probs: np.ndarray, iterations: int = 200) -> np.ndarray:
    """The class prior of the images whose posteriors are ``probs`` (N, C), by EM (Saerens, Latinne and
    Decaestecker, 2002) from a model trained under a uniform prior (class-uniform batches): each step reweights the
    posteriors by the current prior and averages them."""
    prior = np.full(probs.shape[1], 1 / probs.shape[1])
    for _ in range(iterations):
        weighted = probs * prior
        prior = (weighted / weighted.sum(1, keepdims=True)).mean(0)
    return prior


if __name__ == "__main__":
    main()
