"""Masked-autoencoder face pretraining and fine-tuning on the demo data (Song et al. 2024), over several seeds.

One ViT-Tiny (64 px, 8-pixel patches) is pretrained with ``abawkit pretrain-mae --preset demo`` on the demo's
unlabeled faces and Train_Set crops (held-out videos excepted); then, with the same labeled data and steps
(``train-frame --preset demo``, 300 steps at batch 32). Every ViT row fine-tunes with the same recipe, ``--lr 3e-4
--probe-head`` (the head starts as a logistic regression on the frozen network's embeddings: LP-FT); the rows
differ only in what the table says:

| row | |
|---|---|
| resnet10t from scratch, supervised | today's demo backbone, for reference (its own recipe: lr 1e-3, random head) |
| ViT, random init, supervised | the same architecture (--backbone --image-size --patch-size) |
| ViT, random init, supervised, layer decay 0.75 | the MAE rows' layer decay, from random weights |
| ViT, MAE init, supervised | --weights encoder.pt (layer decay 0.75) |
| ViT, MAE init, + mixup / + FaceMix | --mix mixup / facemix |
| ViT, MAE init, two stages | stage 1: the + FaceMix row; stage 2: --weights stage1/best.pt --algorithm full, half the steps |
| ViT, MAE init, random head (lr 1e-3 / 3e-4 / 1e-4) | without --probe-head: the earlier recipe, and lower rates |

Figures: validation macro F1 of the last step (no selection on validation) and of the best of six
evaluations, per seed; the training time of each row and the pretraining's time and throughput.

    PYTHONPATH=lib python benchmarks/mae_finetune.py --seeds 0 1 2

Results go to OUT/ (default benchmarks/out/mae): OUT/mae (the pretraining), OUT/runs/<row>/seed<k>/result.json
(written as each run finishes: an interrupted benchmark resumes, and two processes given other --rows or
--seeds and the same --out, e.g. one torch thread each with --threads 1, share the work), runs.csv and table.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

VIT = dict(backbone="vit_tiny_patch16_224", patch_size=8)
#: The ViT rows' fine-tuning: a lower rate than resnet10t's 1e-3, and the head probed first (LP-FT).
FINETUNE = dict(lr=3e-4, probe_head=True)
ROWS = {
    "resnet10t, scratch, supervised": dict(algorithm="supervised"),
    "ViT, random init, supervised": dict(VIT, **FINETUNE, algorithm="supervised"),
    "ViT, random init, supervised, layer decay 0.75": dict(VIT, **FINETUNE, algorithm="supervised", layer_decay=0.75),
    "ViT, MAE init, supervised": dict(FINETUNE, algorithm="supervised", layer_decay=0.75),
    "ViT, MAE init, + mixup": dict(FINETUNE, algorithm="supervised", layer_decay=0.75, mix="mixup"),
    "ViT, MAE init, + FaceMix": dict(FINETUNE, algorithm="supervised", layer_decay=0.75, mix="facemix"),
    # stage 2 starts from stage 1's best.pt, head included: nothing to probe
    "ViT, MAE init, two stages (FaceMix, then full)": dict(FINETUNE, probe_head=False, algorithm="full",
                                                           layer_decay=0.75, unlabeled_warmup=0),
    "ViT, MAE init, random head, lr 1e-3": dict(algorithm="supervised", layer_decay=0.75),
    "ViT, MAE init, random head, lr 3e-4": dict(algorithm="supervised", lr=3e-4, layer_decay=0.75),
    "ViT, MAE init, random head, lr 1e-4": dict(algorithm="supervised", lr=1e-4, layer_decay=0.75),
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


def result_path(out: Path, row: str, seed: int) -> Path:
    return out / "runs" / row / f"seed{seed}" / "result.json"


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
    record = {"row": row, "seed": seed, "final_val_macro_f1": result.final_val_macro_f1,
              "best_val_macro_f1": result.best_val_macro_f1, "seconds": time.time() - t0}
    result_path(out, row, seed).write_text(json.dumps(record))
    return record


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
    ap.add_argument("--threads", type=int, default=None, help="torch threads of this process (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    encoder, pretraining = pretrain_encoder(args.out, args.mae_steps)
    for row in [r for r in ROWS if r in args.rows]:
        for seed in args.seeds:
            if result_path(args.out, row, seed).is_file():
                continue
            result = run(args.out, row, seed, encoder, args.steps)
            print(f"{row}, seed {seed}: last {result['final_val_macro_f1']:.3f}, best "
                  f"{result['best_val_macro_f1']:.3f} ({result['seconds'] / 60:.1f} min)", flush=True)
    runs = pd.DataFrame([json.loads(p.read_text()) for p in sorted((args.out / "runs").glob("*/seed*/result.json"))])
    runs.to_csv(args.out / "runs.csv", index=False)
    text = table(runs, {**pretraining, "steps": args.mae_steps})
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
