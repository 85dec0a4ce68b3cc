"""``abawkit manifest``: find and check an Aff-Wild2 tree and write its manifest (options from
:class:`abawkit.manifest.ManifestConfig`, as notebook 00)."""

from __future__ import annotations

ORDER = 20  # place in ``abawkit --help`` (pipeline order)
NAME = "manifest"
HELP = "scan an Aff-Wild2 tree and write videos.csv, frames.parquet and a summary"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..errors import UserError
    from ..manifest import ManifestConfig, build_manifest, summarize

    cfg = cli(ManifestConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit manifest --affwild2 /data/affwild2 --out data_manifests/affwild2 "
                     "--holdout-fraction 0.1")
    try:
        manifest = build_manifest(cfg.affwild2_root, cfg.manifest_dir, probe_videos=cfg.probe,
                                  holdout_fraction=cfg.holdout_fraction, seed=cfg.seed)
    except UserError as exc:  # a bad annotation, video list or tree: say that nothing was written
        raise UserError(f"{exc}\nNothing was written to {cfg.manifest_dir}; fix or move the file and run again.") from None
    print(summarize(manifest))
    problems = manifest.videos[manifest.videos["problems"] != ""]
    for _, row in problems.head(20).iterrows():
        print(f"  {row['video_id']}: {row['problems']}")
    if len(problems) > 20:
        print(f"  ... {len(problems) - 20} more in {cfg.manifest_dir}/videos.csv")
    print(f"manifest written to {cfg.manifest_dir}")
    return 0
