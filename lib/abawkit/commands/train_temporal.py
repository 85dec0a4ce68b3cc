"""``abawkit train-temporal``: train the temporal encoder on cached features and fit the post-processing."""

from __future__ import annotations

import argparse

ORDER = 60  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    from ..temporal.train import TemporalTrainConfig as C

    p = sub.add_parser(
        "train-temporal",
        help="train the temporal transformer over cached frame features; fit smoothing and class biases",
        description="Train a transformer encoder over windows of T cached frame embeddings (any folder of "
                    "<video_id>.npz with 'embeddings', 'has_face', 'logits'), validating macro F1 on the "
                    "Validation_Set each epoch. Writes OUT/best.pt, OUT/last.pt, OUT/metrics.csv, "
                    "OUT/postprocess.json (smoothing window and per-class biases fitted on held-out TRAINING "
                    "subjects), OUT/comparison.csv (frame model / + temporal encoder / + post-processing on the "
                    "Validation_Set) and OUT/run_record.json. Prints the best validation macro F1 last.",
        epilog="example: abawkit train-temporal --features runs/demo/features --manifest data_manifests/demo "
               "--out runs/demo/temporal --epochs 30",
    )
    p.add_argument("--features", required=True, metavar="DIR", help="feature folder (abawkit extract-features)")
    p.add_argument("--manifest", required=True, metavar="DIR", help="manifest folder (labels and splits)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to write")
    p.add_argument("--window", type=int, default=C.window, help=f"frames per window T (default {C.window})")
    p.add_argument("--stride", type=int, default=None, help="training stride (default T/2)")
    p.add_argument("--depth", type=int, default=C.depth, help=f"transformer layers (default {C.depth})")
    p.add_argument("--heads", type=int, default=C.heads, help=f"attention heads (default {C.heads})")
    p.add_argument("--width", type=int, default=C.width, help=f"model width (default {C.width})")
    p.add_argument("--dropout", type=float, default=C.dropout, help=f"dropout (default {C.dropout})")
    p.add_argument("--residual-logits", action="store_true", help="add the frame model's logits to the output")
    p.add_argument("--epochs", type=int, default=C.epochs, help=f"epochs (default {C.epochs})")
    p.add_argument("--batch-size", type=int, default=C.batch_size, help=f"windows per batch (default {C.batch_size})")
    p.add_argument("--lr", type=float, default=C.lr, help=f"peak learning rate (default {C.lr})")
    p.add_argument("--loss-weight-power", type=float, default=C.loss_weight_power,
                   help=f"class weights = inverse frequency ** POWER (default {C.loss_weight_power}; 0 = none)")
    p.add_argument("--balanced-sampling", action="store_true",
                   help="class-balanced window sampling instead of loss weights")
    p.add_argument("--label-smoothing", type=float, default=C.label_smoothing,
                   help=f"label smoothing (default {C.label_smoothing})")
    p.add_argument("--feature-noise", type=float, default=C.feature_noise,
                   help=f"training noise on the features, in feature standard deviations (default {C.feature_noise})")
    p.add_argument("--frame-drop", type=float, default=C.frame_drop,
                   help=f"share of face frames masked as no-face in each training window (default {C.frame_drop})")
    p.add_argument("--holdout-fraction", type=float, default=C.holdout_fraction,
                   help=f"share of training videos held out to fit the post-processing (default {C.holdout_fraction})")
    p.add_argument("--seed", type=int, default=C.seed, help=f"random seed (default {C.seed})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..features import FeatureError
    from ..manifest import ManifestError, load_manifest
    from ..temporal.train import TemporalTrainConfig, train_temporal

    for name in ("window", "depth", "heads", "width", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1 (got {getattr(args, name)})")
    if args.width % args.heads:
        raise UserError(f"--width {args.width} must be a multiple of --heads {args.heads}")
    if not 0 <= args.holdout_fraction < 1:
        raise UserError(f"--holdout-fraction must be in [0, 1) (got {args.holdout_fraction})")
    config = TemporalTrainConfig(window=args.window, stride=args.stride, depth=args.depth, heads=args.heads,
                                 width=args.width, dropout=args.dropout, residual_logits=args.residual_logits,
                                 epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                 loss_weight_power=args.loss_weight_power, balanced_sampling=args.balanced_sampling,
                                 label_smoothing=args.label_smoothing, feature_noise=args.feature_noise,
                                 frame_drop=args.frame_drop, holdout_fraction=args.holdout_fraction,
                                 seed=args.seed)
    try:
        summary = train_temporal(args.features, load_manifest(args.manifest), args.out, config)
    except (FileNotFoundError, ValueError, ManifestError, FeatureError) as exc:
        raise UserError(str(exc)) from None
    for row in summary["comparison"]:
        print(f"{row['stage']:>20s}  validation macro F1 {row['macro_f1']:.4f}")
    print(f"best validation macro F1 {summary['best_val_macro_f1']:.4f}")
    return 0
