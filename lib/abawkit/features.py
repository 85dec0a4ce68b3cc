"""The frame-feature cache: the frame model run once over every frame, one ``<video_id>.npz`` per subject.

Each file holds ``embeddings`` (n, D) float16, ``has_face`` (n,) bool and ``logits`` (n, 8) float32 over frames
1..n of the annotation (row 0 is frame 1); a frame without a crop has a zero embedding, zero logits and
``has_face`` False. numpy alone opens it; :func:`load_video_features` reads one video's file and nothing else,
:func:`open_video_features` maps its embeddings instead of reading them.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Sequence

import numpy as np
import tyro

from .errors import UserError
from .labels import NUM_CLASSES
from .readers import BadFileError, existing_file, load_npz


class FeatureError(UserError, ValueError):
    """A feature folder or file that cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class FeatureConfig:
    """Run a frame-model checkpoint (abawkit train-frame / notebook 03) over every face crop of every subject of
    a manifest and write OUT/<video_id>.npz holding 'embeddings' (n, D) float16, 'has_face' (n,) bool and
    'logits' (n, 8) float32 for frames 1..n of the annotation (test subjects: the rows of the submission).
    Frames without a crop get a zero embedding and has_face False. Batched, bf16 on GPU; a finished video is
    skipped on re-run (resume). For several GPUs: torchrun --nproc_per_node=N -m abawkit.cli extract-features
    ... (split by video)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "demo": dict(workers=0),
        "gpu": dict(checkpoint="runs/affwild2/frame_model/best.pt", crops_dir="data/faces/affwild2/cropped",
                    manifest_dir="data_manifests/affwild2", features_dir="runs/affwild2/features",
                    batch_size=512, workers=8),
    }

    checkpoint: Annotated[str, tyro.conf.arg(metavar="FILE")] = "runs/demo/frame_model/best.pt"
    """frame-model checkpoint (best.pt of abawkit train-frame)"""
    crops_dir: Annotated[str, tyro.conf.arg(name="crops", metavar="DIR")] = "data/faces/demo/cropped_aligned"
    """crops folder holding <video_id>/00001.jpg (abawkit extract-faces, or the organizers')"""
    manifest_dir: Annotated[str, tyro.conf.arg(name="manifest", metavar="DIR")] = "data_manifests/demo"
    """manifest folder (abawkit manifest)"""
    features_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/features"
    """feature folder to write (one .npz per subject)"""
    batch_size: int = 256
    """images per forward pass"""
    workers: int = 2
    """data-loader worker processes (0: in this process)"""
    folds: int = 1
    """cross-fitted features: K > 1 reads the fold models beside CHECKPOINT (abawkit train-frame --folds K:
    folds.csv, fold_i/<name of CHECKPOINT>); each Train_Set video gets the features of the model trained without
    its fold, the other videos those of --eval-model"""
    eval_model: Literal["full", "mean"] = "full"
    """with --folds K: features of the validation, test and held-out videos from CHECKPOINT (full: the model on
    every training video) or the mean of the K fold models' embeddings and logits (mean)"""
    overwrite: bool = False
    """recompute videos whose file already exists (a file from another model is recomputed anyway)"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0 or self.folds < 1:
            raise ValueError(f"batch_size and folds must be >= 1 and workers >= 0 (got {self.batch_size}, "
                             f"{self.folds}, {self.workers})")


def feature_path(features_dir: str | os.PathLike, video_id: str) -> Path:
    return Path(features_dir) / f"{video_id}.npz"


def video_frame_counts(manifest, splits: Sequence[str] | None = None) -> dict[str, int]:
    """Rows per subject: annotation length for labeled splits, the submission rows' count for the test split."""
    from .annotations import TEST_SPLIT

    counts: dict[str, int] = {}
    test_n: dict[str, int] = {}
    if splits is None or TEST_SPLIT in splits:
        for vid, frame in manifest.test_order():
            test_n[vid] = max(test_n.get(vid, 0), int(frame))
    for _, row in manifest.videos.iterrows():
        if splits is not None and row["split"] not in splits:
            continue
        vid = str(row["video_id"])
        if row["split"] == TEST_SPLIT and vid in test_n:
            counts[vid] = test_n[vid]
        else:
            counts[vid] = int(row["n_frames"])
    return counts


_EXPECTED = "the cached features of {} (.npz with embeddings, has_face, logits)"
_REMEDY = "re-run abawkit extract-features (notebook 05) for {}: delete this file and run it again"


def _feature_file(features_dir: str | os.PathLike, video_id: str) -> Path:
    path = feature_path(features_dir, video_id)
    if not path.is_file():
        raise FeatureError(f"no cached features for {video_id}: {path} is missing; run abawkit extract-features "
                           f"(notebook 05) for this manifest")
    return path


def _checked(path: Path, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``out`` with the optional members filled in, after checking that the shapes agree."""
    emb = out.get("embeddings")
    if emb is None or emb.ndim != 2:
        raise FeatureError(f"{path} must hold 'embeddings' with shape (n, D)")
    n = len(emb)
    if "has_face" not in out:
        out["has_face"] = np.ones(n, dtype=bool)
    if "logits" not in out:  # features from another extractor may carry no frame-model logits
        out["logits"] = np.zeros((n, NUM_CLASSES), dtype=np.float32)
    if len(out["has_face"]) != n or out["logits"].shape != (n, NUM_CLASSES):
        raise FeatureError(f"{path}: has_face {out['has_face'].shape} / logits {out['logits'].shape} do not match "
                           f"embeddings {emb.shape}; re-extract this video")
    out["has_face"] = out["has_face"].astype(bool)
    return out


def load_video_features(features_dir: str | os.PathLike, video_id: str) -> dict[str, np.ndarray]:
    """``embeddings``, ``has_face`` and ``logits`` of one subject (reads only that subject's file, in full)."""
    path = _feature_file(features_dir, video_id)
    return _checked(path, load_npz(path, _EXPECTED.format(video_id), _REMEDY.format(video_id)))


def _map_npz_member(path: Path, member: str, expected: str, remedy: str) -> np.memmap | None:
    """A read-only memmap of the ``.npy`` member ``member`` stored uncompressed in the zip ``path``; None when it
    is absent, compressed, encrypted, empty or in an .npy version other than 1.0/2.0 (the caller reads it then).

    The member's data starts after the LOCAL file header (30 bytes + its own name and extra field, whose lengths
    may differ from the central directory's) and the .npy header."""
    try:
        with open(path, "rb") as fh:
            with zipfile.ZipFile(fh) as archive:
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    return None
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                return None
            fh.seek(info.header_offset)
            local = fh.read(30)
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"no local zip header for {member}")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            fh.seek(start)
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                return None
            offset = fh.tell()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error) as exc:
        raise BadFileError(path, f"is truncated or not an .npz archive ({type(exc).__name__}: {exc})",
                           expected, remedy) from None
    count = int(np.prod(shape))
    if dtype.hasobject or count == 0:
        return None
    if offset + count * dtype.itemsize > start + info.file_size or start + info.file_size > path.stat().st_size:
        raise BadFileError(path, f"is truncated or not an .npz archive ({member} is shorter than its header says)",
                           expected, remedy)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def open_video_features(features_dir: str | os.PathLike, video_id: str) -> dict[str, np.ndarray]:
    """:func:`load_video_features` with ``embeddings`` as a read-only ``np.memmap`` into the ``.npz`` (the cache
    is written uncompressed), so a window reads only its own rows; ``has_face`` and ``logits`` are read.

    An archive whose ``embeddings`` cannot be mapped (``np.savez_compressed``, another .npy version) is read in
    full instead, as by :func:`load_video_features`. Each map keeps one file descriptor open."""
    path = _feature_file(features_dir, video_id)
    expected, remedy = _EXPECTED.format(video_id), _REMEDY.format(video_id)
    path = existing_file(path, expected, remedy)
    emb = _map_npz_member(path, "embeddings.npy", expected, remedy)
    if emb is None:
        return load_video_features(features_dir, video_id)
    out: dict[str, np.ndarray] = {"embeddings": emb}
    try:
        with np.load(path, allow_pickle=False) as data:
            for key in ("has_face", "logits", "source", "fold"):  # small members; embeddings stay mapped
                if key in data.files:
                    out[key] = data[key]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise BadFileError(path, f"is truncated or not an .npz archive ({type(exc).__name__}: {exc})",
                           expected, remedy) from None
    return _checked(path, out)


def labeled_embeddings(features_dir: str | os.PathLike, manifest,
                       split: str = "Train_Set") -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (float32) and labels of the frames of ``split`` that have a face and a label, all its subjects
    concatenated."""
    ids = manifest.video_ids(split)
    if not ids:
        raise FeatureError(f"the manifest {manifest.path} has no subject in {split}; pass a split it holds")
    xs, ys = [], []
    for vid in ids:
        f = load_video_features(features_dir, vid)
        y = manifest.labels(vid)
        keep = f["has_face"] & (y >= 0)
        xs.append(f["embeddings"][keep].astype(np.float32))
        ys.append(y[keep].astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


class _CropDataset:
    """(video index, 1-based frame) items -> normalized image tensors; picklable for spawn workers."""

    def __init__(self, crops_dir: str, items: list[tuple[int, str, int]], transform):
        self.crops_dir, self.items, self.transform = crops_dir, items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from .crops import crop_path
        from .readers import read_image

        vidx, vid, frame = self.items[i]
        return self.transform(read_image(crop_path(self.crops_dir, vid, frame))), vidx, frame


@dataclass(frozen=True)
class FeatureSource:
    """The model(s) whose features a video gets: ``checkpoints`` (their mean when several), the fold left out
    of their training (``abawkit.folds.FULL`` when none) and ``name``, recorded in the video's file."""

    checkpoints: tuple[str, ...]
    fold: int
    name: str


def feature_sources(config: FeatureConfig, manifest, video_ids: Sequence[str]) -> dict[str, FeatureSource]:
    """Which model computes each video's features under ``config.folds`` and ``config.eval_model``."""
    from .folds import FULL, FoldError, fold_dir, read_folds

    ckpt = Path(config.checkpoint)
    full = FeatureSource((str(ckpt),), FULL, ckpt.name)
    if config.folds == 1:
        return {v: full for v in video_ids}
    root, name = ckpt.parent, ckpt.name
    table = read_folds(root)
    k = int(table["fold"].max()) + 1
    if k != config.folds:
        raise FoldError(f"{root / 'folds.csv'} assigns {k} folds but --folds is {config.folds}; pass --folds {k} "
                        f"or train the {config.folds} fold models (abawkit train-frame --folds {config.folds})")
    fold_ckpts = []
    for f in range(k):
        path = fold_dir(root, f) / name
        if not path.is_file():
            raise FoldError(f"the model without fold {f} is missing: {path}; train it (abawkit train-frame "
                            f"--folds {k} --fold {f} --out {root}) or pass --folds 1")
        fold_ckpts.append(str(path))
    fold_of = dict(zip(table["video_id"].astype(str), table["fold"]))
    held = set(manifest.video_ids(holdout=True))
    mean = FeatureSource(tuple(fold_ckpts), FULL, f"mean of fold_0..{k - 1}/{name}")
    out = {}
    for vid in video_ids:
        if vid in fold_of:
            f = int(fold_of[vid])
            out[vid] = FeatureSource((fold_ckpts[f],), f, f"fold_{f}/{name}")
        elif manifest.row(vid)["split"] == "Train_Set" and vid not in held:
            raise FoldError(f"the training video {vid} is in no fold of {root / 'folds.csv'} (the manifest changed "
                            f"since the fold models were trained?); train them again into another --out")
        else:
            out[vid] = mean if config.eval_model == "mean" else full
    return out


def recorded_source(path: str | os.PathLike) -> tuple[str | None, int | None]:
    """``(source, fold)`` recorded in a feature file (None, None for a file written without them)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "source" not in data.files:
                return None, None
            return str(data["source"]), int(data["fold"])
    except (OSError, ValueError, KeyError, EOFError):
        return None, None


def write_sources(features_dir: str | os.PathLike, manifest) -> Path:
    """``<features_dir>/sources.csv``: video_id, split, fold, source of every feature file of the manifest."""
    import pandas as pd

    from .io import write_csv

    rows = []
    for vid in video_frame_counts(manifest):
        path = feature_path(features_dir, vid)
        if path.is_file():
            source, fold = recorded_source(path)
            rows.append({"video_id": vid, "split": manifest.row(vid)["split"], "fold": fold, "source": source})
    return write_csv(Path(features_dir) / "sources.csv", pd.DataFrame(rows, columns=["video_id", "split", "fold",
                                                                                      "source"]))


def extract_features(config: FeatureConfig, manifest=None, video_ids: Sequence[str] | None = None,
                     device: str | None = None) -> list[Path]:
    """Cache features of every subject of the manifest (or ``video_ids``); returns the files this process wrote.

    ``manifest``: the loaded manifest of ``config.manifest_dir`` when the caller has it already. With
    ``config.folds`` > 1 each training video's features come from the fold model that did not see it
    (:func:`feature_sources`); every file records its model (``source``, ``fold``), and a single process
    writes ``sources.csv`` beside them (after torchrun: run once more without it, which only writes that).

    Under ``torchrun`` rank r takes videos r::world. A video whose file exists and was written by the same
    model is skipped (resume), unless ``config.overwrite``. Files are written atomically, so a killed job
    leaves complete files only.
    """
    import torch

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if device is None:
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(local)
            device = f"cuda:{local}"
        else:
            device = "cpu"
    dev = torch.device(device)
    if manifest is None:
        from .manifest import load_manifest

        manifest = load_manifest(config.manifest_dir)
    counts = video_frame_counts(manifest)
    ids = list(video_ids) if video_ids is not None else list(counts)
    unknown = [v for v in ids if v not in counts]
    if unknown:
        raise FeatureError(f"videos not in the manifest {manifest.path}: {unknown[:5]}")
    sources = feature_sources(config, manifest, ids)
    ids = ids[rank::world]
    out_dir = Path(config.features_dir)

    def current(vid: str) -> bool:
        path = feature_path(out_dir, vid)
        if config.overwrite or not path.is_file():
            return False
        source, _ = recorded_source(path)
        return source == sources[vid].name or (source is None and config.folds == 1)

    todo = [v for v in ids if not current(v)]
    groups: dict[tuple[str, ...], list[str]] = {}
    for vid in todo:
        groups.setdefault(sources[vid].checkpoints, []).append(vid)
    written: list[Path] = []
    for checkpoints, vids in groups.items():
        written += _extract_with(config, checkpoints, vids, counts, sources, dev, rank, world)
    if world == 1:
        write_sources(out_dir, manifest)
    return written


def _extract_with(config: FeatureConfig, checkpoints: tuple[str, ...], todo: list[str], counts: dict[str, int],
                  sources: dict[str, FeatureSource], dev, rank: int, world: int) -> list[Path]:
    """Features of the videos ``todo`` from ``checkpoints`` (the mean of their embeddings and logits)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .crops import crop_frames
    from .frame_model import autocast, eval_transform, load_frame_model
    from .io import save_npz

    models = []
    for path in checkpoints:
        model, _ = load_frame_model(path, dev)
        models.append(model.to(memory_format=torch.channels_last))
    dims = {m.embed_dim for m in models}
    if len(dims) > 1 or len({m.config.image_size for m in models}) > 1:
        raise FeatureError(f"the fold models {list(checkpoints)} differ in embedding size or input size; "
                           f"train them with the same settings")
    dim, transform = dims.pop(), eval_transform(models[0].config)
    crops_dir, out_dir = config.crops_dir, Path(config.features_dir)

    written: list[Path] = []
    items: list[tuple[int, str, int]] = []
    buffers: dict[int, dict] = {}
    for vidx, vid in enumerate(todo):
        n = counts[vid]
        frames = crop_frames(crops_dir, vid)
        frames = frames[(frames >= 1) & (frames <= n)]
        buffers[vidx] = {"vid": vid, "n": n, "left": len(frames), "emb": np.zeros((n, dim), np.float16),
                         "logits": np.zeros((n, NUM_CLASSES), np.float32), "face": np.zeros(n, bool)}
        items.extend((vidx, vid, int(f)) for f in frames)

    def flush(vidx: int) -> None:
        b = buffers.pop(vidx)
        src = sources[b["vid"]]
        written.append(save_npz(feature_path(out_dir, b["vid"]), embeddings=b["emb"], has_face=b["face"],
                                logits=b["logits"], source=np.array(src.name), fold=np.array(src.fold)))

    for vidx in [k for k, b in buffers.items() if b["left"] == 0]:  # videos without any crop
        flush(vidx)
    workers = config.workers if items else 0
    loader = DataLoader(_CropDataset(str(crops_dir), items, transform), batch_size=config.batch_size, shuffle=False,
                        num_workers=workers, pin_memory=dev.type == "cuda",
                        multiprocessing_context="spawn" if workers > 0 else None,
                        persistent_workers=False)
    what = "features" if len(checkpoints) == 1 and config.folds == 1 else f"features ({sources[todo[0]].name})"
    bar = tqdm(total=len(items), desc=f"{what} (rank {rank})" if world > 1 else what, unit="frame",
               disable=not config.progress)
    with torch.inference_mode():
        for images, vidxs, frames in loader:
            images = images.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            embs, logits = [], []
            for model in models:
                with autocast(dev):
                    e, lg = model.embed_and_logits(images)
                embs.append(e.float())
                logits.append(lg.float())
            emb = torch.stack(embs).mean(0).cpu().numpy()
            logit = torch.stack(logits).mean(0).cpu().numpy()
            for j, (vidx, frame) in enumerate(zip(vidxs.tolist(), frames.tolist())):
                b = buffers[vidx]
                b["emb"][frame - 1] = emb[j]
                b["logits"][frame - 1] = logit[j]
                b["face"][frame - 1] = True
                b["left"] -= 1
                if b["left"] == 0:
                    flush(vidx)
            bar.update(len(frames))
    bar.close()
    return written
