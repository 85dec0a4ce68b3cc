"""``abawkit select-faces``: omni-supervised selection of unlabeled faces by similarity to class prototypes
(options from :class:`abawkit.omni.select.SelectConfig`, as notebook 04)."""

from __future__ import annotations

ORDER = 45  # place in ``abawkit --help`` (pipeline order): after train-frame
NAME = "select-faces"
HELP = "select reliable unlabeled faces by similarity to class prototypes (a labeled CSV for train-frame)"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..omni.select import SelectConfig, select_faces

    cfg = cli(SelectConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit select-faces --preset demo --per-class 50; then abawkit train-frame --preset "
                     "demo --labeled-csv runs/demo/selected/selected.csv --labeled-weight 0.5")
    result = select_faces(cfg)
    print(f"{result['selected']} face(s) selected into {cfg.out_dir}/selected.csv "
          f"({result['images_per_s']:.0f} unlabeled images/s; {result['unreadable']} unreadable)")
    print(result["summary"][["class", "n_labeled", "n_passed", "n_selected"]].to_string(index=False))
    return 0
