"""Where the frames of one true class go: the confusion rows of semisup_ablation runs on the demo's held-out subjects.

For every run folder given (``last.pt``, the checkpoint the ablation scores), the predictions on the demo's four
test subjects (``test``: every second annotated crop of the Test_Set videos, the labels of --test-truth, as the
ablation's test column) or on its validation frames (``val``: OUT/val.csv of the run's ablation folder), and for
each class of --classes the row of the confusion matrix: how many of its frames each class was predicted as. The
rows are also written to --csv when given. The demo's hidden labels are used only to measure.

    PYTHONPATH=lib python benchmarks/semisup_confusion.py --classes Happiness \\
        --runs benchmarks/out/semisup_pc4L_fresh14/runs/*_s14 benchmarks/out/semisup_pc4L_fresh10/runs/*_s10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semisup_ablation import heldout_scores, test_frames  # noqa: E402


def confusion_rows(run: Path, frames: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The confusion rows of ``classes`` of ``run``/last.pt on ``frames`` (path, label), scored as the ablation
    scores its validation (``heldout_scores``): one row per class, a column per predicted class, plus the run's
    name and the class's F1."""
    from abawkit.labels import CLASSES

    scores = heldout_scores(run / "last.pt", frames)
    rows = pd.DataFrame(scores["confusion"], index=list(CLASSES), columns=list(CLASSES)).loc[classes]
    rows.insert(0, "f1", [scores[f"val_f1_{c}"] for c in classes])
    rows.insert(0, "true", classes)
    rows.insert(0, "run", run.name)
    return rows.reset_index(drop=True)


def main() -> None:
    from abawkit.labels import CLASSES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, type=Path, help="run folders of semisup_ablation (last.pt)")
    ap.add_argument("--set", default="test", choices=["test", "val"],
                    help="test: the demo's four test subjects; val: the ablation folder's val.csv")
    ap.add_argument("--classes", nargs="+", default=list(CLASSES), choices=list(CLASSES), metavar="CLASS")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--test-truth", default="data/demo/test_ground_truth")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--csv", type=Path, help="also write the rows here")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    missing = [str(r) for r in args.runs if not (r / "last.pt").is_file()]
    if missing:
        sys.exit(f"no last.pt in {', '.join(missing)}: give run folders of benchmarks/semisup_ablation.py")
    test = test_frames(args.manifest, args.crops, args.test_truth) if args.set == "test" else None
    if test is not None and test.empty:
        sys.exit(f"no test frames: needs the demo's test labels in {args.test_truth} and --crops {args.crops} "
                 "(run make demo first)")
    vals: dict[Path, pd.DataFrame] = {}  # each ablation folder's val.csv, read once for all its runs
    tables = []
    for run in args.runs:
        if test is None and run.parent.parent not in vals:
            vals[run.parent.parent] = pd.read_csv(run.parent.parent / "val.csv")
        frames = test if test is not None else vals[run.parent.parent]
        tables.append(confusion_rows(run, frames, args.classes))
    rows = pd.concat(tables, ignore_index=True)
    pd.set_option("display.width", 200)
    print(rows.to_string(index=False, float_format=lambda f: f"{f:.3f}"))
    if args.csv:
        from abawkit.io import atomic_path

        with atomic_path(args.csv) as tmp:
            rows.to_csv(tmp, index=False)


if __name__ == "__main__":
    main()
