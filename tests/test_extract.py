"""Stage 01 (face extraction) on the tiny demo's real videos, scored against the demo's render truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from abawkit.cli import main
from abawkit.crops import crop_frames
from abawkit.faces.align import TEMPLATE_112, align_matrix, apply, similarity_transform
from abawkit.faces.extract import (INDEX_COLUMNS, ExtractConfig, Subject, VideoJob, extract_faces,
                                   index_organizer_crops, is_done, jobs_from_manifest, load_index, parse_shard,
                                   process_video, shard_jobs)
from conftest import REPO
from helpers_extract import score_subject


@pytest.fixture(scope="module")
def extracted(tiny_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("faces")
    jobs, missing = jobs_from_manifest(tiny_manifest)
    summary = extract_faces(jobs, out, ExtractConfig(), progress=False, known_failures=missing)
    return out, summary


def test_layout_index_and_summary(extracted, tiny_manifest):
    out, summary = extracted
    assert (out / "summary.csv").is_file() and (out / "run_record.json").is_file()
    assert set(summary["video_id"]) == set(tiny_manifest.video_ids()) and (summary["status"] == "done").all()
    for vid in tiny_manifest.video_ids():
        index = load_index(out, vid)
        assert list(index.columns) == INDEX_COLUMNS
        assert index["frame"].tolist() == list(range(1, len(index) + 1))  # frames numbered from 1
        faces = index.loc[index["has_face"], "frame"].to_numpy()
        # a crop exactly where has_face is true, in both layouts, of the asked sizes
        assert np.array_equal(crop_frames(out / "cropped_aligned", vid), faces)
        assert np.array_equal(crop_frames(out / "cropped", vid), faces)
        assert cv2.imread(str(out / "cropped_aligned" / vid / f"{faces[0]:05d}.jpg")).shape == (112, 112, 3)
        assert cv2.imread(str(out / "cropped" / vid / f"{faces[0]:05d}.jpg")).shape == (224, 224, 3)
        assert (index.loc[~index["has_face"], "track_id"] == -1).all()
    # the demo subject whose annotation is 2 lines longer than its video: recorded, not fatal
    row = summary.set_index("video_id").loc["1-30-320x240"]
    assert row["frames_decoded"] == 100 and "annotation has 102 frames, 100 decoded" in row["problems"]


def test_detection_rate_no_face_and_eye_alignment(extracted, tiny_demo, tiny_manifest):
    out, _ = extracted
    scores = pd.DataFrame([score_subject(out, tiny_demo, vid) for vid in tiny_manifest.video_ids()])
    assert (scores["rate"] >= 0.95).all(), scores
    assert scores["no_face_frames"].sum() > 20  # the demo has no-face stretches ...
    assert scores["false_faces"].sum() == 0, scores  # ... and they come out has_face=false
    # the true eye centres land within a few pixels of the template's eyes in the 112 aligned crop
    assert (scores["eye_err_p95"] < 6.0).all(), scores
    assert scores["eye_err_median"].median() < 4.0, scores


def test_left_right_subjects_get_their_person_throughout(extracted, tiny_demo, tiny_manifest):
    out, _ = extracted
    sided = [v for v in tiny_manifest.video_ids() if v.endswith(("_left", "_right"))]
    assert len(sided) == 4
    for vid in sided:
        assert score_subject(out, tiny_demo, vid)["right_person"] == 1.0, vid
        assert load_index(out, vid)["track_id"].max() == 0  # one identity held, never re-acquired afresh
    for base in {v.rsplit("_", 1)[0] for v in sided}:
        left, right = load_index(out, f"{base}_left"), load_index(out, f"{base}_right")
        both = left["has_face"] & right["has_face"]
        assert ((left["box_x0"] + left["box_x1"])[both] < (right["box_x0"] + right["box_x1"])[both]).all()


def test_alignment_recovers_a_known_similarity():
    m_true = cv2.getRotationMatrix2D((40.0, 30.0), 17.0, 2.3)
    frame_pts = apply(cv2.invertAffineTransform(m_true), TEMPLATE_112)  # template points placed in a "frame"
    m = align_matrix(frame_pts, 112)
    assert np.abs(apply(m, frame_pts) - TEMPLATE_112).max() < 1e-6
    assert np.allclose(similarity_transform(frame_pts, TEMPLATE_112), m)
    assert np.abs(align_matrix(frame_pts, 224) - np.vstack([m[0] * 2, m[1] * 2])).max() < 1e-6  # scales with size


def test_landmarks_follow_a_rotated_face():
    """The landmark region is turned upright: a portrait rotated by 35 degrees gives the rotated points of the
    upright one, and the tracker's angle follows the eye line; an empty region scores below 0.5."""
    from abawkit.demo import portrait_images
    from abawkit.faces.detect import FaceDetector, LandmarkModel, MeshTracker

    image = portrait_images()["hopper"]
    h, w = image.shape[:2]
    side = int(1.5 * max(h, w))
    canvas = np.full((side, side, 3), 90, np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0:y0 + h, x0:x0 + w] = image
    detector, tracker = FaceDetector(), MeshTracker()

    def points(img: np.ndarray) -> tuple[np.ndarray, float, float]:
        (det,) = detector.detect(img, bgr=False)
        tracker.seed(det.box)
        face = tracker.step(img, bgr=False, refine=True)
        for _ in range(3):  # settle the region as tracking on a video would
            face = tracker.step(img, bgr=False)
        return face.points5, face.score, tracker.angle

    upright, score, angle0 = points(canvas)
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), 35.0, 1.0)  # counter-clockwise on screen
    turned, score_turned, angle = points(cv2.warpAffine(canvas, rotation, (side, side), borderValue=(90, 90, 90)))
    assert score > 0.9 and score_turned > 0.9
    eye_distance = np.linalg.norm(upright[1] - upright[0])
    assert np.abs(turned - apply(rotation, upright)).max() < 0.06 * eye_distance
    assert abs(np.degrees(angle - angle0) + 35.0) < 3.0  # image y points down: counter-clockwise is negative
    _, blank_score = LandmarkModel()(np.full((192, 192, 3), 90, np.uint8), (1,))
    assert blank_score < 0.5
    detector.close()
    tracker.close()


def test_similarity_matches_skimage_umeyama_on_noisy_points():
    """The closed form gives insightface's transform (skimage's Umeyama estimate) on imperfect landmarks."""
    from skimage.transform import SimilarityTransform

    rng = np.random.default_rng(0)
    for _ in range(20):
        m_true = cv2.getRotationMatrix2D(tuple(rng.uniform(0, 500, 2)), rng.uniform(-60, 60), rng.uniform(0.2, 3))
        frame_pts = apply(cv2.invertAffineTransform(m_true), TEMPLATE_112) + rng.normal(0, 3, (5, 2))
        reference = SimilarityTransform.from_estimate(frame_pts, TEMPLATE_112)
        assert reference
        assert np.abs(similarity_transform(frame_pts, TEMPLATE_112) - reference.params[:2]).max() < 1e-9


@pytest.mark.slow
def test_corrupt_video_is_reported_and_others_finish(tiny_manifest, tmp_path, capsys):
    """Through the CLI with a spawn pool of 2: the truncated video fails with its path, the other is done."""
    good = tiny_manifest.row("video3")
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(Path(good["video_path"]).read_bytes()[:50_000])  # mp4 cut before its index: unreadable
    manifest_dir = tmp_path / "manifest"
    shutil.copytree(tiny_manifest.path, manifest_dir)
    videos = pd.read_csv(manifest_dir / "videos.csv", keep_default_na=False)
    videos = videos[videos["video_id"].isin(["video3", "1-30-320x240"])].copy()
    videos.loc[videos["video_id"] == "video3", "video_path"] = str(bad)
    videos.to_csv(manifest_dir / "videos.csv", index=False)
    out = tmp_path / "faces"
    rc = main(["extract-faces", "--manifest", str(manifest_dir), "--out", str(out), "--workers", "2",
               "--max-frames", "20", "--quiet"])
    assert rc == 1
    printed = capsys.readouterr().out
    assert "FAILED video3" in printed and str(bad) in printed
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("video_id")
    assert summary.loc["video3", "status"] == "failed" and str(bad) in summary.loc["video3", "problems"]
    assert summary.loc["1-30-320x240", "status"] == "done" and summary.loc["1-30-320x240", "frames_decoded"] == 20
    assert not is_done(out, "video3") and not (out / "cropped_aligned" / "video3").exists()


class _Killed(BaseException):
    pass


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".jpg", ".csv") and p.name != "summary.csv"}


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_and_matches_a_clean_run(tiny_manifest, tmp_path):
    jobs, _ = jobs_from_manifest(tiny_manifest)
    jobs = [j for j in jobs if len(j.subjects) == 2][:1] + [j for j in jobs if j.subjects[0].video_id == "video3"]
    config = ExtractConfig(max_frames=30)
    out = tmp_path / "resumed"
    extract_faces(jobs[:1], out, config, progress=False)  # the first video finishes

    def kill(_n):  # the second is killed mid-video, after some crops are written
        raise _Killed

    with pytest.raises(_Killed):
        process_video(jobs[1], out, config, on_frames=kill)
    assert crop_frames(out / "cropped_aligned", "video3").size > 0  # partial crops exist ...
    assert not is_done(out, "video3")  # ... but nothing passes as done
    assert not list((out / "index").glob("video3*"))
    done_ids = [s.video_id for s in jobs[0].subjects]
    stamps = {v: (out / "index" / f"{v}.csv").stat().st_mtime_ns for v in done_ids}

    summary = extract_faces(jobs, out, config, progress=False)
    assert (summary["status"] == "done").all()
    assert {v: (out / "index" / f"{v}.csv").stat().st_mtime_ns for v in done_ids} == stamps  # not redone
    clean = tmp_path / "clean"
    extract_faces(jobs, clean, config, progress=False)
    assert _tree(out) == _tree(clean)  # byte-identical crops and indexes

    # --overwrite redoes every video
    extract_faces(jobs, out, ExtractConfig(max_frames=30, overwrite=True), progress=False)
    assert all((out / "index" / f"{v}.csv").stat().st_mtime_ns != stamps[v] for v in done_ids)


def test_organizer_crops_are_indexed_and_linked(extracted, tiny_manifest, tmp_path):
    src, _ = extracted
    organizer = tmp_path / "organizer" / "cropped_aligned"
    shutil.copytree(src / "cropped_aligned", organizer)
    manifest_dir = tmp_path / "manifest"
    shutil.copytree(tiny_manifest.path, manifest_dir)
    videos = pd.read_csv(manifest_dir / "videos.csv", keep_default_na=False)
    videos["cropped_aligned_dir"] = [str(organizer / v) for v in videos["video_id"]]
    videos.to_csv(manifest_dir / "videos.csv", index=False)
    from abawkit.manifest import load_manifest

    manifest = load_manifest(manifest_dir)
    out = tmp_path / "faces"
    summary = index_organizer_crops(manifest, out, progress=False)
    assert (summary["status"] == "done").all()
    for vid in tiny_manifest.video_ids():
        index = load_index(out, vid)
        n = int(tiny_manifest.row(vid)["n_frames"])
        assert len(index) == n
        assert np.array_equal(index.loc[index["has_face"], "frame"].to_numpy(), crop_frames(organizer, vid))
        assert np.array_equal(crop_frames(out / "cropped_aligned", vid), crop_frames(organizer, vid))  # linked


def test_shards_split_the_videos_and_bad_options_are_user_errors(tiny_manifest, tmp_path, capsys):
    jobs, _ = jobs_from_manifest(tiny_manifest)
    parts = [shard_jobs(jobs, (k, 3)) for k in (1, 2, 3)]
    assert sorted(j.path for p in parts for j in p) == sorted(j.path for j in jobs)
    assert parse_shard("2/4") == (2, 4)
    for bad in (["--shard", "5/4"], ["--shard", "x"], ["--crops", "aligned,tight"], ["--workers", "0"],
                ["--decoder", "ffmpeg"]):
        with pytest.raises(SystemExit) as exc:  # the option parser's error, naming the option
            main(["extract-faces", "--manifest", str(tiny_manifest.path), "--out", str(tmp_path / "o"), *bad])
        assert exc.value.code == 2, bad
        err = capsys.readouterr().err
        assert bad[0] in err or bad[1] in err, err
    assert main(["extract-faces", "--video", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("prefetch", [True, False])
def test_decord_chunks_give_every_frame_once_in_order(tiny_manifest, prefetch):
    """Bounded chunks (a fresh reader per chunk, seek to its first frame) == one sequential pass."""
    import decord

    from abawkit.faces.decode import FrameReader

    path = tiny_manifest.row("1-30-320x240")["video_path"]
    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    ref = [vr.next().asnumpy() for _ in range(len(vr))]
    del vr
    reader = FrameReader(path, "decord", chunk_mb=0.5, prefetch=prefetch)  # 8 frames a chunk: 13 chunks
    got = list(reader)
    assert [k for k, _ in got] == list(range(1, len(ref) + 1)) and reader.decoded == len(ref)
    assert all(np.array_equal(a, b) for (_, a), b in zip(got, ref))
    assert reader.info["container_frames"] == len(ref) and reader.stop_reason == ""
    early = FrameReader(path, "decord", max_frames=20, chunk_mb=0.5, prefetch=prefetch)
    assert [k for k, _ in early] == list(range(1, 21))


@pytest.mark.slow
def test_sigkilled_cli_run_leaves_nothing_done_and_resumes_to_the_clean_output(extracted, tiny_manifest, tmp_path):
    """A real kill -9 of `abawkit extract-faces` in the middle of a video, then a re-run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "faces"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "abawkit.cli", "extract-faces", "--manifest",
                             str(tiny_manifest.path), "--out", str(out), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ids = tiny_manifest.video_ids()
    partial = []
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        done = [v for v in ids if is_done(out, v)]
        partial = [v for v in ids if not is_done(out, v) and crop_frames(out / "cropped_aligned", v).size >= 5]
        if done and partial:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert partial, "the run ended before it could be killed mid-video"
    assert all(not is_done(out, v) for v in partial) and not (out / "summary.csv").exists()
    summary = extract_faces(jobs_from_manifest(tiny_manifest)[0], out, ExtractConfig(), progress=False)
    assert (summary["status"] == "done").all()
    assert _tree(out) == _tree(extracted[0])  # identical to an uninterrupted run


def test_opencv_decoder_option_gives_the_same_faces(extracted, tiny_manifest, tmp_path):
    row = tiny_manifest.row("video3")
    (r,) = process_video(VideoJob(row["video_path"], (Subject("video3"),)), tmp_path, ExtractConfig(decoder="opencv",
                                                                                                 max_frames=40))
    assert r.status == "done" and r.decoder == "opencv" and r.frames_decoded == 40
    ours, ref = load_index(tmp_path, "video3"), load_index(extracted[0], "video3").iloc[:40]
    assert (ours["has_face"].to_numpy() == ref["has_face"].to_numpy()).all()
    boxes = ["box_x0", "box_y0", "box_x1", "box_y1"]
    assert np.nanmax(np.abs(ours[boxes].to_numpy() - ref[boxes].to_numpy())) < 3.0


def test_crop_writer_thread_writes_every_crop_and_reports_a_failed_write(tmp_path):
    from abawkit.faces.align import loose_matrix, warp
    from abawkit.faces.write import CropWriter

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(50)]
    m = loose_matrix((40, 30, 100, 90), 64)
    for threaded, folder in ((True, tmp_path / "thread"), (False, tmp_path / "inline")):
        folder.mkdir()
        writer = CropWriter(95, max_frames=2, threaded=threaded)
        for i, frame in enumerate(frames):
            writer.put(frame, [(folder / f"{i:05d}.jpg", m, 64), (folder / f"{i:05d}_b.jpg", m, 32)])
        writer.finish()
        assert len(list(folder.glob("*.jpg"))) == 100
    direct = cv2.imencode(".jpg", warp(frames[7], m, 64), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert (tmp_path / "thread" / "00007.jpg").read_bytes() == direct  # the same bytes as cutting in place
    assert (tmp_path / "inline" / "00007.jpg").read_bytes() == direct

    bad = CropWriter(95)
    bad.put(frames[0], [(tmp_path / "missing_folder" / "00001.jpg", m, 64)])
    with pytest.raises(OSError, match="missing_folder/00001.jpg"):
        bad.finish()


def test_still_images_are_found_aligned_like_a_video_frame_and_faceless_ones_reported(tmp_path, capsys):
    """extract-faces --images: a portrait's crop equals (up to video compression) the crop of a video made of that
    portrait, once tracking has settled; a landscape without a face and a file that is not an image are reported
    by path, with no crop, and the set's index lists every image."""
    from abawkit.demo import portrait_images

    portrait = cv2.cvtColor(portrait_images()["hopper"], cv2.COLOR_RGB2BGR)
    h, w = portrait.shape[:2]
    canvas = np.full((h + 80, w + 80, 3), 90, np.uint8)
    canvas[40:40 + h, 40:40 + w] = portrait
    canvas = canvas[: canvas.shape[0] // 2 * 2, : canvas.shape[1] // 2 * 2]
    folder = tmp_path / "corpus"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_portrait.png"), canvas)
    from skimage import data

    cv2.imwrite(str(folder / "b_landscape.png"), cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR))
    (folder / "c_broken.jpg").write_bytes(b"not a jpeg at all")
    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (canvas.shape[1], canvas.shape[0]))
    for _ in range(6):
        writer.write(canvas)
    writer.release()

    out = tmp_path / "faces"
    assert main(["extract-faces", "--images", str(folder), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 decoded images with a face" in printed
    assert "b_landscape.png" in printed and "c_broken.jpg" in printed
    index = load_index(out, "corpus")
    assert index["has_face"].tolist() == [True, False, False]
    assert [Path(p).name for p in index["source"]] == ["a_portrait.png", "b_landscape.png", "c_broken.jpg"]
    assert crop_frames(out / "cropped_aligned", "corpus").tolist() == [1]
    record = json.loads((out / "index" / "corpus.json").read_text())
    assert [Path(p).name for p in record["no_face"]] == ["b_landscape.png"]
    assert [Path(p).name for p in record["unreadable"]] == ["c_broken.jpg"]

    process_video(VideoJob(str(video), (Subject("still"),)), out, ExtractConfig(decoder="opencv"))
    tracked = load_index(out, "still")
    assert tracked["has_face"].all()
    cols = [c for c in INDEX_COLUMNS if c.endswith(("_x", "_y"))]
    still_points = index.loc[0, cols].to_numpy(float).reshape(5, 2)
    video_points = tracked.loc[5, cols].to_numpy(float).reshape(5, 2)
    eyes = np.linalg.norm(video_points[1] - video_points[0])
    assert np.abs(still_points - video_points).max() < 0.05 * eyes
    a = cv2.imread(str(out / "cropped_aligned" / "corpus" / "00001.jpg")).astype(float)
    b = cv2.imread(str(out / "cropped_aligned" / "still" / "00006.jpg")).astype(float)
    assert a.shape == b.shape == (112, 112, 3) and np.abs(a - b).mean() < 8
    # a done set is not redone
    assert main(["extract-faces", "--images", str(folder), "--out", str(out), "--quiet"]) == 0
    assert load_index(out, "corpus")["has_face"].tolist() == [True, False, False]
