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
    # the epoch chosen on validation, held-out or out-of-fold videos, scored on validation and test:
    PYTHONPATH=lib python benchmarks/temporal_crossfit.py --features runs/demo_crossfit/features --inputs embeddings \
        --selects validation holdout cv last --set residual_logits=true --truth data/demo/test_ground_truth

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
    ap.add_argument("--features", nargs="+", metavar="DIR",
                    help="instead of --frame-models: feature folders already cached (abawkit extract-features, "
                         "e.g. a pipeline run's features/), used as they are")
    ap.add_argument("--selects", nargs="+", default=["validation"], choices=["validation", "holdout", "cv", "last"],
                    help="how the encoder's epoch is chosen (train-temporal --select); one run per value")
    ap.add_argument("--truth", metavar="DIR",
                    help="test labels (the demo's data/demo/test_ground_truth): also score every stage on the "
                         "Test_Set")
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
    ap.add_argument("--curves", nargs="+", metavar="LABEL=RUN_DIR",
                    help="draw the per-epoch out-of-fold (cv/epochs.csv) and validation (metrics.csv) macro F1 of "
                         "these temporal runs beside the frame model's into --figure, and exit")
    ap.add_argument("--figure", default="docs/figures/temporal_epoch_selection.png")
    args = ap.parse_args()

    import pandas as pd

    if args.curves:
        curves_figure(dict(item.split("=", 1) for item in args.curves), args.figure)
        return

    if args.combine:
        summarize(pd.concat([pd.read_csv(p) for p in args.combine], ignore_index=True))
        return
    if not args.frame_models and not args.features:
        ap.error("--frame-models or --features is required (or --combine)")

    from abawkit.features import FeatureConfig, extract_features
    from abawkit.folds import read_folds
    from abawkit.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    out = Path(args.out)
    import yaml

    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}  # true, 0.5, null
    from abawkit.annotations import load_label_folder

    truth = load_label_folder(args.truth) if args.truth else None
    rows = []
    for m, frame_dir in enumerate(args.frame_models or []):
        k = int(read_folds(frame_dir)["fold"].max()) + 1
        caches = {(1, "full"): out / f"m{m}_k1"}
        caches.update({(k, e): out / f"m{m}_k{k}_{e}" for e in args.eval_models})
        for (folds, eval_model), features in caches.items():
            extract_features(FeatureConfig(checkpoint=f"{frame_dir}/best.pt", crops_dir=args.crops,
                                           manifest_dir=args.manifest, features_dir=str(features), folds=folds,
                                           eval_model=eval_model, workers=0, progress=False), manifest)
            rows += train_runs(args, manifest, extra, features, f"m{m}_k{folds}_{eval_model}", truth,
                               {"frame_model": frame_dir, "folds": folds, "eval_model": eval_model}, out, rows)
    for m, features in enumerate(args.features or []):
        sources = pd.read_csv(Path(features) / "sources.csv") if (Path(features) / "sources.csv").is_file() else None
        folds = max(1, int(sources["fold"].max()) + 1) if sources is not None else 1
        rows += train_runs(args, manifest, extra, Path(features), f"f{m}", truth,
                           {"frame_model": str(features), "folds": folds, "eval_model": "as cached"}, out, rows)
    summarize(pd.DataFrame(rows))


def train_runs(args, manifest, extra, features, name, truth, about, out, done) -> list[dict]:
    """One temporal training per (inputs, select, seed) on the feature folder ``features``: its result rows."""
    import pandas as pd

    from abawkit.config import build
    from abawkit.temporal.config import TemporalTrainConfig
    from abawkit.temporal.train import train_temporal

    rows = []
    for inputs in args.inputs:
        for select in args.selects:
            for seed in args.seeds:
                run = out / f"{name}_{inputs}_{select}_seed{seed}"
                values = {"preset": args.preset, **extra, "inputs": inputs, "select": select, "seed": seed,
                          "progress": False, "features_dir": str(features), "manifest_dir": args.manifest,
                          "out_dir": str(run)}
                config = build(TemporalTrainConfig, values)
                summary = train_temporal(config, manifest)
                f1 = {r["stage"]: r["macro_f1"] for r in summary["comparison"]}
                cv = {f"cv {r['stage']}": r["macro_f1"] for r in summary.get("cv", [])}
                test = score_test(run, features, manifest, truth) if truth is not None else {}
                row = {**about, "inputs": inputs, "residual_logits": config.model.residual_logits, "select": select,
                       "seed": seed, "epoch": summary["epoch"], **f1, **cv, **test}
                rows.append(row)
                print(f"{name} {inputs:<10} {select:<10} seed {seed} (epoch {summary['epoch']}): "
                      + "  ".join(f"{k_} {v:.3f}" for k_, v in {**f1, **cv, **test}.items()), flush=True)
                pd.DataFrame(done + rows).to_csv(out / "results.csv", index=False)
    return rows


def curves_figure(runs: dict[str, str], path: str) -> None:
    """Per epoch, for each run: the cross-validation's pooled out-of-fold macro F1 and the validation macro F1,
    with the frame model's (and + smoothing's) score of each as dashed lines (the run's cv.csv, comparison.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    first = next(iter(runs.values()))
    cv_rows = pd.read_csv(Path(first) / "cv.csv", dtype={"fold": str}).query("fold == 'all'").set_index("stage")
    val_rows = pd.read_csv(Path(first) / "comparison.csv").set_index("stage")
    for ax, rows, title in ((axes[0], cv_rows, "cross-validation: 7 training videos, out-of-fold"),
                            (axes[1], val_rows, "Validation_Set: 2 videos")):
        for stage, style in (("frame model", "k--"), ("frame model + smoothing", "k:")):
            ax.axhline(rows.loc[stage, "macro_f1"], color=style[0], ls=style[1:], lw=1, label=stage)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("macro F1")
    for label, run in runs.items():
        curve = pd.read_csv(Path(run) / "cv" / "epochs.csv", dtype={"fold": str}).query("fold == 'all'")
        (line,) = axes[0].plot(curve["epoch"], curve["macro_f1"], label=label)
        best = curve["macro_f1"].idxmax()
        axes[0].plot(curve.loc[best, "epoch"], curve.loc[best, "macro_f1"], "o", color=line.get_color())
        metrics = pd.read_csv(Path(run) / "metrics.csv")
        axes[1].plot(metrics["epoch"], metrics["val_macro_f1"], color=line.get_color(), label=label)
    axes[0].legend(fontsize=7)
    fig.suptitle("temporal encoder per epoch (dot: the epoch --select cv keeps)", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def split_videos(features, manifest, split, truth) -> list:
    """The split's subjects with their features from ``features`` and their labels (Test_Set: from ``truth``,
    the test labels the manifest does not hold)."""
    import numpy as np

    from abawkit.features import open_video_features
    from abawkit.temporal.data import VideoFeatures

    out = []
    for vid in manifest.video_ids(split):
        f = open_video_features(features, vid)
        labels = np.asarray(truth[vid] if split == "Test_Set" else manifest.labels(vid), np.int64)
        out.append(VideoFeatures(vid, f["embeddings"], np.asarray(f["has_face"], bool), f["logits"], labels))
    return out


def score_test(run, features, manifest, truth) -> dict[str, float]:
    """``test <stage>``: macro F1 of each stage of the temporal run ``run`` on the Test_Set subjects of ``truth``."""
    from abawkit.postprocess import PostProcess
    from abawkit.temporal.model import load_temporal_model
    from abawkit.temporal.train import _probs, _report, stage_probs

    model, _ = load_temporal_model(Path(run) / "best.pt")
    post = PostProcess.load(Path(run) / "postprocess.json")
    smooth = PostProcess.load(Path(run) / "postprocess_frame_model.json")
    videos = split_videos(features, manifest, "Test_Set", truth)
    stages = stage_probs(videos, _probs(model, videos), post, smooth)
    return {f"test {name}": _report(videos, probs).macro_f1 for name, probs in stages.items()}


def summarize(table) -> None:
    """Means per (folds, eval model, inputs, residual) over frame models and seeds, and the encoder's gain."""
    table = table.copy()
    if "residual_logits" not in table:
        table["residual_logits"] = False
    if "select" not in table:
        table["select"] = "validation"
    keys = ["residual_logits", "folds", "eval_model", "inputs", "select"]
    n_models, seeds = table["frame_model"].nunique(), sorted(table["seed"].unique())
    print(f"\nmean over {n_models} frame model(s) x seeds {seeds} (validation macro F1; cv = out-of-fold training "
          f"videos)")
    table["encoder gain"] = table["+ temporal encoder"] - table["frame model"]
    table["encoder - smoothing"] = table["+ temporal encoder"] - table["frame model + smoothing"]
    means = table.drop(columns=["frame_model", "seed", "epoch"], errors="ignore")
    means = means.groupby(keys, sort=False).mean(numeric_only=True)
    print(means.round(3).to_string())
    wins = table.groupby(keys, sort=False)["encoder gain"].agg(lambda s: f"{int((s > 0).sum())}/{len(s)}")
    print("\nruns where the encoder beats the frame model:\n" + wins.to_string())

if __name__ == "__main__":
    main()
