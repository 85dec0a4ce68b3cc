"""Memory and speed of select-faces as the unlabeled corpus grows: a corpus of N links to the demo's aligned
unlabeled faces (N = 5,000 and 20,000 by default), scored in chunks by a frame model; each size runs in a fresh
process, which prints its peak resident memory and unlabeled images/s. Memory must stay flat as N grows.

    PYTHONPATH=lib python benchmarks/omni_select_memory.py --checkpoint runs/demo/frame_model/best.pt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def one_run(args) -> None:
    import resource
    import time

    import torch

    from abawkit.omni.select import SelectConfig, select_faces

    torch.set_num_threads(args.threads)
    t0 = time.time()
    res = select_faces(SelectConfig(checkpoint=args.checkpoint, manifest_dir=args.manifest, crops_dir=args.crops,
                                    image_dirs=(args.corpus,), out_dir=args.out, per_class=100, chunk=args.chunk,
                                    frame_stride=10, progress=False))
    print(json.dumps({"images": args.n, "images_per_s": res["images_per_s"], "seconds": time.time() - t0,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo/frame_model/best.pt")
    ap.add_argument("--manifest", default="data_manifests/demo")
    ap.add_argument("--crops", default="data/faces/demo/cropped_aligned")
    ap.add_argument("--faces", default="data/faces/demo_unlabeled/cropped_aligned")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="benchmarks/out/omni_memory")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return one_run(args)
    faces = sorted(p.resolve() for p in Path(args.faces).rglob("*.jpg"))
    for n in args.sizes:
        corpus = Path(args.work) / f"corpus_{n}"
        corpus.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            link = corpus / f"{i // 1000:03d}" / f"{i:07d}.jpg"
            if not link.exists():
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(faces[i % len(faces)])
        out = subprocess.run([sys.executable, __file__, "--child", "--n", str(n), "--corpus", str(corpus),
                              "--out", str(Path(args.work) / f"selected_{n}"), "--checkpoint", args.checkpoint,
                              "--manifest", args.manifest, "--crops", args.crops, "--chunk", str(args.chunk),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
