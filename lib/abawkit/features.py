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
from typing import Annotated, Any, ClassVar, Sequence

import numpy as np
import tyro

from .errors import UserError
from .labels import NUM_CLASSES
from .readers import BadFileError, existing_file, load_npz


class FeatureError(UserError, ValueError):
    """A feature folder or file that cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class FeatureConfig:
    """Run a frame-model checkpoint (abawkit train-frame / notebook 02) over every face crop of every subject of
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
    overwrite: bool = False
    """recompute videos whose file already exists"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError(f"batch_size must be >= 1 and workers >= 0 (got {self.batch_size}, {self.workers})")


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
_REMEDY = "re-run abawkit extract-features (notebook 03) for {}: delete this file and run it again"


def _feature_file(features_dir: str | os.PathLike, video_id: str) -> Path:
    path = feature_path(features_dir, video_id)
    if not path.is_file():
        raise FeatureError(f"no cached features for {video_id}: {path} is missing; run abawkit extract-features "
                           f"(notebook 03) for this manifest")
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
            for key in ("has_face", "logits"):
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


def extract_features(config: FeatureConfig, manifest=None, video_ids: Sequence[str] | None = None,
                     device: str | None = None) -> list[Path]:
    """Cache features of every subject of the manifest (or ``video_ids``); returns the files this process wrote.

    ``manifest``: the loaded manifest of ``config.manifest_dir`` when the caller has it already.

    Under ``torchrun`` rank r takes videos r::world. A video whose file exists is skipped (resume), unless
    ``config.overwrite``. Files are written atomically, so a killed job leaves complete files only.
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from .crops import crop_frames
    from .frame_model import autocast, eval_transform, load_frame_model
    from .io import save_npz

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
    checkpoint, crops_dir = config.checkpoint, config.crops_dir
    counts = video_frame_counts(manifest)
    ids = list(video_ids) if video_ids is not None else list(counts)
    unknown = [v for v in ids if v not in counts]
    if unknown:
        raise FeatureError(f"videos not in the manifest {manifest.path}: {unknown[:5]}")
    ids = ids[rank::world]
    out_dir = Path(config.features_dir)
    todo = [v for v in ids if config.overwrite or not feature_path(out_dir, v).is_file()]
    if not todo:
        return []
    model, _ = load_frame_model(checkpoint, dev)
    model = model.to(memory_format=torch.channels_last)
    dim, transform = model.embed_dim, eval_transform(model.config)

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
        written.append(save_npz(feature_path(out_dir, b["vid"]), embeddings=b["emb"], has_face=b["face"],
                                logits=b["logits"]))

    for vidx in [k for k, b in buffers.items() if b["left"] == 0]:  # videos without any crop
        flush(vidx)
    workers = config.workers if items else 0
    loader = DataLoader(_CropDataset(str(crops_dir), items, transform), batch_size=config.batch_size, shuffle=False,
                        num_workers=workers, pin_memory=dev.type == "cuda",
                        multiprocessing_context="spawn" if workers > 0 else None,
                        persistent_workers=False)
    bar = tqdm(total=len(items), desc=f"features (rank {rank})" if world > 1 else "features", unit="frame",
               disable=not config.progress)
    with torch.inference_mode():
        for images, vidxs, frames in loader:
            images = images.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with autocast(dev):
                emb, logits = model.embed_and_logits(images)
            emb = emb.float().cpu().numpy()
            logits = logits.float().cpu().numpy()
            for j, (vidx, frame) in enumerate(zip(vidxs.tolist(), frames.tolist())):
                b = buffers[vidx]
                b["emb"][frame - 1] = emb[j]
                b["logits"][frame - 1] = logits[j]
                b["face"][frame - 1] = True
                b["left"] -= 1
                if b["left"] == 0:
                    flush(vidx)
            bar.update(len(frames))
    bar.close()
    return written
