"""``abawkit train-frame``: semi-supervised training of the frame model.

Its options are generated from :class:`abawkit.semisup.config.TrainConfig`, the one declaration of the stage's
settings (notebook 03 and the pipelines use the same names).
"""

from __future__ import annotations

ORDER = 40  # place in ``abawkit --help`` (pipeline order)
NAME = "train-frame"
HELP = "train the frame-level expression model (supervised, FixMatch or the full semi-supervised method)"


def main(argv: list[str]) -> int:
    import os

    from ..config import cli
    from ..semisup.config import TrainConfig
    from ..semisup.train import train_folds

    cfg = cli(TrainConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit train-frame --preset demo --algorithm supervised --steps 100 --out runs/sup; "
                     "cross-fitted, one fold per machine: abawkit train-frame ... --folds 3 --fold 0 (1, 2; then "
                     "--folds 3 without --fold trains what is missing, the model on every training video last)")
    results = train_folds(cfg)
    if int(os.environ.get("RANK", "0")) != 0:  # the process group is gone by now
        return 0
    for result in results[:-1]:  # the fold models of --folds K
        print(f"fold model in {result.out}: best val macro-F1 {result.best_val_macro_f1:.4f}")
    result = results[-1]
    print(f"frame model written to {result.out} ({result.train_images_per_s:.1f} train img/s)")
    if result.best_val_macro_f1 < 0:  # nothing was validated
        print("no validation set (--val-csv, or --manifest with --crops and --val-split): best.pt is the last step")
    else:
        print(f"final val macro-F1 {result.final_val_macro_f1:.4f}, best val macro-F1 "
              f"{result.best_val_macro_f1:.4f} (step {result.best_step})")
    return 0
