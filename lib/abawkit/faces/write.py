"""JPEG encoding and writing of crops on a background thread, so that file creation (slow on network and
overlay file systems) and encoding overlap the landmark model instead of adding to it. OpenCV's encoder and
file writes release the GIL. The queue is bounded, so memory stays a few dozen crops whatever the video."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

_STOP = object()


class CropWriter:
    """``put(path, crop_bgr)`` queues a crop; ``finish()`` waits until every crop is on disk and raises the
    first error (naming the file); ``abort()`` stops without waiting (a failed video is cleared anyway)."""

    def __init__(self, jpeg_quality: int = 95, max_pending: int = 64, threaded: bool = True) -> None:
        import cv2

        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self._error: BaseException | None = None
        self._queue: queue.Queue | None = queue.Queue(max_pending) if threaded else None
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="crop-writer", daemon=True)
            self._thread.start()

    def _write(self, path: Path, crop: np.ndarray) -> None:
        import cv2

        ok, buf = cv2.imencode(".jpg", crop, self._params)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {path}")
        try:
            path.write_bytes(buf.tobytes())
        except OSError as exc:
            raise OSError(f"cannot write the crop {path}: {exc.strerror or exc}; check free space and permissions") from exc

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is None:  # after an error, drain without writing
                try:
                    self._write(*item)
                except BaseException as exc:  # handed to the producer thread by put/finish
                    self._error = exc

    def put(self, path: Path, crop: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        if self._queue is None:
            self._write(path, crop)
        else:
            self._queue.put((path, crop))

    def finish(self) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread is not None:
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
