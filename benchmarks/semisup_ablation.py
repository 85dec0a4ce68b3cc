"""Ablation of the semi-supervised method on the demo data: few labels per class, an imbalanced unlabeled pool.

Rows: supervised, fixmatch, + self-adaptive thresholds, + debiasing, full (+ feedback); each over several
seeds; columns: final validation macro F1 (last checkpoint: nothing selected on validation), best
validation macro F1 over the evaluations, and the recall of the minority classes (Disgust, Fear).

    PYTHONPATH=lib python benchmarks/semisup_ablation.py --steps 250 --seeds 0 1 2

Needs the demo manifest and crops (notebooks 00 and 01, or any crops folder of that manifest). Each run's
result is appended to OUT/runs.csv as it finishes, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

VARIANTS = {
    "supervised": ("supervised", {}),
    "fixmatch": ("fixmatch", {}),
    "+ self-adaptive threshold": ("fixmatch", {"threshold": "self-adaptive"}),
    "+ debiasing": ("fixmatch", {"threshold": "self-adaptive", "debias": True}),
    "full (+ feedback)": ("full", {}),
}
MINORITY = ("Disgust", "Fear")


def few_label_split(manifest_dir: str, crops: str, out: Path, per_class: int, seed: int = 0) -> tuple[Path, Path]:
    """A labeled CSV with at most ``per_class`` Train_Set frames per class (spread over the videos), and a
    folder of links to every 3rd remaining Train_Set frame: the unlabeled pool keeps the data's imbalance."""
    from abawkit.manifest import load_manifest
    from abawkit.semisup.data import frames_from_manifest

    table = frames_from_manifest(load_manifest(manifest_dir), crops, "Train_Set")
    rng = np.random.default_rng(seed)
    picked = []
    for _, grp in table.groupby("label"):
        take = grp.iloc[np.linspace(0, len(grp) - 1, min(per_class, len(grp))).round().astype(int)]
        picked.append(take)
    labeled = pd.concat(picked)
    rest = table.drop(labeled.index).iloc[::3]
    out.mkdir(parents=True, exist_ok=True)
    labeled[["path", "label"]].assign(path=lambda d: d["path"].map(os.path.abspath)).to_csv(out / "labeled.csv",
                                                                                            index=False)
    pool = out / "unlabeled_train_frames"
    pool.mkdir(exist_ok=True)
    for p, vid, f in zip(rest["path"], rest["video_id"], rest["frame"]):
        link = pool / f"{vid}_{f:05d}.jpg"
        if not link.exists():
            link.symlink_to(os.path.abspath(p))
    del rng
    return out / "labeled.csv", pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--unlabeled-dir", default="data/demo/unlabeled_faces")
    ap.add_argument("--out", default="benchmarks/out/semisup_ablation")
    ap.add_argument("--per-class", type=int, default=25, help="labeled frames per class")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--uratio", type=int, default=1, help="unlabeled images per labeled image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-norm", default="per-image", choices=["none", "per-image"],
                    help="per-crop standardization (default per-image, as the demo pipeline; docs/semisup.md)")
    ap.add_argument("--threshold-momentum", type=float, default=None,
                    help="EMA momentum of the self-adaptive threshold (default: FreeMatch's 0.999)")
    ap.add_argument("--unlabeled-warmup", type=int, default=0,
                    help="supervised steps before the unlabeled parts start (semi-supervised variants)")
    args = ap.parse_args()

    import torch

    from abawkit.frame_model import load_frame_model
    from abawkit.io import write_csv
    from abawkit.labels import CLASSES
    from abawkit.manifest import load_manifest
    from abawkit.metrics import f1_report
    from abawkit.semisup.config import TrainConfig, preset
    from abawkit.semisup.data import frames_from_manifest
    from abawkit.semisup.train import predict, train

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    labeled_csv, pool = few_label_split(args.manifest, args.crops, out, args.per_class)
    val = frames_from_manifest(load_manifest(args.manifest), args.crops, "Validation_Set", 2)
    done_path = out / "runs.csv"
    done = pd.read_csv(done_path) if done_path.is_file() else pd.DataFrame(columns=["variant", "seed"])
    rows = done.to_dict("records")
    for seed in args.seeds:
        for name in args.variants:
            if ((done["variant"] == name) & (done["seed"] == seed)).any():
                continue
            algorithm, over = VARIANTS[name]
            cfg = TrainConfig(out_dir=str(out / "runs" / f"{name.replace(' ', '_').replace('+', 'p')}_s{seed}"),
                              labeled_csv=str(labeled_csv), unlabeled_dirs=(args.unlabeled_dir, str(pool)),
                              val_csv=None, image_size=args.image_size, steps=args.steps,
                              batch_size=args.batch_size, eval_every=max(1, args.steps // 5),
                              ckpt_every=args.steps, warmup_steps=max(1, args.steps // 10), workers=0, seed=seed,
                              progress=False, input_norm=args.input_norm,
                              semisup=preset(algorithm, uratio=args.uratio, unlabeled_warmup=args.unlabeled_warmup,
                                             threshold_momentum=args.threshold_momentum, **over))
            # validation comes from the manifest: run train with a CSV of the same frames
            val_csv = out / "val.csv"
            if not val_csv.is_file():
                val[["path", "label"]].assign(path=lambda d: d["path"].map(os.path.abspath)).to_csv(val_csv, index=False)
            cfg = cfg.with_(val_csv=str(val_csv))
            t0 = time.time()
            res = train(cfg)
            model, _ = load_frame_model(Path(cfg.out) / "last.pt")
            probs, y = predict(model, val, model.config, torch.device("cpu"))
            rep = f1_report(y, probs.argmax(1))
            recall = rep.confusion.diagonal() / np.maximum(rep.confusion.sum(1), 1)
            row = {"variant": name, "seed": seed, "final_macro_f1": rep.macro_f1, "best_macro_f1": res.best_val_macro_f1,
                   "minority_recall": float(np.mean([recall[CLASSES.index(c)] for c in MINORITY])),
                   "seconds": time.time() - t0, "train_img_per_s": res.train_images_per_s}
            print(row, flush=True)
            rows.append(row)
            write_csv(done_path, pd.DataFrame(rows))
    table = summarize(pd.DataFrame(rows), list(VARIANTS))
    print(table)
    (out / "table.md").write_text(table)


def summarize(runs: pd.DataFrame, order: list[str]) -> str:
    """Markdown table of mean ± std over seeds, in variant order."""
    lines = ["| variant | seeds | final val macro F1 | best val macro F1 | minority recall (Disgust, Fear) | s/run |",
             "|---|---|---|---|---|---|"]
    for name in order:
        r = runs[runs["variant"] == name]
        if r.empty:
            continue
        f = lambda c: f"{r[c].mean():.3f} ± {r[c].std(ddof=0):.3f}"
        lines.append(f"| {name} | {len(r)} | {f('final_macro_f1')} | {f('best_macro_f1')} | {f('minority_recall')} | "
                     f"{r['seconds'].mean():.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
