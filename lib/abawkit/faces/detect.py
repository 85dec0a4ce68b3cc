"""Face finding with mediapipe 0.10.21 ``solutions``: FaceDetection boxes and FaceMesh 5 points on a face region.

``FaceDetector`` runs BlazeFace on a downscaled copy of the frame (it letterboxes to 128 or 192 pixels
anyway, so a smaller input only saves conversion time). ``MeshTracker`` runs FaceMesh in its tracking mode on
a square region centred on the face, re-centred every frame from the landmarks it found, so the landmark
model sees the face at a steady position and scale and runs its own detector only when it loses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# FaceMesh (468-point) indices. "left"/"right" below are image sides for a face looking at the camera.
EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP = 1
MOUTH_CORNERS = (61, 291)
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284,
             288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)
#: Only these landmarks are read out of the protobuf result (reading all 468 costs ~0.3 ms a frame).
_USED = (*EYE_IMAGE_LEFT, *EYE_IMAGE_RIGHT, NOSE_TIP, *MOUTH_CORNERS, *FACE_OVAL)
_N_EYE = len(EYE_IMAGE_LEFT)


@dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1, frame pixels) and the detector's score."""

    box: np.ndarray
    score: float


@dataclass(frozen=True)
class Face:
    """One face in one frame: the 5 points in template order (image-left eye, image-right eye, nose tip,
    image-left and image-right mouth corner) and the box of the face oval, in frame pixels."""

    points5: np.ndarray
    box: np.ndarray


def to_rgb(image: np.ndarray, bgr: bool) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else np.ascontiguousarray(image)


class FaceDetector:
    """mediapipe FaceDetection on a copy of the frame whose longer side is at most ``max_side``.

    ``model="full"`` is the full-range model (faces up to ~5 m, what a wide in-the-wild shot needs);
    ``"short"`` is faster (~2.5 vs ~7 ms a call here) and finds only large faces.
    """

    def __init__(self, max_side: int = 640, model: str = "full", min_score: float = 0.5) -> None:
        import mediapipe as mp

        if model not in ("full", "short"):
            raise ValueError(f"detector model must be 'full' or 'short', not {model!r}")
        self.max_side = max_side
        self._fd = mp.solutions.face_detection.FaceDetection(model_selection=1 if model == "full" else 0,
                                                             min_detection_confidence=min_score)

    def detect(self, frame: np.ndarray, bgr: bool) -> list[Detection]:
        h, w = frame.shape[:2]
        k = min(1.0, self.max_side / max(h, w))
        small = frame if k >= 1.0 else cv2.resize(frame, (round(w * k), round(h * k)), interpolation=cv2.INTER_LINEAR)
        result = self._fd.process(to_rgb(small, bgr))
        out = []
        for det in result.detections or ():
            bb = det.location_data.relative_bounding_box
            x0, y0 = max(0.0, bb.xmin * w), max(0.0, bb.ymin * h)
            x1, y1 = min(float(w), (bb.xmin + bb.width) * w), min(float(h), (bb.ymin + bb.height) * h)
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                out.append(Detection(np.array([x0, y0, x1, y1], np.float64), float(det.score[0])))
        return out

    def close(self) -> None:
        self._fd.close()


class MeshTracker:
    """FaceMesh (tracking mode) on a ``roi_size`` square region around one face, following it.

    ``seed(box)`` places the region on a detection box; each ``step`` crops the region, finds the landmarks and
    re-centres the region on them. A result far from the region's centre is rejected (the landmark model
    drifted to something else), so the caller re-finds the face with the detector.
    """

    def __init__(self, roi_size: int = 192, mesh_scale: float = 1.6, det_scale: float = 2.0) -> None:
        import mediapipe as mp

        self.roi_size = roi_size
        self.mesh_scale = mesh_scale
        self.det_scale = det_scale
        self._fm = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                                   refine_landmarks=False, min_detection_confidence=0.5,
                                                   min_tracking_confidence=0.5)
        self.center: np.ndarray | None = None
        self.side = 0.0

    def seed(self, box: np.ndarray) -> None:
        x0, y0, x1, y1 = box
        self.center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)
        self.side = max(x1 - x0, y1 - y0) * self.det_scale

    def reset(self) -> None:
        self.center = None

    def step(self, frame: np.ndarray, bgr: bool) -> Face | None:
        if self.center is None:
            return None
        r = self.roi_size
        k = r / self.side
        ox, oy = self.center - self.side / 2
        m = np.array([[k, 0.0, -k * ox], [0.0, k, -k * oy]], np.float64)
        roi = cv2.warpAffine(frame, m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        result = self._fm.process(to_rgb(roi, bgr))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(lm[i].x, lm[i].y) for i in _USED], np.float64) * (self.side)
        pts += (ox, oy)
        oval = pts[2 * _N_EYE + 3:]
        box = np.concatenate([oval.min(0), oval.max(0)])
        size = max(box[2] - box[0], box[3] - box[1])
        centre = (box[:2] + box[2:]) / 2
        # Reject a face that is not the one the region was centred on, or an implausible size.
        if np.abs(centre - self.center).max() > 0.3 * self.side or not 0.2 * self.side < size < 1.0 * self.side:
            return None
        points5 = np.stack([pts[:_N_EYE].mean(0), pts[_N_EYE:2 * _N_EYE].mean(0), pts[2 * _N_EYE],
                            pts[2 * _N_EYE + 1], pts[2 * _N_EYE + 2]])
        self.center = centre
        self.side = size * self.mesh_scale
        return Face(points5, box)

    def close(self) -> None:
        self._fm.close()
