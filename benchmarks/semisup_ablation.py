"""Ablation of the semi-supervised method on the demo data: few labels per class, an imbalanced unlabeled pool.

Rows: supervised, fixmatch, + self-adaptive thresholds, + debiasing, full (+ feedback), then the full method with
one of its corrections (docs/semisup.md, "Corrections") switched off at a time; each over several seeds. Columns:
final validation macro F1 (last checkpoint: nothing selected on validation), best over the evaluations, the recall
of the minority classes (Disgust, Fear), and the pseudo-labels' precision and mask rate over the unlabeled phase
(measured with the classes the demo knows of its unlabeled images; training never sees them). The last checkpoint
is also scored on the demo's four test subjects (their hidden labels, `--test-truth`; nothing is selected on them)
and on validation and test pooled: the demo's validation is two subjects, each class shown by one of them, so its
macro F1 moves by 0.05-0.09 between seeds; six subjects say more. A row that switches a correction off is also
compared with the row it switches it off from ("vs its full row"), and OUT/per_class.md gives each class's F1 and
predicted frames on validation and test: what a macro F1 difference is made of; OUT/paired.md each difference
with its 95% confidence interval over the seeds (paired t).

    PYTHONPATH=lib python benchmarks/semisup_ablation.py --seeds 0 1 2

The unlabeled pool: the Train_Set frames left out of the few-label split, the Train_Set frames without a label (both
stage 01's crops, `--crops`) and the demo's unlabeled faces as stage 01 aligned them (`--unlabeled-dir`:
`extract-faces --images`, notebook 01; the LFW faces are dropped there, no face is found in them). The row
"- aligned unlabeled faces" takes the raw folder instead (`--raw-unlabeled-dir`: loose renders and 25 px grayscale
LFW faces, another crop and partly another domain).

Three diagnostic rows change the default's debiasing: towards the pool's true class shares (like the oracle, it uses
the demo's classes of the pool), with DebiasPL's strength 1, and without its adaptive margin; two train FixMatch
and the default on the Train_Set frames alone, the renders left out: a pool whose class shares are the labels'
(docs/semisup.md, "Which prior?", "The renders left out", "DebiasPL's two parts"); one gives the default's student
DST's pseudo head ("A pseudo head"), one masks out its pseudo-labels Other ("Other"), one keeps them only from a
confidence of 0.99 ("Other, kept only when sure"), one adds DST's worst-case head ("A worst-case head"), one keeps
the feedback teacher from learning its own pseudo-labels ("A teacher that does not self-train").

Rows split over several processes (other --variants, other --out) are gathered with --merge; runs from before the
test columns get them with --rescore-test (from their last checkpoints, no training).

Needs the demo manifest and crops (notebooks 00 and 01, or `make demo`). Each run's result is appended to
OUT/runs.csv as it finishes (its pseudo-label curve to OUT/curves/), so an interrupted benchmark resumes where it
stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

ORACLE = "oracle: the pool's true labels"
#: the default full method (DEFAULT_WITH_PRIOR below), the row the diagnostic rows change one thing of
DEFAULT = "full, label prior, threshold floor 0.95"
POOL_PRIOR = "full, the pool's true class shares as prior, floor 0.95"
STRENGTH_1 = "full, label prior, floor 0.95, debias strength 1 (DebiasPL's)"
FIXMATCH_FRAMES = "fixmatch, Train_Set frames only"
DEFAULT_FRAMES = "full, label prior, floor 0.95, Train_Set frames only"
NO_MARGIN = "full, label prior, floor 0.95, no adaptive margin"
PSEUDO_HEAD = "full, label prior, floor 0.95, DST pseudo head"
NO_OTHER = "full, label prior, floor 0.95, no Other pseudo-labels"
STRICT_OTHER = "full, label prior, floor 0.95, Other from 0.99"
WORST_CASE = "full, label prior, floor 0.95, DST worst-case head"
NO_TEACHER_CONSISTENCY = "full, label prior, floor 0.95, teacher without self-training"
#: which unlabeled pool a row trains on: the Train_Set frames and the renders as stage 01 aligned them (every row but
#: those below), the raw renders and LFW faces instead of the aligned ones, or the Train_Set frames alone
ALIGNED, RAW, FRAMES = "aligned", "raw", "frames"
#: FreeMatch's self-adaptive threshold without our floor: the setting the rows below that name it were measured with
#: (the floor became 0.95 by default after them; docs/semisup.md, "Six subjects")
FREEMATCH = {"threshold_floor": 0.0}
#: what the default full method does with manifest labels: DebiasPL towards the class shares of the annotated
#: Train_Set frames (PRIOR: filled in by main; the few-label splits are class-balanced), the threshold floored at 0.95
DEFAULT_WITH_PRIOR = {"debias_prior": "PRIOR", "threshold_floor": 0.95}
#: the corrections (docs/semisup.md, "Corrections"), each switched off: SemiSupConfig overrides, TrainConfig
#: overrides, the unlabeled pool
FIXES_OFF: dict[str, tuple[dict, dict, str]] = {
    "aligned unlabeled faces": ({}, {}, RAW),
    "threshold init, ramp": ({"init_from_teacher": False, "lambda_u_ramp": 0}, {}, ALIGNED),
    "run-length debias m": ({"debias_momentum": 0.999}, {}, ALIGNED),
    "h fixes": ({"h_batch": "same", "feedback_baseline": 0.0}, {}, ALIGNED),
    "weak views in BN": ({"weak_in_student": False}, {}, ALIGNED),
    "colour": ({}, {"colour_aug": False}, ALIGNED),
}


def switched_off(prefix: str, semi: dict) -> dict[str, tuple[str, dict, dict, str]]:
    """The rows "<prefix> - <fix>": the full method with the SemiSupConfig overrides ``semi`` and one correction
    of FIXES_OFF switched off."""
    return {f"{prefix} - {fix}": ("full", {**semi, **off}, train, faces)
            for fix, (off, train, faces) in FIXES_OFF.items()}


OFF_FULL = switched_off("full", FREEMATCH)
OFF_DEFAULT = switched_off("full, label prior, floor 0.95", DEFAULT_WITH_PRIOR)
#: name -> (algorithm preset, SemiSupConfig overrides, TrainConfig overrides, unlabeled pool)
VARIANTS: dict[str, tuple[str, dict, dict, str]] = {
    "supervised": ("supervised", {}, {}, ALIGNED),
    "supervised - colour": ("supervised", {}, {"colour_aug": False}, ALIGNED),
    "fixmatch": ("fixmatch", {}, {}, ALIGNED),
    "+ self-adaptive threshold": ("fixmatch", {**FREEMATCH, "threshold": "self-adaptive"}, {}, ALIGNED),
    "+ debiasing": ("fixmatch", {**FREEMATCH, "threshold": "self-adaptive", "debias": True}, {}, ALIGNED),
    "full (+ feedback)": ("full", FREEMATCH, {}, ALIGNED),
    **OFF_FULL,
    "full + threshold floor 0.8": ("full", {"threshold_floor": 0.8}, {}, ALIGNED),
    "full + threshold floor 0.95": ("full", {"threshold_floor": 0.95}, {}, ALIGNED),
    "full, debiased towards the label prior": ("full", {**FREEMATCH, "debias_prior": "PRIOR"}, {}, ALIGNED),
    # the same with FixMatch's fixed threshold: what debiasing and feedback add to FixMatch
    "full, label prior, fixed threshold 0.95": ("full", {"debias_prior": "PRIOR", "threshold": "fixed"}, {}, ALIGNED),
    DEFAULT: ("full", DEFAULT_WITH_PRIOR, {}, ALIGNED),
    **OFF_DEFAULT,
    "fixmatch + debiasing towards the label prior": ("fixmatch", {"debias": True, "debias_prior": "PRIOR"}, {},
                                                     ALIGNED),
    "fixmatch + feedback teacher": ("full", {"threshold": "fixed", "debias": False}, {}, ALIGNED),
    # A diagnostic like the oracle: the default debiased towards the pool's true class shares (POOL: filled in by
    # run_ablation from the classes the demo knows) instead of the labels' (docs/semisup.md, "Which prior?")
    POOL_PRIOR: ("full", {**DEFAULT_WITH_PRIOR, "debias_prior": "POOL"}, {}, ALIGNED),
    # the default with DebiasPL's own strength tau_d = 1 instead of SPEC's 0.5 (docs/semisup.md, "Which prior?")
    STRENGTH_1: ("full", {**DEFAULT_WITH_PRIOR, "debias_strength": 1.0}, {}, ALIGNED),
    # the default's debiased pseudo-labels learnt with plain CE instead of DebiasPL's adaptive-margin loss: which of
    # DebiasPL's two parts costs on validation (docs/semisup.md, "DebiasPL's two parts")
    NO_MARGIN: ("full", {**DEFAULT_WITH_PRIOR, "debias_margin": False}, {}, ALIGNED),
    # the default whose student learns the pseudo-labels through DST's pseudo head, its classifier from the labels
    # alone (Chen et al., 2022): tried against the draws where self-training drifts from supervised training; it does
    # not help there, the drift is in the shared network (docs/semisup.md, "A pseudo head")
    PSEUDO_HEAD: ("full", {**DEFAULT_WITH_PRIOR, "pseudo_head": True}, {}, ALIGNED),
    # the default that never learns a pseudo-label Other, the catch-all class: lifts those draws, costs a little on
    # the others' test subjects (docs/semisup.md, "Other")
    NO_OTHER: ("full", {**DEFAULT_WITH_PRIOR, "pseudo_label_exclude": ("Other",)}, {}, ALIGNED),
    # between the two: a pseudo-label Other only when the teacher is sure of it; the best row on validation, level
    # with the default on val + test (docs/semisup.md, "Other, kept only when sure")
    STRICT_OTHER: ("full", {**DEFAULT_WITH_PRIOR, "pseudo_label_strict": ("Other",),
                            "pseudo_label_strict_floor": 0.99}, {}, ALIGNED),
    # the default with DST's worst-case head playing against the shared network through a gradient reversal layer:
    # the part of DST that acts on the embedding, where the drift the pseudo head left is (docs/semisup.md, "A
    # worst-case head")
    WORST_CASE: ("full", {**DEFAULT_WITH_PRIOR, "worst_case_head": True}, {}, ALIGNED),
    # the default whose feedback teacher learns from the labels and the feedback only, not from its own
    # pseudo-labels (teacher_consistency 0): does the teacher's self-training carry the label draw's lean further?
    # (docs/semisup.md, "A teacher that does not self-train")
    NO_TEACHER_CONSISTENCY: ("full", {**DEFAULT_WITH_PRIOR, "teacher_consistency": 0.0}, {}, ALIGNED),
    # FixMatch and the default on the Train_Set frames alone, the renders left out: a pool of the labeled videos'
    # frames, whose class shares are the labels' (Aff-Wild2's --unlabeled-frames; docs/semisup.md, "The renders
    # left out")
    FIXMATCH_FRAMES: ("fixmatch", {}, {}, FRAMES),
    DEFAULT_FRAMES: ("full", DEFAULT_WITH_PRIOR, {}, FRAMES),
    # The ceiling of any semi-supervised row: supervised training on the labeled frames plus the pool's images whose
    # class the demo knows, with their true labels (what perfect pseudo-labels at mask rate 1 would give).
    ORACLE: ("supervised", {}, {}, ALIGNED),
}
#: the row each "- X" row switches a correction off from (and the rows that change one part of the default;
#: the default on the Train_Set frames alone: FixMatch on them): the table's "vs its full row" column
SWITCHED_FROM = {"supervised - colour": "supervised", **dict.fromkeys(OFF_FULL, "full (+ feedback)"),
                 **dict.fromkeys([*OFF_DEFAULT, POOL_PRIOR, STRENGTH_1, NO_MARGIN, PSEUDO_HEAD, NO_OTHER, STRICT_OTHER,
                                  WORST_CASE, NO_TEACHER_CONSISTENCY],
                                 DEFAULT),
                 DEFAULT_FRAMES: FIXMATCH_FRAMES}
MINORITY = ("Disgust", "Fear")
#: what runs.csv keeps of each class on validation and test (<part>_<kind>_<class>): F1, predicted and true frames
PER_CLASS = ("f1", "pred", "true")


def few_label_split(manifest_dir: str, crops: str, out: Path, per_class: int) -> tuple[Path, Path, dict[str, int]]:
    """A labeled CSV with at most ``per_class`` Train_Set frames per class (spread over the videos), and a folder
    of links to every 3rd remaining Train_Set frame and every 3rd frame without a label: the unlabeled pool keeps
    the data's imbalance. Returns the CSV, the folder and the known class of each pool image (-1: unknown)."""
    from abawkit.manifest import load_manifest
    from abawkit.semisup.data import frames_from_manifest, unlabeled_frames_from_manifest

    manifest = load_manifest(manifest_dir)
    table = frames_from_manifest(manifest, crops, "Train_Set")
    table = table[~table["video_id"].isin(manifest.video_ids(holdout=True))]
    picked = [grp.iloc[np.linspace(0, len(grp) - 1, min(per_class, len(grp))).round().astype(int)]
              for _, grp in table.groupby("label")]
    labeled = pd.concat(picked)
    rest = table.drop(labeled.index).iloc[::3]
    out.mkdir(parents=True, exist_ok=True)
    labeled[["path", "label"]].assign(path=lambda d: d["path"].map(os.path.abspath)).to_csv(out / "labeled.csv",
                                                                                            index=False)
    pool = out / "unlabeled_train_frames"
    pool.mkdir(exist_ok=True)
    truth: dict[str, int] = {}
    unannotated = unlabeled_frames_from_manifest(manifest, crops, stride=3)
    for p, label in [*zip(rest["path"], rest["label"]), *((p, -1) for p in unannotated)]:
        truth[str(link_crop(pool, p))] = int(label)
    return out / "labeled.csv", pool, truth


def link_crop(pool: Path, path) -> Path:
    """A link ``pool/<video_id>_<frame>.jpg`` to the crop ``path`` (``<video_id>/<frame>.jpg``), made once."""
    link = pool / f"{Path(path).parent.name}_{Path(path).stem}.jpg"
    if not link.exists():
        link.symlink_to(os.path.abspath(path))
    return link


def test_video_pool(manifest_dir: str, crops: str, truth_dir: str, out: Path, stride: int = 3) -> tuple[Path, dict]:
    """A folder of links to every ``stride``-th crop of the manifest's Test_Set videos (new subjects: the opt-in
    transductive pool of ``train-frame --unlabeled-test-videos``) and their classes from ``truth_dir`` (the demo's
    test labels, used only to measure pseudo-label precision)."""
    from abawkit.annotations import load_label_folder
    from abawkit.manifest import load_manifest
    from abawkit.semisup.data import unlabeled_frames_from_manifest

    labels = load_label_folder(truth_dir) if Path(truth_dir).is_dir() else {}
    pool = out / "unlabeled_test_frames"
    pool.mkdir(parents=True, exist_ok=True)
    truth: dict[str, int] = {}
    for p in unlabeled_frames_from_manifest(load_manifest(manifest_dir), crops, ("Test_Set",), stride):
        known, frame = labels.get(Path(p).parent.name), int(Path(p).stem)
        truth[str(link_crop(pool, p))] = int(known[frame - 1]) if known is not None and frame <= len(known) else -1
    return pool, truth


def test_frames(manifest_dir: str, crops: str, truth_dir: str, stride: int = 2) -> pd.DataFrame:
    """Every ``stride``-th crop of the Test_Set videos with its class from ``truth_dir`` (columns path, label): a
    second held-out set, of the demo's four test subjects, to score the runs on (nothing is selected on it). Empty
    without the demo's test labels."""
    from abawkit.annotations import load_label_folder
    from abawkit.labels import IGNORE
    from abawkit.manifest import load_manifest
    from abawkit.crops import crop_frames, crop_path

    if not Path(truth_dir).is_dir():
        return pd.DataFrame(columns=["path", "label"])
    labels, rows = load_label_folder(truth_dir), []
    for vid in load_manifest(manifest_dir).video_ids("Test_Set"):
        if vid not in labels:
            continue
        frames = crop_frames(Path(crops), vid)
        frames = frames[(frames >= 1) & (frames <= labels[vid].size)]
        frames = frames[labels[vid][frames - 1] != IGNORE][::stride]
        rows += [(os.path.abspath(crop_path(Path(crops), vid, int(f))), int(labels[vid][f - 1])) for f in frames]
    return pd.DataFrame(rows, columns=["path", "label"])


def heldout_scores(checkpoint: Path, val: pd.DataFrame, test: pd.DataFrame | None = None) -> dict:
    """Macro F1 of the model in ``checkpoint`` (on the CPU) on ``val`` (``final_macro_f1``, with the report's
    ``confusion``) and, given ``test`` frames, on them (``test_macro_f1``) and on both pooled
    (``heldout_macro_f1``: the six held-out subjects of the demo), with per-class figures on ``val`` and ``test``
    (``per_class_scores``); one prediction pass."""
    import torch

    from abawkit.frame_model import load_frame_model
    from abawkit.metrics import f1_report
    from abawkit.semisup.train import predict

    model, _ = load_frame_model(checkpoint)
    both = pd.concat([val, test]) if test is not None and len(test) else val
    probs, y = predict(model, both[["path", "label"]], model.config, torch.device("cpu"))
    pred, n = probs.argmax(1), len(val)
    rep = f1_report(y[:n], pred[:n])
    scores = {"final_macro_f1": rep.macro_f1, "confusion": rep.confusion, **per_class_scores("val", rep)}
    if len(both) > n:
        test_rep = f1_report(y[n:], pred[n:])
        scores.update(test_macro_f1=test_rep.macro_f1, heldout_macro_f1=f1_report(y, pred).macro_f1,
                      **per_class_scores("test", test_rep))
    return scores


def per_class_columns(part: str, kind: str) -> list[str]:
    """The runs.csv columns ``<part>_<kind>_<class>`` of one PER_CLASS kind on ``part`` (val, test), in class
    order."""
    from abawkit.labels import CLASSES

    return [f"{part}_{kind}_{c}" for c in CLASSES]


def per_class_scores(part: str, rep) -> dict[str, float]:
    """Each class's F1, and its predicted and true frames, of an F1Report (``per_class_columns``)."""
    got = {"f1": rep.per_class_f1, "pred": rep.confusion.sum(0), "true": rep.confusion.sum(1)}
    return {col: float(v) for k in PER_CLASS for col, v in zip(per_class_columns(part, k), got[k])}


def rescore_test(dirs: list[Path], test: pd.DataFrame) -> None:
    """Add ``test_macro_f1``, ``heldout_macro_f1`` (the last checkpoint on ``test``, and on DIR/val.csv and ``test``
    pooled) and the per-class columns (``per_class_scores``) to every run of each DIR/runs.csv that lacks them
    (runs from before those columns)."""
    from abawkit.io import write_csv

    cols = ["test_macro_f1", "heldout_macro_f1",
            *(c for part in ("val", "test") for k in PER_CLASS for c in per_class_columns(part, k))]
    for d in dirs:
        runs, val = pd.read_csv(d / "runs.csv"), pd.read_csv(d / "val.csv")
        for c in cols:
            if c not in runs:
                runs[c] = np.nan
        for i, r in runs[runs[cols].isna().any(axis=1)].iterrows():
            ckpt = d / "runs" / f"{slug(r['variant'])}_s{int(r['seed'])}" / "last.pt"
            if ckpt.is_file():
                got = heldout_scores(ckpt, val, test)
                runs.loc[i, cols] = [got[c] for c in cols]
                print(f"{d.name} {r['variant']} s{int(r['seed'])}: val {got['final_macro_f1']:.3f} (recorded "
                      f"{r['final_macro_f1']:.3f}), test {got['test_macro_f1']:.3f}, held-out "
                      f"{got['heldout_macro_f1']:.3f}", flush=True)
        write_csv(d / "runs.csv", runs)


def slug(variant: str) -> str:
    """The folder name of a variant's runs."""
    return variant.replace(" ", "_").replace("+", "p").replace(",", "")


def render_truth(raw_dir: str, aligned_dir: str | None = None) -> dict[str, int]:
    """Known classes of the demo's unlabeled renders (render_truth/unlabeled_faces.csv; LFW faces: -1), for the raw
    files and for their aligned crops (through the index's ``source`` column of ``extract-faces --images``)."""
    path = Path(raw_dir).parent / "render_truth" / "unlabeled_faces.csv"
    if not path.is_file():
        return {}
    rows = pd.read_csv(path)
    by_name = dict(zip(rows["file"], rows["label"].astype(int)))
    truth = {str(Path(raw_dir) / f): c for f, c in by_name.items()}
    if aligned_dir:
        for index in (Path(aligned_dir).parent / "index").glob("*.csv"):
            table = pd.read_csv(index)
            for frame, source, face in zip(table["frame"], table["source"], table["has_face"]):
                if face:
                    crop = Path(aligned_dir) / index.stem / f"{int(frame):05d}.jpg"
                    truth[str(crop)] = by_name.get(Path(source).name, -1)
    return truth


class PseudoLabelLog:
    """The train hook: per step, the mask rate and the precision of the kept pseudo-labels whose class is known."""

    def __init__(self, truth: dict[str, int]):
        self.truth, self.rows = truth, []

    def __call__(self, step, paths, y_hat, mask):
        known = np.array([self.truth.get(p, -1) for p in paths])
        kept = (mask > 0) & (known >= 0)
        self.rows.append({"step": step, "mask_rate": float(mask.mean()), "n_kept_known": int(kept.sum()),
                          "n_correct": int((y_hat[kept] == known[kept]).sum()),
                          "all_precision": float((y_hat[known >= 0] == known[known >= 0]).mean())
                          if (known >= 0).any() else np.nan})

    def summary(self) -> dict[str, float]:
        if not self.rows:
            return {"pl_precision": np.nan, "mask_rate": np.nan}
        d = pd.DataFrame(self.rows)
        return {"pl_precision": d["n_correct"].sum() / max(d["n_kept_known"].sum(), 1),
                "mask_rate": d["mask_rate"].mean()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--unlabeled-dir", default="data/faces/demo_unlabeled/cropped_aligned",
                    help="the demo's unlabeled faces as stage 01 aligned them (notebook 01, make demo)")
    ap.add_argument("--raw-unlabeled-dir", default="data/demo/unlabeled_faces",
                    help="the same faces unaligned, with the LFW faces: the '- aligned unlabeled faces' row")
    ap.add_argument("--out", default="benchmarks/out/semisup_ablation")
    ap.add_argument("--per-class", type=int, default=25, help="labeled frames per class")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=48)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="VARIANT")
    ap.add_argument("--uratio", type=int, default=1, help="unlabeled images per labeled image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--input-norm", default="per-image", choices=["none", "per-image"],
                    help="per-crop standardization (default per-image, as the demo pipeline; docs/semisup.md)")
    ap.add_argument("--unlabeled-warmup", type=int, default=150,
                    help="supervised steps before the unlabeled parts start (semi-supervised variants)")
    ap.add_argument("--unlabeled-test-videos", action="store_true",
                    help="add every 3rd crop of the Test_Set videos to the unlabeled pool (new subjects; the "
                         "transductive opt-in of train-frame --unlabeled-test-videos); validation is unchanged")
    ap.add_argument("--test-truth", default="data/demo/test_ground_truth",
                    help="the demo's test labels: the runs' last checkpoints are scored on the Test_Set's four "
                         "subjects (column test macro F1; nothing is selected on it), and with "
                         "--unlabeled-test-videos the pseudo-labels' precision on those frames")
    ap.add_argument("--rescore-test", nargs="+", metavar="DIR",
                    help="train nothing: add the test and the val + test macro F1 and the per-class figures of the "
                         "last checkpoints to the runs of these --out folders that lack them (runs from before those "
                         "columns), then --merge them if given")
    ap.add_argument("--merge", nargs="+", metavar="DIR",
                    help="train nothing: gather the runs.csv and curves of these --out folders (e.g. two processes "
                         "with other --variants) into --out, and write its table.md, per_class.md, paired.md and "
                         "pseudo_labels.png")
    ap.add_argument("--merge-seeds", type=int, nargs="+", metavar="SEED",
                    help="with --merge: keep only the runs of these seeds (e.g. the seeds run after a setting was "
                         "chosen on others, reported apart)")
    args = ap.parse_args()
    if args.merge_seeds and not args.merge:
        ap.error("--merge-seeds needs --merge DIR...")
    if args.rescore_test or args.merge:
        if args.rescore_test:
            test = test_frames(args.manifest, args.crops, args.test_truth)
            if test.empty:
                ap.error(f"--rescore-test needs the test labels: no labelled Test_Set crop found with --test-truth "
                         f"{args.test_truth} and --crops {args.crops} (run make demo first)")
            rescore_test([Path(d) for d in args.rescore_test], test)
        if args.merge:
            merge(Path(args.out), [Path(d) for d in args.merge], args.merge_seeds)
        return

    from abawkit.manifest import load_manifest
    from abawkit.semisup.data import frames_from_manifest

    out = Path(args.out)
    labeled_csv, pool, truth = few_label_split(args.manifest, args.crops, out, args.per_class)
    truth.update(render_truth(args.raw_unlabeled_dir, args.unlabeled_dir))
    manifest = load_manifest(args.manifest)
    val = frames_from_manifest(manifest, args.crops, "Validation_Set", 2)
    extra: tuple = ()
    if args.unlabeled_test_videos:
        test_pool, test_truth = test_video_pool(args.manifest, args.crops, args.test_truth, out)
        truth.update(test_truth)
        extra = (test_pool,)
    train_labels = frames_from_manifest(manifest, args.crops, "Train_Set")["label"]
    prior = class_shares(train_labels)
    run_ablation(out, labeled_csv, val[["path", "label"]], (pool, args.unlabeled_dir, *extra),
                 (pool, args.raw_unlabeled_dir, *extra),
                 truth, args.variants, args.seeds,
                 dict(image_size=args.image_size, steps=args.steps, batch_size=args.batch_size,
                      input_norm=args.input_norm),
                 dict(uratio=args.uratio, unlabeled_warmup=args.unlabeled_warmup), args.threads, prior,
                 test_frames(args.manifest, args.crops, args.test_truth))


def run_ablation(out: Path, labeled_csv: Path, val: pd.DataFrame, pool: tuple, raw_pool: tuple | None,
                 truth: dict[str, int], variants: list[str], seeds: list[int], train_settings: dict,
                 semi_settings: dict, threads: int = 2, prior: tuple[float, ...] = (),
                 test: pd.DataFrame | None = None) -> str:
    """Train every (seed, variant) not yet in OUT/runs.csv, score its last checkpoint on ``val`` (path, label), and
    write OUT/table.md; returns the table. ``pool``: the unlabeled folders, the Train_Set frames' first (the rows on
    FRAMES take that one alone); ``raw_pool``: those of the rows that take the raw faces (None: no such row).
    ``truth`` maps unlabeled image paths to their class (-1: unknown).
    ``prior``: the class shares a row's ``debias_prior: "PRIOR"`` stands for (its row is skipped without them).
    ``test`` (path, label): a second held-out set the last checkpoint is scored on too (none: not scored)."""
    import torch

    from abawkit.io import write_csv
    from abawkit.labels import CLASSES
    from abawkit.semisup.config import TrainConfig, preset
    from abawkit.semisup.train import train

    torch.set_num_threads(threads)
    val_csv = out / "val.csv"
    val.assign(path=lambda d: d["path"].map(os.path.abspath)).to_csv(val_csv, index=False)
    done_path = out / "runs.csv"
    done = pd.read_csv(done_path) if done_path.is_file() else pd.DataFrame(columns=["variant", "seed"])
    rows = done.to_dict("records")
    (out / "curves").mkdir(parents=True, exist_ok=True)
    known = {str(Path(k).absolute()): v for k, v in truth.items()}
    steps = train_settings["steps"]
    for seed in seeds:
        for name in variants:
            if ((done["variant"] == name) & (done["seed"] == seed)).any():
                continue
            algorithm, semi_over, train_over, faces = VARIANTS[name]
            dirs = {ALIGNED: pool, RAW: raw_pool, FRAMES: pool[:1]}[faces]
            if dirs is None:  # a raw row where there are no raw faces (digits)
                continue
            if semi_over.get("debias_prior") == "PRIOR":
                if not prior:
                    continue
                semi_over = {**semi_over, "debias_prior": prior}
            if semi_over.get("debias_prior") == "POOL":
                semi_over = {**semi_over, "debias_prior": class_shares(pool_known(dirs, known)["label"])}
            labeled = oracle_csv(out, labeled_csv, dirs, known) if name == ORACLE else labeled_csv
            cfg = TrainConfig(out_dir=str(out / "runs" / f"{slug(name)}_s{seed}"), labeled_csv=str(labeled),
                              unlabeled_dirs=tuple(str(d) for d in dirs), val_csv=str(val_csv),
                              eval_every=max(1, steps // 5),
                              ckpt_every=steps, warmup_steps=max(1, steps // 10), workers=0, seed=seed,
                              progress=False, semisup=preset(algorithm, **semi_settings, **semi_over),
                              **{**train_settings, **train_over})
            log = PseudoLabelLog(known)
            t0 = time.time()
            res = train(cfg, on_pseudo_labels=lambda s, p, y, m: log(s, [str(Path(q).absolute()) for q in p], y, m))
            got = heldout_scores(Path(cfg.out_dir) / "last.pt", val, test)
            confusion = got.pop("confusion")
            recall = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
            if log.rows:
                write_csv(out / "curves" / f"{slug(name)}_s{seed}.csv", pd.DataFrame(log.rows))
            row = {"variant": name, "seed": seed, **got, "best_macro_f1": res.best_val_macro_f1,
                   "minority_recall": float(np.mean([recall[CLASSES.index(c)] for c in MINORITY])),
                   **log.summary(), "seconds": time.time() - t0, "train_img_per_s": res.train_images_per_s}
            print(row, flush=True)
            rows.append(row)
            write_csv(done_path, pd.DataFrame(rows))
    return report(out, pd.DataFrame(rows))


def report(out: Path, runs: pd.DataFrame) -> str:
    """Print and write OUT/table.md of ``runs``, OUT/per_class.md and OUT/paired.md, draw OUT/pseudo_labels.png;
    returns the table."""
    table = summarize(runs, list(VARIANTS))
    print(table)
    (out / "table.md").write_text(table)
    (out / "per_class.md").write_text(per_class_table(runs, list(VARIANTS)))
    (out / "paired.md").write_text(paired_table(runs, list(VARIANTS)))
    plot_pseudo_labels(out)
    return table


def merge(out: Path, sources: list[Path], seeds: list[int] | None = None) -> str:
    """OUT/runs.csv, OUT/curves/, OUT/table.md and OUT/pseudo_labels.png from the results of ``sources``, of the
    runs of ``seeds`` only where given."""
    import shutil

    from abawkit.io import write_csv

    if out.resolve() in {d.resolve() for d in sources}:
        raise SystemExit(f"--out {out} is one of the --merge folders: give the merge a folder of its own (its "
                         "runs.csv would replace that folder's)")
    (out / "curves").mkdir(parents=True, exist_ok=True)
    runs = pd.concat([pd.read_csv(d / "runs.csv") for d in sources]).drop_duplicates(["variant", "seed"], keep="last")
    if seeds:
        runs = runs[runs["seed"].isin(seeds)]
    kept = {f"{slug(v)}_s{s}.csv" for v, s in zip(runs["variant"], runs["seed"])}
    for curve in (c for d in sources for c in (d / "curves").glob("*.csv") if c.name in kept):
        shutil.copyfile(curve, out / "curves" / curve.name)
    write_csv(out / "runs.csv", runs)
    return report(out, runs)


def class_shares(labels) -> tuple[float, ...]:
    """The share of each class among ``labels`` (class indices), one float per class."""
    from abawkit.labels import NUM_CLASSES

    counts = np.bincount(np.asarray(labels, dtype=int), minlength=NUM_CLASSES)
    return tuple(float(v) for v in counts / counts.sum())


def pool_known(pool: tuple, known: dict[str, int]) -> pd.DataFrame:
    """The images of the ``pool`` folders whose class ``known`` holds (path, label)."""
    roots = tuple(str(Path(d).absolute()) + os.sep for d in pool)
    return pd.DataFrame([(p, c) for p, c in known.items() if c >= 0 and p.startswith(roots)],
                        columns=["path", "label"])


def oracle_csv(out: Path, labeled_csv: Path, pool: tuple, known: dict[str, int]) -> Path:
    """OUT/oracle.csv: the labeled CSV plus every image of the ``pool`` folders whose class ``known`` holds."""
    path = out / "oracle.csv"
    pd.concat([pd.read_csv(labeled_csv), pool_known(pool, known)]).to_csv(path, index=False)
    return path


def plot_pseudo_labels(out: Path, every: int = 25) -> Path | None:
    """OUT/pseudo_labels.png: per variant, the mask rate and the precision of the kept pseudo-labels over the
    unlabeled phase (bins of ``every`` steps, pooled over the seeds), from OUT/curves/*.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = sorted((out / "curves").glob("*_s*.csv"))
    if not curves:
        return None
    fig, (ax_m, ax_p) = plt.subplots(1, 2, figsize=(11, 4))
    by_variant: dict[str, list[pd.DataFrame]] = {}
    for path in curves:
        by_variant.setdefault(path.stem.rsplit("_s", 1)[0], []).append(pd.read_csv(path))
    for name, frames in by_variant.items():
        d = pd.concat(frames).assign(bin=lambda t: t["step"] // every * every)
        g = d.groupby("bin").agg(mask=("mask_rate", "mean"), kept=("n_kept_known", "sum"), ok=("n_correct", "sum"))
        ax_m.plot(g.index, g["mask"], label=name)
        ax_p.plot(g.index, g["ok"] / g["kept"].clip(lower=1), label=name)
    ax_m.set(xlabel="step", ylabel="mask rate", title="pseudo-labels kept")
    ax_p.set(xlabel="step", ylabel="precision", title="precision of the kept pseudo-labels (known classes)")
    ax_p.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pseudo_labels.png", dpi=110)
    plt.close(fig)
    return out / "pseudo_labels.png"


#: a run's held-out scores in runs.csv, and their label in the tables: validation, test, both pooled
SCORES = (("final_macro_f1", "val"), ("test_macro_f1", "test"), ("heldout_macro_f1", "val + test"))


def scored(runs: pd.DataFrame) -> list[tuple[str, str]]:
    """The SCORES that ``runs`` hold (test and val + test only where runs were scored there)."""
    return [(c, label) for c, label in SCORES if c in runs and runs[c].notna().any()]


def same_seeds(runs: pd.DataFrame, name: str, base: str, col: str) -> pd.DataFrame:
    """Score ``col`` of the variants ``name`` (column row) and ``base`` (column base) on the seeds both have it."""
    of = lambda v: runs[runs["variant"] == v].set_index("seed")[col]
    return pd.concat([of(name), of(base)], axis=1, keys=["row", "base"]).dropna()


def summarize(runs: pd.DataFrame, order: list[str]) -> str:
    """Markdown table of mean ± std over seeds, in variant order, the final F1 of each seed, its mean difference to
    supervised training and to FixMatch on the same seeds, and the seeds it beats each on; the same on the test
    subjects and on validation and test pooled, where the runs were scored there; a row that switches a correction
    off, the same differences to the row it switches it off from (``SWITCHED_FROM``)."""
    extra = scored(runs)[1:]
    metrics = ["final_macro_f1", *(c for c, _ in extra)]
    head = ["variant", "seeds", "final val macro F1", "per seed", "vs supervised (seeds above)",
            "vs fixmatch (seeds above)"]
    for _, label in extra:
        head += [f"{label} macro F1", f"{label}: vs supervised; vs fixmatch"]
    head += ["vs its full row: " + "; ".join(["val", *(label for _, label in extra)]),
             "best val macro F1", "minority recall (Disgust, Fear)", "pseudo-label precision", "mask rate", "s/run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def versus(name: str, base: str, col: str) -> str:
        both = same_seeds(runs, name, base, col)
        if name == base or both.empty:
            return "–"
        diff = both["row"] - both["base"]
        return f"{diff.mean():+.3f} ({int((diff > 0).sum())}/{len(diff)})"

    for name in order:
        r = runs[runs["variant"] == name].sort_values("seed")
        if r.empty:
            continue
        f = lambda c: f"{r[c].mean():.3f} ± {r[c].std(ddof=0):.3f}" if r[c].notna().any() else "–"
        cells = [name, str(len(r)), f("final_macro_f1"), " / ".join(f"{v:.3f}" for v in r["final_macro_f1"]),
                 versus(name, "supervised", "final_macro_f1"), versus(name, "fixmatch", "final_macro_f1")]
        for c, _ in extra:
            cells += [f(c), f"{versus(name, 'supervised', c)}; {versus(name, 'fixmatch', c)}"]
        cells += ["; ".join(versus(name, SWITCHED_FROM[name], c) for c in metrics) if name in SWITCHED_FROM else "–",
                  f("best_macro_f1"), f("minority_recall"), f("pl_precision"), f("mask_rate"),
                  f"{r['seconds'].mean():.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(runs: pd.DataFrame, order: list[str]) -> str:
    """Markdown: each row against supervised training, FixMatch and the row it switches a correction off from (those
    above it in ``order``), on the seeds both ran: the mean difference of the final macro F1 on validation, test and
    val + test with its 95% confidence interval and the two-sided p of a paired t-test (scipy.stats.ttest_rel), and
    the seeds above. The seed-to-seed spread of a row (0.03-0.09 on the demo's faces) is what decides whether a
    difference means anything; this says it in one cell."""
    from scipy.stats import ttest_rel

    metrics = scored(runs)
    head = ["variant", "against", "seeds", *(f"{label}: mean difference [95% CI], p, seeds above"
                                             for _, label in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ran = set(runs["variant"])
    for name in order:
        if name not in ran:
            continue
        for base in dict.fromkeys(("supervised", "fixmatch", SWITCHED_FROM.get(name))):
            # each pair once: a row against the rows above it
            if base is None or base not in ran or order.index(base) >= order.index(name):
                continue
            cells = []
            for col, _ in metrics:
                both = same_seeds(runs, name, base, col)
                diff = both["row"] - both["base"]
                if len(both) < 2:
                    cells.append("–")
                    continue
                res = ttest_rel(both["row"], both["base"])
                lo, hi = res.confidence_interval(0.95)
                cells.append(f"{diff.mean():+.3f} [{lo:+.3f}, {hi:+.3f}], p {res.pvalue:.2f}, "
                             f"{int((diff > 0).sum())}/{len(diff)}")
            seeds = len(same_seeds(runs, name, base, "final_macro_f1"))
            lines.append(f"| {name} | {base} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def per_class_table(runs: pd.DataFrame, order: list[str]) -> str:
    """Markdown: per variant, the mean over seeds of each class's F1 on validation and on the test subjects, and of
    the frames predicted as each class (first line: the true frames), where the runs were scored per class
    (``--rescore-test`` adds it to older runs); what a macro F1 difference is made of. Each validation class is
    shown by one subject, so one subject's frames move a cell."""
    from abawkit.labels import CLASSES

    lines = []
    for part, title in (("val", "validation"), ("test", "the test subjects")):
        for kind, what in (("f1", "F1 per class"), ("pred", "Frames predicted per class")):
            cols = per_class_columns(part, kind)
            scored = runs.dropna(subset=cols) if set(cols) <= set(runs) else runs.iloc[:0]
            if scored.empty:
                continue
            lines += [f"{what} on {title} (mean over seeds)", "",
                      "| variant | seeds | " + " | ".join(CLASSES) + " |", "|" + "---|" * (len(CLASSES) + 2)]
            if kind == "pred":
                truth = scored[per_class_columns(part, "true")].iloc[0]
                lines.append("| (true frames) | – | " + " | ".join(f"{v:.0f}" for v in truth) + " |")
            for name in order:
                r = scored[scored["variant"] == name]
                if not r.empty:
                    lines.append(f"| {name} | {len(r)} | " + " | ".join(
                        f"{r[c].mean():.3f}" if kind == "f1" else f"{r[c].mean():.1f}" for c in cols) + " |")
            lines.append("")
    return "\n".join(lines) or "no run was scored per class\n"


if __name__ == "__main__":
    main()
