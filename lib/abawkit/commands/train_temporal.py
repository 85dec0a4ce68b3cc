"""``abawkit train-temporal``: train the temporal encoder on cached features and fit the post-processing.

Its options are generated from :class:`abawkit.temporal.config.TemporalTrainConfig`, the one declaration of
the stage's settings (notebook 06 and the pipelines use the same names).
"""

from __future__ import annotations

ORDER = 60  # place in ``abawkit --help`` (pipeline order)
NAME = "train-temporal"
HELP = "train the temporal transformer over cached frame features; fit smoothing and class biases"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..manifest import load_manifest
    from ..temporal.config import TemporalTrainConfig
    from ..temporal.train import train_temporal

    config = cli(TemporalTrainConfig, argv, prog=f"abawkit {NAME}",
                 epilog="example: abawkit train-temporal --preset demo --features runs/demo/features "
                        "--manifest data_manifests/demo --out runs/demo/temporal")
    summary = train_temporal(config, load_manifest(config.manifest_dir))
    for row in summary["comparison"]:
        print(f"{row['stage']:>20s}  validation macro F1 {row['macro_f1']:.4f}")
    print(f"kept epoch {summary['epoch']} (--select {summary['select']}): validation macro F1 "
          f"{summary['val_macro_f1']:.4f}; best over the epochs {summary['best_val_macro_f1']:.4f}")
    return 0
