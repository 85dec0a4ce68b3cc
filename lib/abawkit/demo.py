"""A small Aff-Wild2 in the real release layout, built from real faces, so every stage runs without the data.

Faces are the portraits shipped in matplotlib (Grace Hopper) and scikit-image (the astronaut), located with
mediapipe FaceMesh. Each expression class is a deformation of the face around its landmarks (mouth
corners, lips, jaw, brows, eyelids) with onset, apex and offset; blinks and talking add class-free motion;
head motion, scale, lighting, noise and backgrounds vary independently of the class, so the class is
visible only in the face. Unlabeled faces come from scikit-image's ``lfw_subset`` and extra renders.

The tree also holds, for tests and scoring only, ``test_ground_truth/`` (test labels in annotation format)
and ``render_truth/`` (true eye positions and face boxes); the pipeline never reads them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .annotations import write_annotation
from .io import atomic_path, write_csv, write_json, write_text
from .labels import CLASSES, IGNORE, NUM_CLASSES
from .runinfo import run_record
from .submission import SUBMISSION_HEADER, location

#: Class shares of the demo, shaped like Aff-Wild2's (Neutral and Other common, Fear and Disgust rare).
CLASS_SHARES = np.array([0.30, 0.06, 0.035, 0.035, 0.17, 0.10, 0.08, 0.22])
#: Class shares of the unlabeled renders: skewed towards the head classes, as an in-the-wild pool is.
UNLABELED_SHARES = np.array([0.40, 0.04, 0.02, 0.02, 0.22, 0.06, 0.04, 0.20])
TEST_LIST_NAME = "Expression_Recognition_Challenge_test_set_release.txt"
EXAMPLE_NAME = "CVPR_6th_ABAW_Expr_test_set_example.txt"
EXPR_DIR = Path("annotations") / "EXPR_Recognition_Challenge"
SPRITE = 160  # side of the face sprite (pixels) the deformations are computed on
EXPRESSION_GAIN = 1.3  # scales every class deformation; 1.0 is subtle, like the real data

# FaceMesh (468 + 10 iris) landmark indices.
OVAL = [10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234, 251, 284, 288,
        297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454]
IRIS = (468, 473)
MOUTH_CORNERS = (61, 291)
UPPER_LIP, LOWER_LIP = (0, 13, 37, 267), (14, 17, 84, 314)
CHIN = (152, 148, 377, 176, 400)
BROWS = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))  # outer .. inner, one tuple per brow
UPPER_LIDS, LOWER_LIDS = (159, 386), (145, 374)
NOSE_WINGS = (98, 327)
ANCHORS = (1, 4, 33, 133, 263, 362, 168, 6, *OVAL)


@dataclass(frozen=True)
class DemoConfig:
    """Size of the demo tree. Defaults: 12 videos of about 300 frames, built in well under a minute."""

    seed: int = 0
    n_train: int = 7
    n_val: int = 2
    n_test: int = 3
    frames: int = 300
    n_unlabeled_renders: int = 300
    fps: int = 30


@dataclass
class Identity:
    """A face sprite (RGB, SPRITE x SPRITE), its soft mask, its landmarks and per-class displacement fields."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- faces
def portrait_images() -> dict[str, np.ndarray]:
    """The real portraits shipped inside matplotlib and scikit-image (RGB uint8)."""
    from matplotlib import cbook
    from skimage import data

    hopper = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return {"hopper": cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB), "astronaut": data.astronaut()}


def face_mesh_landmarks(image: np.ndarray) -> np.ndarray:
    """478 FaceMesh landmarks (x, y in pixels) of the one face in ``image``."""
    import mediapipe as mp

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as fm:
        result = fm.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("mediapipe found no face in a demo portrait; is mediapipe 0.10.21 installed?")
    h, w = image.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark], dtype=np.float32)


def make_identity(name: str, image: np.ndarray, landmarks: np.ndarray, flip: bool = False) -> Identity:
    """Cut a square sprite around the face oval (with hair and chin margin) and derive its mask and fields."""
    oval = landmarks[OVAL]
    x0, y0 = oval.min(0)
    x1, y1 = oval.max(0)
    side = max(x1 - x0, y1 - y0) * 1.35
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - 0.03 * side
    scale = SPRITE / side
    m = np.array([[scale, 0, SPRITE / 2 - scale * cx], [0, scale, SPRITE / 2 - scale * cy]], dtype=np.float32)
    sprite = cv2.warpAffine(image, m, (SPRITE, SPRITE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    pts = landmarks @ m[:, :2].T + m[:, 2]
    if flip:
        sprite = sprite[:, ::-1].copy()
        pts = pts.copy()
        pts[:, 0] = SPRITE - 1 - pts[:, 0]
    hull = cv2.convexHull(pts[OVAL].astype(np.float32))
    center = pts[OVAL].mean(0)
    grown = (hull.reshape(-1, 2) - center) * np.array([1.08, 1.12]) + center
    mask = np.zeros((SPRITE, SPRITE), np.float32)
    cv2.fillConvexPoly(mask, grown.astype(np.int32), 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), 3.0)
    ident = Identity(name + ("_flip" if flip else ""), sprite, mask, pts)
    ident.fields = expression_fields(pts)
    return ident


def _iod(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[IRIS[0]] - pts[IRIS[1]]))


def expression_fields(pts: np.ndarray) -> dict[str, np.ndarray]:
    """Backward displacement fields (SPRITE, SPRITE, 2) at unit intensity for each class and nuisance motion.

    A control point moves by ``d`` (in inter-ocular units; x outward from the face midline, y down); the
    field is a Gaussian-weighted average of the control displacements, with fixed anchor points so that the
    rest of the face stays put.
    """
    iod = _iod(pts)
    mid_x = float(pts[[IRIS[0], IRIS[1]]][:, 0].mean())

    def out(i: int) -> float:  # +1 when "outward" is +x for this landmark
        return 1.0 if pts[i, 0] >= mid_x else -1.0

    def moves(spec: list[tuple[tuple[int, ...], float, float]], gain: float = EXPRESSION_GAIN) -> list[tuple[int, np.ndarray]]:
        res = []
        for idxs, dx_out, dy in spec:
            for i in idxs:
                res.append((i, np.array([dx_out * out(i), dy], np.float32) * iod * gain))
        return res

    brow_outer = (BROWS[0][0], BROWS[1][0], BROWS[0][1], BROWS[1][1])
    brow_inner = (BROWS[0][3], BROWS[0][4], BROWS[1][3], BROWS[1][4])
    brow_all = BROWS[0] + BROWS[1]
    specs: dict[str, list[tuple[tuple[int, ...], float, float]]] = {
        "Anger": [(brow_inner, -0.07, 0.10), (brow_outer, 0.0, 0.03), (UPPER_LIDS, 0.0, 0.04),
                  (UPPER_LIP, 0.0, 0.04), (LOWER_LIP, 0.0, -0.05), (MOUTH_CORNERS, -0.05, 0.0)],
        "Disgust": [(UPPER_LIP, 0.0, -0.12), (NOSE_WINGS, 0.02, -0.06), (brow_all, -0.02, 0.06),
                    (LOWER_LIDS, 0.0, -0.04), (MOUTH_CORNERS, -0.02, 0.05)],
        "Fear": [(brow_all, 0.0, -0.10), (brow_inner, -0.05, 0.0), (UPPER_LIDS, 0.0, -0.06),
                 (MOUTH_CORNERS, 0.10, 0.04), (LOWER_LIP, 0.0, 0.10), (CHIN, 0.0, 0.06)],
        "Happiness": [(MOUTH_CORNERS, 0.10, -0.13), (LOWER_LIDS, 0.0, -0.05), (UPPER_LIP, 0.0, -0.02),
                      (LOWER_LIP, 0.0, 0.03)],
        "Sadness": [(MOUTH_CORNERS, -0.03, 0.12), (brow_inner, -0.04, -0.10), (brow_outer, 0.0, 0.04),
                    (UPPER_LIDS, 0.0, 0.04), (LOWER_LIP, 0.0, -0.03)],
        "Surprise": [(brow_all, 0.0, -0.17), (UPPER_LIDS, 0.0, -0.06), (LOWER_LIP, 0.0, 0.26),
                     (CHIN, 0.0, 0.22), (MOUTH_CORNERS, -0.04, 0.08)],
        "blink": [(UPPER_LIDS, 0.0, 0.09)],
        "talk": [(LOWER_LIP, 0.0, 0.10), (CHIN, 0.0, 0.08), (MOUTH_CORNERS, 0.0, 0.03)],
    }
    fields = {name: _field(pts, moves(spec, 1.0 if name in ("blink", "talk") else EXPRESSION_GAIN), iod)
              for name, spec in specs.items()}
    # "Other": an asymmetric smirk with one raised brow, on either side of the face.
    for side, (corner, brow) in enumerate(((MOUTH_CORNERS[0], BROWS[0]), (MOUTH_CORNERS[1], BROWS[1]))):
        spec = [((corner,), 0.08, -0.12), (brow, 0.0, -0.12)]
        fields[f"Other{side}"] = _field(pts, moves(spec), iod)
    return fields


def _field(pts: np.ndarray, moves: list[tuple[int, np.ndarray]], iod: float) -> np.ndarray:
    moved = {i for i, _ in moves}
    ctrl = [(pts[i], d) for i, d in moves] + [(pts[i], np.zeros(2, np.float32)) for i in ANCHORS if i not in moved]
    ys, xs = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    sigma2 = 2 * (0.16 * iod) ** 2
    num = np.zeros((SPRITE, SPRITE, 2), np.float32)
    den = np.zeros((SPRITE, SPRITE), np.float32)
    for p, d in ctrl:
        w = np.exp(-((xs - p[0]) ** 2 + (ys - p[1]) ** 2) / sigma2)
        num += w[..., None] * d
        den += w
    return num / np.maximum(den, 1.0)[..., None]


def load_identities() -> list[Identity]:
    """Four identities: the two portraits and their mirror images."""
    out = []
    for name, image in portrait_images().items():
        lm = face_mesh_landmarks(image)
        out += [make_identity(name, image, lm), make_identity(name, image, lm, flip=True)]
    return out


# -------------------------------------------------------------------------------------------- timelines
@dataclass
class Timeline:
    """Per-frame class, expression intensity, nuisance motion, presence and annotation of one subject."""

    labels: np.ndarray       # annotation (-1 = not annotated)
    klass: np.ndarray        # expression shown (index), whatever the annotation says
    intensity: np.ndarray
    other_side: np.ndarray
    blink: np.ndarray
    talk: np.ndarray
    present: np.ndarray


def class_schedule(rng: np.random.Generator, n_segments: int, shares: np.ndarray = CLASS_SHARES) -> list[int]:
    """Classes of ``n_segments`` events: every class once (so every split can score every class), the rest
    drawn from ``shares``; shuffled."""
    base = list(range(NUM_CLASSES)) if n_segments >= NUM_CLASSES else []
    rest = rng.choice(NUM_CLASSES, size=n_segments - len(base), p=shares / shares.sum()).tolist()
    seq = base + rest
    rng.shuffle(seq)
    return [int(c) for c in seq]


def make_timeline(rng: np.random.Generator, n: int, classes: list[int], no_face: bool) -> Timeline:
    klass = np.zeros(n, np.int64)
    intensity = np.zeros(n, np.float32)
    other_side = np.zeros(n, np.int64)
    k = len(classes)
    min_len = min(20, n // k)  # no event so short that a split's only example of a class vanishes
    lengths = min_len + rng.multinomial(n - k * min_len, np.ones(k) / k)
    bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    for c, a, b in zip(classes, bounds[:-1], bounds[1:]):
        klass[a:b] = c
        other_side[a:b] = rng.integers(0, 2)
        if c == 0:
            continue
        length = b - a
        on = min(int(rng.integers(3, 8)), length // 3)
        off = min(int(rng.integers(3, 8)), length // 3)
        apex = rng.uniform(0.75, 1.0)
        env = np.full(length, apex, np.float32)
        env[:on] = apex * np.linspace(0.35, 1.0, on, endpoint=False) if on else env[:on]
        env[length - off:] = apex * np.linspace(1.0, 0.35, off) if off else env[length - off:]
        intensity[a:b] = env
    labels = klass.copy()
    # Unannotated stretches with a face present.
    for _ in range(int(rng.integers(0, 2))):
        a = int(rng.integers(0, n - 10))
        labels[a:a + int(rng.integers(4, 10))] = IGNORE
    present = np.ones(n, bool)
    if no_face:
        a = int(rng.integers(n // 4, n - 40))
        length = int(rng.integers(12, 25))
        present[a:a + length] = False
        if rng.random() < 0.5:
            labels[a:a + length] = IGNORE
    blink = np.zeros(n, np.float32)
    for t in range(int(rng.integers(5, 40)), n, int(rng.integers(50, 110))):
        blink[t:t + 4] = [0.5, 1.0, 1.0, 0.5][: len(blink[t:t + 4])]
    talk_amp = np.repeat(rng.random(n // 30 + 1) < 0.4, 30)[:n] * rng.uniform(0.3, 0.8)
    talk = (talk_amp * np.abs(np.sin(np.arange(n) * rng.uniform(0.5, 0.9)))).astype(np.float32)
    return Timeline(labels, klass, intensity, other_side, blink, talk, present)


def _smooth_walk(rng: np.random.Generator, n: int, amplitude: float, periods: tuple[float, float]) -> np.ndarray:
    t = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    for _ in range(3):
        period = rng.uniform(*periods)
        out += np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) / 3
    return amplitude * out


# -------------------------------------------------------------------------------------------- rendering
def deformed_sprite(ident: Identity, klass: int, intensity: float, other_side: int, blink: float,
                    talk: float) -> tuple[np.ndarray, np.ndarray]:
    disp = blink * ident.fields["blink"] + talk * ident.fields["talk"]
    if klass != 0 and intensity > 0:
        key = f"Other{other_side}" if CLASSES[klass] == "Other" else CLASSES[klass]
        disp = disp + intensity * ident.fields[key]
    ys, xs = np.mgrid[0:SPRITE, 0:SPRITE].astype(np.float32)
    map_x, map_y = xs - disp[..., 0], ys - disp[..., 1]
    img = cv2.remap(ident.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return img, ident.mask


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour texture (float32 RGB), larger than the frame so it can drift."""
    small = rng.uniform(40, 200, size=(6, 8, 3)).astype(np.float32)
    big = cv2.resize(small, (w + 64, h + 64), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255)


@dataclass
class SyntheticSubject:
    """One person drawn into a demo video: a face identity, the expression timeline it plays, its motion."""

    video_id: str
    ident: Identity
    timeline: Timeline
    motion: np.ndarray  # (n, 4): dx, dy, scale, angle
    anchor: tuple[float, float]
    face_px: float


def render_video(path: Path, subjects: list[SyntheticSubject], size: tuple[int, int], n: int, rng: np.random.Generator,
                 fps: int) -> dict[str, pd.DataFrame]:
    """Write one video (mp4v in .mp4, MJPG in .avi) and return each subject's render truth per frame."""
    w, h = size
    bg = background(rng, h, w)
    cast = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    gain = 1.0 + _smooth_walk(rng, n, 0.22, (60, 200))
    drift = _smooth_walk(rng, n, 20, (100, 300))
    noise_sigma = rng.uniform(2.0, 6.0)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    truth: dict[str, list[dict]] = {s.video_id: [] for s in subjects}
    with atomic_path(path) as tmp:
        tmp_video = tmp.with_suffix(path.suffix)  # the writer picks the container from the suffix
        writer = cv2.VideoWriter(str(tmp_video), fourcc, float(fps), (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path.suffix} video here (fourcc {fourcc})")
        try:
            for t in range(n):
                ox = int(32 + drift[t])
                frame = bg[32:32 + h, ox:ox + w].copy()
                for s in subjects:
                    tl = s.timeline
                    row = {"frame": t + 1, "has_face": bool(tl.present[t])}
                    if tl.present[t]:
                        img, mask = deformed_sprite(s.ident, int(tl.klass[t]), float(tl.intensity[t]),
                                                    int(tl.other_side[t]), float(tl.blink[t]), float(tl.talk[t]))
                        dx, dy, sc, ang = s.motion[t]
                        scale = s.face_px * sc / SPRITE
                        m = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), float(ang), float(scale))
                        m[:, 2] += np.array([s.anchor[0] + dx, s.anchor[1] + dy]) - SPRITE / 2
                        face = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32)
                        alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
                        frame = frame * (1 - alpha) + face * alpha
                        pts = s.ident.landmarks @ m[:, :2].T + m[:, 2]
                        eyes = sorted([pts[IRIS[0]], pts[IRIS[1]]], key=lambda p: p[0])
                        box = pts[OVAL]
                        row.update(left_eye_x=eyes[0][0], left_eye_y=eyes[0][1], right_eye_x=eyes[1][0],
                                   right_eye_y=eyes[1][1], box_x0=box[:, 0].min(), box_y0=box[:, 1].min(),
                                   box_x1=box[:, 0].max(), box_y1=box[:, 1].max())
                    truth[s.video_id].append(row)
                frame = frame * cast * gain[t] + rng.normal(0, noise_sigma, size=frame.shape).astype(np.float32)
                frame = np.clip(frame, 0, 255).astype(np.uint8)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        os.replace(tmp_video, tmp)
    cols = ["frame", "has_face", "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y",
            "box_x0", "box_y0", "box_x1", "box_y1"]
    return {vid: pd.DataFrame(rows).reindex(columns=cols).round(2) for vid, rows in truth.items()}


def _motion(rng: np.random.Generator, n: int, amp: float) -> np.ndarray:
    return np.stack([_smooth_walk(rng, n, amp, (40, 150)), _smooth_walk(rng, n, amp * 0.6, (40, 150)),
                     1.0 + _smooth_walk(rng, n, 0.12, (60, 200)), _smooth_walk(rng, n, 8.0, (50, 180))], axis=1)


def render_unlabeled(out_dir: Path, identities: list[Identity], n: int, rng: np.random.Generator,
                     size: int = 112) -> pd.DataFrame:
    """Loose face crops of random identities and expressions (skewed classes), plus the LFW faces."""
    from skimage import data

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        ident = identities[int(rng.integers(len(identities)))]
        c = int(rng.choice(NUM_CLASSES, p=UNLABELED_SHARES))
        img, mask = deformed_sprite(ident, c, float(rng.uniform(0.6, 1.0)) if c else 0.0, int(rng.integers(2)),
                                    float(rng.random() < 0.1), float(rng.uniform(0, 0.5)))
        scale = size * rng.uniform(0.85, 1.0) / SPRITE
        m = cv2.getRotationMatrix2D((SPRITE / 2, SPRITE / 2), float(rng.uniform(-8, 8)), float(scale))
        m[:, 2] += size / 2 - SPRITE / 2 + rng.uniform(-4, 4, size=2)
        bg = background(rng, size, size)[:size, :size]
        face = cv2.warpAffine(img, m, (size, size)).astype(np.float32)
        alpha = cv2.warpAffine(mask, m, (size, size))[..., None]
        crop = (bg * (1 - alpha) + face * alpha) * rng.uniform(0.8, 1.2) + rng.normal(0, 3, (size, size, 3))
        name = f"render_{i:05d}.jpg"
        _write_jpg(out_dir / name, np.clip(crop, 0, 255).astype(np.uint8))
        rows.append({"file": name, "source": "render", "label": c})
    lfw = data.lfw_subset()[:100]  # the first 100 of the 200 are faces
    for i, face in enumerate(lfw):
        rgb = cv2.resize((np.stack([face] * 3, -1) * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
        name = f"lfw_{i:03d}.jpg"
        _write_jpg(out_dir / name, rgb)
        rows.append({"file": name, "source": "lfw_subset", "label": IGNORE})
    return pd.DataFrame(rows)


def _write_jpg(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


# ----------------------------------------------------------------------------------------------- build
def build_demo(out: str | os.PathLike, config: DemoConfig = DemoConfig(), progress: bool = True) -> Path:
    """Write the demo Aff-Wild2 tree under ``out`` and return it. Deterministic for ``config.seed``.

    Layout: ``batch1/*.mp4``, ``batch2/*.avi``, ``annotations/EXPR_Recognition_Challenge/{Train_Set,
    Validation_Set}/*.txt``, the test list and example file, ``unlabeled_faces/``, ``test_ground_truth/``
    and ``render_truth/``. One video per split is a two-person video (``_left``/``_right`` subjects) and
    one training subject has two more annotation lines than its video has frames (the count mismatch of
    the real data).
    """
    out = Path(out)
    rng = np.random.default_rng(config.seed)
    identities = load_identities()
    splits = ["Train_Set"] * config.n_train + ["Validation_Set"] * config.n_val + ["Test_Set"] * config.n_test
    n_videos = len(splits)
    # Plan subjects first so that every split gets every class at least once.
    plans: list[dict] = []
    for i, split in enumerate(splits):
        two_person = (split == "Train_Set" and i == 1) or (split == "Test_Set" and i == n_videos - 1)
        width = 480 if two_person else 320
        name = f"video{i + 1}" if (i % 3 == 2 and not two_person) else f"{i + 1}-{config.fps}-{width}x240"
        n = config.frames + int(rng.integers(-config.frames // 6, config.frames // 6 + 1))
        plans.append({"split": split, "name": name, "two_person": two_person, "n": max(n, 60),
                      "batch": "batch1" if i % 2 == 0 else "batch2"})
    segs_per_subject = {}
    for split in dict.fromkeys(splits):
        subjects = [(p["name"], side) for p in plans if p["split"] == split
                    for side in (("left", "right") if p["two_person"] else ("",))]
        lengths = {s: next(p["n"] for p in plans if p["name"] == s[0]) for s in subjects}
        counts = {s: max(2, lengths[s] // 40) for s in subjects}
        pool = class_schedule(rng, sum(counts.values()))
        for s in subjects:
            segs_per_subject[s], pool = pool[:counts[s]], pool[counts[s]:]

    for sub in ("batch1", "batch2", str(EXPR_DIR / "Train_Set"), str(EXPR_DIR / "Validation_Set"),
                "test_ground_truth", "render_truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    test_ids: list[str] = []
    example_rows: list[str] = []
    mismatch_done = False
    for i, plan in enumerate(tqdm(plans, desc="demo videos", unit="video", disable=not progress)):
        n = plan["n"]
        sides = ("left", "right") if plan["two_person"] else ("",)
        size = (480, 240) if plan["two_person"] else (320, 240)
        chosen = rng.choice(len(identities), size=len(sides), replace=False)
        subjects = []
        for k, side in enumerate(sides):
            vid = f"{plan['name']}_{side}" if side else plan["name"]
            tl = make_timeline(rng, n, segs_per_subject[(plan["name"], side)], no_face=(i % 2 == 0))
            if plan["two_person"]:
                anchor = (size[0] * (0.27 if side == "left" else 0.73), size[1] * 0.5)
                face_px, amp = 125.0, 14.0
            else:
                anchor = (size[0] * rng.uniform(0.42, 0.58), size[1] * rng.uniform(0.45, 0.55))
                face_px, amp = float(rng.uniform(135, 165)), 22.0
            subjects.append(SyntheticSubject(vid, identities[int(chosen[k])], tl, _motion(rng, n, amp), anchor,
                                             face_px))
        suffix = ".mp4" if plan["batch"] == "batch1" else ".avi"
        truth = render_video(out / plan["batch"] / f"{plan['name']}{suffix}", subjects, size, n, rng, config.fps)
        for s in subjects:
            write_csv(out / "render_truth" / f"{s.video_id}.csv", truth[s.video_id])
            labels = s.timeline.labels
            if plan["split"] == "Test_Set":
                write_annotation(out / "test_ground_truth" / f"{s.video_id}.txt", labels)
                test_ids.append(s.video_id)
                example_rows += [f"{location(s.video_id, k)},{int(rng.integers(NUM_CLASSES))}\n"
                                 for k in range(1, n + 1)]
            else:
                if plan["split"] == "Train_Set" and not mismatch_done and not plan["two_person"]:
                    labels = np.concatenate([labels, labels[-1:], labels[-1:]])  # annotation longer than video
                    mismatch_done = True
                write_annotation(out / EXPR_DIR / plan["split"] / f"{s.video_id}.txt", labels)
    write_text(out / TEST_LIST_NAME, "".join(f"{v}\n" for v in test_ids))
    write_text(out / EXAMPLE_NAME, SUBMISSION_HEADER + "\n" + "".join(example_rows))
    unl = render_unlabeled(out / "unlabeled_faces", identities, config.n_unlabeled_renders, rng)
    write_csv(out / "render_truth" / "unlabeled_faces.csv", unl)
    write_json(out / "demo.json", run_record({"out": str(out), **config.__dict__}))
    return out
