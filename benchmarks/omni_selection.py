"""Omni-supervised selection and dataset distillation on the demo data (Liu et al. 2021), over several seeds.

A primitive frame model is trained on few labels per class (the split of benchmarks/semisup_ablation.py); it
selects faces from an unlabeled pool whose classes the demo knows (used only to measure): the Train_Set frames
left out of the split, the demo's unlabeled renders as stage 01 aligned them, and the 100 LFW faces of the raw
unlabeled folder (real faces with no acted expression: off-class, they should be rejected).

1. Selection, K per class: precision of the selected labels against the known classes (per class and pooled)
   and the share of off-class (LFW) faces selected, for the prototype rule and two simpler rules (the
   classifier's confidence alone, random faces per predicted class).
2. Training (same steps, the primitive model's settings): labeled alone / + the selected set (sampling weight 1,
   and 0.5) / + the distilled
   set (K = 1 and 10 per class, from labeled + selected) / + 10 random selected images per class; last
   checkpoint's validation macro F1 and training time.
3. Distillation time and peak memory per class (the distill summary).

    PYTHONPATH=lib python benchmarks/omni_selection.py --seeds 0 1 2

Results go to OUT/ (default benchmarks/out/omni): runs.csv (training rows, appended as each finishes: an
interrupted benchmark resumes), selection.csv, distill_summary.csv and table.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semisup_ablation import few_label_split, render_truth  # noqa: E402

TRAIN_ROWS = ["labeled alone", "+ selected", "+ selected, weight 0.5", "+ distilled K=1", "+ distilled K=10",
              "+ 10 random selected/class"]


def off_class_folder(raw_dir: str, out: Path) -> Path:
    """Links to the raw folder's LFW faces (the demo's off-class faces)."""
    folder = out / "off_class"
    folder.mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(raw_dir).glob("lfw_*.jpg")):
        link = folder / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return folder


def train_row(out: Path, name: str, seed: int, csvs: list[Path], weights: list[float], val_csv: Path,
              settings: dict) -> dict:
    import torch

    from abawkit.frame_model import load_frame_model
    from abawkit.metrics import f1_report
    from abawkit.semisup.config import TrainConfig, preset
    from abawkit.semisup.train import predict, train

    slug = name.replace(" ", "_").replace("+", "p").replace("/", "_").replace("=", "").replace(",", "")
    cfg = TrainConfig(out_dir=str(out / "runs" / f"{slug}_s{seed}"), labeled_csv=tuple(map(str, csvs)),
                      labeled_weight=tuple(weights), val_csv=str(val_csv), workers=0, seed=seed, progress=False,
                      eval_every=settings["steps"], ckpt_every=settings["steps"],
                      warmup_steps=max(1, settings["steps"] // 10), semisup=preset("supervised"), **settings)
    t0 = time.time()
    res = train(cfg)
    model, _ = load_frame_model(Path(cfg.out_dir) / "last.pt")
    val = pd.read_csv(val_csv)
    probs, y = predict(model, val, model.config, torch.device("cpu"))
    return {"row": name, "seed": seed, "val_macro_f1": f1_report(y, probs.argmax(1)).macro_f1,
            "n_labeled": int(sum(len(pd.read_csv(c)) for c in csvs)), "seconds": time.time() - t0,
            "train_img_per_s": res.train_images_per_s}


def selection_metrics(sel_dir: Path, truth: dict[str, int], n_off: int) -> dict:
    """Precision of selected.csv against the known classes (pooled and per class), the off-class share."""
    from abawkit.labels import CLASSES

    sel = pd.read_csv(sel_dir / "selected.csv")
    paths = [str((sel_dir / p).resolve()) for p in sel["path"]]
    known = np.array([truth.get(p, -1) for p in paths])
    label = np.array([CLASSES.index(c) for c in sel["label"]])
    ok = known >= 0
    row = {"n_selected": len(sel), "n_known": int(ok.sum()),
           "precision": float((label[ok] == known[ok]).mean()) if ok.any() else np.nan,
           "off_class_selected": int((known == -2).sum()), "off_class_share": float((known == -2).sum() / n_off)}
    for c, name in enumerate(CLASSES):
        m = ok & (label == c)
        row[f"prec_{name}"] = float((known[m] == c).mean()) if m.any() else np.nan
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--unlabeled-dir", default="data/faces/demo_unlabeled/cropped_aligned")
    ap.add_argument("--raw-unlabeled-dir", default="data/demo/unlabeled_faces")
    ap.add_argument("--out", default="benchmarks/out/omni")
    ap.add_argument("--per-class", type=int, default=25, help="labeled frames per class")
    ap.add_argument("--select-per-class", type=int, default=40, help="K of the selection")
    ap.add_argument("--selected-weight", type=float, default=1.0, help="--labeled-weight of the selected set")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--distill-iterations", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", nargs="+", choices=TRAIN_ROWS, default=TRAIN_ROWS, metavar="ROW",
                    help="training rows to run (labeled alone always runs: it is the primitive model); default all: "
                         + ", ".join(repr(r) for r in TRAIN_ROWS))
    args = ap.parse_args()

    import torch

    from abawkit.config import build
    from abawkit.io import write_csv
    from abawkit.manifest import load_manifest
    from abawkit.omni.config import DistillConfig
    from abawkit.omni.distill import distill
    from abawkit.omni.select import SelectConfig, select_faces
    from abawkit.semisup.data import frames_from_manifest

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    labeled_csv, pool, truth = few_label_split(args.manifest, args.crops, out, args.per_class)
    truth.update(render_truth(args.raw_unlabeled_dir, args.unlabeled_dir))
    off = off_class_folder(args.raw_unlabeled_dir, out)
    truth = {str(Path(k).resolve()): v for k, v in truth.items()}
    truth.update({str(p.resolve()): -2 for p in off.iterdir()})
    val_csv = out / "val.csv"
    val = frames_from_manifest(load_manifest(args.manifest), args.crops, "Validation_Set", 2)
    val[["path", "label"]].assign(path=lambda d: d["path"].map(os.path.abspath)).to_csv(val_csv, index=False)
    settings = dict(image_size=args.image_size, steps=args.steps, batch_size=args.batch_size, input_norm="per-image")
    done_path = out / "runs.csv"
    rows = pd.read_csv(done_path).to_dict("records") if done_path.is_file() else []
    sel_rows, dist_rows = [], []

    def run(name, seed, csvs, weights):
        if name != "labeled alone" and name not in args.rows:
            return
        if any(r["row"] == name and r["seed"] == seed for r in rows):
            return
        row = train_row(out, name, seed, csvs, weights, val_csv, settings)
        print(row, flush=True)
        rows.append(row)
        write_csv(done_path, pd.DataFrame(rows))

    for seed in args.seeds:
        run("labeled alone", seed, [labeled_csv], [1.0])
        primitive = out / "runs" / f"labeled_alone_s{seed}" / "last.pt"
        base = dict(checkpoint=str(primitive), labeled_csv=(str(labeled_csv),), progress=False, seed=seed,
                    image_dirs=(str(pool), args.unlabeled_dir, str(off)), per_class=args.select_per_class)
        for rule, extra in [("similarity", {}), ("confidence", {"min_similarity": 0.7}), ("random", {})]:
            sel_dir = out / "selected" / f"{rule}_s{seed}"
            t0 = time.time()
            res = select_faces(SelectConfig(out_dir=str(sel_dir), rule=rule, **extra, **base))
            sel_rows.append({"rule": rule, "seed": seed, **selection_metrics(sel_dir, truth, len(list(off.iterdir()))),
                             "images_per_s": res["images_per_s"], "seconds": time.time() - t0})
            print(sel_rows[-1], flush=True)
        selected = out / "selected" / f"similarity_s{seed}" / "selected.csv"
        run("+ selected", seed, [labeled_csv, selected], [1.0, args.selected_weight])
        run("+ selected, weight 0.5", seed, [labeled_csv, selected], [1.0, 0.5])
        for k in (k for k in (1, 10) if f"+ distilled K={k}" in args.rows):
            dist_dir = out / "distilled" / f"k{k}_s{seed}"
            res = distill(build(DistillConfig, dict(preset="demo", labeled_csvs=(str(labeled_csv), str(selected)),
                                                    per_class=k, image_size=args.image_size, seed=seed,
                                                    iterations=args.distill_iterations, out_dir=str(dist_dir),
                                                    progress=False)))
            dist_rows += res.summary.assign(K=k, seed=seed).to_dict("records")
            run(f"+ distilled K={k}", seed, [labeled_csv, dist_dir / "distilled.csv"], [1.0, 1.0])
        if "+ 10 random selected/class" not in args.rows:
            continue
        sel = pd.read_csv(selected)
        sub = sel.sample(frac=1.0, random_state=seed).groupby("label").head(10)
        sub_csv = out / "selected" / f"random10_s{seed}.csv"
        sub.assign(path=[str((selected.parent / p).resolve()) for p in sub["path"]]).to_csv(sub_csv, index=False)
        run("+ 10 random selected/class", seed, [labeled_csv, sub_csv], [1.0, 1.0])
    write_csv(out / "selection.csv", pd.DataFrame(sel_rows))
    write_csv(out / "distill_summary.csv", pd.DataFrame(dist_rows))
    table = summarize(pd.DataFrame(rows), pd.DataFrame(sel_rows), pd.DataFrame(dist_rows))
    print(table)
    (out / "table.md").write_text(table)


def summarize(runs: pd.DataFrame, sel: pd.DataFrame, dist: pd.DataFrame) -> str:
    lines = ["| training rows | val macro F1 (mean ± sd) | per seed | vs labeled alone | labeled images | "
             "seconds |", "|---|---|---|---|---|---|"]
    base = runs[runs["row"] == "labeled alone"].set_index("seed")["val_macro_f1"]
    for name in TRAIN_ROWS:
        r = runs[runs["row"] == name].set_index("seed")
        if r.empty:
            continue
        d = (r["val_macro_f1"] - base.reindex(r.index)).mean()
        lines.append(f"| {name} | {r['val_macro_f1'].mean():.3f} ± {r['val_macro_f1'].std():.3f} | "
                     f"{' / '.join(f'{v:.3f}' for v in r['val_macro_f1'])} | {d:+.3f} | {r['n_labeled'].mean():.0f} |"
                     f" {r['seconds'].mean():.0f} |")
    lines += ["", "| selection rule | selected | precision | per class (N A D F H Sa Su O) | off-class selected "
              "(of 100 LFW) | images/s |", "|---|---|---|---|---|---|"]
    for rule, g in sel.groupby("rule", sort=False):
        per = " ".join(f"{g[c].mean():.2f}" for c in g.columns if c.startswith("prec_"))
        lines.append(f"| {rule} | {g['n_selected'].mean():.0f} | {g['precision'].mean():.3f} | {per} | "
                     f"{g['off_class_selected'].mean():.1f} | {g['images_per_s'].mean():.0f} |")
    if not dist.empty:
        cols = [c for c in ("seconds", "peak_rss_mb", "initial_loss", "final_loss") if c in dist.columns]
        lines += ["", "| distillation | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for k, g in dist.groupby("K"):
            lines.append(f"| K={k}, per class (mean) | " + " | ".join(f"{g[c].mean():.3g}" for c in cols) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
