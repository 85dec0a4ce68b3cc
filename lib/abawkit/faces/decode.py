"""Sequential, bounded-memory frame readers for the extraction: decord (default, in bounded chunks) or OpenCV.

Why chunks and a fresh decord reader per chunk: decord's CPU ``VideoReader`` decodes ahead on a background thread
with no limit while the caller is slow (dmlc/decord issues #157, #208, #304). Measured here on a 720p video
with a consumer at ~70 frames/s, ``next()`` on one long-lived reader grew to 2.8 GB within 300 frames, and
``get_batch`` chunks on one reader to 4 GB. So each chunk of at most ``chunk_mb`` of frames is read at full
speed by a reader opened for it (``seek_accurate`` to its first frame, then ``next()``), the reader is closed,
and only then are its frames handed out; chunk ends fall on key frames where possible, so the next chunk's seek
decodes nothing twice. ``cv2.VideoCapture.read()`` needs none of this (it decodes on demand).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

DECODERS = ("opencv", "decord")


class VideoOpenError(RuntimeError):
    """The file cannot be opened as a video (missing, not a video, truncated container)."""


@dataclass
class FrameReader:
    """Iterate ``(frame_1based, image)`` over a video, at most ``max_frames`` frames (decord: in chunks of at most
    ``chunk_mb`` of decoded frames, two alive at a time with ``prefetch``, which decodes the next on a thread).

    ``bgr`` says the channel order of the images (OpenCV: BGR, decord: RGB). After the loop, ``decoded``
    holds the number of frames read and ``stop_reason`` why it stopped early ("" when ``max_frames`` was
    reached or the decoder reported the end).
    """

    path: str
    decoder: str = "decord"
    max_frames: int | None = None
    chunk_mb: float = 96.0
    prefetch: bool = True
    decoded: int = 0
    stop_reason: str = ""
    info: dict = field(default_factory=dict)

    @property
    def bgr(self) -> bool:
        return self.decoder == "opencv"

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; use one of {', '.join(DECODERS)}")
        if not os.path.isfile(self.path):
            raise VideoOpenError(f"no such video file: {self.path}")
        yield from (self._opencv() if self.decoder == "opencv" else self._decord())

    def _limit(self) -> int:
        return self.max_frames if self.max_frames is not None else 1 << 62

    def _opencv(self) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        cap = cv2.VideoCapture(self.path)
        try:
            if not cap.isOpened():
                raise VideoOpenError(f"OpenCV cannot open {self.path} as a video (corrupt or unsupported file)")
            self.info = {"container_frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), "fps": cap.get(cv2.CAP_PROP_FPS),
                         "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))}
            limit = self._limit()
            while self.decoded < limit:
                ok, frame = cap.read()
                if not ok or frame is None:
                    # OpenCV does not tell "end of stream" from "broken frame"; the caller compares counts.
                    self.stop_reason = "" if self.max_frames is None else "no more frames decode"
                    return
                self.decoded += 1
                yield self.decoded, frame
        finally:
            cap.release()

    def _decord_chunks(self) -> Iterator[list[np.ndarray]]:
        """Lists of consecutive frames, each read by a decord reader opened and closed for it."""
        import decord

        def open_reader():
            try:
                return decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
            except Exception as exc:  # decord raises DECORDError/RuntimeError for broken containers
                raise VideoOpenError(f"decord cannot open {self.path}: {type(exc).__name__}: {exc}") from None

        vr = open_reader()
        n = len(vr)
        try:
            first = vr.next().asnumpy() if n else None  # the frame size, and proof that anything decodes
        except Exception as exc:
            raise VideoOpenError(f"decord cannot decode the first frame of {self.path}: {type(exc).__name__}") from None
        h, w = first.shape[:2] if first is not None else (0, 0)
        self.info = {"container_frames": n, "fps": float(vr.get_avg_fps()), "width": w, "height": h}
        try:
            keys = sorted(int(k) for k in vr.get_key_indices())
        except Exception:  # some containers carry no key-frame index: chunks simply end where the budget says
            keys = []
        del vr, first
        limit = min(self._limit(), n)
        per_chunk = max(8, int(self.chunk_mb * 2 ** 20 // max(1, w * h * 3)))
        start = 0
        while start < limit:
            stop = min(start + per_chunk, limit)
            ends = [k for k in keys if start + per_chunk // 2 < k < stop]
            if ends and stop < limit:
                stop = ends[-1]  # the next chunk starts on a key frame: its seek decodes nothing twice
            chunk: list[np.ndarray] = []
            vr = open_reader()
            try:
                if start:
                    vr.seek_accurate(start)
                for _ in range(start, stop):
                    chunk.append(vr.next().asnumpy())
            except StopIteration:
                self.stop_reason = "no more frames decode"
            except Exception as exc:  # a broken packet: keep every frame before it
                self.stop_reason = f"frame {start + len(chunk) + 1} does not decode ({type(exc).__name__})"
            finally:
                del vr  # stops decord's read-ahead before the (slow) caller sees any frame
            yield chunk
            if self.stop_reason:
                return
            start = stop
        if self.max_frames is not None and start < self.max_frames:
            self.stop_reason = f"the container holds only {n} frames"

    def _decord(self) -> Iterator[tuple[int, np.ndarray]]:
        chunks = self._decord_chunks() if not self.prefetch else _prefetched(self._decord_chunks())
        for chunk in chunks:
            chunk.reverse()  # pop() from the end hands frames out in order and frees each one as it goes
            while chunk:
                self.decoded += 1
                yield self.decoded, chunk.pop()


def _prefetched(chunks: Iterator[list[np.ndarray]]) -> Iterator[list[np.ndarray]]:
    """Produce the next chunk on a thread while the caller works on the current one (at most two alive).

    decord's decoding releases the GIL, so on a second core decoding overlaps detection and cropping.
    """
    import queue
    import threading

    slots = threading.Semaphore(2)  # chunks alive: the one being used + the one being decoded/queued
    out: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            while not stop.is_set():
                slots.acquire()
                if stop.is_set():
                    break
                item = next(chunks, done)
                out.put(item)
                if item is done:
                    return
        except BaseException as exc:  # handed to the caller's thread, raised there
            out.put(exc)
        out.put(done)

    thread = threading.Thread(target=produce, name="decord-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            del item
            slots.release()
    finally:
        stop.set()
        slots.release()
        thread.join(timeout=30)
