"""``abawkit train-frame``: semi-supervised pretraining of the frame model (SPEC 5.1-5.5)."""

from __future__ import annotations

import argparse

ORDER = 40  # place in ``abawkit --help`` (pipeline order)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-frame",
        help="train the frame-level expression model (supervised, FixMatch or the full semi-supervised method)",
        description="Train a timm backbone with an 8-class head on labeled face crops (a manifest + crops folder, "
                    "or any CSV of path,label) and, unless --algorithm supervised, on unlabeled faces (any folders, "
                    "recursively): class-uniform labeled batches, a teacher that pseudo-labels weak views, "
                    "class- and stage-adaptive thresholds, debiased pseudo-labels and feedback from the student "
                    "(SPEC 5.1-5.5). Writes OUT/best.pt, OUT/last.pt (resumable), OUT/metrics.csv, OUT/curves.png "
                    "and OUT/run_record.json; prints the final and best validation macro F1 on its last line. "
                    "Several processes: torchrun --standalone --nproc_per_node=N -m abawkit.cli train-frame ...",
        epilog="Options given on the command line override those of --config (a YAML file of the same names "
               "with underscores, e.g. 'steps: 400', 'unlabeled_dirs: [a, b]', 'semisup: {tau: 0.9}').",
    )
    p.add_argument("--config", help="YAML file of options (keys as the long options, with underscores)")
    g = p.add_argument_group("data")
    g.add_argument("--labeled-csv", help="CSV with columns path,label (label 0..7 or class name); paths relative "
                                         "to the CSV's folder. Instead of --manifest/--crops (e.g. AffectNet)")
    g.add_argument("--manifest", help="manifest folder (abawkit manifest); its Train_Set frames are the labeled data")
    g.add_argument("--crops", help="folder of <video_id>/00001.jpg face crops (cropped_aligned or cropped)")
    g.add_argument("--unlabeled-dir", action="append", dest="unlabeled_dirs", default=None,
                   help="folder of unlabeled face images, searched recursively (repeatable)")
    g.add_argument("--val-csv", help="validation CSV path,label (default: the manifest's --val-split frames)")
    g.add_argument("--val-split", help="manifest split used for validation (default Validation_Set)")
    g.add_argument("--frame-stride", type=int, help="keep every k-th labeled frame per video (default 1)")
    g.add_argument("--val-stride", type=int, help="keep every k-th validation frame per video (default 1)")
    g.add_argument("--holdout-fraction", type=float,
                   help="leave this share of the Train_Set videos out (chosen as train-temporal does with the same "
                        "--seed and --holdout-fraction), so its post-processing is fitted on unseen frames (default 0)")
    g.add_argument("--workers", type=int, help="data-loader processes per rank (default 2)")
    a = p.add_argument_group("algorithm")
    a.add_argument("--algorithm", choices=("supervised", "fixmatch", "full"),
                   help="preset: supervised (labeled only), fixmatch (EMA teacher, fixed threshold) or full "
                        "(self-adaptive threshold + debiasing + feedback teacher; the default)")
    a.add_argument("--threshold", choices=("fixed", "self-adaptive", "flexmatch"), help="override the preset's threshold")
    a.add_argument("--debias", action=argparse.BooleanOptionalAction, default=None,
                   help="debiased pseudo-labels and adaptive margin (SPEC 5.4)")
    a.add_argument("--feedback", action=argparse.BooleanOptionalAction, default=None,
                   help="separate teacher trained with the student's feedback (SPEC 5.5)")
    a.add_argument("--tau", type=float, help="fixed / FlexMatch base threshold (default 0.95)")
    a.add_argument("--threshold-momentum", type=float,
                   help="lambda of the self-adaptive threshold (default 0.999, SPEC 5.3; with a few hundred steps "
                        "the threshold barely leaves 1/C, try 0.99)")
    a.add_argument("--debias-strength", type=float, help="tau_d of the debiasing (default 0.5)")
    a.add_argument("--uratio", type=int, help="unlabeled images per labeled image (default 2)")
    a.add_argument("--unlabeled-warmup", type=int,
                   help="supervised steps before pseudo-labels, debiasing and feedback start (default 0; the demo "
                        "uses most of its few hundred steps for this: a from-scratch teacher labels noise at first)")
    m = p.add_argument_group("model and optimization")
    m.add_argument("--backbone", help="timm model name (default resnet10t; convnext_tiny on a GPU)")
    m.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="timm pretrained weights (needs them in the local cache; default off)")
    m.add_argument("--weights", help="local backbone weights file (.pth/.pt/.safetensors)")
    m.add_argument("--image-size", type=int, help="input side in pixels (default 112)")
    m.add_argument("--input-norm", choices=("none", "per-image"),
                   help="per-image: standardize each crop per channel inside the model, removing per-video colour "
                        "casts and lighting (the demo setting, for a backbone trained from scratch); none: dataset "
                        "mean/std only (default; pretrained weights expect it)")
    m.add_argument("--steps", type=int, help="training steps (default 1000)")
    m.add_argument("--batch-size", type=int, help="labeled images per step and rank (default 32)")
    m.add_argument("--optimizer", choices=("adamw", "sgd"), help="default adamw")
    m.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    m.add_argument("--weight-decay", type=float, help="default 0.05")
    m.add_argument("--warmup-steps", type=int, help="linear warm-up before the cosine decay (default 50)")
    m.add_argument("--eval-every", type=int, help="validate every N steps (default 100)")
    m.add_argument("--ckpt-every", type=int, help="write last.pt every N steps (default 100)")
    o = p.add_argument_group("run")
    o.add_argument("--out", help="output folder (default runs/demo/frame_model)")
    o.add_argument("--resume", action="store_true", default=None, help="continue from OUT/last.pt (step, optimizer, algorithm state)")
    o.add_argument("--seed", type=int, help="random seed (default 0)")
    o.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.set_defaults(func=run)


SEMI_KEYS = ("threshold", "debias", "feedback", "tau", "threshold_momentum", "debias_strength", "uratio",
             "unlabeled_warmup")


def config_from_args(args: argparse.Namespace):
    """Merge --config YAML and the command-line options (the latter win) into a TrainConfig."""
    from dataclasses import fields

    from ..errors import UserError
    from ..semisup.config import TrainConfig, preset

    values: dict = {}
    if args.config:
        import yaml

        try:
            with open(args.config) as fh:
                values = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read --config {args.config}: {exc}") from None
        if not isinstance(values, dict):
            raise UserError(f"{args.config}: expected a mapping of option: value")
    semi = dict(values.pop("semisup", {}) or {})
    for key in ("algorithm", *SEMI_KEYS):
        if key in values:
            semi[key] = values.pop(key)
    for key in SEMI_KEYS:
        if getattr(args, key, None) is not None:
            semi[key] = getattr(args, key)
    algorithm = args.algorithm or semi.pop("algorithm", "full")
    semi.pop("algorithm", None)
    known = {f.name for f in fields(TrainConfig)} - {"semisup"}
    for key in known:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    try:
        return TrainConfig.from_dict({**values, "semisup": preset(algorithm, **semi)})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad training options: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..semisup.data import DataError
    import os

    from ..semisup.train import train

    cfg = config_from_args(args)
    try:
        result = train(cfg)
    except (DataError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:  # the process group is gone by now
        print(f"frame model written to {result.out} ({result.train_images_per_s:.1f} train img/s)")
        print(f"final val macro-F1 {result.final_val_macro_f1:.4f}, best val macro-F1 {result.best_val_macro_f1:.4f} "
              f"(step {result.best_step})")
    return 0
