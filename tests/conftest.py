"""Shared fixtures: a tiny demo tree (real faces, real videos) and its manifest, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A small demo Aff-Wild2 tree: 2 train videos (one two-person), 1 validation, 1 test (two-person)."""
    from abawkit.demo import DemoConfig, build_demo

    out = tmp_path_factory.mktemp("demo") / "affwild2"
    return build_demo(out, DemoConfig(seed=3, n_train=2, n_val=1, n_test=1, frames=90, n_unlabeled_renders=16),
                      progress=False)


@pytest.fixture(scope="session")
def tiny_manifest(tiny_demo, tmp_path_factory):
    from abawkit.manifest import build_manifest, load_manifest

    out = tmp_path_factory.mktemp("manifest") / "demo"
    build_manifest(tiny_demo, out, progress=False)
    return load_manifest(out)


@pytest.fixture(scope="session")
def world(tiny_manifest, tmp_path_factory):
    """Valid inputs of every stage, made in seconds: the tiny manifest, 30 random 32x32 crops per subject, an
    untrained frame and temporal checkpoint, random features (for the bad-input and fault tests)."""
    import cv2
    import numpy as np

    from abawkit.features import feature_path
    from abawkit.frame_model import FrameModelConfig, build_frame_model, save_frame_checkpoint
    from abawkit.io import save_npz
    from abawkit.temporal.config import TemporalConfig
    from abawkit.temporal.model import build_temporal_model, save_temporal_checkpoint

    root = tmp_path_factory.mktemp("world")
    crops, rng = root / "crops", np.random.default_rng(0)
    for vid in tiny_manifest.video_ids():
        (crops / vid).mkdir(parents=True)
        for k in range(1, 31):
            cv2.imwrite(str(crops / vid / f"{k:05d}.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    frame = save_frame_checkpoint(root / "frame.pt", build_frame_model(FrameModelConfig(image_size=32)))
    temporal_dir = root / "temporal"
    save_temporal_checkpoint(temporal_dir / "best.pt", build_temporal_model(TemporalConfig(), 16))
    features = root / "features"
    for vid in tiny_manifest.video_ids():
        n = int(tiny_manifest.row(vid)["n_frames"])
        save_npz(feature_path(features, vid), embeddings=rng.normal(size=(n, 16)).astype(np.float16),
                 has_face=np.ones(n, bool), logits=np.zeros((n, 8), np.float32))
    csv = root / "labeled.csv"
    csv.write_text("path,label\n" + "".join(f"{crops / vid / f'{k:05d}.jpg'},{k % 8}\n"
                                            for vid in tiny_manifest.video_ids() for k in range(1, 31)))
    return dict(root=root, manifest=tiny_manifest.path, crops=crops, frame=frame, temporal=temporal_dir,
                features=features, csv=csv)
