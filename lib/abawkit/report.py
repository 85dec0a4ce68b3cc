"""Figures and tables of the final report (validation F1 per class, confusion, timelines, stage comparison, runs),
and the figures of the stage notebooks 00 (manifest), 04 (frame features) and 05 (temporal encoder).

Every required input of the report is checked first; a missing one is an error naming the file and the stage that
writes it. ``build_report`` draws everything and saves the figures (PNG) and tables (CSV) into one output folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping

import numpy as np
import pandas as pd
import tyro

from .errors import UserError
from .io import atomic_path, write_csv
from .labels import CLASSES, IGNORE, NUM_CLASSES
from .metrics import F1Report, f1_report

VALIDATION_SPLIT = "Validation_Set"
#: One colour per class (index order), grey for frames without a label: the same in every figure.
CLASS_COLORS = ("#9e9e9e", "#d62728", "#8c564b", "#9467bd", "#ffbf00", "#1f77b4", "#17becf", "#2ca02c")
UNLABELED_COLOR = "#ffffff"
#: One colour per split in the figures of notebook 00.
SPLIT_COLORS = {"Train_Set": "C0", "Validation_Set": "C1", "Test_Set": "C2"}


@dataclass(frozen=True)
class ReportConfig:
    """The final report of a run: validation F1 per class, confusion, timelines, what each stage adds, and the
    leaderboard of the runs beside it. Writes OUT/f1_per_class.png, confusion.png, timelines.png,
    comparison.png, per_class.csv, per_video.csv, comparison.csv and leaderboard.csv."""

    manifest_dir: Annotated[str, tyro.conf.arg(name="manifest", metavar="DIR")] = "data_manifests/demo"
    """manifest (notebook 00): validation labels"""
    temporal_dir: Annotated[str, tyro.conf.arg(name="temporal", metavar="DIR")] = "runs/demo/temporal"
    """temporal run (notebook 06): comparison.csv"""
    predictions_dir: Annotated[str, tyro.conf.arg(name="predictions", metavar="DIR")] = "runs/demo/predictions"
    """per-video predictions (notebook 07)"""
    runs_root: Annotated[str | None, tyro.conf.arg(name="runs", metavar="DIR")] = "runs"
    """folder of runs (<name>/run.json) for the leaderboard; None: no leaderboard"""
    report_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/report"
    """figures (PNG) and tables (CSV) of the report are saved here"""
    max_timelines: int = 6
    """validation videos drawn as timelines"""

    def __post_init__(self) -> None:
        if self.max_timelines < 1:
            raise ValueError(f"max_timelines must be >= 1 (got {self.max_timelines})")


class ReportError(UserError, FileNotFoundError):
    """A required input of the report is missing; the message names the file and the stage that writes it."""


def _require(path: Path, what: str, stage: str) -> Path:
    if not path.exists():
        raise ReportError(f"{path} is missing ({what}); it is written by {stage}: run that stage first "
                          f"(abawkit run pipelines/demo.yaml --from {stage.split()[0]})")
    return path


# ----------------------------------------------------------------------------------------------------------
# Inputs


@dataclass
class ValidationResult:
    """Truth and post-processed predictions of the validation subjects, concatenated and per video."""

    truth: dict[str, np.ndarray]
    pred: dict[str, np.ndarray]
    report: F1Report = field(init=False)

    def __post_init__(self) -> None:
        vids = list(self.truth)
        y_true = np.concatenate([self.truth[v] for v in vids]) if vids else np.zeros(0, int)
        y_pred = np.concatenate([self.pred[v] for v in vids]) if vids else np.zeros(0, int)
        self.report = f1_report(y_true, y_pred)

    def per_video(self) -> pd.DataFrame:
        """Macro F1, frames and accuracy of each validation subject."""
        rows = []
        for vid in self.truth:
            t, p = self.truth[vid], self.pred[vid]
            keep = t != IGNORE
            rows.append({"video_id": vid, "frames": int(t.size), "labeled": int(keep.sum()),
                         "accuracy": float((t[keep] == p[keep]).mean()) if keep.any() else float("nan"),
                         "macro_f1": f1_report(t, p).macro_f1})
        return pd.DataFrame(rows)


def load_validation(manifest_dir: str | os.PathLike, predictions_dir: str | os.PathLike,
                    split: str = VALIDATION_SPLIT) -> ValidationResult:
    """Labels of the split's subjects (from the manifest) beside the argmax of their saved predictions."""
    from .manifest import load_manifest
    from .predictions import load_video_predictions

    manifest_dir, predictions_dir = Path(manifest_dir), Path(predictions_dir)
    _require(manifest_dir / "videos.csv", "the manifest", "00_manifests (stage manifests)")
    _require(predictions_dir, "the per-video predictions", "07_submission (stage submission)")
    manifest = load_manifest(manifest_dir)
    ids = manifest.video_ids(split)
    if not ids:
        raise ReportError(f"the manifest {manifest_dir} has no subject in {split}; the report scores that split")
    truth, pred = {}, {}
    for vid in ids:
        _require(predictions_dir / f"{vid}.npz", f"predictions of {vid}", "07_submission (stage submission)")
        probs = load_video_predictions(predictions_dir, vid)["probs"]
        labels = manifest.labels(vid)
        if len(probs) != len(labels):
            raise ReportError(f"{predictions_dir / (vid + '.npz')} has {len(probs)} frames but the manifest "
                              f"annotates {len(labels)}; re-run the submission stage with this manifest")
        truth[vid], pred[vid] = labels, probs.argmax(axis=1).astype(np.int64)
    return ValidationResult(truth, pred)


def load_comparison(temporal_dir: str | os.PathLike) -> pd.DataFrame:
    """The stage comparison (frame model, + temporal encoder, + post-processing) on the validation set."""
    path = _require(Path(temporal_dir) / "comparison.csv", "the stage comparison table",
                    "06_temporal_encoder (stage temporal)")
    from .readers import read_csv

    table = read_csv(path, "the stage comparison table (CSV)", "re-run 06_temporal_encoder (stage temporal)")
    expected = ["stage", "macro_f1", *CLASSES]
    missing = [c for c in expected if c not in table.columns]
    if missing:
        raise ReportError(f"{path} lacks the column(s) {missing}; expected {','.join(expected)}")
    return table[expected]


def _result_time(rec: dict) -> str:
    """When the run's results were produced: the last stage end (a re-run that skipped everything keeps it)."""
    ends = [str(e.get("ended")) for e in (rec.get("stages") or {}).values() if isinstance(e, dict) and e.get("ended")]
    return max(ends) if ends else str(rec.get("ended") or rec.get("started") or "")


def leaderboard(runs_root: str | os.PathLike) -> pd.DataFrame:
    """One row per run record ``<runs_root>/*/run.json``: run, date, commit, status, and every key metric.

    Optional by design: no runs yet gives an empty table. Sorted by the final validation macro F1 when a run
    reports one (``val_macro_f1``), best first.
    """
    rows = []
    for path in sorted(Path(runs_root).glob("*/run.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a run being written or broken: not a leaderboard row
        if not isinstance(rec, dict) or "stages" not in rec:
            continue
        row: dict[str, Any] = {"run": path.parent.name, "pipeline": (rec.get("pipeline") or {}).get("name"),
                               "date": _result_time(rec)[:16].replace("T", " "),
                               "commit": (rec.get("git_commit") or "")[:10], "status": rec.get("status")}
        for stage in (rec.get("stages") or {}).values():
            for key, value in (stage.get("metrics") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    row[key] = value  # later stages override earlier ones: the final figure wins
        rows.append(row)
    table = pd.DataFrame(rows, columns=["run", "pipeline", "date", "commit", "status"] if not rows else None)
    if "val_macro_f1" in table.columns:
        table = table.sort_values("val_macro_f1", ascending=False, na_position="last").reset_index(drop=True)
    return table


# ----------------------------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects, no pyplot state: they show inline and save the same)


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def f1_bars_figure(report: F1Report, title: str = "Validation F1 per class"):
    fig = _figure((8, 3.2))
    ax = fig.add_subplot()
    bars = ax.bar(list(CLASSES), report.per_class_f1, color=CLASS_COLORS, edgecolor="black", linewidth=0.5)
    ax.axhline(report.macro_f1, color="black", linestyle="--", linewidth=1, label=f"macro F1 {report.macro_f1:.3f}")
    ax.axhline(1 / NUM_CLASSES, color="grey", linestyle=":", linewidth=1, label="chance 0.125")
    for bar, value in zip(bars, report.per_class_f1):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1")
    ax.set_title(f"{title} ({report.n_frames} frames)")
    ax.legend(loc="upper right", fontsize=8)
    return fig


def confusion_figure(report: F1Report, normalize: bool = True, title: str = "Validation confusion"):
    """Heatmap, rows truth, columns prediction; normalized per true class (counts written in the cells)."""
    cm = report.confusion.astype(float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    fig = _figure((5.6, 4.8))
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(NUM_CLASSES), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(NUM_CLASSES), CLASSES)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.grid(False)
    for i in range(NUM_CLASSES):
        for j in range(NUM_CLASSES):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if shown[i, j] > 0.5 * np.nanmax(shown) else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of true class" if normalize else "frames")
    ax.set_title(title)
    return fig


def timelines_figure(truth: Mapping[str, np.ndarray], pred: Mapping[str, np.ndarray], max_videos: int = 6,
                     title: str = "Truth vs prediction over time"):
    """Two colour bands per video (truth above, prediction below); white where a frame has no label."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    vids = list(truth)[:max_videos]
    cmap = ListedColormap([UNLABELED_COLOR, *CLASS_COLORS])  # value 0 = unlabeled, 1..8 = classes
    fig = _figure((10, 0.9 * max(1, len(vids)) + 0.9))
    axes = fig.subplots(max(1, len(vids)), 1, squeeze=False)[:, 0]
    for ax, vid in zip(axes, vids):
        t = np.asarray(truth[vid]) + 1
        p = np.asarray(pred[vid]) + 1
        ax.imshow(np.stack([t, p]), aspect="auto", cmap=cmap, vmin=0, vmax=NUM_CLASSES, interpolation="nearest")
        ax.set_yticks([0, 1], ["truth", "pred"], fontsize=8)
        ax.set_title(vid, fontsize=9, loc="left")
        ax.grid(False)
    axes[-1].set_xlabel("frame")
    fig.legend(handles=[Patch(color=c, label=n) for n, c in zip(CLASSES, CLASS_COLORS)], loc="outside lower center",
               ncol=NUM_CLASSES, fontsize=8)
    fig.suptitle(title)
    return fig


def comparison_figure(table: pd.DataFrame, title: str = "What each stage adds (validation)"):
    """Macro F1 of each stage of the comparison table, per-class F1 as faint dots."""
    fig = _figure((7, 3.2))
    ax = fig.add_subplot()
    x = np.arange(len(table))
    ax.bar(x, table["macro_f1"], color="#4c72b0", width=0.6)
    for i, (_, row) in enumerate(table.iterrows()):
        ax.text(i, row["macro_f1"] + 0.015, f"{row['macro_f1']:.3f}", ha="center", fontsize=9)
        ax.scatter(np.full(NUM_CLASSES, i) + np.linspace(-0.2, 0.2, NUM_CLASSES), row[list(CLASSES)].to_numpy(float),
                   c=CLASS_COLORS, s=12, zorder=3, edgecolors="black", linewidths=0.3)
    ax.axhline(1 / NUM_CLASSES, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, table["stage"])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro F1 (dots: per class)")
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------------------------------------
# Figures of the stage notebooks; each returns the Figure and, given ``path``, also saves it (PNG)


def _finish(fig, path: str | os.PathLike | None):
    if path is not None:
        _save_figure(fig, Path(path))
    return fig


def class_share_figure(counts: pd.DataFrame, path: str | os.PathLike | None = None):
    """Share of each class among a split's labeled frames, one bar per split (``counts``: splits x classes, as
    :func:`abawkit.manifest.class_counts_by_split` gives)."""
    share = counts.div(counts.sum(axis=1).clip(lower=1), axis=0)
    fig = _figure((9, 3.5))
    ax = fig.add_subplot()
    share.T.plot.bar(ax=ax, rot=0, color=[SPLIT_COLORS.get(s, "C3") for s in share.index])
    ax.set_ylabel("share of labeled frames")
    ax.set_title("Class distribution per split")
    return _finish(fig, path)


def frames_per_subject_figure(videos: pd.DataFrame, path: str | os.PathLike | None = None):
    """Frames of every subject of a manifest's ``videos`` table, grouped and coloured by split."""
    from matplotlib.patches import Patch

    v = videos.sort_values(["split", "n_frames"])
    fig = _figure((9, 3.5))
    ax = fig.add_subplot()
    ax.bar(range(len(v)), v["n_frames"], color=[SPLIT_COLORS.get(s, "C3") for s in v["split"]])
    ax.set_xticks(range(len(v)), v["video_id"], rotation=90, fontsize=7)
    ax.set_ylabel("frames")
    ax.set_title("Frames per subject (colour: split)")
    ax.legend(handles=[Patch(color=c, label=s) for s, c in SPLIT_COLORS.items() if s in set(v["split"])])
    return _finish(fig, path)


def first_frames_figure(manifest, max_videos: int = 4, path: str | os.PathLike | None = None):
    """The first frame of up to ``max_videos`` readable video files, titled with the subject and its first label."""
    from .video import iter_frames

    v = manifest.videos
    shown = v[(v["video_path"] != "") & (v["problems"].str.find("unreadable") < 0)]
    shown = shown.drop_duplicates("video_path").head(max_videos)
    fig = _figure((3 * max(1, len(shown)), 2.6))
    axes = fig.subplots(1, max(1, len(shown)), squeeze=False)[0]
    for ax in axes:
        ax.axis("off")
    for ax, (_, row) in zip(axes, shown.iterrows()):
        first, frames = next(iter_frames(row["video_path"], chunk=1))
        label = manifest.labels(row["video_id"])[0]
        ax.imshow(frames[0])
        ax.set_title(f"{row['video_name']}\nframe {first}: {CLASSES[label] if label >= 0 else 'not annotated'}",
                     fontsize=8)
    return _finish(fig, path)


def embedding_pca_figure(x: np.ndarray, y: np.ndarray, max_points: int = 4000, seed: int = 0,
                         title: str = "training-frame embeddings", path: str | os.PathLike | None = None):
    """Frame embeddings ``x`` (n, D) projected on their first two principal components, coloured by label ``y``;
    at most ``max_points`` frames, drawn at random with ``seed``."""
    from sklearn.decomposition import PCA

    pick = np.random.default_rng(seed).permutation(len(x))[:max_points]
    z = PCA(n_components=2, random_state=0).fit_transform(np.asarray(x, np.float32)[pick])
    labels = np.asarray(y)[pick]
    fig = _figure((6, 5))
    ax = fig.add_subplot()
    for c, name in enumerate(CLASSES):
        m = labels == c
        if m.any():
            ax.scatter(z[m, 0], z[m, 1], s=6, alpha=0.6, color=CLASS_COLORS[c], label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="best")
    return _finish(fig, path)


def temporal_curves_figure(metrics: pd.DataFrame, path: str | os.PathLike | None = None,
                           cv_epochs: str | os.PathLike | pd.DataFrame | None = None):
    """Training loss and macro F1 per epoch (the temporal run's ``metrics.csv``): validation, the held-out
    Train_Set videos when scored, and with ``cv_epochs`` (the run's ``cv/epochs.csv``, skipped when the file is
    absent) the cross-validation's pooled out-of-fold score, with the kept epoch of each marked."""
    if cv_epochs is not None and not isinstance(cv_epochs, pd.DataFrame):
        cv_epochs = pd.read_csv(cv_epochs, dtype={"fold": str}) if Path(cv_epochs).is_file() else None
    fig = _figure((10, 3))
    loss, f1 = fig.subplots(1, 2)
    loss.plot(metrics["epoch"], metrics["train_loss"])
    loss.set_title("training loss")
    curves = [("validation", metrics["epoch"], metrics["val_macro_f1"])]
    if "holdout_macro_f1" in metrics.columns:
        curves.append(("held-out Train_Set videos", metrics["epoch"], metrics["holdout_macro_f1"]))
    if cv_epochs is not None and len(cv_epochs):
        pooled = cv_epochs[cv_epochs["fold"] == "all"]
        curves.append(("cross-validation (out-of-fold)", pooled["epoch"], pooled["macro_f1"]))
    for label, x, y in curves:
        (line,) = f1.plot(x, y, label=label)
        best = int(np.nanargmax(np.asarray(y, float)))
        f1.plot(np.asarray(x)[best], np.asarray(y)[best], "o", color=line.get_color())
    f1.set_title("macro F1 (dot: best epoch)")
    f1.legend(fontsize=7)
    for ax in (loss, f1):
        ax.set_xlabel("epoch")
    return _finish(fig, path)


def stage_timelines_figure(videos, model, post, path: str | os.PathLike | None = None):
    """Per frame of each video (``temporal.data.VideoFeatures``): the truth, the frame model's class and the class
    after the temporal encoder ``model`` and the post-processing ``post``."""
    from .temporal.predict import predict_logits, softmax
    from .temporal.train import frame_model_probs

    fig = _figure((11, 2.2 * max(1, len(videos))))
    axes = fig.subplots(max(1, len(videos)), 1, squeeze=False)[:, 0]
    for ax, v in zip(axes, videos):
        raw = softmax(predict_logits(model, v.embeddings, v.has_face, v.logits))
        t = np.arange(1, len(v.labels) + 1)
        ax.plot(t, np.where(v.labels >= 0, v.labels, np.nan), "k", lw=3, alpha=0.35, label="truth")
        ax.plot(t, frame_model_probs(v).argmax(1), ".", ms=2, alpha=0.5, label="frame model")
        ax.plot(t, post.apply(raw, v.has_face).argmax(1), lw=1.2, label="temporal + post")
        ax.set_yticks(range(NUM_CLASSES), CLASSES, fontsize=7)
        ax.set_title(v.video_id, fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("frame")
    return _finish(fig, path)


# ----------------------------------------------------------------------------------------------------------
# The whole report


@dataclass
class Report:
    """Everything the report notebook shows; ``files`` lists what was saved (figures PNG, tables CSV)."""

    validation: ValidationResult
    comparison: pd.DataFrame
    leaderboard: pd.DataFrame
    figures: dict[str, Any]
    files: list[Path]

    def metrics(self) -> dict[str, float]:
        out = {"val_macro_f1": self.validation.report.macro_f1}
        last = self.comparison.iloc[-1] if len(self.comparison) else None
        if last is not None:
            out["comparison_final_macro_f1"] = float(last["macro_f1"])
        return out


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def build_report(manifest_dir: str | os.PathLike, temporal_dir: str | os.PathLike,
                 predictions_dir: str | os.PathLike, runs_root: str | os.PathLike | None,
                 out_dir: str | os.PathLike | None = None, max_timelines: int = 6) -> Report:
    """Read the inputs (all checked before drawing), draw the figures, and save them with the tables to ``out_dir``.

    Saved: ``f1_per_class.png``, ``confusion.png``, ``timelines.png``, ``comparison.png``, ``per_class.csv``,
    ``per_video.csv``, ``comparison.csv``, ``leaderboard.csv``.
    """
    comparison = load_comparison(temporal_dir)
    validation = load_validation(manifest_dir, predictions_dir)
    board = leaderboard(runs_root) if runs_root is not None and Path(runs_root).is_dir() else pd.DataFrame()
    figures = {
        "f1_per_class": f1_bars_figure(validation.report),
        "confusion": confusion_figure(validation.report),
        "timelines": timelines_figure(validation.truth, validation.pred, max_videos=max_timelines),
        "comparison": comparison_figure(comparison),
    }
    files: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        for name, fig in figures.items():
            files.append(_save_figure(fig, out / f"{name}.png"))
        files.append(write_csv(out / "per_class.csv", validation.report.table()))
        files.append(write_csv(out / "per_video.csv", validation.per_video()))
        files.append(write_csv(out / "comparison.csv", comparison))
        files.append(write_csv(out / "leaderboard.csv", board))
    return Report(validation, comparison, board, figures, files)
