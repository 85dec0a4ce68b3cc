"""Face-extraction speed and memory on one video, one CPU worker: frames/s of the full stage (decode, detect/track,
align, write crops) against decode alone, their ratio, and each one's peak resident memory (measured in a child
process each, so they do not mix). Times MTCNN too when facenet-pytorch is importable.

    python benchmarks/extract_speed.py --generate 720p --seconds 60 --repeats 5   # a 1-minute 720p test video
    python benchmarks/extract_speed.py --generate 1080p --seconds 600         # 10 minutes of 1080p (memory)
    python benchmarks/extract_speed.py --video some.mp4 [--max-frames 3000]

Targets: the stage at >= 0.35x the decode-only rate at 720p; peak memory < 1.5 GB on a 10-minute 1080p video.
The generated video is a demo face (abawkit.demo's portraits) moving over a textured background, absent for 2 s
every 30 s; it is written frame by frame (bounded memory) and kept for re-runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}


def generate(path: Path, size: tuple[int, int], seconds: float, fps: int = 30) -> Path:
    """Write a test video frame by frame: one face moving and scaling smoothly, gone 2 s in every 30 s."""
    import cv2

    from abawkit.demo import background, load_identities

    if path.is_file():
        return path
    w, h = size
    ident = load_identities()[0]
    rng = np.random.default_rng(0)
    bg = background(rng, h, w)[:h, :w].astype(np.uint8)
    sprite = ident.image.astype(np.float32)
    mask = ident.mask[..., None]
    n = int(seconds * fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp_" + path.name)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {tmp}")
    from tqdm.auto import tqdm

    try:
        for t in tqdm(range(n), desc=f"generating {path.name}", unit="frame"):
            frame = bg.copy()
            if (t / fps) % 30 < 28:
                side = int(h * (0.35 + 0.08 * np.sin(t / 97)))
                face = cv2.resize(sprite, (side, side))
                alpha = cv2.resize(mask, (side, side))[..., None]
                cx = int(w / 2 + 0.3 * w * np.sin(t / 151))
                cy = int(h / 2 + 0.15 * h * np.sin(t / 83))
                x0, y0 = np.clip(cx - side // 2, 0, w - side), np.clip(cy - side // 2, 0, h - side)
                roi = frame[y0:y0 + side, x0:x0 + side].astype(np.float32)
                frame[y0:y0 + side, x0:x0 + side] = (roi * (1 - alpha) + face * alpha).astype(np.uint8)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)
    return path


def _child(mode: str, video: str, max_frames: int | None, decoder: str, prefetch: bool, out_parent: str) -> None:
    """Run one measurement in this (child) process and print a JSON line with frames, seconds, peak RSS."""
    import resource

    import cv2

    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    if mode == "decode":
        from abawkit.faces.decode import FrameReader

        reader = FrameReader(video, decoder=decoder, max_frames=max_frames, prefetch=prefetch)
        for _ in reader:
            pass
        frames, extra = reader.decoded, {}
    elif mode == "stage":
        from abawkit.faces.extract import ExtractConfig, Subject, VideoJob, process_video

        # Removed by the parent after every measurement: deleting thousands of files makes the next ones slow.
        Path(out_parent).mkdir(parents=True, exist_ok=True)
        out = tempfile.mkdtemp(dir=out_parent, prefix="stage_out_")
        (r,) = process_video(VideoJob(video, (Subject(Path(video).stem),)), out,
                             ExtractConfig(decoder=decoder, max_frames=max_frames, prefetch=prefetch))
        frames, extra = r.frames_decoded, {"detection_rate": r.detection_rate, "problems": r.problems}
    else:  # mtcnn: detection + 5 points per frame, no tracking, no crops
        import torch
        from facenet_pytorch import MTCNN

        from abawkit.faces.decode import FrameReader

        torch.set_num_threads(1)
        mtcnn = MTCNN(keep_all=True, device="cpu")
        reader = FrameReader(video, decoder=decoder, max_frames=max_frames, prefetch=prefetch)
        found = 0
        for _, frame in reader:
            boxes, _, _ = mtcnn.detect(frame if not reader.bgr else frame[..., ::-1], landmarks=True)
            found += boxes is not None
        frames, extra = reader.decoded, {"detection_rate": found / max(1, reader.decoded)}
    seconds = time.perf_counter() - t0
    cpu_ms = 1000 * (time.process_time() - cpu0) / max(1, frames)  # all threads of this process
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    print("RESULT " + json.dumps({"mode": mode, "frames": frames, "seconds": seconds, "fps": frames / seconds,
                                  "cpu_ms_per_frame": cpu_ms, "peak_mb": peak_mb, **extra}))


def file_creation_ms(folder: str, n: int = 300) -> float:
    """CPU milliseconds to create and write one 10 kB file in ``folder`` (a crop is about that): file systems
    differ by 20x here (a watched folder, a network mount), and the stage creates two files per frame."""
    import shutil

    Path(folder).mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(dir=folder, prefix="probe_"))
    data = os.urandom(10_000)
    try:
        t0 = time.process_time()
        for i in range(n):
            (probe / f"{i:05d}.jpg").write_bytes(data)
        return 1000 * (time.process_time() - t0) / n
    finally:
        shutil.rmtree(probe)


def measure(mode: str, video: Path, max_frames: int | None, decoder: str, prefetch: bool = True,
            out_parent: str = "runs/bench") -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--video", str(video), "--decoder", decoder,
           "--out-parent", out_parent]
    if not prefetch:
        cmd.append("--no-prefetch")
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    env = {**os.environ, "GLOG_minloglevel": "2", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} measurement failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", help="video to measure (default: generate one, see --generate)")
    p.add_argument("--generate", choices=sorted(SIZES), default="720p", help="size of the generated video")
    p.add_argument("--seconds", type=float, default=60, help="length of the generated video (default 60)")
    p.add_argument("--cache", default="runs/bench", help="folder for generated videos (default runs/bench)")
    p.add_argument("--max-frames", type=int, default=None, help="measure only the first frames")
    p.add_argument("--decoder", default="decord", choices=("decord", "opencv"))
    p.add_argument("--skip-decode", action="store_true", help="measure only the stage (a memory run)")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure stage and decode this many times, alternating, and print the median ratio "
                        "(the decode-only rate alone varies by 15%% between runs on a shared machine)")
    p.add_argument("--no-prefetch", action="store_true",
                   help="decode on the worker's own thread only (default: the next chunk is decoded on a second thread)")
    p.add_argument("--out-parent", default=None,
                   help="where the stage writes its crops, in temporary folders removed at the end (default: the "
                        "--cache folder). The cost of creating a file there is printed: on the development machine's "
                        "disk it varied from 0.05 to 1.2 CPU ms from one minute to the next")
    p.add_argument("--child", choices=("decode", "stage", "mtcnn"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.child, args.video, args.max_frames, args.decoder, not args.no_prefetch, args.out_parent)
        return
    out_parent = args.out_parent or args.cache
    if args.video:
        video = Path(args.video)
    else:
        video = generate(Path(args.cache) / f"face_{args.generate}_{int(args.seconds)}s.mp4", SIZES[args.generate],
                         args.seconds)
    print(f"video: {video}, decoder {args.decoder} ({'no ' if args.no_prefetch else ''}prefetch thread), one worker, "
          f"frames: {args.max_frames or 'all'}, crops written under {out_parent}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"file creation under {out_parent}: {file_creation_ms(out_parent):.3f} CPU ms per 10 kB file "
          f"(the stage writes 2 files per frame; use --out-parent to measure on another disk)")
    try:
        run_all(args, video, out_parent)
    finally:  # the crops of every stage measurement, kept until now (see _child)
        import shutil

        for folder in Path(out_parent).glob("stage_out_*"):
            shutil.rmtree(folder, ignore_errors=True)


def run_all(args: argparse.Namespace, video: Path, out_parent: str) -> None:
    ratios = []
    for rep in range(args.repeats):  # stage and decode alternate, so a slow spell of the machine hits both
        tag = f"[{rep + 1}/{args.repeats}] " if args.repeats > 1 else ""
        stage = measure("stage", video, args.max_frames, args.decoder, not args.no_prefetch, out_parent)
        print(f"{tag}full stage : {stage['fps']:7.1f} frames/s  ({stage['frames']} frames in {stage['seconds']:.1f} s), "
              f"{stage['cpu_ms_per_frame']:.2f} CPU ms/frame, peak memory {stage['peak_mb']:.0f} MB, "
              f"detection rate {stage['detection_rate']:.3f}")
        if args.skip_decode:
            continue
        dec = measure("decode", video, args.max_frames, args.decoder, not args.no_prefetch)
        print(f"{tag}decode only: {dec['fps']:7.1f} frames/s  ({dec['frames']} frames in {dec['seconds']:.1f} s), "
              f"{dec['cpu_ms_per_frame']:.2f} CPU ms/frame, peak memory {dec['peak_mb']:.0f} MB")
        ratios.append((stage["fps"] / dec["fps"], dec["cpu_ms_per_frame"] / stage["cpu_ms_per_frame"]))
        print(f"{tag}ratio stage/decode: {ratios[-1][0]:.2f} by wall-clock frames/s, {ratios[-1][1]:.2f} by CPU time "
              f"per frame (target >= 0.35 at 720p)")
    if len(ratios) > 1:
        wall, cpu = np.median(np.array(ratios), axis=0)
        print(f"median of {len(ratios)}: ratio {wall:.2f} by wall-clock frames/s (min {min(r[0] for r in ratios):.2f}, "
              f"max {max(r[0] for r in ratios):.2f}), {cpu:.2f} by CPU time per frame")
    try:
        import facenet_pytorch  # noqa: F401
    except ImportError:
        print("MTCNN: skipped (facenet-pytorch is not installed)")
    else:
        mt = measure("mtcnn", video, args.max_frames or 300, args.decoder)
        print(f"MTCNN detect+5 points: {mt['fps']:7.1f} frames/s on {mt['frames']} frames, "
              f"detection rate {mt['detection_rate']:.3f}")


if __name__ == "__main__":
    main()
