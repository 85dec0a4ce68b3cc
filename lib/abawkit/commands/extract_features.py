"""``abawkit extract-features``: run a frame model once over every frame and cache embeddings + logits
(options from :class:`abawkit.features.FeatureConfig`, as notebook 05)."""

from __future__ import annotations

ORDER = 50  # place in ``abawkit --help`` (pipeline order)
NAME = "extract-features"
HELP = "cache frame-model embeddings, face masks and logits per video (input of the temporal encoder)"


def main(argv: list[str]) -> int:
    from pathlib import Path

    from ..config import cli
    from ..errors import UserError
    from ..features import FeatureConfig, extract_features

    cfg = cli(FeatureConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit extract-features --checkpoint runs/demo/frame_model/best.pt "
                     "--crops data/faces/demo/cropped_aligned --manifest data_manifests/demo --out runs/demo/features")
    if not Path(cfg.crops_dir).is_dir():
        raise UserError(f"crops folder {cfg.crops_dir} does not exist; run abawkit extract-faces (notebook 01) or "
                        f"point --crops at the organizers' cropped_aligned folder")
    written = extract_features(cfg)
    print(f"{len(written)} feature file(s) written to {cfg.features_dir} (existing ones kept)")
    return 0
