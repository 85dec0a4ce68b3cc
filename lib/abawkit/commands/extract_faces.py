"""``abawkit extract-faces``: raw videos -> aligned and loose face crops per frame, a per-frame index, a summary
(options from :class:`abawkit.faces.extract.FacesConfig`, as notebook 01)."""

from __future__ import annotations

ORDER = 30  # place in ``abawkit --help`` (pipeline order)
NAME = "extract-faces"
HELP = "detect, track and crop the subject's face in every frame (aligned 112x112 and loose crops)"
EXAMPLES = """examples:
  abawkit extract-faces --manifest data_manifests/demo --out data/faces/demo
  abawkit extract-faces --preset gpu --workers 8 --shard 1/4
  abawkit extract-faces --video clip.mp4 --out /tmp/faces --crops loose --loose-size 256
  abawkit extract-faces --images data/unlabeled_faces/celeba --out data/faces/unlabeled   # still images"""


def main(argv: list[str]) -> int:
    from dataclasses import asdict
    from pathlib import Path

    from ..config import cli
    from ..errors import UserError
    from ..faces.extract import (FacesConfig, Subject, VideoJob, extract_faces, index_organizer_crops,
                                 jobs_from_manifest, shard_jobs)
    from ..manifest import load_manifest

    cfg = cli(FacesConfig, argv, prog=f"abawkit {NAME}", epilog=EXAMPLES)
    if cfg.images:
        return _images(cfg)
    if cfg.video:
        path = Path(cfg.video)
        if not path.is_file():
            raise UserError(f"video file {path} does not exist")
        jobs, failures = [VideoJob(str(path), (Subject(path.stem),))], []
    else:
        manifest = load_manifest(cfg.manifest_dir)
        if cfg.use_organizer_crops:
            summary = index_organizer_crops(manifest, cfg.faces_dir, overwrite=cfg.extract.overwrite,
                                            progress=not cfg.quiet)
            print(f"{int((summary['status'] == 'done').sum())} subject(s) indexed from the organizers' crops; "
                  f"summary: {Path(cfg.faces_dir) / 'summary.csv'}")
            return 0
        jobs, failures = jobs_from_manifest(manifest)
    shard = cfg.shard_k_n
    all_subjects = [s.video_id for j in jobs for s in j.subjects] + [f.video_id for f in failures]
    mine = shard_jobs(jobs, shard)
    mine_ids = {s.video_id for j in mine for s in j.subjects}
    if shard[0] != 1:
        failures = []  # subjects without a video are reported by the first shard only, not by every machine
    summary = extract_faces(mine, cfg.faces_dir, cfg.extract, progress=not cfg.quiet, known_failures=failures,
                            all_subjects=all_subjects, params=asdict(cfg))
    ran = summary[summary["video_id"].isin(mine_ids | {f.video_id for f in failures})]
    done, failed = ran[ran["status"] == "done"], ran[ran["status"] == "failed"]
    rate = done["faces_found"].sum() / max(1, done["frames_decoded"].sum())
    print(f"{len(done)} subject(s) done ({rate:.1%} of frames with a face), {len(failed)} failed; "
          f"summary: {Path(cfg.faces_dir) / 'summary.csv'}")
    for row in failed.itertuples(index=False):
        print(f"FAILED {row.video_id}: {row.problems}")
    return 1 if len(failed) else 0


def _images(cfg) -> int:
    """``--images DIR...``: still images, one face each (abawkit.faces.images)."""
    from dataclasses import asdict
    from pathlib import Path

    from ..faces.images import extract_images, image_sets

    sets = image_sets(cfg.images)
    k, n = cfg.shard_k_n
    mine = [s for i, s in enumerate(sets) if i % n == k - 1]
    summary = extract_images(mine, cfg.faces_dir, cfg.extract, progress=not cfg.quiet,
                             all_sets=[s.set_id for s in sets], params=asdict(cfg))
    ran = summary[summary["video_id"].isin({s.set_id for s in mine})]
    done, failed = ran[ran["status"] == "done"], ran[ran["status"] == "failed"]
    images = int(done["frames_decoded"].sum())
    print(f"{len(done)} image set(s) done: {int(done['faces_found'].sum())} of {images} decoded images with a face; "
          f"crops under {Path(cfg.faces_dir) / 'cropped_aligned'}, summary: {Path(cfg.faces_dir) / 'summary.csv'}")
    for row in done.itertuples(index=False):
        if row.problems:
            print(f"{row.video_id}: {row.problems} (all listed in {Path(cfg.faces_dir) / 'index' / row.video_id}.json)")
    for row in failed.itertuples(index=False):
        print(f"FAILED {row.video_id}: {row.problems}")
    return 1 if len(failed) else 0
