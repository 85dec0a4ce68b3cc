"""Speed of train-frame on this machine: training images per second (supervised and full) and the data
loader's ceiling (decode 112x112 JPEGs + weak/strong views) with several worker processes.

    PYTHONPATH=lib python benchmarks/semisup_speed.py --workers 0 1 2 4 --image-size 112

The loader must not be the bottleneck of a GPU step: compare its ceiling with the GPU's train img/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd


def loader_rate(paths: list[str], image_size: int, workers: int, batch: int = 64, batches: int = 20) -> float:
    """Unlabeled images per second (each: decode + weak view + strong view), after one warm-up batch."""
    from torch.utils.data import DataLoader

    from abawkit.frame_model import FrameModelConfig
    from abawkit.semisup.data import UnlabeledImages, strong_transform, weak_transform
    from abawkit.semisup.sampler import UniformBatchSampler

    cfg = FrameModelConfig(image_size=image_size)
    ds = UnlabeledImages(paths, weak_transform(cfg), strong_transform(cfg))
    dl = DataLoader(ds, batch_sampler=UniformBatchSampler(len(paths), batch), num_workers=workers,
                    multiprocessing_context="spawn" if workers else None, persistent_workers=workers > 0)
    it = iter(dl)
    next(it)
    t0 = time.time()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.time() - t0)
    del it, dl
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--unlabeled-dir", default="data/demo/unlabeled_faces")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    ap.add_argument("--image-size", type=int, default=112)
    ap.add_argument("--train-sizes", type=int, nargs="+", default=[64, 112])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/out/semisup_speed")
    args = ap.parse_args()

    import torch

    from abawkit.semisup.config import TrainConfig, preset
    from abawkit.semisup.data import unlabeled_images
    from abawkit.semisup.train import train

    out = Path(args.out)
    rows = []
    paths = unlabeled_images([args.unlabeled_dir])
    for w in args.workers:
        rate = loader_rate(paths, args.image_size, w)
        rows.append({"what": f"loader, weak+strong views, {args.image_size}px", "workers": w, "img_per_s": rate})
        print(rows[-1], flush=True)
    for size in args.train_sizes:
        for algorithm in ("supervised", "full"):
            cfg = TrainConfig(out_dir=str(out / f"{algorithm}_{size}"), manifest_dir=args.manifest, crops_dir=args.crops,
                              val_split="", unlabeled_dirs=(args.unlabeled_dir,), image_size=size, steps=args.steps,
                              batch_size=args.batch_size, eval_every=10**9, ckpt_every=10**9, workers=1,
                              progress=False, semisup=preset(algorithm))
            res = train(cfg)
            rows.append({"what": f"train {algorithm} resnet10t {size}px, batch {args.batch_size}"
                                 + (" + 2x unlabeled" if algorithm != "supervised" else ""),
                         "workers": 1, "img_per_s": res.train_images_per_s})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table["device"] = "cuda" if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()} threads"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "speed.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
