"""``abawkit manifest``: find and check an Aff-Wild2 tree and write its manifest."""

from __future__ import annotations

import argparse

ORDER = 20  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "manifest",
        help="scan an Aff-Wild2 tree and write videos.csv, frames.parquet and a summary",
        description="Find, in the Aff-Wild2 release layout, the EXPR annotation files (EXPR_Recognition_Challenge or "
                    "EXPR_Classification_Challenge) and their split, the video of each subject (batch folders, .mp4 or "
                    ".avi, _left/_right stripped), the organizers' cropped/cropped_aligned folders, the test-set list "
                    "and example file. Writes OUT/videos.csv (one row per subject, with a problems column), "
                    "OUT/frames.parquet (one row per frame), OUT/summary.txt and OUT/manifest.json. Data problems "
                    "(missing or unreadable video, frame-count mismatch) are recorded, not fatal; a malformed "
                    "annotation file is an error naming the file and line.",
    )
    p.add_argument("--affwild2", required=True, metavar="ROOT", help="root folder of the Aff-Wild2 tree")
    p.add_argument("--out", required=True, help="manifest folder to write, e.g. data_manifests/affwild2")
    p.add_argument("--no-probe", action="store_true",
                   help="do not open the videos (faster; container frame counts, fps and size stay 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..annotations import AnnotationError
    from ..errors import UserError
    from ..manifest import ManifestError, build_manifest, summarize

    try:
        manifest = build_manifest(args.affwild2, args.out, probe_videos=not args.no_probe)
    except (AnnotationError, ManifestError) as exc:
        raise UserError(f"{exc}\nNothing was written to {args.out}; fix or move the file and run again.") from None
    print(summarize(manifest))
    problems = manifest.videos[manifest.videos["problems"] != ""]
    for _, row in problems.head(20).iterrows():
        print(f"  {row['video_id']}: {row['problems']}")
    if len(problems) > 20:
        print(f"  ... {len(problems) - 20} more in {args.out}/videos.csv")
    print(f"manifest written to {args.out}")
    return 0
