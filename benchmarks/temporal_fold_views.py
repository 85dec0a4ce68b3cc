"""Does an encoder trained on cross-fitted features meet the same kind of features at validation and test time?

Its training videos' features come from the K fold models (each video from the model that did not see it); the
validation and test videos' from the model on every training video (``--eval-model full``). For each temporal
run given, this scores the encoder on the validation and test subjects with the features of the full model, of
each fold model alone (the same kind of model it trained on, also unseen by it), and the mean of its
probabilities over the K fold models' features (+ the run's post-processing); and, for reference, the frame model:
the full model's logits and the mean of the fold models' softmax.

    for k in 0 1 2; do abawkit extract-features --checkpoint runs/demo_crossfit/frame_model/fold_$k/best.pt \\
        --workers 0 --out benchmarks/out/fold_views/s0_fold$k; done
    PYTHONPATH=lib python benchmarks/temporal_fold_views.py --features runs/demo_crossfit/features \\
        --fold-features benchmarks/out/fold_views/s0_fold{0,1,2} \\
        --runs benchmarks/out/temporal_select/zero_embeddings/f0_embeddings_cv_seed{0,1,2}

Prints one row per run and split (docs/temporal.md "Choosing the encoder's epoch").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from temporal_crossfit import split_videos  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="the cross-fitted feature folder the runs trained on")
    ap.add_argument("--fold-features", nargs="+", required=True,
                    help="one feature folder per fold model (abawkit extract-features --checkpoint fold_k/best.pt)")
    ap.add_argument("--runs", nargs="+", required=True, help="temporal run folders (abawkit train-temporal)")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--truth", default="data/demo/test_ground_truth", help="test labels")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from abawkit.annotations import load_label_folder
    from abawkit.manifest import load_manifest
    from abawkit.postprocess import PostProcess
    from abawkit.temporal.model import load_temporal_model
    from abawkit.temporal.predict import softmax
    from abawkit.temporal.train import _probs, _report

    manifest = load_manifest(args.manifest)
    truth = load_label_folder(args.truth)
    splits = {split: {"full": split_videos(args.features, manifest, split, truth),
                      "folds": [split_videos(d, manifest, split, truth) for d in args.fold_features]}
              for split in ("Validation_Set", "Test_Set")}
    rows = []
    for split, views in splits.items():
        full, folds = views["full"], views["folds"]
        frame_mean = [np.mean([softmax(np.asarray(fold[i].logits)) for fold in folds], axis=0)
                      for i in range(len(full))]
        reference = {"frame model (full)": _report(full, [softmax(np.asarray(v.logits)) for v in full]).macro_f1,
                     "frame model (mean of folds)": _report(full, frame_mean).macro_f1}
        for run in args.runs:
            model, _ = load_temporal_model(Path(run) / "best.pt")
            post = PostProcess.load(Path(run) / "postprocess.json")
            row = {"run": str(Path(run).relative_to(Path(run).parents[1])), "split": split, **reference,
                   "encoder on full": _report(full, _probs(model, full)).macro_f1}
            per_fold = [_probs(model, fold) for fold in folds]
            for k, (fold, probs) in enumerate(zip(folds, per_fold)):
                row[f"encoder on fold {k}"] = _report(fold, probs).macro_f1
            mean = [np.mean([p[i] for p in per_fold], axis=0) for i in range(len(full))]
            row["encoder, mean over folds"] = _report(full, mean).macro_f1
            row["  + post-processing"] = _report(full, [post.apply(p, v.has_face) for p, v in zip(mean, full)]).macro_f1
            rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
