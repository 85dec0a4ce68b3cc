"""``abawkit check-submission``: check a challenge submission file line by line."""

from __future__ import annotations

import argparse

ORDER = 90  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-submission",
        help="check a submission file against the organizers' example file or the test list",
        description="Report every problem of a submission file with its line number: header, column count, "
                    "location syntax, label range, duplicate, missing or extra frame, and order. The expected rows "
                    "come from the organizers' example file, or from the test-set list plus the frame counts of the "
                    "manifest. Exits 1 when there is any problem, 0 when the file is valid.",
    )
    p.add_argument("file", help="submission .txt file")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--example", help="organizers' example file (e.g. CVPR_6th_ABAW_Expr_test_set_example.txt)")
    group.add_argument("--test-list", help="test-set list (Expression_Recognition_Challenge_test_set_release.txt)")
    p.add_argument("--manifest", help="manifest folder giving frame counts (needed with --test-list)")
    p.add_argument("--max-lines", type=int, default=50, help="print at most this many problems (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..manifest import load_manifest, read_example_file, read_test_list
    from ..submission import check_submission, rows_from_counts

    if args.example:
        rows = read_example_file(args.example)
    else:
        if not args.manifest:
            raise UserError("--test-list needs --manifest DIR for the frame count of each test video")
        manifest = load_manifest(args.manifest)
        ids = read_test_list(args.test_list)
        known = set(manifest.videos["video_id"])
        unknown = [v for v in ids if v not in known]
        if unknown:
            raise UserError(f"{len(unknown)} test videos are not in {args.manifest} (first {unknown[0]!r}); "
                            "rebuild the manifest on the tree that holds them")
        rows = rows_from_counts(ids, {v: int(manifest.row(v)["n_frames"]) for v in ids})
    problems = check_submission(args.file, rows)
    for p in problems[: args.max_lines]:
        print(f"{args.file}: {p}")
    if len(problems) > args.max_lines:
        print(f"... and {len(problems) - args.max_lines} more problems")
    if problems:
        print(f"{args.file}: INVALID ({len(problems)} problems)")
        return 1
    print(f"{args.file}: valid ({len(rows)} rows)")
    return 0
