"""``abawkit predict``: per-frame class probabilities of a trained temporal run for any split(s)."""

from __future__ import annotations

import argparse

ORDER = 70  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="write per-frame probabilities (post-processed and raw) for any split(s)",
        description="Run a trained temporal run (abawkit train-temporal) over cached features and write "
                    "OUT/<video_id>.npz per subject with 'probs' (after the fitted post-processing: fill, "
                    "smoothing, class biases from TEMPORAL/postprocess.json), 'probs_raw' and 'has_face'.",
        epilog="example: abawkit predict --temporal runs/demo/temporal --features runs/demo/features "
               "--manifest data_manifests/demo --split Validation_Set --split Test_Set --out runs/demo/predictions",
    )
    p.add_argument("--temporal", required=True, metavar="DIR", help="run folder of abawkit train-temporal")
    p.add_argument("--features", required=True, metavar="DIR", help="feature folder (abawkit extract-features)")
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder")
    p.add_argument("--out", required=True, metavar="DIR", help="predictions folder to write")
    p.add_argument("--split", action="append", default=None,
                   help="split to predict (repeatable; default Validation_Set and Test_Set)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file name in the run folder (default best.pt)")
    p.add_argument("--no-postprocess", action="store_true", help="write raw probabilities as 'probs'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..features import FeatureError
    from ..manifest import ManifestError, load_manifest
    from ..temporal.predict import predict_split

    splits = args.split or ["Validation_Set", "Test_Set"]
    try:
        manifest = load_manifest(args.manifest)
        known = sorted(set(manifest.videos["split"]))
        bad = [s for s in splits if s not in known]
        if bad:
            raise UserError(f"split {bad[0]!r} is not in the manifest {args.manifest}; splits there: {known}")
        written = predict_split(args.temporal, args.features, manifest, splits, args.out,
                                checkpoint=args.checkpoint, postprocess=not args.no_postprocess)
    except (FileNotFoundError, ValueError, ManifestError, FeatureError) as exc:
        raise UserError(str(exc)) from None
    print(f"{len(written)} prediction file(s) written to {args.out}")
    return 0
