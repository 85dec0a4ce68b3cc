"""Crops from 5 facial points: similarity alignment onto the ArcFace 112x112 template, and loose square crops."""

from __future__ import annotations

import cv2
import numpy as np

#: The standard 5-point template of ArcFace/insightface for 112x112 crops (x, y in pixels): the eye on the
#: image left, the eye on the image right, nose tip, mouth corner on the image left, on the image right.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)

#: Side of the loose crop relative to the larger side of the face-oval box (our choice: forehead, chin and
#: some hair and background, like the organizers' ``cropped`` folder; configurable).
LOOSE_SCALE = 1.4


def template(size: int = 112) -> np.ndarray:
    """The 5-point template scaled to a ``size`` x ``size`` crop (the template scales about the origin)."""
    return TEMPLATE_112 * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` points onto ``dst``.

    The same transform as insightface's ``norm_crop`` (Umeyama's method, skimage ``SimilarityTransform``), in
    its 2-D closed form: with both point sets centred, ``scale * (cos, sin) = (sum s.d, sum s x d) / sum |s|^2``
    (no SVD: this runs once per frame). Returns the 2x3 matrix for ``cv2.warpAffine``.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    norm = (s * s).sum()
    if norm <= 0:  # all source points coincide: translation only
        a, b = 1.0, 0.0
    else:
        a = (s * d).sum() / norm
        b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / norm
    m = np.array([[a, -b, 0.0], [b, a, 0.0]])
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def align_matrix(points5: np.ndarray, size: int = 112) -> np.ndarray:
    """Matrix mapping the frame onto the aligned ``size`` crop for 5 points in template order."""
    return similarity_transform(points5, template(size))


def loose_matrix(box: np.ndarray | tuple[float, float, float, float], size: int = 224,
                 scale: float = LOOSE_SCALE) -> np.ndarray:
    """Matrix mapping the frame onto a square ``size`` crop centred on ``box`` (x0, y0, x1, y1), side
    ``scale`` times the box's larger side; parts outside the frame come out black."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0) * scale
    k = size / side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]], np.float64)


def warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply a 2x3 matrix to get a ``size`` x ``size`` crop (bilinear, black outside the frame)."""
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Where ``points`` (n, 2) land under a 2x3 matrix."""
    pts = np.asarray(points, np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]
