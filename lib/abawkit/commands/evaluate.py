"""``abawkit evaluate``: score a submission-format file with the challenge metric."""

from __future__ import annotations

import argparse

ORDER = 80  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a submission-format file against annotations (macro F1, per-class F1, confusion)",
        description="Score a file in submission format (image_location,<8 classes> then video/00001.jpg,label) "
                    "with the ABAW EXPR metric: the unweighted mean of the 8 per-class F1 over every annotated frame. "
                    "Truth comes from the manifest's annotations of one split, or from a folder of annotation files "
                    "such as the demo's test_ground_truth/.",
    )
    p.add_argument("submission", help="the submission .txt file")
    p.add_argument("--manifest", help="manifest folder (abawkit manifest) whose annotations are the truth")
    p.add_argument("--split", default="Validation_Set", help="split of the manifest to score (default Validation_Set)")
    p.add_argument("--truth", help="folder of <video_id>.txt annotation files to score against instead of a split")
    p.add_argument("--json", help="also write the report (macro F1, per-class F1, confusion) to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotations import load_label_folder
    from ..errors import UserError
    from ..io import write_json
    from ..manifest import load_manifest
    from ..submission import score_submission

    if args.truth:
        truth = load_label_folder(args.truth)
        if not truth:
            raise UserError(f"{args.truth} holds no <video_id>.txt annotation files")
    elif args.manifest:
        manifest = load_manifest(args.manifest)
        ids = manifest.video_ids(args.split)
        if not ids:
            raise UserError(f"the manifest {args.manifest} has no subject in split {args.split!r}; "
                            f"splits there: {sorted(set(manifest.videos['split']))}")
        truth = {vid: manifest.labels(vid) for vid in ids}
    else:
        raise UserError("give the truth: --manifest DIR [--split NAME] or --truth FOLDER")
    report = score_submission(args.submission, truth)
    print(report.format())
    if args.json:
        write_json(args.json, report.to_dict())
    return 0
