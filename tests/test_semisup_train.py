"""End-to-end checks of train-frame on tiny real face crops: learning beats chance, outputs and checkpoint
contract, the loop's learning-rate schedule, resume continues the global step (warm-up) and algorithm state,
a 2-process torchrun run, the CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from abawkit.frame_model import load_frame_checkpoint, load_frame_model
from abawkit.metrics import macro_f1
from abawkit.semisup.config import TrainConfig, preset
from abawkit.semisup.train import train

from helpers_semisup import truth_crops

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def semisup_data(tiny_demo, tiny_manifest, tmp_path_factory):
    """Crops of the tiny demo's Train_Set subjects split into interleaved 8-frame blocks: even blocks train,
    odd blocks validate (same faces, other frames). Unlabeled faces: the demo's unlabeled_faces/."""
    root = tmp_path_factory.mktemp("semisup")
    crops = truth_crops(tiny_demo, tiny_manifest, root / "faces", size=64, splits=("Train_Set",))
    from abawkit.semisup.data import frames_from_manifest

    table = frames_from_manifest(tiny_manifest, crops, "Train_Set")
    block = (table["frame"] - 1) // 8
    table["path"] = [os.path.relpath(p, root) for p in table["path"]]
    table[block % 2 == 0][["path", "label"]].to_csv(root / "train.csv", index=False)
    table[block % 2 == 1][["path", "label"]].to_csv(root / "val.csv", index=False)
    return {"root": root, "train": root / "train.csv", "val": root / "val.csv",
            "unlabeled": str(tiny_demo / "unlabeled_faces")}


def _cfg(data, out, algorithm="supervised", **kw):
    base = dict(out_dir=str(out), labeled_csv=str(data["train"]), val_csv=str(data["val"]),
                unlabeled_dirs=(data["unlabeled"],), image_size=32, batch_size=16, workers=0, warmup_steps=5,
                eval_every=20, ckpt_every=20, progress=False, lr=2e-3)
    base.update(kw)
    return TrainConfig(semisup=preset(algorithm), **base)


def chance_macro_f1(y: np.ndarray, seed: int = 0) -> float:
    """The better of a constant majority prediction and uniform random guessing (mean of 20 draws)."""
    rng = np.random.default_rng(seed)
    majority = macro_f1(y, np.full_like(y, np.bincount(y).argmax()))
    rand = np.mean([macro_f1(y, rng.integers(0, 8, y.size)) for _ in range(20)])
    return max(majority, rand)


@pytest.mark.slow
def test_short_cpu_run_beats_chance_and_writes_the_contract(semisup_data, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "sup"
    res = train(_cfg(semisup_data, out, steps=80))
    y = pd.read_csv(semisup_data["val"])["label"].to_numpy()
    chance = chance_macro_f1(y)
    assert res.best_val_macro_f1 > chance + 0.1, (res, chance)
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "run_record.json"):
        assert (out / name).is_file(), name
    model, ckpt = load_frame_model(out / "best.pt")
    assert ckpt["step"] == res.best_step and model.config.image_size == 32
    assert ckpt["val_macro_f1"] == pytest.approx(res.best_val_macro_f1)
    assert "optimizer" not in ckpt and "optimizer" in load_frame_checkpoint(out / "last.pt")  # lean best.pt
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == [20, 40, 60, 80]
    assert {"val_macro_f1", "f1_Neutral", "f1_Other", "loss"} <= set(metrics.columns)
    # the lr logged after t steps is the next step's: lr/2 (1 + cos(pi (t - w) / (T - w))) past the warm-up w = 5,
    # 0 at the end T = 80
    expected = [1e-3 * (1 + math.cos(math.pi * (t - 5) / 75)) for t in (20, 40, 60, 80)]
    assert np.allclose(metrics["lr"], expected, atol=1e-12)


@pytest.mark.slow
def test_resume_continues_global_step_warm_up_and_algorithm_state(semisup_data, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "full"
    cfg = _cfg(semisup_data, out, "full", steps=4, eval_every=2, ckpt_every=2, batch_size=8)
    # steps 0-2 supervised, unlabeled from step 3; no threshold floor, so a 4-step model's pseudo-labels pass
    cfg = cfg.with_(semisup=preset("full", unlabeled_warmup=3, threshold_floor=0.0))
    train(cfg)
    first = load_frame_checkpoint(out / "last.pt")
    assert first["step"] == 4 and "steps_done" not in first["algorithm"]  # the loop's step is the only count
    assert {"ema", "scheduler", "optimizer"} <= set(first)
    assert first["scheduler"]["warmup_t"] + first["scheduler"]["t_initial"] == 4  # warm-up, then the cosine
    tau4 = first["algorithm"]["labeler"]["threshold"]["tau"].item()
    p_hat4 = first["algorithm"]["labeler"]["debias"]["p_hat"]
    assert tau4 != pytest.approx(1 / 8)  # the threshold state moved (step 3) and was saved
    assert p_hat4.shape == (8,)
    # the debiasing's prior: the labeled frames' smoothed class shares, recorded with the run
    counts = np.bincount(pd.read_csv(semisup_data["train"])["label"], minlength=8)
    used = json.loads((out / "run_record.json").read_text())["params"]["debias_prior_used"]
    assert used == pytest.approx(((counts + 1) / (counts.sum() + 8)).tolist(), abs=1e-6)
    train(cfg.with_(steps=8, resume=True))
    second = load_frame_checkpoint(out / "last.pt")
    assert second["step"] == 8
    tau8 = second["algorithm"]["labeler"]["threshold"]["tau"].item()
    # four more updates of tau_t = l*tau + (1-l)*m from tau_4 (not from 1/C): it stays close to tau_4
    lam = cfg.semisup.threshold_momentum
    assert abs(tau8 - tau4) <= 4 * (1 - lam) + 1e-6
    assert abs(tau4 - 1 / 8) > 8 * (1 - lam)  # so a restart from 1/C could not pass the line above
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["step"].tolist() == [2, 4, 6, 8]
    # the resumed run starts at global step 4 (0-based), past the warm-up: had it counted its warm-up again from
    # 0, steps 4-6 would be supervised and the row logged after 6 steps would show no pseudo-label
    assert metrics["mask_rate"].iloc[0] == 0.0 and metrics["loss_u"].iloc[0] == 0.0
    assert (metrics["mask_rate"].iloc[1:] > 0).all()
    assert "teacher" in second["algorithm"] and "teacher_optimizer" in second["algorithm"]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO / "lib"), "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"}


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(semisup_data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "abawkit.cli", "train-frame",
           "--labeled-csv", str(semisup_data["train"]), "--val-csv", str(semisup_data["val"]),
           "--unlabeled-dir", semisup_data["unlabeled"], "--algorithm", "full", "--threshold", "flexmatch",
           "--steps", "3", "--batch-size", "4", "--image-size", "32", "--workers", "0", "--eval-every", "3",
           "--ckpt-every", "3", "--out", str(out), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("final val macro-F1") and "best val macro-F1" in lines[-1]
    assert sum("final val macro-F1" in line for line in lines) == 1  # only rank 0 reports
    ckpt = load_frame_checkpoint(out / "last.pt")
    assert ckpt["step"] == 3
    assert ckpt["algorithm"]["labeler"]["threshold"]["selected"].shape[0] == 116  # 16 renders + 100 LFW


@pytest.mark.slow
def test_cli_help_and_bad_input(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "abawkit.cli", *a], capture_output=True, text=True,
                                    env=_env(), timeout=60)
    proc = run("train-frame", "--help")
    assert proc.returncode == 0 and "--unlabeled-dir" in proc.stdout and "torchrun" in proc.stdout
    proc = run("train-frame", "--labeled-csv", str(tmp_path / "nope.csv"), "--algorithm", "supervised",
               "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and "nope.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_config_yaml_and_switches_override_the_preset(tmp_path):
    from abawkit.config import cli
    from abawkit.semisup.config import TrainConfig

    cfg_file = tmp_path / "frame.yaml"
    cfg_file.write_text("steps: 7\nunlabeled_dirs: [a, b]\nalgorithm: fixmatch\nsemisup: {tau: 0.9}\n")
    cfg = cli(TrainConfig, ["--config", str(cfg_file), "--threshold", "flexmatch", "--debias", "--steps", "9"],
              prog="train-frame")
    assert cfg.steps == 9 and cfg.unlabeled_dirs == ("a", "b")
    s = cfg.semisup
    assert (s.unlabeled, s.threshold, s.debias, s.feedback, s.tau) == (True, "flexmatch", True, False, 0.9)
    full = cli(TrainConfig, ["--no-feedback"], prog="train-frame").semisup
    assert (full.threshold, full.debias, full.feedback, full.unlabeled) == ("self-adaptive", True, False, True)


def test_algorithm_is_a_preset_of_the_switches_never_stored():
    """``algorithm`` expands into the switches; a switch given beside it wins (no silent FixMatch)."""
    from abawkit.config import build
    from abawkit.semisup.config import SemiSupConfig

    assert build(SemiSupConfig, {"algorithm": "supervised"}).name == "supervised"
    mixed = build(SemiSupConfig, {"algorithm": "supervised", "unlabeled": True})
    assert mixed.unlabeled and mixed.threshold == "fixed" and mixed.name == "fixmatch+fixed"
    assert "algorithm" not in {f for f in SemiSupConfig.__dataclass_fields__}
