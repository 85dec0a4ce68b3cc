"""Notebooks 03-05 executed with papermill at tiny size on the tiny demo (crops cut around the true boxes,
an untrained frame model: this checks the plumbing and outputs, not accuracy)."""

from __future__ import annotations

import json

import numpy as np
import papermill as pm
import pytest

from conftest import REPO
from helpers_temporal import truth_crops


@pytest.fixture(scope="module")
def frame_setup(tiny_demo, tiny_manifest, tmp_path_factory):
    import torch

    from abawkit.frame_model import FrameModelConfig, build_frame_model, save_frame_checkpoint

    root = tmp_path_factory.mktemp("nb_temporal")
    crops = truth_crops(tiny_demo, tiny_manifest, root / "crops", size=32)
    torch.manual_seed(0)
    ckpt = save_frame_checkpoint(root / "frame" / "best.pt",
                                 build_frame_model(FrameModelConfig(image_size=32)).eval())
    return root, crops, ckpt


def _metrics(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "application/vnd.abawkit.metrics+json" in data:
                return data["application/vnd.abawkit.metrics+json"]
    return {}


def test_notebooks_03_04_05(tiny_demo, tiny_manifest, frame_setup):
    from abawkit.submission import check_submission

    root, crops, ckpt = frame_setup
    manifest_dir, features = str(tiny_manifest.path), root / "features"
    run = lambda name, params: pm.execute_notebook(  # noqa: E731
        str(REPO / "notebooks" / name), str(root / name), parameters=params, kernel_name="abawkit",
        cwd=str(REPO), progress_bar=False)
    run("03_frame_features.ipynb", {"checkpoint": str(ckpt), "crops_dir": str(crops), "manifest_dir": manifest_dir,
                                    "features_dir": str(features), "batch_size": 64})
    assert _metrics(root / "03_frame_features.ipynb")["videos"] == len(tiny_manifest.videos)
    temporal = root / "temporal"
    run("04_temporal_encoder.ipynb", {"features_dir": str(features), "manifest_dir": manifest_dir,
                                      "out_dir": str(temporal), "window": 16, "epochs": 2, "width": 32,
                                      "heads": 2, "depth": 1})
    m4 = _metrics(root / "04_temporal_encoder.ipynb")
    assert {"frame_f1", "temporal_f1", "post_f1"} <= set(m4) and (temporal / "comparison.csv").is_file()
    run("05_submission.ipynb", {"manifest_dir": manifest_dir, "features_dir": str(features),
                                "temporal_dir": str(temporal), "predictions_dir": str(root / "pred"),
                                "submission_dir": str(root / "sub"),
                                "truth_dir": str(tiny_demo / "test_ground_truth")})
    m5 = _metrics(root / "05_submission.ipynb")
    assert 0 <= m5["test_macro_f1"] <= 1 and m5["submission"].endswith(".zip")
    assert check_submission(root / "sub" / "predictions.txt", tiny_manifest.test_order()) == []
    for vid in tiny_manifest.video_ids("Validation_Set") + tiny_manifest.video_ids("Test_Set"):
        with np.load(root / "pred" / f"{vid}.npz") as d:
            assert {"probs", "probs_raw", "has_face"} <= set(d.files)
