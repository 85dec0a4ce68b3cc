"""The pipeline runner (parameter check, papermill chain, run record, skip/resume) and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from abawkit.cli import main
from abawkit.labels import CLASSES
from abawkit.pipeline import (PipelineError, StageFailed, apply_overrides, load_pipeline, notebook_parameters,
                              parse_set, read_metrics, resolve, run_pipeline, summary_table)
from abawkit.pipeline.plan import jsonable
from conftest import REPO

TOY = REPO / "tests" / "data" / "notebooks"

# The parameters every notebook must declare (COMMON.md contract), by notebook file name.
CONTRACT = {
    "00_manifests.ipynb": ["affwild2_root", "manifest_dir", "demo_seed"],
    "01_extract_faces.ipynb": ["manifest_dir", "faces_dir", "workers", "size", "loose_size", "crops",
                               "use_organizer_crops", "overwrite"],
    "02_pretrain_mae.ipynb": ["images_dirs", "manifest_dir", "crops_dir", "out_dir", "steps", "seed"],
    "03_semisup_pretrain.ipynb": ["manifest_dir", "crops_dir", "unlabeled_dirs", "algorithm", "backbone",
                                  "image_size", "steps", "out_dir", "seed"],
    "04_select_distill.ipynb": ["checkpoint", "manifest_dir", "crops_dir", "image_dirs", "out_dir", "per_class"],
    "05_frame_features.ipynb": ["checkpoint", "crops_dir", "manifest_dir", "features_dir"],
    "06_temporal_encoder.ipynb": ["features_dir", "manifest_dir", "out_dir", "window", "epochs", "seed"],
    "07_submission.ipynb": ["manifest_dir", "features_dir", "temporal_dir", "predictions_dir", "submission_dir",
                            "truth_dir"],
    "08_report.ipynb": ["manifest_dir", "temporal_dir", "predictions_dir", "runs_root"],
}


def toy_pipeline(tmp_path: Path, notebooks: Path = TOY, **use_params) -> Path:
    """Two toy stages: ``make`` writes a JSON file, ``use`` reads it (and fails when asked)."""
    out = tmp_path / "out"
    spec = {
        "name": "toy",
        "defaults": {"out_path": str(out / "made.json")},
        "stages": [
            {"name": "make", "notebook": str(notebooks / "toy_make.ipynb"), "parameters": {"n": 4},
             "outputs": ["{out_path}"]},
            {"name": "use", "notebook": str(notebooks / "toy_use.ipynb"),
             "parameters": {"in_path": str(out / "made.json"), "out_path": str(out / "used.txt"), **use_params},
             "outputs": ["{out_path}"]},
        ],
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def own_toy_notebooks(tmp_path: Path) -> Path:
    """Copies of the toy notebooks that a test may edit."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("toy_make.ipynb", "toy_use.ipynb"):
        shutil.copy(TOY / name, folder / name)
    return folder


def edit_notebook(path: Path, edit) -> None:
    """Apply ``edit(notebook)`` to the notebook file, as a person saving it from JupyterLab would."""
    nb = nbformat.read(path, as_version=4)
    edit(nb)
    nbformat.write(nb, path)


def saved_with_outputs(nb) -> None:
    """What executing every cell in JupyterLab and saving leaves: outputs, counts, metadata; same code."""
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="something\n")]
        cell.metadata["collapsed"] = False
    nb.cells[0].source += "\nA note added to the markdown."


# ---------------------------------------------------------------------------------------------- parameters


def test_notebook_parameters_types_defaults_required():
    params = notebook_parameters(TOY / "toy_make.ipynb")
    assert list(params) == ["out_path", "n", "scale", "tags"]
    assert params["out_path"].required and params["out_path"].type_name == "str"
    assert params["n"].type_name == "int" and params["n"].default == 3 and not params["n"].required
    assert params["scale"].type_name == "float" and params["tags"].default == ["a", "b"]
    # papermill cannot parse the comment with '**' on this line: the AST backup still finds the name
    assert notebook_parameters(TOY / "toy_use.ipynb")["fail_at"].default == -1


@pytest.mark.parametrize("sets, expected", [
    (["use.bogus=1"], ["stage 'use'", "unknown parameter 'bogus'"]),
    (["use.in_path=null"], ["stage 'use'", "parameter 'in_path' is required"]),
    (["make.n=four"], ["stage 'make'", "parameter 'n' must be int", "'four'"]),
    (["make.n=2.5"], ["stage 'make'", "parameter 'n' must be int"]),
    (["make.scale=true"], ["stage 'make'", "parameter 'scale' must be float"]),
    (["make.tags=abc"], ["stage 'make'", "parameter 'tags' must be list"]),
    (["nowhere=1"], ["defaults", "'nowhere'", "no stage"]),
])
def test_parameter_check_rejects_and_names_stage_and_parameter(tmp_path, sets, expected):
    pipeline = apply_overrides(load_pipeline(toy_pipeline(tmp_path)), sets)
    with pytest.raises(PipelineError) as err:
        resolve(pipeline, REPO)
    for text in expected:
        assert text in str(err.value)


def test_required_parameter_missing_in_file(tmp_path):
    spec = {"name": "x", "stages": [{"name": "lonely", "notebook": str(TOY / "toy_make.ipynb")}]}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(PipelineError, match=r"stage 'lonely': parameter 'out_path' is required"):
        resolve(load_pipeline(tmp_path / "x.yaml"), REPO)


def test_set_values_are_yaml_literals_and_int_passes_for_float(tmp_path):
    assert parse_set("a.b=128") == ("a", "b", 128)
    assert parse_set("b=[x, y]") == (None, "b", ["x", "y"])
    assert parse_set("a.b=null") == ("a", "b", None)
    assert parse_set("a.b='007'") == ("a", "b", "007")
    with pytest.raises(PipelineError):
        parse_set("a.b")
    pipeline = apply_overrides(load_pipeline(toy_pipeline(tmp_path)), ["make.scale=2", "make.n=7"])
    stages = resolve(pipeline, REPO)
    assert stages[0].parameters["n"] == 7 and stages[0].parameters["scale"] == 2
    with pytest.raises(PipelineError, match="no stage 'nope'"):
        apply_overrides(pipeline, ["nope.n=1"])


def test_bad_pipeline_file_names_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "b", "stages": [{"name": "s", "notebook": "x.ipynb", "params": {}}]}))
    with pytest.raises(PipelineError, match=r"stage 's': unknown key\(s\) \['params'\]"):
        load_pipeline(path)


# ---------------------------------------------------------------------------------------------- the chain


@pytest.mark.slow
def test_chain_runs_records_skips_fails_and_resumes(tmp_path, capsys):
    path = toy_pipeline(tmp_path)
    run_dir = tmp_path / "runs" / "toy"
    out = tmp_path / "out"
    logs: list[str] = []

    record = run_pipeline(load_pipeline(path), run_dir, root=REPO, log=logs.append)
    assert (run_dir / "00_make.ipynb").is_file() and (run_dir / "01_use.ipynb").is_file()
    assert json.loads((out / "made.json").read_text())["n"] == 4 and (out / "used.txt").read_text() == "8"
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["status"] == "done" and saved["pipeline"]["name"] == "toy"
    assert saved["git_commit"] or not (REPO / ".git").exists()  # None only outside a git checkout
    assert saved["versions"]["papermill"] and "cpu_count" in saved["device"]
    assert saved["started"] <= saved["ended"]
    make, use = saved["stages"]["make"], saved["stages"]["use"]
    assert make["parameters"] == {"out_path": str(out / "made.json"), "n": 4}
    assert make["status"] == use["status"] == "done" and make["seconds"] > 0
    assert make["metrics"] == {"total": 2.0, "label": "toy"} and use["metrics"] == {"doubled": 8}
    assert "done" in summary_table(saved) and "total=2.0000" in summary_table(saved)

    # unchanged parameters, outputs present: nothing runs
    record = run_pipeline(load_pipeline(path), run_dir, root=REPO, log=logs.append)
    assert [s["status"] for s in record["stages"].values()] == ["skipped", "skipped"]
    assert record["stages"]["make"]["metrics"]["total"] == 2.0  # carried over from the run that made the outputs
    assert record["stages"]["use"]["executed"].endswith("01_use.ipynb")

    # a changed parameter re-runs its stage and every later one; a missing output too
    plan = run_pipeline(apply_overrides(load_pipeline(path), ["make.n=5"]), run_dir, root=REPO, dry_run=True,
                        log=logs.append)["plan"]
    assert [(p["action"], p["reason"]) for p in plan] == [("run", "parameters changed: n"),
                                                          ("run", "an earlier stage ran")]
    (out / "used.txt").unlink()
    plan = run_pipeline(load_pipeline(path), run_dir, root=REPO, dry_run=True, log=logs.append)["plan"]
    assert [p["action"] for p in plan] == ["skip", "run"] and "missing" in plan[1]["reason"]

    # a failing stage stops the chain and says where
    failing = apply_overrides(load_pipeline(path), ["make.n=5", "use.fail_at=5"])
    with pytest.raises(StageFailed) as err:
        run_pipeline(failing, run_dir, root=REPO, log=logs.append, command="abawkit run toy.yaml")
    exc = err.value
    assert exc.stage == "use" and exc.notebook.endswith("toy_use.ipynb")
    assert exc.cell_index == 3 and exc.cell_first_line.startswith("data = json.loads")
    assert "ValueError: n is 5, as asked" in str(exc) and str(run_dir / "01_use.ipynb") in str(exc)
    assert "abawkit run toy.yaml --from use" in str(exc)
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["status"] == "failed" and saved["stages"]["make"]["status"] == "done"
    assert saved["stages"]["use"]["status"] == "failed" and saved["stages"]["use"]["error"]["cell_index"] == 3
    assert json.loads((out / "made.json").read_text())["n"] == 5

    # fixed (fail_at back to its default), resume from the failed stage: make is not touched
    fixed = apply_overrides(load_pipeline(path), ["make.n=5"])
    record = run_pipeline(fixed, run_dir, root=REPO, from_stage="use", log=logs.append)
    assert record["status"] == "done"
    assert record["stages"]["make"]["status"] == "done" and record["stages"]["make"]["reason"] == "before --from use"
    assert record["stages"]["use"]["status"] == "done" and record["stages"]["use"]["metrics"] == {"doubled": 10}
    assert (out / "used.txt").read_text() == "10"

    # a second run folder beside it: the shared outputs were written with these parameters, so they are skipped
    sibling = tmp_path / "runs" / "other"
    plan = run_pipeline(fixed, sibling, root=REPO, dry_run=True, log=logs.append)["plan"]
    assert [p["action"] for p in plan] == ["skip", "skip"]
    # ... until another run records that it rewrote them later with other parameters
    later = json.loads((run_dir / "run.json").read_text())
    later["stages"]["make"].update(parameters={**later["stages"]["make"]["parameters"], "n": 9},
                                   ended="2999-01-01T00:00:00+00:00")
    (tmp_path / "runs" / "third").mkdir()
    (tmp_path / "runs" / "third" / "run.json").write_text(json.dumps(later))
    plan = run_pipeline(fixed, run_dir, root=REPO, dry_run=True, log=logs.append)["plan"]
    assert [(p["action"], p["reason"]) for p in plan] == [("run", "parameters changed: n"),
                                                          ("run", "an earlier stage ran")]


def test_cli_failure_message_and_set(tmp_path, capsys):
    path = toy_pipeline(tmp_path)
    run_dir = tmp_path / "runs" / "cli"
    rc = main(["run", str(path), "--run-dir", str(run_dir), "--set", "make.n=3", "--set", "use.fail_at=3",
               "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1
    assert "stage 'use' failed in" in captured.err and "toy_use.ipynb, cell 3" in captured.err
    assert f"--run-dir {run_dir} --set make.n=3 --set use.fail_at=3 --from use" in captured.err
    assert "00 make" in captured.out and "failed" in captured.out
    assert json.loads((tmp_path / "out" / "made.json").read_text())["n"] == 3  # --set reached the notebook
    rc = main(["run", str(path), "--run-dir", str(run_dir), "--set", "make.n=x", "--dry-run"])
    assert rc == 2 and "parameter 'n' must be int" in capsys.readouterr().err


def test_dry_run_says_why_each_stage_runs_or_is_skipped(tmp_path, capsys):
    notebooks = own_toy_notebooks(tmp_path)
    path = toy_pipeline(tmp_path, notebooks)
    run_dir = tmp_path / "runs" / "toy"
    # a record as a finished run leaves it (outputs written, parameters and notebook code recorded); no kernel
    stages = resolve(load_pipeline(path), REPO, run_dir)
    entries = {}
    for s in stages:
        for out in s.outputs:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text("{}")
        entries[s.name] = {"index": s.index, "status": "done", "started": "2026-01-01T00:00:00+00:00",
                           "ended": "2026-01-01T00:01:00+00:00", "parameters": jsonable(s.parameters),
                           "outputs": list(s.outputs), "code_sha256": s.code_sha256}
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"stages": entries}))

    def dry_run(*sets: str) -> dict[str, str]:
        """``{stage: the plan line printed for it}``"""
        assert main(["run", str(path), "--run-dir", str(run_dir), "--dry-run", *(x for s in sets for x in ("--set", s))]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith("plan for")
        return {line.split()[1]: line.split(None, 2)[2] for line in lines[1:]}

    assert dry_run() == {"make": "skip  outputs exist, notebook and parameters unchanged",
                         "use": "skip  outputs exist, notebook and parameters unchanged"}
    assert dry_run("make.n=5") == {"make": "run   parameters changed: n", "use": "run   an earlier stage ran"}
    # run in JupyterLab and saved: outputs, counts and a markdown edit are not a change of the notebook
    edit_notebook(notebooks / "toy_make.ipynb", saved_with_outputs)
    assert set(dry_run().values()) == {"skip  outputs exist, notebook and parameters unchanged"}
    # an edited code cell is; the stages before it are still skipped
    edit_notebook(notebooks / "toy_use.ipynb", lambda nb: setattr(nb.cells[4], "source", nb.cells[4].source + "\n1 + 1"))
    assert dry_run("use.fail_at=7") == {"make": "skip  outputs exist, notebook and parameters unchanged",
                                        "use": "run   notebook changed since the last run; parameters changed: fail_at"}
    # a record from before notebook hashes were kept proves nothing about the notebook
    del entries["make"]["code_sha256"]
    (run_dir / "run.json").write_text(json.dumps({"stages": entries}))
    assert dry_run()["make"] == "run   the last run recorded no notebook hash"


@pytest.mark.slow
def test_editing_a_code_cell_reruns_that_stage_and_the_later_ones(tmp_path):
    notebooks = own_toy_notebooks(tmp_path)
    path = toy_pipeline(tmp_path, notebooks)
    run_dir = tmp_path / "runs" / "toy"

    def run() -> dict[str, tuple[str, str]]:
        record = run_pipeline(load_pipeline(path), run_dir, root=REPO, log=lambda _: None)
        return {name: (e["status"], e["reason"]) for name, e in record["stages"].items()}

    assert {status for status, _ in run().values()} == {"done"}
    assert {status for status, _ in run().values()} == {"skipped"}
    edit_notebook(notebooks / "toy_make.ipynb", lambda nb: setattr(nb.cells[3], "source", nb.cells[3].source.replace(
        '"n": n', '"n": n + 1')))
    assert run() == {"make": ("done", "notebook changed since the last run"), "use": ("done", "an earlier stage ran")}
    assert (tmp_path / "out" / "used.txt").read_text() == "10"  # the edited code ran: n = 4 + 1, doubled
    assert {status for status, _ in run().values()} == {"skipped"}


@pytest.mark.slow
def test_kernel_starts_without_the_unencrypted_tcp_warning(tmp_path, capfd):
    spec = {"name": "one", "stages": [{"name": "make", "notebook": str(TOY / "toy_make.ipynb"),
                                       "parameters": {"out_path": str(tmp_path / "made.json")}}]}
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(spec))
    record = run_pipeline(load_pipeline(tmp_path / "one.yaml"), tmp_path / "runs" / "one", root=REPO,
                          log=lambda _: None)
    assert record["stages"]["make"]["status"] == "done"
    assert "without encryption" not in capfd.readouterr().err  # the kernel's stderr goes to this process's


def test_read_metrics_takes_the_last_report(tmp_path):
    nb = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"application/vnd.abawkit.metrics+json": {"a": 1, "b": 2}}}]},
        {"cell_type": "code", "outputs": [
            {"output_type": "display_data", "data": {"application/vnd.abawkit.metrics+json": {"a": 3}}}]}]}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    assert read_metrics(tmp_path / "x.ipynb") == {"a": 3, "b": 2}


# ---------------------------------------------------------------------------------------------- notebooks


def test_every_notebook_declares_the_contract_parameters_and_demo_yaml_fits():
    notebooks = sorted((REPO / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        declared = notebook_parameters(nb)  # raises when there is no parameters cell
        missing = [n for n in CONTRACT.get(nb.name, []) if n not in declared]
        assert not missing, f"{nb.name} lacks the contract parameter(s) {missing}"
    demo = load_pipeline(REPO / "pipelines" / "demo.yaml")
    # notebooks 02 (MAE pretraining) and 04 (selection, distillation) are stages users add: on the demo they did
    # not help, and the demo trains on all its labels (docs/mae.md, docs/omni.md)
    assert [Path(s.notebook).name for s in demo.stages] == sorted(set(CONTRACT) - {"02_pretrain_mae.ipynb",
                                                                                    "04_select_distill.ipynb"})
    by_name = {s.name: s for s in resolve(demo, REPO, "runs/demo")}
    # every stage passes the contract's demo paths, so the stages read what the one before wrote
    expected = {"semisup_pretrain": ("out_dir", "runs/demo/frame_model"),
                "frame_features": ("features_dir", "runs/demo/features"),
                "temporal_encoder": ("out_dir", "runs/demo/temporal"), "submission": ("submission_dir", "submissions/demo"),
                "report": ("predictions_dir", "runs/demo/predictions")}
    assert {name: by_name[name].parameters[param] for name, (param, _) in expected.items()} == {
        name: value for name, (_, value) in expected.items()}


def test_affwild2_pipeline_parses_and_names_demo_notebooks():
    real = load_pipeline(REPO / "pipelines" / "affwild2.yaml")
    demo = load_pipeline(REPO / "pipelines" / "demo.yaml")
    # the real chain adds the MAE recipe's pretraining and first fine-tuning stage (docs/mae.md)
    assert [s.name for s in real.stages[2:4]] == ["pretrain_mae", "finetune_stage1"]
    assert [s.notebook for s in real.stages[:2] + real.stages[4:]] == [s.notebook for s in demo.stages]
    present = tuple(s for s in real.stages if (REPO / s.notebook).is_file())
    import dataclasses

    declared = set().union(*(notebook_parameters(REPO / s.notebook) for s in present))
    pipeline = dataclasses.replace(real, stages=present,
                                   defaults={k: v for k, v in real.defaults.items() if k in declared})
    resolve(pipeline, REPO)


# ---------------------------------------------------------------------------------------------- report


@pytest.fixture(scope="module")
def report_inputs(tiny_manifest, tmp_path_factory):
    """Synthetic predictions (right on 70% of frames) for every validation subject, and a comparison table."""
    from abawkit.predictions import save_video_predictions

    base = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    for vid in tiny_manifest.video_ids("Validation_Set"):
        labels = tiny_manifest.labels(vid)
        pred = np.where(rng.random(labels.size) < 0.7, np.maximum(labels, 0), rng.integers(0, 8, labels.size))
        probs = np.full((labels.size, 8), 0.02, np.float32)
        probs[np.arange(labels.size), pred] = 0.86
        save_video_predictions(base / "predictions", vid, probs)
    table = pd.DataFrame({"stage": ["frame model", "+ temporal encoder", "+ post-processing"],
                          "macro_f1": [0.4, 0.5, 0.55], **{c: [0.4, 0.5, 0.55] for c in CLASSES}})
    (base / "temporal").mkdir()
    table.to_csv(base / "temporal" / "comparison.csv", index=False)
    run = base / "runs" / "a"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"pipeline": {"name": "demo"}, "started": "2026-01-01T00:00:00+00:00",
                                              "git_commit": "abc", "status": "done",
                                              "stages": {"s": {"ended": "2026-01-02T03:04:00+00:00", "metrics": {"val_macro_f1": 0.5, "note": "x"}}}}))
    (base / "runs" / "broken").mkdir()
    (base / "runs" / "broken" / "run.json").write_text("{not json")
    return base


def test_report_library_builds_and_saves_figures(tiny_manifest, report_inputs, tmp_path):
    from abawkit.report import ReportError, build_report, leaderboard, load_validation

    from abawkit.metrics import f1_report

    val = load_validation(tiny_manifest.path, report_inputs / "predictions")
    ids = tiny_manifest.video_ids("Validation_Set")
    truth = np.concatenate([tiny_manifest.labels(v) for v in ids])
    expected = f1_report(truth, np.concatenate([np.load(report_inputs / "predictions" / f"{v}.npz")["probs"].argmax(1)
                                                for v in ids]))
    assert val.report.macro_f1 == pytest.approx(expected.macro_f1) and val.report.n_frames == (truth >= 0).sum()
    assert 0.5 < (val.report.confusion.trace() / val.report.n_frames) < 0.95  # ~70% right, as drawn
    board = leaderboard(report_inputs / "runs")
    assert board["run"].tolist() == ["a"] and board["val_macro_f1"].tolist() == [0.5] and "note" not in board
    assert board["date"].tolist() == ["2026-01-02 03:04"] and board["commit"].tolist() == ["abc"]
    report = build_report(tiny_manifest.path, report_inputs / "temporal", report_inputs / "predictions",
                          report_inputs / "runs", out_dir=tmp_path / "report")
    names = {p.name for p in report.files}
    assert {"f1_per_class.png", "confusion.png", "timelines.png", "comparison.png", "leaderboard.csv"} <= names
    for p in report.files:
        assert p.stat().st_size > (5000 if p.suffix == ".png" else 20)
    assert report.metrics()["val_macro_f1"] == pytest.approx(val.report.macro_f1)
    with pytest.raises(ReportError, match=r"comparison.csv is missing.*06_temporal_encoder"):
        build_report(tiny_manifest.path, tmp_path / "nothing", report_inputs / "predictions", None)
    with pytest.raises(ReportError, match=r"is missing.*07_submission"):
        build_report(tiny_manifest.path, report_inputs / "temporal", tmp_path / "nothing", None)


def test_missing_kernel_is_reported_before_running(tmp_path):
    with pytest.raises(PipelineError, match="no Jupyter kernel named 'nope'.*--kernel"):
        run_pipeline(load_pipeline(toy_pipeline(tmp_path)), tmp_path / "runs" / "k", root=REPO, kernel="nope")
    assert not (tmp_path / "out").exists()


def test_reported_tables_are_read_by_title_and_printed_in_stage_order(tmp_path):
    from abawkit.notebook import TABLE_MIME, report_table
    from abawkit.pipeline import read_tables, tables_text

    first = report_table("validation", pd.DataFrame({"stage": ["frame model", "+ temporal"], "macro_f1": [0.3, 0.4]}))
    again = report_table("validation", pd.DataFrame({"stage": ["frame model", "+ temporal"],
                                                     "macro_f1": [np.float32(0.3), 0.41]}))
    other = report_table("files", {"path": ["sub/predictions.zip"], "rows": [12]})
    assert first["columns"] == ["stage", "macro_f1"] and first["data"][1] == ["+ temporal", 0.4]
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {TABLE_MIME: t}}]}
                    for t in (first, other, again)]}
    (tmp_path / "x.ipynb").write_text(json.dumps(nb))
    tables = read_tables(tmp_path / "x.ipynb")
    assert list(tables) == ["validation", "files"] and tables["validation"]["data"][1][1] == pytest.approx(0.41)
    record = {"stages": {"a": {"tables": tables}, "b": {"tables": {}}, "c": {"tables": {"last": {
        "columns": ["x"], "data": [[1.23456]], "precision": 2}}}}}
    text = tables_text(record)
    assert text.startswith("validation:\n") and "+ temporal     0.410" in text
    assert "files:\n" in text and "sub/predictions.zip" in text and text.endswith("last:\n   x\n1.23")
    assert tables_text({"stages": {"x": {"metrics": {"a": 1}}}}) == ""


@pytest.mark.slow
def test_run_prints_every_table_a_notebook_reported(tmp_path, capsys):
    notebooks = own_toy_notebooks(tmp_path)
    edit_notebook(notebooks / "toy_use.ipynb", lambda nb: nb.cells.append(nbformat.v4.new_code_cell(
        "import pandas as pd\nfrom abawkit.notebook import report_table\n"
        "report_table('toy figures', pd.DataFrame({'name': ['doubled'], 'value': [2.0 * data['n']]}))")))
    path = toy_pipeline(tmp_path, notebooks)
    run_dir = tmp_path / "runs" / "toy"
    for _ in range(2):  # the second run skips both stages and still shows the table of the run that made it
        assert main(["run", str(path), "--run-dir", str(run_dir), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "toy figures:\n   name  value\ndoubled  8.000\n\nrun record:" in out
    saved = json.loads((run_dir / "run.json").read_text())
    assert saved["stages"]["use"]["status"] == "skipped"
    assert saved["stages"]["use"]["tables"] == {"toy figures": {"columns": ["name", "value"],
                                                                "data": [["doubled", 8.0]], "precision": 3}}
    assert saved["stages"]["make"]["tables"] == {}
