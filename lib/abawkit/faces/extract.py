"""Stage 01: decode every video once, follow each subject's face, write aligned/loose crops and a per-frame index.

Outputs under ``out``: ``cropped_aligned/<video_id>/00001.jpg``, ``cropped/<video_id>/00001.jpg`` (frames from 1,
no file = no face), ``index/<video_id>.csv`` (one row per decoded frame) with ``index/<video_id>.json`` (that
subject's record), ``run_record.json`` and, last, ``summary.csv``. A subject is done only when its index csv
exists: it is written under a temporary name and renamed after every crop, so a killed run leaves nothing
that passes as done, and a re-run redoes exactly the videos that are not done.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Callable, ClassVar, Literal

import numpy as np
import pandas as pd
import tyro

from ..crops import CROP_FOLDERS, crop_name
from ..io import write_csv, write_json

POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # image sides
INDEX_COLUMNS = ["frame", "has_face", "score", "face_score", "box_x0", "box_y0", "box_x1", "box_y1",
                 *[f"{p}_{a}" for p in POINT_NAMES for a in "xy"], "track_id"]
#: A no-face row's values between has_face and track_id (scores, box, points).
_NO_FACE_VALUES = [np.nan] * (len(INDEX_COLUMNS) - 3)
SUMMARY_COLUMNS = ["video_id", "video_path", "status", "frames_decoded", "n_frames", "faces_found",
                   "detection_rate", "seconds", "fps", "decoder", "problems"]


@dataclass(frozen=True)
class ExtractConfig:
    """How to extract: which crops at which sides, the decoder and the detector, parallelism."""

    size: int = 112
    """side of the aligned crops in pixels"""
    loose_size: int = 224
    """side of the loose crops in pixels"""
    crops: str = "aligned,loose"
    """which crops to write: aligned, loose or both comma-separated"""
    decoder: Literal["decord", "opencv"] = "decord"
    """video decoder"""
    prefetch: bool = True
    """decord: decode the next chunk on a second thread while this one is processed"""
    write_thread: bool = True
    """cut, encode and write the crops on a background thread"""
    detector_model: Annotated[Literal["full", "short"], tyro.conf.arg(name="detector")] = "full"
    """mediapipe FaceDetection model: full-range, or short-range (faster, large faces only)"""
    detector_max_side: int = 640
    """frames are shrunk to this side for the detector"""
    jpeg_quality: int = 95
    """JPEG quality of the crops"""
    workers: int = 1
    """videos processed in parallel, each in its own (spawned) process (1: in this process)"""
    overwrite: bool = False
    """redo videos that are already done"""
    max_frames: int | None = None
    """stop each video after this many frames (for trials)"""

    def __post_init__(self) -> None:
        bad = [c for c in self.crop_kinds if c not in CROP_FOLDERS]
        if bad or not self.crop_kinds:
            raise ValueError(f"crops must be a non-empty subset of {', '.join(CROP_FOLDERS)}, comma-separated "
                             f"(got {self.crops!r})")
        if self.size < 16 or self.loose_size < 16:
            raise ValueError(f"crop sizes must be >= 16 pixels (got size={self.size}, loose_size={self.loose_size})")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")

    @property
    def crop_kinds(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.crops.split(",") if c.strip())


@dataclass(frozen=True)
class FacesConfig:
    """Decode each video once (decord, one frame at a time), follow each subject's face with mediapipe
    (FaceMesh's landmark model on an upright region that follows the face, FaceDetection to re-find it) and write
    OUT/cropped_aligned/<video_id>/00001.jpg (5-point similarity alignment onto the ArcFace 112 template) and
    OUT/cropped/<video_id>/00001.jpg (loose square crop), frames numbered from 1, no file where the face is not
    found. A _left/_right subject follows the face on its side of the frame; any other follows the main face.
    Also writes OUT/index/<video_id>.csv (per frame: has_face, detector and face scores, box, 5 points, track
    id) and OUT/summary.csv. Resumable: a subject is done when its index exists; re-running skips done videos.
    A video that cannot be read is reported with its path and the others continue; the exit code is 1 if any
    failed."""

    PRESETS: ClassVar[dict[str, dict]] = {
        "demo": dict(),
        "gpu": dict(manifest_dir="data_manifests/affwild2", faces_dir="data/faces/affwild2", workers=8),
    }

    manifest_dir: Annotated[str, tyro.conf.arg(name="manifest", metavar="DIR")] = "data_manifests/demo"
    """manifest folder (abawkit manifest): every subject's video"""
    video: Annotated[str | None, tyro.conf.arg(metavar="PATH")] = None
    """one video file instead of the manifest (video id = file stem, main face)"""
    images: Annotated[tuple[str, ...], tyro.conf.arg(metavar="DIR")] = ()
    """folders of still images instead of the manifest's videos (e.g. an unlabeled face corpus): one face per
    image, cropped and aligned like a video frame, OUT/cropped_aligned/<folder>/00001.jpg for its first image"""
    faces_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "data/faces/demo"
    """faces folder to write"""
    shard: Annotated[str, tyro.conf.arg(metavar="K/N")] = "1/1"
    """process only the K-th of N equal parts of the video list, to share it between machines"""
    use_organizer_crops: bool = False
    """index the organizers' cropped_aligned/ and cropped/ folders (listed by the manifest) instead of extracting"""
    quiet: bool = False
    """no progress bars"""
    extract: ExtractConfig = field(default_factory=ExtractConfig)

    def __post_init__(self) -> None:
        parse_shard(self.shard)

    @property
    def shard_k_n(self) -> tuple[int, int]:
        return parse_shard(self.shard)


@dataclass(frozen=True)
class Subject:
    video_id: str
    side: str = ""  # "left"/"right" for a two-person video's subjects
    n_frames: int | None = None  # annotation length, when known (a mismatch is recorded, never fatal)


@dataclass(frozen=True)
class VideoJob:
    """One video file and the subjects to follow in it (two for a _left/_right video: decoded once)."""

    path: str
    subjects: tuple[Subject, ...]


@dataclass
class SubjectResult:
    video_id: str
    video_path: str
    status: str  # done | failed | skipped
    frames_decoded: int = 0
    n_frames: int | None = None
    faces_found: int = 0
    seconds: float = 0.0
    decoder: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        return self.faces_found / self.frames_decoded if self.frames_decoded else 0.0

    def row(self) -> dict:
        d = asdict(self)
        d["problems"] = " | ".join(self.problems)
        d["detection_rate"] = round(self.detection_rate, 4)
        d["fps"] = round(self.frames_decoded / self.seconds, 1) if self.seconds > 0 else 0.0
        d["seconds"] = round(self.seconds, 2)
        return {k: d.get(k) for k in SUMMARY_COLUMNS}


def index_path(out: str | os.PathLike, video_id: str) -> Path:
    return Path(out) / "index" / f"{video_id}.csv"


def is_done(out: str | os.PathLike, video_id: str) -> bool:
    return index_path(out, video_id).is_file()


def _clear_subject(out: Path, video_id: str) -> None:
    """Remove whatever a previous (possibly killed) run left for a subject, so the redo starts clean."""
    for name in CROP_FOLDERS.values():
        folder = out / name / video_id
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)
    for suffix in (".csv", ".json"):
        p = out / "index" / f"{video_id}{suffix}"
        if p.exists():
            p.unlink()
    for tmp in (out / "index").glob(f".{video_id}.*.tmp"):  # a killed run's half-written index
        tmp.unlink()


def process_video(job: VideoJob, out: str | os.PathLike, config: ExtractConfig,
                  on_frames: Callable[[int], None] | None = None) -> list[SubjectResult]:
    """Extract one video's subjects; never raises for a bad video (the results say what failed and why)."""
    from .align import align_matrix, loose_matrix
    from .decode import FrameReader, VideoOpenError
    from .detect import FaceDetector
    from .track import DetectionCache, SubjectTracker
    from .write import CropWriter

    out = Path(out)
    t0 = time.perf_counter()
    results = [SubjectResult(s.video_id, job.path, "failed", n_frames=s.n_frames, decoder=config.decoder)
               for s in job.subjects]
    for s in job.subjects:
        _clear_subject(out, s.video_id)
    folders = {(s.video_id, kind): out / CROP_FOLDERS[kind] / s.video_id for s in job.subjects for kind in config.crop_kinds}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    reader = FrameReader(job.path, decoder=config.decoder, max_frames=config.max_frames, prefetch=config.prefetch)
    detector = FaceDetector(max_side=config.detector_max_side, model=config.detector_model)
    trackers = [SubjectTracker(s.side) for s in job.subjects]
    rows: list[list[list]] = [[] for _ in job.subjects]
    cache = DetectionCache()
    writer = CropWriter(config.jpeg_quality, threaded=config.write_thread)
    pending = 0
    try:
        for frame_no, frame in reader:
            cache.new_frame()
            taken: list[np.ndarray] = []
            # Subjects still being tracked go first, so one that must be re-found cannot take their faces.
            order = sorted(range(len(trackers)), key=lambda i: trackers[i].mesh.center is None)
            for k in order:
                s, tr = job.subjects[k], trackers[k]
                found = tr.step(frame, reader.bgr, frame_no, detector, cache, taken)
                if found is None:
                    rows[k].append([frame_no, False, *_NO_FACE_VALUES, -1])
                    continue
                taken.append(found.box)
                rows[k].append([frame_no, True, round(found.score, 4), round(found.face_score, 4),
                                *np.round(found.box, 2), *np.round(found.points5.reshape(-1), 2), found.track_id])
                jobs = []
                for kind in config.crop_kinds:
                    matrix, side = ((align_matrix(found.points5, config.size), config.size) if kind == "aligned"
                                    else (loose_matrix(found.box, config.loose_size), config.loose_size))
                    jobs.append((folders[(s.video_id, kind)] / crop_name(frame_no), matrix, side))
                writer.put(frame, jobs, rgb=not reader.bgr)
            pending += 1
            if on_frames is not None and pending >= 25:
                n, pending = pending, 0
                on_frames(n)
        writer.finish()  # every crop on disk (or the first write error raised here) before the index is written
    except VideoOpenError as exc:
        for s in job.subjects:
            _clear_subject(out, s.video_id)
        for r in results:
            r.problems.append(str(exc))
            r.seconds = time.perf_counter() - t0
        return results
    except Exception as exc:  # anything else about this video: report it with its path, let the others go on
        for s in job.subjects:
            _clear_subject(out, s.video_id)
        for r in results:
            r.problems.append(f"{job.path}: frame {reader.decoded + 1}: {type(exc).__name__}: {exc}")
            r.seconds = time.perf_counter() - t0
        return results
    finally:
        writer.abort()  # no-op after finish()
        detector.close()
        for tr in trackers:
            tr.close()

    if on_frames is not None and pending:
        on_frames(pending)
    elapsed = time.perf_counter() - t0
    if reader.decoded == 0:
        for s in job.subjects:
            _clear_subject(out, s.video_id)
        for r in results:
            r.problems.append(f"{job.path}: no frame decodes (corrupt or empty video)")
            r.seconds = elapsed
        return results
    info = reader.info
    for k, (s, r) in enumerate(zip(job.subjects, results)):
        table = pd.DataFrame(rows[k], columns=INDEX_COLUMNS)
        table["has_face"] = table["has_face"].astype(bool)
        table["track_id"] = table["track_id"].astype(int)
        r.frames_decoded, r.faces_found, r.seconds, r.status = reader.decoded, int(table["has_face"].sum()), elapsed, "done"
        if reader.stop_reason:
            r.problems.append(f"decoding stopped after frame {reader.decoded}: {reader.stop_reason}")
        container = info.get("container_frames")
        if container and container != reader.decoded and config.max_frames is None:
            r.problems.append(f"container says {container} frames, {reader.decoded} decoded")
        if s.n_frames is not None and s.n_frames != reader.decoded and config.max_frames is None:
            r.problems.append(f"annotation has {s.n_frames} frames, {reader.decoded} decoded "
                              f"(frames {reader.decoded + 1}..{s.n_frames} have no crop)" if s.n_frames > reader.decoded
                              else f"annotation has {s.n_frames} frames, {reader.decoded} decoded")
        write_json(out / "index" / f"{s.video_id}.json",
                   {**r.row(), "side": s.side, "detector_calls": cache.calls, "video_info": info,
                    "config": asdict(config)})
        write_csv(index_path(out, s.video_id), table)  # last: this rename is what marks the subject done
    return results


def _worker(job: VideoJob, out: str, config: ExtractConfig, queue) -> list[SubjectResult]:
    os.environ.setdefault("GLOG_minloglevel", "2")
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover
        pass
    return process_video(job, out, config, on_frames=queue.put if queue is not None else None)


def jobs_from_manifest(manifest) -> tuple[list[VideoJob], list[SubjectResult]]:
    """Group a manifest's subjects by video file (a _left/_right pair is decoded once); subjects without a
    video file come back as failures."""
    by_path: dict[str, list[Subject]] = {}
    missing: list[SubjectResult] = []
    for row in manifest.videos.itertuples(index=False):
        n = int(row.n_frames) if str(row.n_frames).strip() not in ("", "nan") else None
        sub = Subject(str(row.video_id), str(row.side or ""), n)
        if not row.video_path:
            missing.append(SubjectResult(sub.video_id, "", "failed", n_frames=n,
                                         problems=[f"the manifest {manifest.path} has no video file for {sub.video_id}"]))
            continue
        by_path.setdefault(str(row.video_path), []).append(sub)
    jobs = [VideoJob(path, tuple(sorted(subs, key=lambda s: s.side))) for path, subs in by_path.items()]
    return jobs, missing


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> (K, N)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like K/N, e.g. 1/4 (got {text!r})") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N (got {text!r})")
    return k, n


def shard_jobs(jobs: list[VideoJob], shard: tuple[int, int]) -> list[VideoJob]:
    """Every N-th video of the list sorted by path, starting at the K-th: the same split on every machine."""
    k, n = shard
    return [j for i, j in enumerate(sorted(jobs, key=lambda j: j.path)) if i % n == k - 1]


def extract_faces(jobs: list[VideoJob], out: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                  progress: bool = True, known_failures: list[SubjectResult] | None = None,
                  all_subjects: list[str] | None = None, params: dict | None = None) -> pd.DataFrame:
    """Run the stage over ``jobs`` (skipping done subjects unless ``config.overwrite``) and return the summary.

    The summary (also written to ``out/summary.csv``, last) has one row per subject of ``all_subjects`` (default:
    the jobs' subjects): done ones from their index records, this run's failures with their reason, the rest
    "pending" (another shard's). With ``workers > 1`` videos run in a spawn process pool.
    """
    from tqdm.auto import tqdm

    from ..runinfo import save_run_record

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [j for j in jobs if config.overwrite or not all(is_done(out, s.video_id) for s in j.subjects)]
    results: list[SubjectResult] = list(known_failures or [])
    n_frames_hint = sum(s.n_frames or 0 for j in todo for s in j.subjects[:1])
    vbar = tqdm(total=len(todo), desc="videos", unit="video", disable=not progress)
    fbar = tqdm(total=n_frames_hint or None, desc="frames", unit="frame", disable=not progress)
    try:
        if config.workers <= 1:
            for job in todo:
                results += process_video(job, out, config, on_frames=fbar.update)
                vbar.update()
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # fork after mediapipe/decord threads start crashes
            with ctx.Manager() as manager, ProcessPoolExecutor(config.workers, mp_context=ctx) as pool:
                queue = manager.Queue()
                futures = {pool.submit(_worker, job, str(out), config, queue): job for job in todo}
                while futures:
                    finished, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                    while not queue.empty():
                        fbar.update(queue.get())
                    for fut in finished:
                        job = futures.pop(fut)
                        try:
                            results += fut.result()
                        except Exception as exc:  # a worker that died (segfault in a decoder) fails its video only
                            results += [SubjectResult(s.video_id, job.path, "failed", n_frames=s.n_frames,
                                                      problems=[f"{job.path}: worker failed: {type(exc).__name__}: {exc}"])
                                        for s in job.subjects]
                        vbar.update()
    finally:
        vbar.close()
        fbar.close()
    subjects = all_subjects or [s.video_id for j in jobs for s in j.subjects]
    summary = build_summary(out, subjects, results, {s.video_id: j.path for j in jobs for s in j.subjects})
    save_run_record(out / "run_record.json", {**(params or {}), "config": asdict(config)},
                    failed=summary.loc[summary["status"] == "failed", "video_id"].tolist())
    write_csv(out / "summary.csv", summary)
    return summary


def build_summary(out: Path, subjects: list[str], results: list[SubjectResult],
                  paths: dict[str, str] | None = None) -> pd.DataFrame:
    by_id = {r.video_id: r for r in results}
    rows = []
    for vid in dict.fromkeys(subjects):
        r = by_id.get(vid)
        if r is not None and r.status == "failed":
            rows.append(r.row())
        elif is_done(out, vid) and (out / "index" / f"{vid}.json").is_file():
            rec = json.loads((out / "index" / f"{vid}.json").read_text())
            rows.append({k: rec.get(k) for k in SUMMARY_COLUMNS})
        else:
            rows.append({"video_id": vid, "video_path": (paths or {}).get(vid, ""), "status": "pending",
                         "problems": ""})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def load_index(out: str | os.PathLike, video_id: str) -> pd.DataFrame:
    """The per-frame index of a done subject (frame, has_face, score, face_score, box, 5 points, track_id)."""
    path = index_path(out, video_id)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {video_id} has not been extracted (run abawkit extract-faces)")
    from ..readers import read_csv

    return read_csv(path, f"the face index of {video_id} (CSV)", f"re-run abawkit extract-faces for {video_id}")


def index_organizer_crops(manifest, out: str | os.PathLike, overwrite: bool = False,
                          progress: bool = True) -> pd.DataFrame:
    """Use the organizers' crop folders instead of extracting: index them (has_face = a crop file exists) and
    link ``out/<kind>/<video_id>`` to them, so later stages read ``out`` either way. Returns the summary."""
    from tqdm.auto import tqdm

    from ..crops import crop_frames
    from ..runinfo import save_run_record

    out = Path(out)
    results: list[SubjectResult] = []
    rows = list(manifest.videos.itertuples(index=False))
    for row in tqdm(rows, desc="organizer crops", unit="video", disable=not progress):
        vid = str(row.video_id)
        if is_done(out, vid) and not overwrite:
            continue
        t0 = time.perf_counter()
        folders = {name: str(getattr(row, f"{name}_dir") or "") for name in CROP_FOLDERS.values()}
        folders = {k: Path(v) for k, v in folders.items() if v and Path(v).is_dir()}
        n = int(row.n_frames)
        if not folders:
            results.append(SubjectResult(vid, str(row.video_path), "failed", n_frames=n, decoder="organizer crops",
                                         problems=[f"the manifest {manifest.path} lists no organizer crop folder for {vid}"]))
            continue
        _clear_subject(out, vid)
        source = folders.get(CROP_FOLDERS["aligned"], next(iter(folders.values())))
        frames = crop_frames(source.parent, vid)
        has = np.zeros(n, dtype=bool)
        inside = frames[(frames >= 1) & (frames <= n)]
        has[inside - 1] = True
        for name, folder in folders.items():
            (out / name).mkdir(parents=True, exist_ok=True)
            os.symlink(folder.resolve(), out / name / vid, target_is_directory=True)
        table = pd.DataFrame({"frame": np.arange(1, n + 1), "has_face": has})
        for col in INDEX_COLUMNS[2:]:
            table[col] = -1 if col == "track_id" else np.nan
        r = SubjectResult(vid, str(row.video_path), "done", frames_decoded=n, n_frames=n, faces_found=int(has.sum()),
                          seconds=time.perf_counter() - t0, decoder="organizer crops")
        if len(frames) > len(inside):
            r.problems.append(f"{source}: {len(frames) - len(inside)} crop(s) beyond the annotation's {n} frames ignored")
        results.append(r)
        write_json(out / "index" / f"{vid}.json", {**r.row(), "side": str(row.side or ""), "source": {
            k: str(v) for k, v in folders.items()}})
        write_csv(index_path(out, vid), table)
    summary = build_summary(out, [str(r.video_id) for r in rows], results)
    save_run_record(out / "run_record.json", {"manifest": str(manifest.path), "use_organizer_crops": True,
                                              "overwrite": overwrite})
    write_csv(out / "summary.csv", summary)
    return summary
