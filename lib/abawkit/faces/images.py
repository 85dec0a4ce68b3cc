"""Stage 01 for folders of still images (``abawkit extract-faces --images DIR...``): the unlabeled face corpora of
the semi-supervised stage go through the same detection, landmarks and alignment as the video frames, so that
labeled, unlabeled and validation crops are cut alike.

Each folder's images (recursively, sorted) form sets of at most ``IMAGES_PER_SET`` images, each set written like
one subject of a video: ``cropped_aligned/<set_id>/00001.jpg`` and ``cropped/<set_id>/00001.jpg`` for its k-th
image, ``index/<set_id>.csv`` (the video index's columns plus ``source``, the image's path) and its record. One face
per image (the largest the detector finds); an image without a face, or one that does not decode, has a row with
``has_face`` False and no crop, and is listed in the summary's ``problems``. A set is done when its index exists:
a killed run redoes only the sets that are not done, and ``--shard K/N`` splits the sets between machines.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..crops import CROP_FOLDERS, IMAGE_SUFFIXES, crop_name, image_files
from ..io import write_csv, write_json
from .extract import (_NO_FACE_VALUES, INDEX_COLUMNS, ExtractConfig, SubjectResult, _clear_subject, build_summary,
                      index_path, is_done)

#: Images per set: the unit of resumption and of sharding (a corpus of millions is thousands of sets).
IMAGES_PER_SET = 10_000


@dataclass(frozen=True)
class ImageSet:
    set_id: str
    folder: str
    paths: tuple[str, ...]


def image_sets(dirs: tuple[str, ...] | list[str], per_set: int = IMAGES_PER_SET) -> list[ImageSet]:
    """The sets of the folders' images: ``<folder name>`` (or ``<folder name>_0001``, ... when it has more than
    ``per_set`` images). Two folders of one name get their position appended."""
    from ..errors import UserError

    sets: list[ImageSet] = []
    names: set[str] = set()
    for k, d in enumerate(dirs):
        root = Path(d)
        if not root.is_dir():
            raise UserError(f"--images {d}: not a folder; pass folders of face images")
        paths = image_files(root)
        if not paths:
            raise UserError(f"--images {d}: no image ({', '.join(IMAGE_SUFFIXES)}) under this folder")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", root.resolve().name) or "images"
        if name in names:
            name = f"{name}_{k + 1}"
        names.add(name)
        chunks = [paths[i:i + per_set] for i in range(0, len(paths), per_set)]
        for c, chunk in enumerate(chunks):
            sets.append(ImageSet(name if len(chunks) == 1 else f"{name}_{c + 1:04d}", str(root), tuple(chunk)))
    return sets


def process_images(images: ImageSet, out: str | os.PathLike, config: ExtractConfig,
                   on_images=None) -> SubjectResult:
    """Detect, align and crop the face of every image of the set (the video path: FaceDetection, then FaceMesh's
    landmarks on the upright region, then the 5-point alignment); never raises for a bad image."""
    import cv2

    from .align import align_matrix, loose_matrix
    from .detect import FaceDetector
    from .track import DetectionCache, SubjectTracker
    from .write import CropWriter

    out = Path(out)
    t0 = time.perf_counter()
    result = SubjectResult(images.set_id, images.folder, "failed", n_frames=len(images.paths), decoder="opencv")
    _clear_subject(out, images.set_id)
    folders = {kind: out / CROP_FOLDERS[kind] / images.set_id for kind in config.crop_kinds}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    detector = FaceDetector(max_side=config.detector_max_side, model=config.detector_model)
    tracker = SubjectTracker("")
    writer = CropWriter(config.jpeg_quality, threaded=config.write_thread)
    rows, no_face, unreadable = [], [], []
    try:
        for k, path in enumerate(images.paths, start=1):
            frame = cv2.imread(path, cv2.IMREAD_COLOR)
            found = None
            if frame is None:
                unreadable.append(path)
            else:
                tracker.mesh.reset()  # every image is a new scene: detect, never follow
                tracker.last_box = None
                found = tracker.step(frame, True, k, detector, DetectionCache(), [])
                if found is None:
                    no_face.append(path)
                else:
                    found = _settled(tracker, frame, found)
            if found is None:
                rows.append([k, False, *_NO_FACE_VALUES, -1, path])
            else:
                rows.append([k, True, round(found.score, 4), round(found.face_score, 4), *np.round(found.box, 2),
                             *np.round(found.points5.reshape(-1), 2), 0, path])
                jobs = []
                for kind in config.crop_kinds:
                    matrix, side = ((align_matrix(found.points5, config.size), config.size) if kind == "aligned"
                                    else (loose_matrix(found.box, config.loose_size), config.loose_size))
                    jobs.append((folders[kind] / crop_name(k), matrix, side))
                writer.put(frame, jobs, rgb=False)
            if on_images is not None:
                on_images(1)
        writer.finish()
    except Exception as exc:  # a write error (full disk...) fails this set, naming it; the others go on
        _clear_subject(out, images.set_id)
        result.problems.append(f"{images.folder}: image {len(rows)}: {type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        writer.abort()
        detector.close()
        tracker.close()
    table = pd.DataFrame(rows, columns=[*INDEX_COLUMNS, "source"])
    result.frames_decoded = len(images.paths) - len(unreadable)
    result.faces_found, result.status = int(table["has_face"].sum()), "done"
    result.seconds = time.perf_counter() - t0
    if no_face:
        result.problems.append(f"{len(no_face)} image(s) without a face, e.g. {no_face[0]}")
    if unreadable:
        result.problems.append(f"{len(unreadable)} image(s) do not decode, e.g. {unreadable[0]}")
    write_json(out / "index" / f"{images.set_id}.json",
               {**result.row(), "side": "", "kind": "images", "no_face": no_face, "unreadable": unreadable,
                "config": asdict(config)})
    write_csv(index_path(out, images.set_id), table)  # last: marks the set done
    return result


def _settled(tracker, frame: np.ndarray, found, steps: int = 2):
    """The landmarks after ``steps`` more passes of the landmark model on the image: its region settles upright
    on the face as it does from a video's second frame on, so a still image is aligned like a tracked frame."""
    from dataclasses import replace

    for _ in range(steps):
        face = tracker.mesh.step(frame, True)
        if face is None:
            break
        found = replace(found, points5=face.points5, box=face.box, face_score=face.score)
    return found


def extract_images(sets: list[ImageSet], out: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                   progress: bool = True, all_sets: list[str] | None = None,
                   params: dict | None = None) -> pd.DataFrame:
    """Run :func:`process_images` over the sets that are not done (all with ``config.overwrite``), one after the
    other in this process; returns and writes ``out/summary.csv`` (one row per set of ``all_sets``)."""
    from tqdm.auto import tqdm

    from ..runinfo import save_run_record

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [s for s in sets if config.overwrite or not is_done(out, s.set_id)]
    results = []
    with tqdm(total=sum(len(s.paths) for s in todo), desc="images", unit="image", disable=not progress) as bar:
        for s in todo:
            results.append(process_images(s, out, config, on_images=bar.update))
    summary = build_summary(out, all_sets or [s.set_id for s in sets], results, {s.set_id: s.folder for s in sets})
    save_run_record(out / "run_record.json", {**(params or {}), "config": asdict(config)},
                    failed=summary.loc[summary["status"] == "failed", "video_id"].tolist())
    write_csv(out / "summary.csv", summary)
    return summary
