"""Masked-autoencoder face pretraining and fine-tuning on the demo data (Song et al. 2024), over several seeds.

One ViT-Tiny (64 px, 8-pixel patches) is pretrained with ``abawkit pretrain-mae --preset demo`` on the demo's
unlabeled faces and Train_Set crops (held-out videos excepted); then, with the same labeled data and steps
(``train-frame --preset demo``, 300 steps at batch 32):

| row | |
|---|---|
| resnet10t from scratch, supervised | today's demo backbone, for reference |
| ViT, random init, supervised | the same architecture (--backbone --image-size --patch-size) |
| ViT, MAE init, supervised | --weights encoder.pt (layer decay 0.75) |
| ViT, MAE init, + mixup / + FaceMix | --mix mixup / facemix |
| ViT, MAE init, two stages | stage 1: the + FaceMix row; stage 2: --weights stage1/best.pt --algorithm full, half the steps |

Figures: validation macro F1 of the last step (no selection on validation) and of the best of six
evaluations, per seed; the training time of each row and the pretraining's time and throughput.

    PYTHONPATH=lib python benchmarks/mae_finetune.py --seeds 0 1 2

Results go to OUT/ (default benchmarks/out/mae): OUT/mae (the pretraining), runs.csv (appended as each run
finishes: an interrupted benchmark resumes) and table.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

VIT = dict(backbone="vit_tiny_patch16_224", patch_size=8)
ROWS = {
    "resnet10t, scratch, supervised": dict(algorithm="supervised"),
    "ViT, random init, supervised": dict(VIT, algorithm="supervised"),
    "ViT, MAE init, supervised": dict(algorithm="supervised", layer_decay=0.75),
    "ViT, MAE init, + mixup": dict(algorithm="supervised", layer_decay=0.75, mix="mixup"),
    "ViT, MAE init, + FaceMix": dict(algorithm="supervised", layer_decay=0.75, mix="facemix"),
    "ViT, MAE init, two stages (FaceMix, then full)": dict(algorithm="full", layer_decay=0.75, unlabeled_warmup=0),
}


def pretrain_encoder(out: Path, steps: int) -> tuple[Path, dict]:
    from abawkit.config import build
    from abawkit.mae.config import MAEConfig
    from abawkit.mae.train import pretrain

    folder = out / "mae"
    if not (folder / "encoder.pt").is_file():
        cfg = build(MAEConfig, {"preset": "demo", "steps": steps, "out_dir": str(folder), "progress": False,
                                "resume": (folder / "mae.pt").is_file()})
        pretrain(cfg)
    record = json.loads((folder / "run_record.json").read_text())["result"]
    return folder / "encoder.pt", record


def run(out: Path, row: str, seed: int, encoder: Path, steps: int) -> dict:
    from abawkit.config import build
    from abawkit.semisup.config import TrainConfig
    from abawkit.semisup.train import train

    settings = dict(ROWS[row])
    if "MAE init" in row:
        settings["weights"] = str(encoder)
    if row.startswith("ViT, MAE init, two stages"):
        stage1 = out / "runs" / f"ViT, MAE init, + FaceMix/seed{seed}" / "best.pt"
        if not stage1.is_file():
            raise SystemExit(f"{stage1} missing: run the FaceMix row first (rows run in table order)")
        settings["weights"] = str(stage1)
        steps = steps // 2  # stage 2 (the full method costs about three supervised steps per step on CPU)
    folder = out / "runs" / row / f"seed{seed}"
    cfg = build(TrainConfig,
                {"preset": "demo", **settings, "steps": steps, "seed": seed, "out_dir": str(folder),
                 "progress": False})
    t0 = time.time()
    result = train(cfg)
    return {"row": row, "seed": seed, "final_val_macro_f1": result.final_val_macro_f1,
            "best_val_macro_f1": result.best_val_macro_f1, "seconds": time.time() - t0}


def table(runs: pd.DataFrame, pretraining: dict) -> str:
    lines = ["| row | last step, per seed | mean | best of 6, mean | minutes per run |", "|---|---|---|---|---|"]
    for row in ROWS:
        part = runs[runs["row"] == row].sort_values("seed")
        if part.empty:
            continue
        per_seed = " / ".join(f"{v:.3f}" for v in part["final_val_macro_f1"])
        lines.append(f"| {row} | {per_seed} | {part['final_val_macro_f1'].mean():.3f} | "
                     f"{part['best_val_macro_f1'].mean():.3f} | {part['seconds'].mean() / 60:.1f} |")
    lines.append("")
    lines.append(f"MAE pretraining: {pretraining['steps']} steps on {pretraining['n_images']} images, "
                 f"{pretraining['seconds'] / 60:.1f} min, {pretraining['images_per_s']:.0f} images/s; masked-patch "
                 f"loss {pretraining['first_loss']:.3f} -> {pretraining['final_loss']:.3f} (held-out faces "
                 f"{pretraining['first_preview_loss']:.3f} -> {pretraining['final_preview_loss']:.3f}).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/mae"), help="output folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every row")
    ap.add_argument("--mae-steps", type=int, default=1500, help="pretraining steps")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW",
                    help="rows to run (default: all, in table order)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    encoder, pretraining = pretrain_encoder(args.out, args.mae_steps)
    runs_csv = args.out / "runs.csv"
    runs = pd.read_csv(runs_csv) if runs_csv.is_file() else pd.DataFrame(columns=["row", "seed"])
    for row in [r for r in ROWS if r in args.rows]:
        for seed in args.seeds:
            if ((runs["row"] == row) & (runs["seed"] == seed)).any():
                continue
            result = run(args.out, row, seed, encoder, args.steps)
            print(f"{row}, seed {seed}: last {result['final_val_macro_f1']:.3f}, best "
                  f"{result['best_val_macro_f1']:.3f} ({result['seconds'] / 60:.1f} min)", flush=True)
            runs = pd.concat([runs, pd.DataFrame([result])], ignore_index=True)
            runs.to_csv(runs_csv, index=False)
    text = table(runs, {**pretraining, "steps": args.mae_steps})
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
