"""Video container probing and bounded-memory decoding with decord."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says. Its frame count can differ by a few frames from the annotation lines and from
    the frames that decode (decord's ``len()`` trusts the container); the annotation is the reference."""

    path: str
    frames: int
    fps: float
    width: int
    height: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open a video with decord and read its container frame count, fps and size (decodes one frame)."""
    import decord

    path = str(path)
    if not os.path.isfile(path):
        return VideoInfo(path, 0, 0.0, 0, 0, error=f"no such file: {path}")
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        fps = float(vr.get_avg_fps())
        h, w = vr[0].shape[:2]
        del vr
        return VideoInfo(path, int(n), fps, int(w), int(h))
    except Exception as exc:  # decord raises its own DECORDError and RuntimeError for broken files
        return VideoInfo(path, 0, 0.0, 0, 0, error=f"unreadable video {path}: {type(exc).__name__}: {exc}".strip())


def iter_frames(path: str | os.PathLike, chunk: int = 32,
                max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_frame_index_1based, frames uint8 (k,H,W,3) RGB)`` in chunks of at most ``chunk`` frames.

    Reads with the extraction's bounded decord reader (``abawkit.faces.decode.FrameReader``: a decord
    reader left open decodes ahead without limit when its caller is slow). Stops cleanly at the first frame
    that does not decode (the container may announce more frames than it holds); the caller sees that as
    the iterator ending early.
    """
    from .faces.decode import FrameReader

    batch: list[np.ndarray] = []
    first = 1
    for index, frame in FrameReader(str(path), decoder="decord", max_frames=max_frames):
        if not batch:
            first = index
        batch.append(frame)
        if len(batch) == chunk:
            yield first, np.stack(batch)
            batch = []
    if batch:
        yield first, np.stack(batch)


def find_videos(root: str | os.PathLike, max_depth: int = 4) -> dict[str, list[Path]]:
    """Video files under ``root`` by stem, skipping crop and annotation folders (millions of files there)."""
    root = Path(root)
    found: dict[str, list[Path]] = {}
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d)) if depth < max_depth else []
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in VIDEO_SUFFIXES:
                found.setdefault(p.stem, []).append(p)
    return found


def _skip_dir(name: str) -> bool:
    low = name.lower()
    return low.startswith("cropped") or low.startswith(".") or "annotation" in low or low in {
        "expr_recognition_challenge", "expr_classification_challenge", "unlabeled_faces", "test_ground_truth",
        "render_truth"}
