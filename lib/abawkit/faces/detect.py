"""Face finding with mediapipe 0.10.21: FaceDetection boxes (``solutions``) and FaceMesh's landmark model for the
5 points on a face region.

``FaceDetector`` runs BlazeFace on a downscaled copy of the frame (it letterboxes to 128 or 192 pixels
anyway, so a smaller input only saves conversion time). ``MeshTracker`` runs the FaceMesh landmark model on
a square region centred on the face and turned upright, placed every frame from the landmarks of the last, so
the model sees the face at a steady position, scale and angle; when it loses the face the detector re-finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
_OVAL = slice(2 * _N_EYE + 3, None)  # the FACE_OVAL rows of _USED


@dataclass(frozen=True)
class Detection:
    """A face box (x0, y0, x1, y1, frame pixels) and the detector's score."""

    box: np.ndarray
    score: float


@dataclass(frozen=True)
class Face:
    """One face in one frame: the 5 points in template order (image-left eye, image-right eye, nose tip,
    image-left and image-right mouth corner), the box of the face oval, in frame pixels, and the landmark
    model's face score."""

    points5: np.ndarray
    box: np.ndarray
    score: float = float("nan")


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


#: mediapipe's FaceLandmarkCpu graph (modules/face_landmark/face_landmark_cpu.pbtxt of the 0.10.21 wheel) for an
#: image that is already the face region: no region input and no projection, and the face score is an output.
#: One XNNPACK thread: two made the 720p stage slower here (92-110 vs 112-142 frames/s, 2 cores all busy).
_LANDMARK_GRAPH = """
input_stream: "image"
output_stream: "landmarks"
output_stream: "score"
node {
  calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:input_tensors"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] {
    output_tensor_width: 192 output_tensor_height: 192 output_tensor_float_range { min: 0.0 max: 1.0 } } }
}
node {
  calculator: "InferenceCalculator" input_stream: "TENSORS:input_tensors" output_stream: "TENSORS:output_tensors"
  options { [mediapipe.InferenceCalculatorOptions.ext] {
    model_path: "mediapipe/modules/face_landmark/face_landmark.tflite" delegate { xnnpack { num_threads: 1 } } } }
}
node {
  calculator: "SplitTensorVectorCalculator" input_stream: "output_tensors"
  output_stream: "landmark_tensors" output_stream: "face_flag_tensor"
  options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges { begin: 0 end: 1 } ranges { begin: 1 end: 2 } } }
}
node {
  calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:face_flag_tensor" output_stream: "FLOAT:score"
  options { [mediapipe.TensorsToFloatsCalculatorOptions.ext] { activation: SIGMOID } }
}
node {
  calculator: "TensorsToLandmarksCalculator" input_stream: "TENSORS:landmark_tensors"
  output_stream: "NORM_LANDMARKS:landmarks"
  options { [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {
    num_landmarks: 468 input_image_width: 192 input_image_height: 192 } }
}
"""


class LandmarkModel:
    """mediapipe's FaceMesh landmark model (``face_landmark.tflite`` of the 0.10.21 wheel, 468 points and a face
    score) on an image that is already the face region.

    ``mp.solutions.face_mesh`` wraps the same model in a graph that also runs a face detector, loops over faces,
    derives the next region and converts every output to Python on each call: about 1.4 ms a frame more than the
    model alone here. We place the region ourselves (``MeshTracker``), so only the model's own graph is kept.
    """

    def __init__(self) -> None:
        import mediapipe as mp
        from google.protobuf import text_format
        from mediapipe.calculators.core import split_vector_calculator_pb2  # noqa: F401 (the options' types)
        from mediapipe.calculators.tensor import (image_to_tensor_calculator_pb2, inference_calculator_pb2,  # noqa: F401
                                                  tensors_to_floats_calculator_pb2,
                                                  tensors_to_landmarks_calculator_pb2)
        from mediapipe.framework import calculator_pb2
        from mediapipe.python import packet_creator, packet_getter
        from mediapipe.python._framework_bindings import calculator_graph, resource_util

        # The graph finds the .tflite under the package root, as mp.solutions sets it up.
        resource_util.set_resource_dir(str(Path(mp.__file__).resolve().parent.parent))
        config = text_format.Parse(_LANDMARK_GRAPH, calculator_pb2.CalculatorGraphConfig())
        self._create, self._get = packet_creator, packet_getter
        self._format = mp.ImageFormat.SRGB
        self._graph = calculator_graph.CalculatorGraph(graph_config=config)
        self._out: dict = {}
        for stream in ("landmarks", "score"):
            self._graph.observe_output_stream(stream, lambda name, packet: self._out.__setitem__(name, packet), False)
        self._graph.start_run({})
        self._timestamp = 0

    def __call__(self, rgb: np.ndarray, index: tuple[int, ...]) -> tuple[np.ndarray, float]:
        """Landmarks ``index`` as (n, 2) in ``rgb``'s normalized coordinates, and the model's face score (the
        probability that the region holds a face; mediapipe's FaceMesh drops results below 0.5)."""
        self._timestamp += 1
        self._out.clear()
        self._graph.add_packet_to_input_stream(
            "image", self._create.create_image_frame(image_format=self._format, data=rgb).at(self._timestamp))
        self._graph.wait_until_idle()
        lm = self._get.get_proto(self._out["landmarks"]).landmark
        return np.array([(lm[i].x, lm[i].y) for i in index], np.float64), self._get.get_float(self._out["score"])

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None


class MeshTracker:
    """The landmark model on a ``roi_size`` square region around one face, upright and centred, following it.

    ``seed(box)`` places the region on a detection box; each ``step`` cuts the region (rotated so that the
    eyes of the last result are level, as mediapipe's own tracking does), finds the landmarks and re-centres
    the region on them. A result far from the region's centre, or of an implausible size, is rejected (the
    model drifted to something else), so the caller re-finds the face with the detector.
    """

    def __init__(self, roi_size: int = 192, mesh_scale: float = 1.6, det_scale: float = 2.0,
                 min_score: float = 0.5) -> None:
        self.roi_size = roi_size
        self.mesh_scale = mesh_scale
        self.det_scale = det_scale
        self.min_score = min_score
        self._model = LandmarkModel()
        self.center: np.ndarray | None = None
        self.side = 0.0
        self.angle = 0.0  # radians: direction of the eye line (image-left eye -> image-right eye)

    def seed(self, box: np.ndarray) -> None:
        x0, y0, x1, y1 = box
        self.center = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float64)
        self.side = max(x1 - x0, y1 - y0) * self.det_scale
        self.angle = 0.0

    def reset(self) -> None:
        self.center = None

    def step(self, frame: np.ndarray, bgr: bool, refine: bool = False) -> Face | None:
        """Landmarks in the current region; ``refine`` runs the model a second time on the region its first
        result gives (for a region placed from a detection box, whose scale and angle are only approximate)."""
        if self.center is None:
            return None
        face = self._step(frame, bgr)
        return self._step(frame, bgr) if refine and face is not None else face

    def _step(self, frame: np.ndarray, bgr: bool) -> Face | None:
        r = self.roi_size
        k = r / self.side
        c, s = np.cos(self.angle), np.sin(self.angle)
        rot = np.array([[c, s], [-s, c]])  # frame -> region: rotate by -angle about the centre, scale by k
        m = np.empty((2, 3), np.float64)
        m[:, :2] = k * rot
        m[:, 2] = r / 2 - k * rot @ self.center
        roi = cv2.warpAffine(frame, m, (r, r), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        uv, score = self._model(to_rgb(roi, bgr), _USED)
        if score < self.min_score:
            return None
        local = uv * r - r / 2  # region pixels about its centre (upright face)
        pts = local @ rot / k + self.center  # back to frame pixels
        oval = pts[_OVAL]
        box = np.concatenate([oval.min(0), oval.max(0)])
        oval_local = local[_OVAL]
        size = float((oval_local.max(0) - oval_local.min(0)).max()) / k  # face size, free of the rotation
        centre = (box[:2] + box[2:]) / 2
        # Reject a face that is not the one the region was centred on, or an implausible size.
        if np.abs(centre - self.center).max() > 0.3 * self.side or not 0.2 * self.side < size < 1.0 * self.side:
            return None
        points5 = np.stack([pts[:_N_EYE].mean(0), pts[_N_EYE:2 * _N_EYE].mean(0), pts[2 * _N_EYE],
                            pts[2 * _N_EYE + 1], pts[2 * _N_EYE + 2]])
        eyes = points5[1] - points5[0]
        self.center = centre
        self.side = size * self.mesh_scale
        self.angle = float(np.arctan2(eyes[1], eyes[0]))
        return Face(points5, box, score)

    def close(self) -> None:
        self._model.close()
