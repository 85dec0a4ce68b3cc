"""``abawkit extract-faces``: raw videos -> aligned and loose face crops per frame, a per-frame index, a summary."""

from __future__ import annotations

import argparse

ORDER = 30  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract-faces",
        help="detect, track and crop the subject's face in every frame (aligned 112x112 and loose crops)",
        description="Decode each video once (decord, one frame at a time), follow each subject's face with mediapipe "
                    "(FaceMesh's landmark model on an upright region that follows the face, FaceDetection to re-find it) and write OUT/cropped_aligned/<video_id>/00001.jpg "
                    "(5-point similarity alignment onto the ArcFace 112 template) and OUT/cropped/<video_id>/00001.jpg "
                    "(loose square crop), frames numbered from 1, no file where the face is not found. A _left/_right "
                    "subject follows the face on its side of the frame; any other follows the main face. Also writes "
                    "OUT/index/<video_id>.csv (per frame: has_face, detector and face scores, box, 5 points, track id) and OUT/summary.csv. "
                    "Resumable: a subject is done when its index exists; re-running skips done videos. A video that "
                    "cannot be read is reported with its path and the others continue; the exit code is 1 if any failed.",
        epilog="examples:\n  abawkit extract-faces --manifest data_manifests/demo --out data/faces/demo\n"
               "  abawkit extract-faces --manifest data_manifests/affwild2 --out data/faces/affwild2 --workers 8 --shard 1/4\n"
               "  abawkit extract-faces --video clip.mp4 --out /tmp/faces --crops loose --loose-size 256",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="DIR", help="manifest folder (abawkit manifest): every subject's video")
    src.add_argument("--video", metavar="PATH", help="one video file (video id = file stem, main face)")
    p.add_argument("--out", required=True, metavar="DIR", help="faces folder to write (e.g. data/faces/demo)")
    p.add_argument("--workers", type=int, default=1,
                   help="videos processed in parallel, each in its own (spawned) process (default 1: in this process)")
    p.add_argument("--shard", default="1/1", metavar="K/N",
                   help="process only the K-th of N equal parts of the video list, to share it between machines "
                        "(default 1/1)")
    p.add_argument("--size", type=int, default=112, help="side of the aligned crops in pixels (default 112)")
    p.add_argument("--loose-size", type=int, default=224, help="side of the loose crops in pixels (default 224)")
    p.add_argument("--crops", default="aligned,loose",
                   help="which crops to write: aligned, loose or both comma-separated (default aligned,loose)")
    p.add_argument("--decoder", default="decord", choices=("decord", "opencv"), help="video decoder (default decord)")
    p.add_argument("--detector", default="full", choices=("full", "short"),
                   help="mediapipe FaceDetection model: full-range (default) or short-range (faster, large faces only)")
    p.add_argument("--overwrite", action="store_true", help="redo videos that are already done")
    p.add_argument("--max-frames", type=int, default=None, help="stop each video after this many frames (for trials)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..faces.extract import (ExtractConfig, Subject, VideoJob, extract_faces, jobs_from_manifest, parse_shard,
                                 shard_jobs)
    from ..manifest import ManifestError, load_manifest

    try:
        config = ExtractConfig(size=args.size, loose_size=args.loose_size,
                               crops=tuple(c.strip() for c in args.crops.split(",") if c.strip()),
                               decoder=args.decoder, detector_model=args.detector, workers=args.workers,
                               overwrite=args.overwrite, max_frames=args.max_frames)
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1 (got {args.workers})")
    if args.video:
        path = Path(args.video)
        if not path.is_file():
            raise UserError(f"video file {path} does not exist")
        jobs, failures = [VideoJob(str(path), (Subject(path.stem),))], []
    else:
        try:
            jobs, failures = jobs_from_manifest(load_manifest(args.manifest))
        except ManifestError as exc:
            raise UserError(str(exc)) from None
    all_subjects = [s.video_id for j in jobs for s in j.subjects] + [f.video_id for f in failures]
    mine = shard_jobs(jobs, shard)
    mine_ids = {s.video_id for j in mine for s in j.subjects}
    if shard[0] != 1:
        failures = []  # subjects without a video are reported by the first shard only, not by every machine
    summary = extract_faces(mine, args.out, config, progress=not args.quiet, known_failures=failures,
                            all_subjects=all_subjects, params={k: v for k, v in vars(args).items() if k != "func"})
    ran = summary[summary["video_id"].isin(mine_ids | {f.video_id for f in failures})]
    done, failed = ran[ran["status"] == "done"], ran[ran["status"] == "failed"]
    rate = done["faces_found"].sum() / max(1, done["frames_decoded"].sum())
    print(f"{len(done)} subject(s) done ({rate:.1%} of frames with a face), {len(failed)} failed; "
          f"summary: {Path(args.out) / 'summary.csv'}")
    for row in failed.itertuples(index=False):
        print(f"FAILED {row.video_id}: {row.problems}")
    return 1 if len(failed) else 0
