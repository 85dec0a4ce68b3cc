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
