"""``abawkit predict``: per-frame class probabilities of a trained temporal run for any split(s) (options from
:class:`abawkit.temporal.config.PredictConfig`, as notebook 07)."""

from __future__ import annotations

ORDER = 70  # place in ``abawkit --help`` (pipeline order)
NAME = "predict"
HELP = "write per-frame probabilities (post-processed and raw) for any split(s)"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..errors import UserError
    from ..manifest import load_manifest
    from ..temporal.config import PredictConfig
    from ..temporal.predict import predict_split

    cfg = cli(PredictConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit predict --temporal runs/demo/temporal --features runs/demo/features "
                     "--manifest data_manifests/demo --split Validation_Set --split Test_Set --out runs/demo/predictions")
    manifest = load_manifest(cfg.manifest_dir)
    known = sorted(set(manifest.videos["split"]))
    asked = "--split" in argv or any(a.startswith("--split=") for a in argv)
    bad = [s for s in cfg.splits if s not in known]
    if bad and asked:
        raise UserError(f"split {bad[0]!r} is not in the manifest {cfg.manifest_dir}; splits there: {known}")
    splits = [s for s in cfg.splits if s in known]
    written = predict_split(cfg.temporal_dir, cfg.features_dir, manifest, splits, cfg.predictions_dir,
                            checkpoint=cfg.checkpoint, postprocess=cfg.postprocess)
    print(f"{len(written)} prediction file(s) written to {cfg.predictions_dir}")
    return 0
