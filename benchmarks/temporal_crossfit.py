"""What cross-fitting does for the temporal stage: for each frame-model folder trained with
``abawkit train-frame --folds K`` (one per frame-model seed), cache features with K = 1 (every video from the
model on all training videos: today's chain) and with K (each training video from the fold model that did not
see it; validation videos from the full model or the mean of the fold models), train the temporal encoder on
each with several inputs and seeds, and print validation macro F1 of frame model / + smoothing alone /
+ temporal encoder / + post-processing, and the cross-validation over the training folds.

    abawkit train-frame --preset demo --folds 3 --seed S --out benchmarks/out/crossfit/seedS/frame_model
    PYTHONPATH=lib python benchmarks/temporal_crossfit.py --frame-models benchmarks/out/crossfit/seedS/frame_model \\
        --inputs embeddings --set residual_logits=true --out benchmarks/out/temporal_crossfit/mS_residual
    PYTHONPATH=lib python benchmarks/temporal_crossfit.py --combine benchmarks/out/temporal_crossfit/*/results.csv

Writes ``--out``/results.csv (one row per run) and prints the means; ``--combine`` prints the means over several
such files (frame-model seeds run side by side; docs/temporal.md "Cross-fitting, measured").
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--combine", nargs="+", metavar="RESULTS_CSV",
                    help="print the means over these results.csv files of earlier runs (one per frame model or "
                         "setting) and exit")
    ap.add_argument("--frame-models", nargs="+",
                    help="frame-model folders of abawkit train-frame --folds K (folds.csv, fold_i/best.pt, best.pt)")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--out", default="benchmarks/out/temporal_crossfit", help="scratch folder for features and runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="temporal-encoder seeds")
    ap.add_argument("--inputs", nargs="+", default=["embeddings", "logits", "both"])
    ap.add_argument("--eval-models", nargs="+", default=["full", "mean"],
                    help="features of the validation videos under cross-fitting (full, mean)")
    ap.add_argument("--preset", default="demo", help="TemporalTrainConfig preset")
    ap.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                    help="other TemporalTrainConfig settings for every run (e.g. residual_logits=true)")
    args = ap.parse_args()

    import pandas as pd

    if args.combine:
        summarize(pd.concat([pd.read_csv(p) for p in args.combine], ignore_index=True))
        return
    if not args.frame_models:
        ap.error("--frame-models is required (or --combine)")

    from abawkit.config import build
    from abawkit.features import FeatureConfig, extract_features
    from abawkit.folds import read_folds
    from abawkit.manifest import load_manifest
    from abawkit.temporal.config import TemporalTrainConfig
    from abawkit.temporal.train import train_temporal

    manifest = load_manifest(args.manifest)
    out = Path(args.out)
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}  # true, 0.5, null
    rows = []
    for m, frame_dir in enumerate(args.frame_models):
        k = int(read_folds(frame_dir)["fold"].max()) + 1
        caches = {(1, "full"): out / f"m{m}_k1"}
        caches.update({(k, e): out / f"m{m}_k{k}_{e}" for e in args.eval_models})
        for (folds, eval_model), features in caches.items():
            extract_features(FeatureConfig(checkpoint=f"{frame_dir}/best.pt", crops_dir=args.crops,
                                           manifest_dir=args.manifest, features_dir=str(features), folds=folds,
                                           eval_model=eval_model, workers=0, progress=False), manifest)
            for inputs in args.inputs:
                for seed in args.seeds:
                    run = out / f"{features.name}_{inputs}_seed{seed}"
                    values = {"preset": args.preset, **extra, "inputs": inputs, "seed": seed, "progress": False,
                              "features_dir": str(features), "manifest_dir": args.manifest, "out_dir": str(run)}
                    config = build(TemporalTrainConfig, values)
                    summary = train_temporal(config, manifest)
                    f1 = {r["stage"]: r["macro_f1"] for r in summary["comparison"]}
                    cv = {f"cv {r['stage']}": r["macro_f1"] for r in summary.get("cv", [])}
                    row = {"frame_model": frame_dir, "folds": folds, "eval_model": eval_model, "inputs": inputs,
                           "residual_logits": config.model.residual_logits, "seed": seed, **f1, **cv}
                    rows.append(row)
                    print(f"m{m} K={folds} {eval_model:<4} {inputs:<10} seed {seed}: "
                          + "  ".join(f"{k_} {v:.3f}" for k_, v in {**f1, **cv}.items()), flush=True)
                    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    summarize(pd.DataFrame(rows))


def summarize(table) -> None:
    """Means per (folds, eval model, inputs, residual) over frame models and seeds, and the encoder's gain."""
    table = table.copy()
    if "residual_logits" not in table:
        table["residual_logits"] = False
    keys = ["residual_logits", "folds", "eval_model", "inputs"]
    n_models, seeds = table["frame_model"].nunique(), sorted(table["seed"].unique())
    print(f"\nmean over {n_models} frame model(s) x seeds {seeds} (validation macro F1; cv = out-of-fold training "
          f"videos)")
    table["encoder gain"] = table["+ temporal encoder"] - table["frame model"]
    table["encoder - smoothing"] = table["+ temporal encoder"] - table["frame model + smoothing"]
    means = table.drop(columns=["frame_model", "seed"]).groupby(keys, sort=False).mean(numeric_only=True)
    print(means.round(3).to_string())
    wins = table.groupby(keys, sort=False)["encoder gain"].agg(lambda s: f"{int((s > 0).sum())}/{len(s)}")
    print("\nruns where the encoder beats the frame model:\n" + wins.to_string())

if __name__ == "__main__":
    main()
