"""Stage 06 settings on one feature cache: train the temporal encoder with several settings and seeds and
print frame model / + temporal encoder / + post-processing validation macro F1 for each, then the mean over
seeds. Used to choose the demo's stage-04 parameters (docs/temporal.md "Demo settings").

    PYTHONPATH=lib python benchmarks/temporal_settings.py --features runs/demo/features --seeds 0 1 2

The post-processing fold is the manifest's held-out Train_Set videos (abawkit manifest --holdout-fraction).
"""

from __future__ import annotations

import argparse

#: name -> TemporalTrainConfig overrides (window 64, 40 epochs; the manifest's held-out videos for all).
SETTINGS = {
    "library default (depth 2, width 128, dropout 0.1)": {},
    "small: depth 1, width 64, dropout 0.5 (preset demo)": {"depth": 1, "width": 64, "dropout": 0.5},
    "small + feature noise 1.0": {"depth": 1, "width": 64, "dropout": 0.5, "feature_noise": 1.0},
    "small + residual logits": {"depth": 1, "width": 64, "dropout": 0.5, "residual_logits": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="runs/demo/features", help="feature cache (notebook 05)")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--out", default="benchmarks/out/temporal_settings", help="scratch folder for the runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--only", nargs="*", default=None, help="setting names to run (default: all)")
    args = ap.parse_args()

    import pandas as pd

    from abawkit.manifest import load_manifest
    from abawkit.config import build
    from abawkit.temporal.config import TemporalTrainConfig
    from abawkit.temporal.train import train_temporal

    manifest = load_manifest(args.manifest)
    rows = []
    for i, (name, overrides) in enumerate(SETTINGS.items()):
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            config = build(TemporalTrainConfig, {"epochs": args.epochs, "progress": False, "seed": seed, **overrides,
                                                 "features_dir": args.features, "manifest_dir": args.manifest,
                                                 "out_dir": f"{args.out}/s{i}_seed{seed}"})
            summary = train_temporal(config, manifest)
            f1 = {r["stage"]: r["macro_f1"] for r in summary["comparison"]}
            rows.append({"setting": name, "seed": seed, **f1})
            print(f"{name:<52} seed {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in f1.items()), flush=True)
    table = pd.DataFrame(rows)
    print("\nmean over seeds", args.seeds)
    print(table.drop(columns="seed").groupby("setting", sort=False).mean().round(3).to_string())


if __name__ == "__main__":
    main()
