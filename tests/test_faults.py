"""Faults: a second run on a folder in use, a run killed with SIGKILL at any moment, a disk that fills up."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from abawkit.cli import main
from abawkit.io import save_npz, write_text
from abawkit.runlock import FolderInUseError, folder_lock

BIN = Path(sys.executable).parent
HOLD = """
import sys, time
from abawkit.runlock import folder_lock
with folder_lock(sys.argv[1], "the holder of the test"):
    print("held", flush=True)
    time.sleep(120)
"""


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2", "PYTHONWARNINGS": "ignore"}


def hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_a_folder_in_use_names_the_first_and_a_killed_holder_frees_it(world, tmp_path, capsys):
    folder = tmp_path / "run"
    holder = hold_lock(folder)
    try:
        with pytest.raises(FolderInUseError, match=rf"{folder} is in use by another run \(pid {holder.pid} on .*"
                                                   r"the holder of the test"):
            with folder_lock(folder, "second"):
                pass
        # the commands that write a run folder say so in one line
        for argv in (["train-temporal", "--features", str(world["features"]), "--manifest", str(world["manifest"])],
                     ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(world["csv"]), "--image-size",
                      "32", "--steps", "1", "--workers", "0"]):
            rc = main([*argv, "--out", str(folder)])
            assert rc == 2 and f"pid {holder.pid}" in capsys.readouterr().err, argv
        assert not (folder / "last.pt").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with folder_lock(folder, "after the kill") as path:  # nothing stuck
        assert "after the kill" in path.read_text()


def _held_notebook(path: Path) -> Path:
    """A stage that writes a marker, then waits while the file ``hold`` exists (the moment to kill it), then
    writes its output."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('out_path = "out.txt"\nhold = "hold"\nmarker = "started"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import time\nfrom pathlib import Path\nPath(marker).write_text('x')\n"
        "while Path(hold).exists():\n    time.sleep(0.1)\n"
        "Path(out_path).write_text('done')")]
    nb.metadata["kernelspec"] = {"name": "abawkit", "display_name": "abawkit", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_sigkilled_abawkit_run_reruns_the_interrupted_stage_and_records_it(tmp_path):
    from abawkit.pipeline import read_run_record

    notebook = _held_notebook(tmp_path / "held.ipynb")
    hold, marker, out = tmp_path / "hold", tmp_path / "started", tmp_path / "out.txt"
    spec = {"name": "held", "stages": [{"name": "wait", "notebook": str(notebook), "outputs": [str(out)],
                                        "parameters": {"out_path": str(out), "hold": str(hold), "marker": str(marker)}}]}
    pipeline = tmp_path / "held.yaml"
    pipeline.write_text(yaml.safe_dump(spec))
    run_dir = tmp_path / "runs" / "held"
    hold.write_text("")
    proc = subprocess.Popen([str(BIN / "abawkit"), "run", str(pipeline), "--run-dir", str(run_dir), "--no-progress"],
                            env=_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        # a second run on the folder while the first is in its stage: stopped, the first named
        second = subprocess.run([str(BIN / "abawkit"), "run", str(pipeline), "--run-dir", str(run_dir)],
                                env=_env(), capture_output=True, text=True)
        assert second.returncode == 2 and f"pid {proc.pid}" in second.stderr, second.stderr
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its kernel, mid-stage
        proc.wait()
    assert read_run_record(run_dir)["stages"]["wait"]["status"] == "running" and not out.exists()
    hold.unlink()
    rerun = subprocess.run([str(BIN / "abawkit"), "run", str(pipeline), "--run-dir", str(run_dir), "--no-progress"],
                           env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "interrupted during stage 'wait'" in rerun.stdout + rerun.stderr
    record = read_run_record(run_dir)
    assert record["status"] == "done" and record["previous_run"]["status"] == "interrupted"
    assert record["previous_run"]["stage"] == "wait"
    assert record["stages"]["wait"]["reason"] == "interrupted during its last run"
    assert out.read_text() == "done"


def _kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkilled_extract_features_keeps_finished_videos_and_redoes_the_rest(world, tmp_path):
    from abawkit.features import load_video_features

    argv = ["extract-features", "--checkpoint", str(world["frame"]), "--crops", str(world["crops"]), "--manifest",
            str(world["manifest"]), "--workers", "0", "--batch-size", "1"]
    clean = tmp_path / "clean"
    assert main([*argv, "--out", str(clean)]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "abawkit"), *argv, "--out", str(killed)], env=_env(), stderr=subprocess.PIPE,
                            text=True)
    _kill_when(proc, lambda: len(list(killed.glob("*.npz"))) >= 1, "a first video was written")
    kept = {p.name: p.stat().st_mtime_ns for p in killed.glob("*.npz")}
    assert 1 <= len(kept) < len(list(clean.glob("*.npz")))
    assert main([*argv, "--out", str(killed)]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in killed.glob("*.npz") if p.name in kept} == kept  # not redone
    assert not list(killed.glob(".*.tmp"))
    for path in clean.glob("*.npz"):
        a, b = load_video_features(clean, path.stem), load_video_features(killed, path.stem)
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigkilled_train_temporal_reruns_to_the_uninterrupted_result(world, tmp_path):
    import torch

    argv = ["train-temporal", "--features", str(world["features"]), "--manifest", str(world["manifest"]),
            "--epochs", "40", "--seed", "3"]
    clean = tmp_path / "clean"
    assert main([*argv, "--out", str(clean)]) == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "abawkit"), *argv, "--out", str(killed)], env=_env(), stderr=subprocess.PIPE,
                            text=True)
    _kill_when(proc, lambda: (killed / "last.pt").is_file(), "the first checkpoint")
    assert not (killed / "comparison.csv").exists()
    assert main([*argv, "--out", str(killed)]) == 0
    a = torch.load(clean / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(killed / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (clean / "comparison.csv").read_text() == (killed / "comparison.csv").read_text()


@pytest.mark.slow
def test_sigkilled_train_frame_resumes_to_the_uninterrupted_result(world, tmp_path):
    """Killed after a checkpoint, ``--resume`` continues from it and ends with the weights and metrics of the run
    that was never interrupted: the batches and their augmentations are functions of the batch number."""
    import pandas as pd
    import torch

    argv = ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(world["csv"]), "--val-csv",
            str(world["csv"]), "--image-size", "32", "--steps", "48", "--batch-size", "4", "--workers", "0",
            "--eval-every", "8", "--ckpt-every", "8", "--seed", "5"]
    clean = tmp_path / "clean"  # every run in a process of one thread: bit-equal float sums
    assert subprocess.run([str(BIN / "abawkit"), *argv, "--out", str(clean)], env=_env()).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "abawkit"), *argv, "--out", str(killed)], env=_env(), stderr=subprocess.PIPE,
                            text=True)

    def past_first_checkpoint():
        try:
            return (killed / "last.pt").is_file() and torch.load(killed / "last.pt", weights_only=True)["step"] >= 8
        except Exception:  # being renamed into place
            return False

    _kill_when(proc, past_first_checkpoint, "the first checkpoint")
    assert torch.load(killed / "last.pt", weights_only=True)["step"] < 48 and not list(killed.glob(".*.tmp"))
    assert subprocess.run([str(BIN / "abawkit"), *argv, "--out", str(killed), "--resume"], env=_env()).returncode == 0
    a = torch.load(clean / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 48
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    metrics = [pd.read_csv(out / "metrics.csv").drop(columns=["seconds"], errors="ignore") for out in (clean, killed)]
    assert metrics[0]["step"].tolist() == list(range(8, 49, 8))
    pd.testing.assert_frame_equal(metrics[0][["step", "val_macro_f1"]], metrics[1][["step", "val_macro_f1"]])


def test_a_write_that_fails_midway_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk in the middle of writing features (or crops, checkpoints: all go through atomic_path): the
    error names the file, no partial file takes its name, no temporary is left."""
    import numpy as _np

    real = _np.savez

    def savez_then_disk_full(fh, **arrays):
        real(fh, **arrays)
        fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_np, "savez", savez_then_disk_full)
    target = tmp_path / "features" / "video1.npz"
    with pytest.raises(OSError, match=rf"no space left on the disk while writing {target}"):
        save_npz(target, embeddings=np.zeros((10, 4)))
    assert not target.exists() and not list(target.parent.iterdir())
    monkeypatch.undo()
    write_text(tmp_path / "ok.txt", "fine")  # the folder is usable again once there is space
    assert (tmp_path / "ok.txt").read_text() == "fine"


def test_disk_full_while_writing_crops_fails_that_video_naming_the_crop(tiny_manifest, tmp_path, monkeypatch):
    """The disk fills up in the middle of a video's crops: that video fails with the crop's path in its problems,
    nothing of it counts as done, and a re-run once there is space finishes it."""
    from abawkit.faces.extract import ExtractConfig, extract_faces, is_done, jobs_from_manifest

    jobs = [j for j in jobs_from_manifest(tiny_manifest)[0] if j.subjects[0].video_id == "video3"]
    real, written = Path.write_bytes, []

    def fills_up(self, data):
        if self.suffix == ".jpg" and len(written) >= 10:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        written.append(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_up)
    out = tmp_path / "faces"
    summary = extract_faces(jobs, out, ExtractConfig(max_frames=30), progress=False).set_index("video_id")
    assert summary.loc["video3", "status"] == "failed"
    assert "cannot write the crop" in summary.loc["video3", "problems"] and "No space left" in summary.loc["video3", "problems"]
    assert not is_done(out, "video3") and not (out / "cropped_aligned" / "video3").exists()
    monkeypatch.undo()
    again = extract_faces(jobs, out, ExtractConfig(max_frames=30), progress=False)
    assert (again["status"] == "done").all() and is_done(out, "video3")
