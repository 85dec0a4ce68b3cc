"""Temporal inference speed over cached features on CPU: frames/s over synthetic cached features (default
one million frames, D=512, 1 thread), and the time to score a validation split from a features folder.

    python benchmarks/temporal_speed.py [--frames 1000000] [--threads 1]
    python benchmarks/temporal_speed.py --frames 0 --temporal runs/demo/temporal --features runs/demo/features \
        --manifest data_manifests/demo
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1_000_000, help="synthetic frames (0: skip)")
    p.add_argument("--video-frames", type=int, default=5000, help="frames per synthetic video")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on shared cores 2 threads spin-wait and run slower)")
    p.add_argument("--temporal", help="a temporal run folder: also time scoring its validation split")
    p.add_argument("--features")
    p.add_argument("--manifest")
    args = p.parse_args()

    import torch

    from abawkit.temporal.model import TemporalConfig, build_temporal_model
    from abawkit.temporal.predict import predict_logits

    torch.set_num_threads(args.threads)
    if args.frames:
        model = build_temporal_model(TemporalConfig(window=args.window), embed_dim=args.dim).eval()
        rng = np.random.default_rng(0)
        emb = rng.normal(size=(args.video_frames, args.dim)).astype(np.float16)
        logits = rng.normal(size=(args.video_frames, 8)).astype(np.float32)
        face = rng.random(args.video_frames) > 0.1
        n_videos = max(1, args.frames // args.video_frames)
        predict_logits(model, emb[:500], face[:500], logits[:500])  # warm-up
        t = time.perf_counter()
        for _ in range(n_videos):
            predict_logits(model, emb, face, logits)
        dt = time.perf_counter() - t
        total = n_videos * args.video_frames
        print(f"temporal inference: {total} frames in {dt:.1f} s = {total / dt:,.0f} frames/s "
              f"(T={args.window}, stride T/2, D={args.dim}, width 128, depth 2, {args.threads} threads)")
    if args.temporal:
        from abawkit.features import load_video_features
        from abawkit.manifest import load_manifest
        from abawkit.metrics import f1_report
        from abawkit.postprocess import PostProcess
        from abawkit.temporal.model import load_temporal_model
        from abawkit.temporal.predict import softmax

        t = time.perf_counter()
        manifest = load_manifest(args.manifest)
        model, _ = load_temporal_model(f"{args.temporal}/best.pt")
        post = PostProcess.load(f"{args.temporal}/postprocess.json")
        ys, ps, n = [], [], 0
        for vid in manifest.video_ids("Validation_Set"):
            f = load_video_features(args.features, vid)
            probs = post.apply(softmax(predict_logits(model, f["embeddings"], f["has_face"], f["logits"])),
                               f["has_face"])
            ys.append(manifest.labels(vid))
            ps.append(probs.argmax(1))
            n += len(probs)
        rep = f1_report(np.concatenate(ys), np.concatenate(ps))
        print(f"validation split: {n} frames scored in {time.perf_counter() - t:.2f} s "
              f"(load, predict, post-process, metric); macro F1 {rep.macro_f1:.4f}")


if __name__ == "__main__":
    main()
