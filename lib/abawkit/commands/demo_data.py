"""``abawkit demo-data``: write the embedded demo data set (a small Aff-Wild2 built from real faces)."""

from __future__ import annotations

import argparse

ORDER = 10  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo-data",
        help="write a small Aff-Wild2-layout demo data set built from real faces",
        description="Write a small Aff-Wild2 in the exact release layout (videos in batch folders, EXPR annotations "
                    "for Train_Set and Validation_Set, the test list and example file), built from the real portraits "
                    "shipped in matplotlib and scikit-image, plus a folder of unlabeled faces and the test labels "
                    "(test_ground_truth/, never read by the pipeline) for leaderboard-style scoring.",
    )
    p.add_argument("--out", required=True, help="folder to write (created; existing files are overwritten)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data (default 0)")
    p.add_argument("--n-train", type=int, default=7, help="training videos (default 7, one of them two-person)")
    p.add_argument("--n-val", type=int, default=2, help="validation videos (default 2)")
    p.add_argument("--n-test", type=int, default=3, help="test videos (default 3, the last one two-person)")
    p.add_argument("--frames", type=int, default=300, help="about this many frames per video (default 300)")
    p.add_argument("--unlabeled", type=int, default=300, help="unlabeled face renders besides the 100 LFW faces")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ..demo import DemoConfig, build_demo

    if args.frames < 60 or min(args.n_train, args.n_val, args.n_test) < 1:
        from ..errors import UserError

        raise UserError("--frames must be at least 60 and each split needs at least one video")
    start = time.time()
    cfg = DemoConfig(seed=args.seed, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                     frames=args.frames, n_unlabeled_renders=args.unlabeled)
    out = build_demo(args.out, cfg)
    print(f"demo data written to {out} in {time.time() - start:.1f} s")
    return 0
