"""``abawkit distill``: distil labeled face images into a few synthetic images per class by distribution matching
(options from :class:`abawkit.omni.config.DistillConfig`)."""

from __future__ import annotations

ORDER = 47  # place in ``abawkit --help``: after train-frame, on the frame model's data
NAME = "distill"
HELP = "distil labeled faces into a few synthetic images per class (distribution matching)"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..omni.config import DistillConfig
    from ..omni.distill import distill

    cfg = cli(DistillConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit distill --preset demo --labeled-csv runs/demo/labeled.csv --out "
                     "runs/demo/distilled, then abawkit train-frame --labeled-csv runs/demo/distilled/distilled.csv")
    result = distill(cfg)
    done = result.summary.dropna(subset=["final_loss"])
    for row in done.itertuples():
        print(f"{row[1]}: {row.per_class} image(s) from {row.n_real}, matching loss {row.initial_loss:.4g} -> "
              f"{row.final_loss:.4g}" + (" (finished earlier)" if row[1] in result.skipped else ""))
    print(f"{len(result.distilled)} distilled image(s) of {len(done)} class(es) in {result.out} (distilled.csv, "
          f"summary.csv, distilled.png)")
    return 0
