"""Scaffolding until stages 01/03 land: truth-box crops of the demo and a quick frame model, then the
feature cache. Usage: python benchmarks/demo_scaffold.py [--steps 300] (from the repo root)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--affwild2", default="data/demo")
    p.add_argument("--manifest", default="data_manifests/demo")
    p.add_argument("--crops", default="data/faces/demo_truth/cropped_aligned")
    p.add_argument("--checkpoint", default="runs/demo/frame_model_scaffold/best.pt")
    p.add_argument("--features", default="runs/demo/features")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--image-size", type=int, default=48)
    args = p.parse_args()

    import torch

    from abawkit.features import FeatureConfig, extract_features
    from abawkit.manifest import load_manifest
    from helpers_temporal import quick_frame_model, truth_crops

    torch.set_num_threads(1)
    manifest = load_manifest(args.manifest)
    t = time.time()
    if not Path(args.crops).is_dir():
        truth_crops(args.affwild2, manifest, args.crops, size=64)
    print(f"crops {time.time() - t:.0f}s")
    t = time.time()
    if not Path(args.checkpoint).is_file():
        quick_frame_model(manifest, args.crops, args.checkpoint, image_size=args.image_size, steps=args.steps)
    print(f"frame model {time.time() - t:.0f}s")
    t = time.time()
    extract_features(FeatureConfig(checkpoint=args.checkpoint, crops_dir=args.crops, features_dir=args.features,
                                   workers=0), manifest)
    print(f"features {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
