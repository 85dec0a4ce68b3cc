"""Labeled frames (a manifest + crops folder, or any ``path,label`` CSV), unlabeled face folders, and the weak
(the teacher's) and strong (the student's) views of teacher-student pseudo-labeling (torchvision transforms v2)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..crops import crop_frames, crop_path, image_files
from ..errors import UserError
from ..frame_model import FrameModelConfig, eval_transform
from ..labels import IGNORE, class_index
from ..readers import read_csv, read_image



class DataError(UserError, ValueError):
    """Input data cannot be used; the message names the file or folder and what to do."""


def frames_from_manifest(manifest, crops: str | os.PathLike, split: str = "Train_Set", stride: int = 1) -> pd.DataFrame:
    """Annotated frames of ``split`` that have a crop: columns ``path, label, video_id, frame``.

    ``stride`` keeps every k-th such frame of a video (consecutive frames are near-duplicates).
    """
    crops = Path(crops)
    if not crops.is_dir():
        raise DataError(f"crops folder {crops} not found; run abawkit extract-faces (notebook 01) or pass the "
                        f"organizers' cropped_aligned folder")
    rows = []
    for vid in manifest.video_ids(split):
        labels = manifest.labels(vid)
        frames = crop_frames(crops, vid)
        frames = frames[(frames >= 1) & (frames <= labels.size)]
        frames = frames[labels[frames - 1] != IGNORE][::max(1, stride)]
        rows += [(str(crop_path(crops, vid, int(f))), int(labels[f - 1]), vid, int(f)) for f in frames]
    table = pd.DataFrame(rows, columns=["path", "label", "video_id", "frame"])
    if table.empty:
        raise DataError(f"no annotated frame of split {split!r} has a crop under {crops}; are the crops for this "
                        f"manifest ({manifest.path})?")
    return table


def frames_from_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV with columns ``path,label`` (label: index 0..7 or class name; -1 rows dropped). Relative image
    paths are taken relative to the CSV's folder. AffectNet / RAF-DB lists converted to this form work too."""
    path = Path(path)
    table = read_csv(path, "a labeled CSV with columns path,label", "pass a CSV of image paths and labels (--labeled-csv)",
                     columns=("path", "label"))
    labels = []
    for line, value in enumerate(table["label"], start=2):
        try:
            labels.append(IGNORE if str(value).strip() == "-1" else class_index(str(value)))
        except ValueError as exc:
            raise DataError(f"{path} line {line}: {exc}") from None
    paths = [p if Path(p).is_absolute() else str(path.parent / p) for p in table["path"].astype(str)]
    out = pd.DataFrame({"path": paths, "label": labels})
    out = out[out["label"] != IGNORE].reset_index(drop=True)
    missing = [p for p in out["path"][:1000] if not Path(p).is_file()]
    if missing:
        raise DataError(f"{path}: image {missing[0]} not found ({len(missing)} missing in the first 1000 rows)")
    if out.empty:
        raise DataError(f"{path} has no labeled row")
    return out


def unlabeled_frames_from_manifest(manifest, crops: str | os.PathLike, splits: tuple[str, ...] = ("Train_Set",),
                                   stride: int = 1, holdout: bool = False,
                                   exclude: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Crops of the manifest's videos of ``splits`` whose frame carries no label: annotated -1, or beyond the
    annotation file (unannotated). Held-out Train_Set videos are left out unless ``holdout`` (the temporal stage
    fits on them). A test video (no annotation) contributes all its crops. Every k-th such frame of a
    video with ``stride``. ``exclude``: video ids left out too (a cross-fitting fold). Sorted paths, in the
    crops' own layout and alignment."""
    crops = Path(crops)
    if not crops.is_dir():
        raise DataError(f"crops folder {crops} not found; run abawkit extract-faces (notebook 01)")
    held = (set() if holdout else set(manifest.video_ids(holdout=True))) | set(exclude)
    found: list[str] = []
    for split in splits:
        for vid in manifest.video_ids(split):
            if vid in held:
                continue
            frames = crop_frames(crops, vid)
            labels = manifest.labels(vid)
            inside = frames <= labels.size
            keep = ~inside
            keep[inside] = labels[frames[inside] - 1] == IGNORE
            found += [str(crop_path(crops, vid, int(f))) for f in frames[keep][::max(1, stride)]]
    return sorted(found)


def unlabeled_images(dirs: list[str] | tuple[str, ...]) -> list[str]:
    """Every image file under the given folders, recursively, sorted (a stable index for FlexMatch)."""
    found: list[str] = []
    for d in dirs:
        if not Path(d).is_dir():
            raise DataError(f"unlabeled folder {d} not found; pass folders of face images (--unlabeled-dir)")
        found += image_files(d)
    return sorted(found)


def colour_transforms(colour: bool) -> list:
    """Our choice: colour jitter with hue and random grayscale, so that a subject under a colour
    cast or in a grey video is not a new domain (Aff-Wild2's lighting and white balance vary per video)."""
    from torchvision.transforms import v2

    return [v2.ColorJitter(0.3, 0.3, 0.3, 0.08), v2.RandomGrayscale(p=0.15)] if colour else []


def weak_transform(config: FrameModelConfig, colour: bool = True):
    """Weak view (and the labeled frames' view): flip, a small random resized crop and, with ``colour``,
    :func:`colour_transforms`."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop((config.image_size, config.image_size), scale=(0.8, 1.0),
                                            ratio=(0.9, 1.1), antialias=True),
                       v2.RandomHorizontalFlip(), *colour_transforms(colour), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(config.mean), list(config.std))])


def strong_transform(config: FrameModelConfig, colour: bool = True):
    """Strong view: the weak geometry (a wider crop range), the colour changes, RandAugment (2 ops, magnitude
    10; it has no hue operation) and random erasing."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop((config.image_size, config.image_size), scale=(0.6, 1.0),
                                            ratio=(0.9, 1.1), antialias=True),
                       v2.RandomHorizontalFlip(), *colour_transforms(colour), v2.RandAugment(num_ops=2, magnitude=10),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(config.mean), list(config.std)),
                       v2.RandomErasing(p=0.5, scale=(0.02, 0.2), value=0)])


class LabeledImages(Dataset):
    """(image tensor, label) pairs; ``transform`` is weak for training, :func:`eval_transform` for validation.
    With ``boxes`` ((n, 4) face boxes in fractions of the image side, FaceMix's), (image, label, box): the box
    goes through the same random crop and flip as its image, in the output's pixels."""

    def __init__(self, table: pd.DataFrame, transform, boxes: np.ndarray | None = None):
        self.paths = table["path"].tolist()
        self.labels = table["label"].to_numpy(np.int64)
        self.transform = transform
        self.boxes = None if boxes is None else np.asarray(boxes, np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]):
        i, seed = item if isinstance(item, tuple) else (item, None)
        image = read_image(self.paths[i])
        with item_rng(seed):
            if self.boxes is None:
                return self.transform(image), int(self.labels[i])
            from torchvision import tv_tensors

            h, w = image.shape[-2:]
            box = tv_tensors.BoundingBoxes(torch.from_numpy(self.boxes[i] * np.array([w, h, w, h], np.float32))[None],
                                           format="XYXY", canvas_size=(h, w))
            x, box = self.transform(image, box)
            return x, int(self.labels[i]), box.as_subclass(torch.Tensor)[0].float()


class WeakViews(Dataset):
    """(weak view, index) of the images ``items`` = (index, augmentation seed): the teacher's pass that
    initialises the thresholds."""

    def __init__(self, paths: list[str], items: list[tuple[int, int]], weak):
        self.paths, self.items, self.weak = paths, items, weak

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, seed = self.items[k]
        img = read_image(self.paths[i])
        with item_rng(seed):
            return self.weak(img), i


class UnlabeledImages(Dataset):
    """(weak view, strong view, index) of each image; the index feeds FlexMatch's per-sample state."""

    def __init__(self, paths: list[str], weak, strong):
        self.paths, self.weak, self.strong = paths, weak, strong

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]):
        i, seed = item if isinstance(item, tuple) else (item, None)
        img = read_image(self.paths[i])
        with item_rng(seed):
            return self.weak(img), self.strong(img), i


def item_rng(seed: int | None):
    """The augmentation of one item under its own seed (the samplers give one), leaving the process's random
    state as it was; without a seed, the process's state as it is."""
    import contextlib

    if seed is None:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def seeded():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield

    return seeded()


__all__ = ["DataError", "LabeledImages", "UnlabeledImages", "WeakViews", "colour_transforms", "eval_transform",
           "frames_from_csv", "frames_from_manifest", "strong_transform", "unlabeled_frames_from_manifest",
           "unlabeled_images", "weak_transform"]
