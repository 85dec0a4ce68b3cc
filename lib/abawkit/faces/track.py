"""Keep the right person across frames: one tracker per subject, re-found by detection when it is lost.

A subject of a two-person video (``side`` "left"/"right") starts its track on the face on its side of the
frame and then follows that face (identity by landmark tracking, and by position when it is re-found), even if
it crosses the middle. Any other subject follows the main face: the largest one when a track starts, then the
same face for as long as it can be followed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .detect import Detection, Face, FaceDetector, MeshTracker

#: After a loss of at most this many frames the subject is re-found near where it was last seen (same track
#: identity); after a longer loss it starts afresh (largest face / face on its side). Our choice, configurable.
REACQUIRE_GAP = 15


@dataclass(frozen=True)
class Found:
    """The target face in one frame: 5 points (template order), face box, the score of the detection that
    started its track, the track id (a new id each time the subject is acquired afresh) and the landmark
    model's face score in this frame."""

    points5: np.ndarray
    box: np.ndarray
    score: float
    track_id: int
    face_score: float = float("nan")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


class SubjectTracker:
    """Follows one subject (``side`` "", "left" or "right") through a video, frame by frame."""

    def __init__(self, side: str = "", reacquire_gap: int = REACQUIRE_GAP, **mesh_kwargs) -> None:
        if side not in ("", "left", "right"):
            raise ValueError(f"side must be '', 'left' or 'right', not {side!r}")
        self.side = side
        self.reacquire_gap = reacquire_gap
        self.mesh = MeshTracker(**mesh_kwargs)
        self.last_box: np.ndarray | None = None
        self.last_frame = -(1 << 30)
        self.track_id = -1
        self.score = float("nan")

    def choose(self, detections: list[Detection], frame_no: int, width: int,
               taken: list[np.ndarray]) -> tuple[Detection | None, bool]:
        """The detection that is this subject, and whether it continues the previous track."""
        free = [d for d in detections if all(iou(d.box, t) < 0.3 for t in taken)]
        if not free:
            return None, False
        if self.last_box is not None and frame_no - self.last_frame <= self.reacquire_gap:
            # Re-find the same person near where it was: overlap first, then distance within a face size.
            size = max(self.last_box[2] - self.last_box[0], self.last_box[3] - self.last_box[1])
            last_c = _centre(self.last_box)
            near = [d for d in free if np.linalg.norm(_centre(d.box) - last_c) < 0.75 * size]
            if near:
                return min(near, key=lambda d: np.linalg.norm(_centre(d.box) - last_c)), True
            if self.side:  # the other person is in view, ours is not: wait rather than switch
                return None, False
        if self.side == "left":
            free = [d for d in free if _centre(d.box)[0] < width / 2]
        elif self.side == "right":
            free = [d for d in free if _centre(d.box)[0] >= width / 2]
        if not free:
            return None, False
        return max(free, key=lambda d: _area(d.box)), False

    def step(self, frame: np.ndarray, bgr: bool, frame_no: int, detector: FaceDetector,
             detections: "DetectionCache", taken: list[np.ndarray]) -> Found | None:
        face: Face | None = self.mesh.step(frame, bgr) if self.mesh.center is not None else None
        if face is not None and any(iou(face.box, t) >= 0.3 for t in taken):
            face = None  # drifted onto a face another subject already holds
        if face is None:
            self.mesh.reset()
            det, continues = self.choose(detections.get(frame, bgr, detector), frame_no, frame.shape[1], taken)
            if det is None:
                return None
            self.mesh.seed(det.box)
            face = self.mesh.step(frame, bgr, refine=True)
            if face is None:
                self.mesh.reset()
                return None
            if not continues or self.track_id < 0:
                self.track_id += 1
                self.score = det.score
        self.last_box, self.last_frame = face.box, frame_no
        return Found(face.points5, face.box, self.score, self.track_id, face.score)

    def close(self) -> None:
        self.mesh.close()


class DetectionCache:
    """Runs the detector at most once per frame, however many subjects need it."""

    def __init__(self) -> None:
        self._dets: list[Detection] | None = None  # None: not run on this frame yet
        self.calls = 0

    def new_frame(self) -> None:
        self._dets = None

    def get(self, frame: np.ndarray, bgr: bool, detector: FaceDetector) -> list[Detection]:
        if self._dets is None:
            self._dets = detector.detect(frame, bgr)
            self.calls += 1
        return self._dets
