"""Cutting, JPEG encoding and writing of a frame's crops on a background thread, so that the warps, the
encoder and file creation (slow on network and overlay file systems) overlap the landmark model instead of
adding to it; OpenCV's warps and encoder and file writes release the GIL. The queue is bounded in frames
(``max_frames``), so memory stays a few decoded frames whatever the video."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .align import warp

_STOP = object()

#: One crop of a frame: where it goes, the 2x3 matrix mapping the frame onto it, its side in pixels.
CropJob = tuple[Path, np.ndarray, int]


class CropWriter:
    """``put(frame, jobs, rgb)`` queues a frame's crops; ``finish()`` waits until every crop is on disk and
    raises the first error (naming the file); ``abort()`` stops without waiting (a failed video is cleared
    anyway). ``threaded=False`` does the same work in the caller's thread."""

    def __init__(self, jpeg_quality: int = 95, max_frames: int = 8, threaded: bool = True) -> None:
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self._error: BaseException | None = None
        self._aborted = False
        self._queue: queue.Queue | None = queue.Queue(max_frames) if threaded else None
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="crop-writer", daemon=True)
            self._thread.start()

    def _write(self, frame: np.ndarray, jobs: Sequence[CropJob], rgb: bool) -> None:
        for path, matrix, size in jobs:
            crop = warp(frame, matrix, size)
            if rgb:
                crop = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".jpg", crop, self._params)
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {path}")
            try:
                Path(path).write_bytes(buf.tobytes())
            except OSError as exc:
                raise OSError(f"cannot write the crop {path}: {exc.strerror or exc}; "
                              f"check free space and permissions") from exc

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None and not self._aborted:  # after an error or abort(), drain without writing
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the producer's thread by put/finish
                    self._error = exc

    def put(self, frame: np.ndarray, jobs: Sequence[CropJob], rgb: bool = False) -> None:
        if self._error is not None:
            raise self._error
        if not jobs:
            return
        if self._queue is None:
            self._write(frame, jobs, rgb)
        else:
            self._queue.put((frame, list(jobs), rgb))

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread is not None:
            self._aborted = True
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
