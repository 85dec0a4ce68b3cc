"""The whole demo chain (pipelines/demo.yaml, notebooks 00-08; 02 and 04 beside it) through papermill on the tiny
demo tree.

Only sizes and paths are overridden (tiny steps and epochs, files under tmp): every notebook, every
library call and the runner are the ones `make demo` uses. This checks plumbing and outputs, not accuracy.
It is the one test that executes the suite's notebooks: each runs once per `make test`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from abawkit.pipeline import apply_overrides, load_pipeline, run_pipeline
from conftest import REPO


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(tiny_demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    manifest, faces, sub = root / "manifest", root / "faces", root / "submissions"
    sets = [
        f"manifest_dir={manifest}",
        f"manifests.affwild2_root={tiny_demo}", "manifests.demo_seed=null",
        f"extract_faces.faces_dir={faces}",
        f"extract_faces.unlabeled_images_dirs=[{tiny_demo / 'unlabeled_faces'}]",
        f"extract_faces.unlabeled_faces_dir={root / 'unlabeled'}",
        f"semisup_pretrain.crops_dir={faces / 'cropped_aligned'}",
        f"semisup_pretrain.unlabeled_dirs=[{root / 'unlabeled' / 'cropped_aligned'}]",
        "semisup_pretrain.steps=4", "semisup_pretrain.image_size=32",
        f"frame_features.crops_dir={faces / 'cropped_aligned'}",
        "temporal_encoder.window=16", "temporal_encoder.epochs=2",
        f"submission.submission_dir={sub}", f"submission.truth_dir={tiny_demo / 'test_ground_truth'}",
        f"report.runs_root={root / 'runs'}",
    ]
    pipeline = apply_overrides(load_pipeline(REPO / "pipelines" / "demo.yaml"), sets)
    run_dir = root / "runs" / "tiny"
    logs: list[str] = []
    record = run_pipeline(pipeline, run_dir, root=REPO, log=logs.append)
    # notebook 04 (selection, distillation) is not a stage of demo.yaml: it runs here on the chain's frame model
    import papermill as pm

    pm.execute_notebook(str(REPO / "notebooks" / "04_select_distill.ipynb"), str(run_dir / "04_select_distill.ipynb"),
                        parameters=dict(checkpoint=str(run_dir / "frame_model" / "best.pt"), manifest_dir=str(manifest),
                                        crops_dir=str(faces / "cropped_aligned"),
                                        image_dirs=[str(root / "unlabeled" / "cropped_aligned")],
                                        out_dir=str(run_dir / "selected"), distilled_dir=str(run_dir / "distilled"),
                                        per_class=4, rule="random", distill_per_class=1,
                                        distill_iterations=2),
                        kernel_name="abawkit", cwd=str(REPO), progress_bar=False)
    # notebook 02 (MAE face pretraining) neither: a few steps, then notebook 03 fine-tunes its encoder.pt
    pm.execute_notebook(str(REPO / "notebooks" / "02_pretrain_mae.ipynb"), str(run_dir / "02_pretrain_mae.ipynb"),
                        parameters=dict(images_dirs=[str(root / "unlabeled" / "cropped_aligned")],
                                        manifest_dir=str(manifest), crops_dir=str(faces / "cropped_aligned"),
                                        out_dir=str(run_dir / "mae"), image_size=32, patch_size=8, decoder_width=32,
                                        decoder_depth=1, decoder_heads=2, steps=4, batch_size=8, workers=0),
                        kernel_name="abawkit", cwd=str(REPO), progress_bar=False)
    # stage 1 of the two-stage recipe on its encoder.pt, through the library (notebook 03 ran once, in the pipeline)
    from abawkit.config import preset
    from abawkit.semisup.config import TrainConfig
    from abawkit.semisup.train import train

    train(preset(TrainConfig, "demo", manifest_dir=str(manifest), crops_dir=str(faces / "cropped_aligned"),
                 unlabeled_dirs=[], weights=str(run_dir / "mae" / "encoder.pt"), image_size=32,
                 algorithm="supervised", mix="facemix", layer_decay=0.75, steps=2, out_dir=str(root / "stage1"),
                 workers=0, progress=False))
    return root, run_dir, record, pipeline


def test_every_notebook_runs_and_the_record_holds_it(chain):
    root, run_dir, record, pipeline = chain
    names = [s.name for s in pipeline.stages]
    assert names == ["manifests", "extract_faces", "semisup_pretrain", "frame_features", "temporal_encoder",
                     "submission", "report"]
    assert record["status"] == "done"
    assert [record["stages"][n]["status"] for n in names] == ["done"] * len(names)
    # executed copies are named <stage index>_<stage name>: compared by name, every notebook executed once
    notebooks = sorted(p.name[3:] for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    executed = sorted(p.name[3:] for p in run_dir.glob("[0-9][0-9]_*.ipynb"))
    assert executed == notebooks
    selected = pd.read_csv(run_dir / "selected" / "selected.csv")
    assert len(selected) and (run_dir / "selected" / "selected.png").is_file()
    assert (run_dir / "distilled" / "distilled.csv").is_file() and (run_dir / "distilled" / "distilled.png").is_file()
    assert (run_dir / "mae" / "encoder.pt").is_file() and (run_dir / "mae" / "reconstructions.png").is_file()
    stage1 = json.loads((root / "stage1" / "run_record.json").read_text())["params"]
    assert (stage1["model"]["backbone"], stage1["model"]["patch_size"]) == ("vit_tiny_patch16_224", 8)
    assert stage1["face_boxes"]["index"] > 0  # FaceMix's boxes from extract-faces' index
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["versions"]["torch"] and saved["versions"]["mediapipe"] and saved["device"]["cpu_count"] >= 1
    assert saved["stages"]["semisup_pretrain"]["parameters"]["steps"] == 4
    assert 0.0 <= saved["stages"]["extract_faces"]["metrics"]["detection_rate"] <= 1.0
    assert {"frame_f1", "temporal_f1", "post_f1"} <= set(saved["stages"]["temporal_encoder"]["metrics"])


def test_each_notebook_reports_what_it_wrote(chain, tiny_demo):
    from abawkit.manifest import load_manifest

    root, run_dir, record, _ = chain
    metrics = {name: entry["metrics"] for name, entry in record["stages"].items()}
    manifest = load_manifest(root / "manifest")
    assert len(manifest.videos) == 6 and manifest.video_ids(holdout=True)  # the demo preset holds out a video
    summary = pd.read_csv(root / "faces" / "summary.csv")
    assert metrics["extract_faces"]["detection_rate"] == pytest.approx(
        summary["faces_found"].sum() / summary["frames_decoded"].sum())
    assert metrics["extract_faces"]["subjects_done"] == len(summary) == len(manifest.videos)
    assert {p.name for p in (root / "faces").iterdir()} == {"cropped_aligned", "cropped", "index",
                                                           "run_record.json", "summary.csv"}
    assert metrics["frame_features"]["videos"] == len(manifest.videos)
    assert 0.0 <= metrics["report"]["val_macro_f1"] <= 1.0 and "comparison_final_macro_f1" in metrics["report"]
    report_nb = json.loads((run_dir / "06_report.ipynb").read_text())
    assert sum("image/png" in o.get("data", {}) for c in report_nb["cells"] for o in c.get("outputs", [])) == 4
    assert 0 <= metrics["submission"]["test_macro_f1"] <= 1 and metrics["submission"]["submission"].endswith(".zip")
    for vid in manifest.video_ids("Validation_Set") + manifest.video_ids("Test_Set"):
        with np.load(run_dir / "predictions" / f"{vid}.npz") as d:
            assert {"probs", "probs_raw", "has_face"} <= set(d.files)


def test_the_submission_passes_the_checker_and_the_report_is_written(chain, tiny_demo):
    from abawkit.manifest import load_manifest, read_example_file
    from abawkit.submission import check_submission

    root, run_dir, record, _ = chain
    txt = sorted((root / "submissions").glob("*.txt"))
    assert len(txt) == 1 and (root / "submissions" / (txt[0].stem + ".zip")).is_file()
    rows = load_manifest(root / "manifest").test_order()
    assert rows == read_example_file(tiny_demo / "CVPR_6th_ABAW_Expr_test_set_example.txt")
    assert check_submission(txt[0], rows) == []
    report = run_dir / "report"
    assert (report / "f1_per_class.png").stat().st_size > 0 and (report / "leaderboard.csv").is_file()


def test_the_report_command_draws_the_notebooks_report(chain, tmp_path):
    from abawkit.cli import main

    root, run_dir, _, _ = chain
    out = tmp_path / "report"
    assert main(["report", "--manifest", str(root / "manifest"), "--temporal", str(run_dir / "temporal"),
                 "--predictions", str(run_dir / "predictions"), "--runs", str(root / "runs"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (run_dir / "report").iterdir())


def test_second_run_skips_every_stage(chain):
    root, run_dir, _, pipeline = chain
    record = run_pipeline(pipeline, run_dir, root=REPO, log=lambda _: None)
    assert {s["status"] for s in record["stages"].values()} == {"skipped"}
