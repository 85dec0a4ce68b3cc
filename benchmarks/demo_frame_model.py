"""Stage 03 on the demo data at CPU scale: train one frame model with the given settings and print its
validation macro F1 and wall time (optionally then stages 05-06 on it: frame -> temporal -> post-processed).

    PYTHONPATH=lib python benchmarks/demo_frame_model.py --algorithm full --steps 300 --image-size 64
    PYTHONPATH=lib python benchmarks/demo_frame_model.py ... --chain     # + feature cache and temporal encoder

Crops: ``--crops`` (default: cut around the demo's true face boxes at 112 px into
data/faces/demo_truth/cropped_aligned when missing; the test/benchmark stand-in for stage 01; point it at
data/faces/demo/cropped_aligned for stage 01's own crops). Each run appends a row to ``--table``
(benchmarks/out/demo_frame_model.csv) so the figures of docs/semisup.md can be re-made.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--affwild2", default="data/demo")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo_truth/cropped_aligned")
    ap.add_argument("--crop-size", type=int, default=112, help="side of truth-box crops built when --crops is missing")
    ap.add_argument("--unlabeled-dir", default="data/demo/unlabeled_faces")
    ap.add_argument("--out", default="benchmarks/out/demo_frame_model/run")
    ap.add_argument("--table", default="benchmarks/out/demo_frame_model.csv")
    ap.add_argument("--tag", default="", help="a label for the table row")
    ap.add_argument("--algorithm", default="full", choices=["supervised", "fixmatch", "full"])
    ap.add_argument("--backbone", default="resnet10t")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--input-norm", default="per-image", choices=["none", "per-image"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=None, help="default: TrainConfig's")
    ap.add_argument("--warmup-steps", type=int, default=None, help="default: steps // 10 (as notebook 03)")
    ap.add_argument("--unlabeled-warmup", type=int, default=None,
                    help="supervised steps before the unlabeled loss starts (SemiSupConfig.unlabeled_warmup)")
    ap.add_argument("--uratio", type=int, default=None)
    ap.add_argument("--threshold-momentum", type=float, default=None)
    ap.add_argument("--ema-decay", type=float, default=None)
    ap.add_argument("--evals", type=int, default=6, help="validations during the run (as notebook 03)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chain", action="store_true", help="then the feature cache and the temporal encoder")
    ap.add_argument("--temporal-epochs", type=int, default=40)
    args = ap.parse_args()

    import pandas as pd
    import torch

    from abawkit.manifest import load_manifest
    from abawkit.semisup import TrainConfig, preset
    from abawkit.semisup.train import train

    torch.set_num_threads(args.threads)
    manifest = load_manifest(args.manifest)
    if not Path(args.crops).is_dir():
        from helpers_temporal import truth_crops

        truth_crops(args.affwild2, manifest, args.crops, size=args.crop_size)
    overrides = {k: getattr(args, k) for k in ("unlabeled_warmup", "uratio", "threshold_momentum", "ema_decay")}
    semi = preset(args.algorithm, **overrides)
    extra = {k: v for k, v in (("lr", args.lr),) if v is not None}
    every = max(1, args.steps // args.evals)
    cfg = TrainConfig(out_dir=args.out, manifest_dir=args.manifest, crops_dir=args.crops,
                      unlabeled_dirs=(args.unlabeled_dir,),
                      backbone=args.backbone, image_size=args.image_size, input_norm=args.input_norm, steps=args.steps,
                      batch_size=args.batch_size, seed=args.seed, eval_every=every, ckpt_every=every,
                      warmup_steps=args.warmup_steps if args.warmup_steps is not None else max(1, args.steps // 10),
                      workers=args.workers, progress=False, semisup=semi, **extra)
    t0 = time.time()
    res = train(cfg)
    seconds = time.time() - t0
    curve = pd.read_csv(Path(args.out) / "metrics.csv")
    print(curve[[c for c in ("step", "lr", "loss_l", "loss_u", "mask_rate", "h", "val_macro_f1") if c in curve]]
          .round(4).to_string(index=False))
    row = {"tag": args.tag, "algorithm": semi.name, "image_size": args.image_size, "input_norm": args.input_norm, "steps": args.steps,
           "batch_size": args.batch_size, "lr": cfg.lr, "unlabeled_warmup": semi.unlabeled_warmup,
           "holdout_videos": len(manifest.video_ids(holdout=True)),
           "seed": args.seed, "crops": args.crops, "final_val_macro_f1": round(res.final_val_macro_f1, 4),
           "best_val_macro_f1": round(res.best_val_macro_f1, 4), "best_step": res.best_step,
           "train_seconds": round(seconds, 1)}
    print(f"frame model: final val macro-F1 {res.final_val_macro_f1:.4f}, best {res.best_val_macro_f1:.4f} "
          f"(step {res.best_step}); {seconds:.0f} s")
    if args.chain:
        from abawkit.features import FeatureConfig, extract_features
        from abawkit.config import preset as stage_preset
        from abawkit.temporal.config import TemporalTrainConfig
        from abawkit.temporal.train import train_temporal

        t1 = time.time()
        feats = Path(args.out) / "features"
        extract_features(FeatureConfig(checkpoint=str(Path(args.out) / "best.pt"), crops_dir=args.crops,
                                       features_dir=str(feats), workers=0), manifest)
        summary = train_temporal(stage_preset(TemporalTrainConfig, None, epochs=args.temporal_epochs, seed=args.seed,
                                              features_dir=str(feats), manifest_dir=args.manifest,
                                              out_dir=str(Path(args.out) / "temporal")), manifest)
        comparison = pd.read_csv(Path(args.out) / "temporal" / "comparison.csv").set_index("stage")["macro_f1"]
        print(comparison.round(4).to_string())
        row.update({f"chain {k}": round(float(v), 4) for k, v in comparison.items()},
                   chain_seconds=round(time.time() - t1, 1))
        del summary
    table = Path(args.table)
    table.parent.mkdir(parents=True, exist_ok=True)
    old = pd.read_csv(table) if table.is_file() else pd.DataFrame()
    pd.concat([old, pd.DataFrame([row])], ignore_index=True).to_csv(table, index=False)


if __name__ == "__main__":
    main()
