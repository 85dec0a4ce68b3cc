"""Find and check an Aff-Wild2 tree: which subjects, splits, videos, crops and labels it holds.

An Aff-Wild2 release holds videos in batch folders (``batch1/``, ``batch2/``, ... as ``.mp4`` or ``.avi``), one
annotation per subject in ``EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/<video>.txt`` (older releases:
``EXPR_Classification_Challenge``; a two-person video has ``<video>_left.txt`` and ``<video>_right.txt``), the
test-set list and example file, and optionally the organizers' ``cropped_aligned/`` and ``cropped/`` crops.
``build_manifest`` walks such a tree and writes ``videos.csv`` (one row per subject),
``frames.parquet`` (one row per frame) and a summary; ``load_manifest`` reads them back for every later stage.
Problems with the data (missing video, frame-count mismatch, unreadable video) are collected in the
``problems`` column; malformed annotation files are errors naming the file and line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar

import tyro

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .annotations import SPLITS, TEST_SPLIT, find_annotation_files, find_annotation_root, read_annotation, split_side
from .crops import CROP_FOLDERS
from .errors import UserError
from .io import write_csv, write_json, write_parquet, write_text
from .labels import CLASSES, IGNORE, class_counts
from .readers import read_csv, read_json, read_parquet, read_text
from .runinfo import run_record
from .video import VideoInfo, find_videos, probe

TEST_LIST_GLOBS = ("*Expr*test_set_release*.txt", "*Expression*test*release*.txt", "*Expr*test*list*.txt")
EXAMPLE_GLOBS = ("*Expr*test_set_example*.txt", "*Expr*example*.txt", "*EXPR*example*.txt")
COUNT_COLUMNS = [f"count_{c}" for c in CLASSES]
VIDEO_COLUMNS = ["video_id", "split", "side", "video_name", "video_path", "annotation_path", "n_frames",
                 "n_labeled", *COUNT_COLUMNS, "container_frames", "fps", "width", "height",
                 "cropped_dir", "cropped_aligned_dir", "holdout", "problems"]


@dataclass(frozen=True)
class ManifestConfig:
    """Find, in the Aff-Wild2 release layout, the EXPR annotation files (EXPR_Recognition_Challenge or
    EXPR_Classification_Challenge) and their split, the video of each subject (batch folders, .mp4 or .avi,
    _left/_right stripped), the organizers' cropped/cropped_aligned folders, the test-set list and example file.
    Writes OUT/videos.csv (one row per subject, with holdout and problems columns), OUT/frames.parquet (one row
    per frame), OUT/summary.txt and OUT/manifest.json. Data problems (missing or unreadable video, frame-count
    mismatch) are recorded, not fatal; a malformed annotation file is an error naming the file and line."""

    affwild2_root: Annotated[str, tyro.conf.arg(name="affwild2", metavar="ROOT")] = "data/demo"
    """root folder of the Aff-Wild2 tree (holding annotations/ and the batch*/ video folders)"""
    manifest_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "data_manifests/demo"
    """manifest folder to write, e.g. data_manifests/affwild2"""
    probe: bool = True
    """open the videos (--no-probe: faster; container frame counts, fps and size stay 0)"""
    holdout_fraction: float = 0.0
    """share of the Train_Set videos held out of the frame model and the temporal encoder, on which the
    post-processing is fitted (both sides of a two-person video together)"""
    seed: int = 0
    """random seed of the held-out videos"""

    PRESETS: ClassVar[dict[str, dict]] = {"demo": dict(holdout_fraction=0.2)}

    def __post_init__(self) -> None:
        if not 0 <= self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in [0, 1) (got {self.holdout_fraction})")


class ManifestError(UserError, ValueError):
    """The tree or the manifest folder cannot be used; the message says which path and what to do."""


@dataclass
class Manifest:
    """A data tree's subjects (``videos``) and per-frame labels (``frames``), with paths made absolute."""

    path: Path
    root: Path
    videos: pd.DataFrame
    frames: pd.DataFrame
    info: dict = field(default_factory=dict)
    _labels: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def video_ids(self, split: str | None = None, holdout: bool | None = None) -> list[str]:
        """Subjects of ``split`` (all when None); ``holdout`` True/False keeps only the held-out Train_Set
        subjects or only the others (the ``holdout`` column chosen by ``abawkit manifest --holdout-fraction``)."""
        rows = self.videos if split is None else self.videos[self.videos["split"] == split]
        if holdout is not None:
            rows = rows[rows["holdout"] == holdout]
        return rows["video_id"].tolist()

    def row(self, video_id: str) -> pd.Series:
        rows = self.videos[self.videos["video_id"] == video_id]
        if rows.empty:
            raise KeyError(f"{video_id!r} is not in the manifest {self.path}")
        return rows.iloc[0]

    def labels(self, video_id: str) -> np.ndarray:
        """Per-frame labels of frames 1..n_frames (-1 where not annotated, and everywhere for test videos)."""
        if self._labels is None:
            self._labels = {}
            for vid, grp in self.frames.groupby("video_id", sort=False):
                self._labels[str(vid)] = grp.sort_values("frame")["label"].to_numpy(np.int64)
        if video_id in self._labels:
            return self._labels[video_id]
        return np.full(int(self.row(video_id)["n_frames"]), IGNORE, dtype=np.int64)

    def test_order(self) -> list[tuple[str, int]]:
        """Rows of the submission for the test split: (video_id, frame) in the organizers' order."""
        example = self.info.get("example_file")
        if example:
            return read_example_file(self.root / example)
        return [(vid, k) for vid in self.video_ids(TEST_SPLIT) for k in range(1, int(self.row(vid)["n_frames"]) + 1)]


def read_test_list(path: str | os.PathLike) -> list[str]:
    """Video ids of the test-set release list (one per line; blank lines and a ``.mp4`` suffix tolerated)."""
    names = []
    text = read_text(path, "the test-set list (one video name per line)", "pass the organizers' release list")
    for line in text.splitlines():
        name = line.strip().split(",")[0].strip()
        if name:
            names.append(Path(name).stem if Path(name).suffix.lower() in {".mp4", ".avi"} else name)
    return names


def read_example_file(path: str | os.PathLike) -> list[tuple[str, int]]:
    """(video_id, frame) of every row of an organizers' example/submission-format file, in order."""
    from .submission import parse_location

    rows = []
    text = read_text(path, "the organizers' example submission file", "pass the example file they released")
    for lineno, line in enumerate(text.splitlines()[1:], start=2):  # after the header
        line = line.strip()
        if not line:
            continue
        loc = line.split(",")[0]
        parsed = parse_location(loc)
        if parsed is None:
            raise ManifestError(f"{path}:{lineno}: {loc!r} is not '<video>/<frame:05d>.jpg'")
        rows.append(parsed)
    return rows


def _find_one(root: Path, patterns: tuple[str, ...]) -> Path | None:
    for depth in range(3):
        for pat in patterns:
            hits = sorted(p for p in root.glob("/".join(["*"] * depth + [pat])) if p.is_file())
            if hits:
                return hits[0]
    return None


def _find_crop_roots(root: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for depth in range(3):
        for name in CROP_FOLDERS.values():
            if name in out:
                continue
            hits = sorted(p for p in root.glob("/".join(["*"] * depth + [name])) if p.is_dir())
            if hits:
                out[name] = hits[0]
    return out


def holdout_groups(videos: pd.DataFrame, fraction: float, seed: int) -> set[str]:
    """The source videos (``video_name``) whose Train_Set subjects are held out: ``round(fraction * n)`` of the
    n training videos, at least one and never all, drawn with ``seed``; both sides of a two-person video share
    a name, so they stay together. Nothing is held out for a fraction of 0 or fewer than two videos."""
    groups = sorted(videos.loc[videos["split"] == "Train_Set", "video_name"].astype(str).unique())
    if fraction <= 0 or len(groups) < 2:
        return set()
    k = min(len(groups) - 1, max(1, int(round(fraction * len(groups)))))
    return set(np.random.default_rng(seed).choice(groups, size=k, replace=False).tolist())


def build_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None, probe_videos: bool = True,
                   progress: bool = True, holdout_fraction: float = 0.0, seed: int = 0) -> Manifest:
    """Scan an Aff-Wild2 tree and (when ``out`` is given) write its manifest there.

    ``holdout_fraction`` of the Train_Set videos (drawn with ``seed``, see :func:`holdout_groups`) are marked
    in the ``holdout`` column: the frame model and the temporal encoder leave them out, and the post-processing
    is fitted on them, so that it is fitted on frames no model has seen.

    The annotation line count (or, for test videos, the example file's rows) is the source of truth for a
    subject's frame count; the container's count is recorded beside it and every disagreement is a problem.
    """
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root} is not a folder; pass the root of the Aff-Wild2 tree with --affwild2")
    ann_root = find_annotation_root(root)
    ann_files = find_annotation_files(root)
    test_list = _find_one(root, TEST_LIST_GLOBS)
    example = _find_one(root, EXAMPLE_GLOBS)
    if ann_root is None and test_list is None and example is None:
        raise ManifestError(f"{root}: found neither an EXPR annotation folder (EXPR_Recognition_Challenge or "
                            "EXPR_Classification_Challenge) nor a test-set list; is this the Aff-Wild2 root?")
    videos = find_videos(root)
    crop_roots = _find_crop_roots(root)

    subjects: list[tuple[str, str, Path | None, np.ndarray | None]] = []
    for split in SPLITS:
        for path in ann_files[split]:
            subjects.append((path.stem, split, path, read_annotation(path)))
    seen = {s[0] for s in subjects}
    example_counts: dict[str, int] = {}
    if example is not None:
        for vid, _ in read_example_file(example):
            example_counts[vid] = example_counts.get(vid, 0) + 1
    test_ids = read_test_list(test_list) if test_list is not None else list(example_counts)
    for vid in test_ids:
        if vid in seen:
            continue  # a labeled subject listed again is kept once, with its labels
        subjects.append((vid, TEST_SPLIT, None, None))

    probes: dict[str, VideoInfo] = {}
    rows = []
    frame_tables = []
    for vid, split, ann_path, labels in tqdm(subjects, desc="manifest", unit="subject", disable=not progress):
        name, side = split_side(vid)
        problems: list[str] = []
        candidates = videos.get(name) or videos.get(vid) or []
        if len(candidates) > 1:
            problems.append("several video files: " + "; ".join(str(p.relative_to(root)) for p in candidates)
                            + " (the first is used)")
        vpath = candidates[0] if candidates else None
        info = VideoInfo("", 0, 0.0, 0, 0, error="")
        if vpath is None:
            problems.append(f"missing video: no {name}.mp4/.avi under {root}")
        elif probe_videos:
            key = str(vpath)
            if key not in probes:
                probes[key] = probe(vpath)
            info = probes[key]
            if info.error:
                problems.append(info.error)
        if labels is not None:
            n_frames = int(labels.size)
        elif vid in example_counts:
            n_frames = example_counts[vid]
        else:
            n_frames = info.frames
            if split == TEST_SPLIT:
                problems.append("no example file: frame count taken from the container")
        if info.frames and info.frames != n_frames:
            source = "annotation lines" if labels is not None else "example-file rows"
            problems.append(f"frame count mismatch: {source} {n_frames} vs container {info.frames} "
                            f"({n_frames - info.frames:+d})")
        counts = class_counts(labels) if labels is not None else np.zeros(len(CLASSES), dtype=np.int64)
        row = {"video_id": vid, "split": split, "side": side, "video_name": name,
               "video_path": _rel(vpath, root), "annotation_path": _rel(ann_path, root), "n_frames": n_frames,
               "n_labeled": int(counts.sum()), **{c: int(v) for c, v in zip(COUNT_COLUMNS, counts)},
               "container_frames": info.frames, "fps": round(info.fps, 3), "width": info.width,
               "height": info.height, "problems": " | ".join(problems)}
        for folder in CROP_FOLDERS.values():
            d = crop_roots.get(folder)
            row[f"{folder}_dir"] = _rel(d / vid, root) if d is not None and (d / vid).is_dir() else ""
        rows.append(row)
        lab = labels if labels is not None else np.full(n_frames, IGNORE, dtype=np.int64)
        frame_tables.append(pd.DataFrame({"video_id": vid, "frame": np.arange(1, lab.size + 1, dtype=np.int32),
                                          "label": lab.astype(np.int8), "split": split}))
    table = pd.DataFrame(rows, columns=VIDEO_COLUMNS)
    held = holdout_groups(table, holdout_fraction, seed)
    table["holdout"] = (table["split"] == "Train_Set") & table["video_name"].astype(str).isin(held)
    frames = (pd.concat(frame_tables, ignore_index=True) if frame_tables
              else pd.DataFrame({"video_id": [], "frame": [], "label": [], "split": []}))
    frames["video_id"] = frames["video_id"].astype("category")
    frames["split"] = frames["split"].astype("category")
    info_doc = {
        "root": str(root.resolve()),
        "annotation_root": _rel(ann_root, root),
        "test_list": _rel(test_list, root),
        "example_file": _rel(example, root),
        "crop_roots": {k: _rel(v, root) for k, v in crop_roots.items()},
        "holdout": {"fraction": holdout_fraction, "seed": seed},
    }
    manifest = Manifest(Path(out) if out else root, root.resolve(), _absolute(table, root.resolve()), frames,
                        info_doc)
    if out is not None:
        write_manifest(manifest, out)
    return manifest


def write_manifest(manifest: Manifest, out: str | os.PathLike) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    relative = manifest.videos.copy()
    for col in ("video_path", "annotation_path", "cropped_dir", "cropped_aligned_dir"):
        relative[col] = [_rel(Path(p), manifest.root) if p else "" for p in relative[col]]
    write_parquet(out / "frames.parquet", manifest.frames)
    write_csv(out / "videos.csv", relative)
    summary = summarize(manifest)
    write_text(out / "summary.txt", summary + "\n")
    write_json(out / "manifest.json", {**manifest.info, "summary": _summary_counts(manifest),
                                       "record": run_record({"root": str(manifest.root), "out": str(out)})})


def load_manifest(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Manifest:
    """Read a manifest folder written by :func:`build_manifest`; ``root`` overrides where the tree now lives."""
    path = Path(path)
    needed = [path / "videos.csv", path / "frames.parquet", path / "manifest.json"]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise ManifestError(f"{path} is not a manifest folder (missing {', '.join(p.name for p in missing)}); "
                            "build one with: abawkit manifest --affwild2 ROOT --out " + str(path))
    rebuild = f"rebuild it with: abawkit manifest --affwild2 ROOT --out {path}"
    info = read_json(path / "manifest.json", "a manifest record (JSON)", rebuild)
    tree = Path(root) if root is not None else Path(info["root"])
    videos = read_csv(path / "videos.csv", "the manifest's table of videos", rebuild, columns=("video_id", "split"),
                      keep_default_na=False, dtype={"video_id": str, "side": str})
    frames = read_parquet(path / "frames.parquet", "the manifest's per-frame table (Parquet)", rebuild)
    frames["video_id"] = frames["video_id"].astype(str)
    if "holdout" not in videos:  # written before the column existed: nothing held out
        videos["holdout"] = False
    videos["holdout"] = videos["holdout"].astype(str).str.lower().isin(("true", "1"))
    return Manifest(path, tree, _absolute(videos, tree), frames, info)


def summarize(manifest: Manifest) -> str:
    """A short text summary: subjects, frames and labeled frames per split, class shares, problem count."""
    v = manifest.videos
    lines = [f"Aff-Wild2 tree: {manifest.root}"]
    for split, grp in v.groupby("split", sort=False):
        counts = grp[COUNT_COLUMNS].sum().to_numpy()
        share = counts / max(1, counts.sum())
        shares = ", ".join(f"{c} {s:.1%}" for c, s in zip(CLASSES, share)) if counts.sum() else "no labels"
        lines.append(f"{split}: {len(grp)} subjects, {int(grp['n_frames'].sum())} frames, "
                     f"{int(grp['n_labeled'].sum())} labeled ({shares})")
    held = v[v["holdout"]]
    if len(held):
        lines.append(f"held out of Train_Set (post-processing fold): {len(held)} subjects, "
                     f"{int(held['n_frames'].sum())} frames ({', '.join(held['video_id'])})")
    n_prob = int((v["problems"] != "").sum())
    lines.append(f"problems: {n_prob} subject(s)" + (" (see the problems column of videos.csv)" if n_prob else ""))
    return "\n".join(lines)


def class_counts_by_split(manifest: Manifest) -> pd.DataFrame:
    """Labeled frames per class (columns, in index order) of every split that has labels (rows, manifest order)."""
    counts = manifest.videos.groupby("split", sort=False)[COUNT_COLUMNS].sum()
    counts.columns = list(CLASSES)
    return counts[counts.sum(axis=1) > 0]


def _summary_counts(manifest: Manifest) -> dict:
    v = manifest.videos
    return {split: {"subjects": int(len(g)), "frames": int(g["n_frames"].sum()), "labeled": int(g["n_labeled"].sum()),
                    "class_counts": {c: int(g[f"count_{c}"].sum()) for c in CLASSES}}
            for split, g in v.groupby("split", sort=False)} | {"problems": int((v["problems"] != "").sum())}


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def _absolute(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    table = table.copy()
    for col in ("video_path", "annotation_path", "cropped_dir", "cropped_aligned_dir"):
        table[col] = [str((root / p).resolve()) if p else "" for p in table[col].astype(str)]
    return table
