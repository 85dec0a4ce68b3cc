"""Memory and loading speed of the temporal training's window data at Aff-Wild2 scale, over memory-mapped
feature files (the default of train-temporal) and, on a smaller set, over features read into memory.

Writes synthetic features in the cache format (``abawkit.io.save_npz``, one video at a time; default 550 videos of
varying length, 2,700,000 frames in all, D=768 float16, ~95% face frames, random logits) and a matching synthetic
label source (an in-memory manifest with piecewise-constant labels). Then, each phase in a fresh process so its
peak memory is its own: opens the training and validation subjects with ``temporal.data.load_videos`` (the loader
train-temporal calls), computes the streamed normalization statistics over every training face frame
(``face_feature_stats``: reads all embeddings once) and iterates one epoch of training windows (T=64, stride 32)
through a shuffling torch DataLoader (batch 32, workers 0), as train-temporal does.

    python benchmarks/temporal_memory.py                        # full size, then the small comparison
    python benchmarks/temporal_memory.py --videos 40 --frames 200000 --compare-frames 100000 --keep

Before the full-size phase the feature files are dropped from the OS page cache (posix_fadvise DONTNEED), so the
statistics pass reads from disk; ``--warm`` skips that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

MARKER = "synthetic.json"
N_TRAIN_FRACTION = 0.85  # the rest is Validation_Set, opened as train-temporal opens it


def _lengths(videos: int, frames: int, seed: int) -> list[int]:
    """``videos`` lengths (log-normal spread, at least 1) that sum to ``frames``."""
    rng = np.random.default_rng([seed, 0])
    w = rng.lognormal(0.0, 0.7, videos)
    n = np.maximum(1, np.floor(w / w.sum() * frames)).astype(np.int64)
    n[np.argsort(-n)[:1]] += frames - n.sum()
    if n.min() < 1 or n.sum() != frames:
        raise SystemExit(f"cannot split {frames} frames into {videos} videos")
    return n.tolist()


def _labels(i: int, n: int, seed: int) -> np.ndarray:
    """Piecewise-constant labels of video ``i``: segments of 20-200 frames, about 10% not annotated (-1)."""
    rng = np.random.default_rng([seed, i, 1])
    y = np.empty(n, np.int64)
    t = 0
    while t < n:
        k = int(rng.integers(20, 200))
        y[t:t + k] = -1 if rng.random() < 0.1 else int(rng.integers(0, 8))
        t += k
    return y


def write_features(out: Path, videos: int, frames: int, dim: int, seed: int) -> dict:
    """The synthetic feature folder (reused when its marker matches); one video in memory at a time."""
    from tqdm.auto import tqdm

    from abawkit.io import save_npz

    spec = {"videos": videos, "frames": frames, "dim": dim, "seed": seed}
    marker = out / MARKER
    if marker.is_file():
        have = json.loads(marker.read_text())
        if {k: have.get(k) for k in spec} == spec:
            print(f"reusing {out} ({videos} videos, {frames:,} frames, D={dim})")
            return have
        raise SystemExit(f"{out} holds another synthetic set ({marker}); pass another --out or delete it")
    out.mkdir(parents=True, exist_ok=True)
    lengths = _lengths(videos, frames, seed)
    t = time.perf_counter()
    for i, n in enumerate(tqdm(lengths, desc="writing synthetic features", unit="video")):
        rng = np.random.default_rng([seed, i, 2])
        face = rng.random(n) > 0.05
        emb = rng.standard_normal((n, dim), dtype=np.float32).astype(np.float16)
        emb[~face] = 0
        logits = rng.standard_normal((n, 8), dtype=np.float32)
        logits[~face] = 0
        save_npz(out / f"v{i:04d}.npz", embeddings=emb, has_face=face, logits=logits)
        del emb
    spec["lengths"] = lengths
    marker.write_text(json.dumps(spec))
    size = sum(p.stat().st_size for p in out.glob("*.npz"))
    print(f"wrote {videos} videos, {frames:,} frames, D={dim} float16: {size / 2**30:.2f} GiB in "
          f"{time.perf_counter() - t:.0f} s to {out}")
    return spec


def _manifest(root: Path, lengths: list[int], seed: int, videos: list[int]):
    """An in-memory manifest of the chosen videos (no video files: the temporal stage reads only labels)."""
    import pandas as pd

    from abawkit.manifest import Manifest

    n_train = max(1, int(round(N_TRAIN_FRACTION * len(videos))))
    rows, frames = [], []
    for j, i in enumerate(videos):
        vid, n = f"v{i:04d}", lengths[i]
        rows.append({"video_id": vid, "split": "Train_Set" if j < n_train else "Validation_Set",
                     "video_name": vid, "n_frames": n, "holdout": False})
        frames.append(pd.DataFrame({"video_id": vid, "frame": np.arange(1, n + 1, dtype=np.int32),
                                    "label": _labels(i, n, seed).astype(np.int8)}))
    table = pd.concat(frames, ignore_index=True)
    table["video_id"] = table["video_id"].astype("category")
    return Manifest(path=root, root=root, videos=pd.DataFrame(rows), frames=table)


class _RssSampler(threading.Thread):
    """Peak RssAnon (private memory: heap, numpy and torch buffers) and RssFile, from /proc/self/status."""

    def __init__(self, period: float = 0.005):
        super().__init__(daemon=True)
        self.period, self.peak_anon, self.file_at_peak, self.peak_file = period, 0, 0, 0
        self._done = threading.Event()

    @staticmethod
    def read() -> tuple[int, int]:
        fields = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("RssAnon:", "RssFile:")):
                    key, value = line.split(":")
                    fields[key] = int(value.split()[0]) * 1024
        return fields["RssAnon"], fields["RssFile"]

    def run(self) -> None:
        while not self._done.is_set():
            anon, file = self.read()
            if anon > self.peak_anon:
                self.peak_anon, self.file_at_peak = anon, file
            self.peak_file = max(self.peak_file, file)
            time.sleep(self.period)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _evict(folder: Path) -> None:
    for path in folder.glob("*.npz"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_phase(args) -> dict:
    """One measured phase (``--phase mmap|memory``) in this process; prints its figures as one JSON line."""
    import torch
    from torch.utils.data import DataLoader

    from abawkit.temporal.data import WindowDataset, face_feature_stats, load_videos

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    spec = json.loads((out / MARKER).read_text())
    lengths = spec["lengths"]
    chosen, total = [], 0
    for i, n in enumerate(lengths):  # the first videos that hold --subset-frames (all: 0)
        if args.subset_frames and total >= args.subset_frames:
            break
        chosen.append(i)
        total += n
    manifest = _manifest(out, lengths, spec["seed"], chosen)
    train_ids, val_ids = manifest.video_ids("Train_Set"), manifest.video_ids("Validation_Set")
    manifest.labels(train_ids[0])  # the label cache, as the first load would build it
    if args.evict:
        _evict(out)
    sampler = _RssSampler()
    base_anon, base_file = sampler.read()
    sampler.start()
    mmap = args.phase == "mmap"
    t0 = time.perf_counter()
    train = load_videos(out, manifest, train_ids, mmap=mmap)
    val = load_videos(out, manifest, val_ids, mmap=mmap)
    t1 = time.perf_counter()
    mean, std, n_faces = face_feature_stats(train)
    t2 = time.perf_counter()
    data = WindowDataset(train, args.window, args.stride)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(0))
    seen, t3 = 0, time.perf_counter()
    for x, face, lg, y, valid in loader:
        seen += len(x)
    t4 = time.perf_counter()
    fds = len(os.listdir("/proc/self/fd"))
    sampler.stop()
    result = {"phase": args.phase, "videos": len(chosen), "train_videos": len(train), "val_videos": len(val),
              "frames": int(total), "train_frames": int(sum(len(v.labels) for v in train)), "face_frames": n_faces,
              "dim": spec["dim"], "open_s": t1 - t0, "stats_s": t2 - t1, "dataset_s": t3 - t2, "epoch_s": t4 - t3,
              "windows": seen, "windows_per_s": seen / (t4 - t3), "base_anon": base_anon, "base_file": base_file,
              "peak_anon": sampler.peak_anon, "file_at_peak_anon": sampler.file_at_peak,
              "peak_file": sampler.peak_file, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              "open_fds": fds, "evicted": bool(args.evict), "std_mean": float(std.mean())}
    print(json.dumps(result))
    return result


def _spawn(args, phase: str, subset: int, evict: bool) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--out", str(args.out), "--subset-frames", str(subset),
           "--window", str(args.window), "--stride", str(args.stride), "--batch", str(args.batch),
           "--threads", str(args.threads)] + (["--evict"] if evict else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def _report(r: dict, label: str) -> None:
    print(f"\n{label}: {r['videos']} videos ({r['train_videos']} train, {r['val_videos']} validation), "
          f"{r['frames']:,} frames, D={r['dim']}; {r['train_frames']:,} training frames, "
          f"{r['face_frames']:,} face frames{' (page cache dropped first)' if r['evicted'] else ''}")
    print(f"  load_videos (train + validation, mmap={r['phase'] == 'mmap'}): {r['open_s']:.1f} s; "
          f"streamed normalization statistics over every training face frame: {r['stats_s']:.1f} s; "
          f"window index: {r['dataset_s']:.1f} s")
    print(f"  one epoch of windows: {r['windows']:,} windows in {r['epoch_s']:.1f} s = "
          f"{r['windows_per_s']:,.0f} windows/s")
    print(f"  peak private memory (RssAnon, sampled every 5 ms): {_gib(r['peak_anon'])} "
          f"({_gib(r['base_anon'])} of it before loading: Python, torch, pandas, the labels)")
    print(f"  ru_maxrss: {_gib(r['maxrss'])} (counts file-backed pages too); peak RssFile {_gib(r['peak_file'])}, "
          f"{_gib(r['base_file'])} of it the libraries' code: the rest are pages of the feature maps, i.e. the OS "
          f"page cache (shared, clean, reclaimable under memory pressure), not private memory; "
          f"open file descriptors at the end: {r['open_fds']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=550, help="synthetic videos")
    p.add_argument("--frames", type=int, default=2_700_000, help="synthetic frames in all")
    p.add_argument("--dim", type=int, default=768, help="embedding size (float16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="synthetic feature folder (default benchmarks/out/temporal_memory_<videos>_"
                                 "<frames>_<dim>; reused when it holds the same set)")
    p.add_argument("--keep", action="store_true", help="keep the synthetic folder (default: delete it at the end)")
    p.add_argument("--compare-frames", type=int, default=200_000,
                   help="frames of the smaller set (the first videos) for mmap vs in-memory windows/s (0: skip)")
    p.add_argument("--warm", action="store_true", help="do not drop the files from the page cache before the "
                                                       "full-size phase")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared cores spin-wait with more)")
    p.add_argument("--phase", choices=["mmap", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--subset-frames", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--evict", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        run_phase(args)
        return
    default = Path(__file__).resolve().parent / "out" / f"temporal_memory_{args.videos}_{args.frames}_{args.dim}"
    args.out = Path(args.out) if args.out else default
    write_features(args.out, args.videos, args.frames, args.dim, args.seed)
    try:
        full = _spawn(args, "mmap", 0, evict=not args.warm)
        _report(full, "memory-mapped (train-temporal's default), full set")
        if args.compare_frames:
            # Both read warm files: the in-memory load reads them first; windows/s then compares loaders only.
            memory = _spawn(args, "memory", args.compare_frames, evict=False)
            mapped = _spawn(args, "mmap", args.compare_frames, evict=False)
            _report(memory, "in memory, small set")
            _report(mapped, "memory-mapped, the same small set")
            print(f"\nwindows/s on the small set: memory-mapped {mapped['windows_per_s']:,.0f} vs in memory "
                  f"{memory['windows_per_s']:,.0f} ({mapped['windows_per_s'] / memory['windows_per_s']:.2f}x); "
                  f"normalization statistics identical: {abs(mapped['std_mean'] - memory['std_mean']) < 1e-7}")
    finally:
        if not args.keep and (args.out / MARKER).is_file():
            shutil.rmtree(args.out)
            print(f"deleted {args.out} (--keep keeps it)")


if __name__ == "__main__":
    main()
