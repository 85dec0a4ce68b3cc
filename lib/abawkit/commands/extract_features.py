"""``abawkit extract-features``: run a frame model once over every frame and cache embeddings + logits."""

from __future__ import annotations

import argparse

ORDER = 50  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract-features",
        help="cache frame-model embeddings, face masks and logits per video (input of the temporal encoder)",
        description="Run a frame-model checkpoint (abawkit train-frame / notebook 02) over every face crop of every "
                    "subject of a manifest and write OUT/<video_id>.npz holding 'embeddings' (n, D) float16, "
                    "'has_face' (n,) bool and 'logits' (n, 8) float32 for frames 1..n of the annotation (test "
                    "subjects: the rows of the submission). Frames without a crop get a zero embedding and "
                    "has_face False. Batched, bf16 on GPU; a finished video is skipped on re-run (resume). For "
                    "several GPUs: torchrun --nproc_per_node=N -m abawkit.cli extract-features ... (split by video).",
        epilog="example: abawkit extract-features --checkpoint runs/demo/frame_model/best.pt "
               "--crops data/faces/demo/cropped_aligned --manifest data_manifests/demo --out runs/demo/features",
    )
    p.add_argument("--checkpoint", required=True, help="frame-model checkpoint (best.pt of abawkit train-frame)")
    p.add_argument("--crops", required=True, metavar="DIR", help="crops folder holding <video_id>/00001.jpg")
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder (abawkit manifest)")
    p.add_argument("--out", required=True, metavar="DIR", help="feature folder to write (one .npz per subject)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    p.add_argument("--workers", type=int, default=2, help="data-loader worker processes (default 2; 0 = in-process)")
    p.add_argument("--overwrite", action="store_true", help="recompute videos whose file already exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..features import FeatureConfig, FeatureError, extract_features
    from ..manifest import ManifestError, load_manifest

    if not Path(args.crops).is_dir():
        raise UserError(f"crops folder {args.crops} does not exist; run abawkit extract-faces (notebook 01) or point "
                        f"--crops at the organizers' cropped_aligned folder")
    if args.batch_size < 1 or args.workers < 0:
        raise UserError(f"--batch-size must be >= 1 and --workers >= 0 (got {args.batch_size}, {args.workers})")
    try:
        manifest = load_manifest(args.manifest)
        written = extract_features(args.checkpoint, args.crops, manifest, args.out,
                                   FeatureConfig(batch_size=args.batch_size, num_workers=args.workers,
                                                 overwrite=args.overwrite))
    except (FileNotFoundError, ValueError, ManifestError, FeatureError) as exc:
        raise UserError(str(exc)) from None
    print(f"{len(written)} feature file(s) written to {args.out} (existing ones kept)")
    return 0
