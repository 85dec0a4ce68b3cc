import hashlib

import decord
import numpy as np
import pandas as pd
import pytest

from abawkit.annotations import load_label_folder, read_annotation
from abawkit.cli import main
from abawkit.demo import DemoConfig, build_demo
from abawkit.labels import IGNORE
from abawkit.manifest import read_example_file


def test_layout_is_the_release_layout(tiny_demo, tiny_manifest):
    ann = tiny_demo / "annotations" / "EXPR_Recognition_Challenge"
    assert sorted(p.parent.name for p in ann.glob("*/*.txt")) == ["Train_Set"] * 3 + ["Validation_Set"]
    assert any(p.suffix == ".mp4" for p in (tiny_demo / "batch1").iterdir())
    assert any(p.suffix == ".avi" for p in (tiny_demo / "batch2").iterdir())
    v = tiny_manifest.videos
    assert set(v["split"]) == {"Train_Set", "Validation_Set", "Test_Set"}
    assert {"left", "right"} <= set(v.loc[v["split"] == "Train_Set", "side"])
    assert {"left", "right"} <= set(v.loc[v["split"] == "Test_Set", "side"])
    missing = v["video_path"] == ""
    assert not missing.any()
    # One training subject's annotation is longer than its video, recorded as a problem.
    assert v["problems"].str.contains("frame count mismatch").sum() == 1
    test_ids = v.loc[v["split"] == "Test_Set", "video_id"].tolist()
    assert sorted(load_label_folder(tiny_demo / "test_ground_truth")) == sorted(test_ids)
    rows = read_example_file(tiny_demo / "CVPR_6th_ABAW_Expr_test_set_example.txt")
    assert {vid for vid, _ in rows} == set(test_ids)
    assert len(list((tiny_demo / "unlabeled_faces").glob("lfw_*.jpg"))) == 100


def test_labels_include_ignored_frames_and_no_face_stretches(tiny_demo):
    labels = np.concatenate([read_annotation(p) for p in tiny_demo.glob("annotations/*/*/*.txt")])
    assert (labels == IGNORE).any()
    truth = pd.concat([pd.read_csv(p) for p in tiny_demo.glob("render_truth/*-*.csv")])
    assert (~truth["has_face"]).sum() > 10


def test_two_person_subjects_stay_on_their_side(tiny_demo):
    for left in tiny_demo.glob("render_truth/*_left.csv"):
        a = pd.read_csv(left).dropna()
        b = pd.read_csv(str(left).replace("_left", "_right")).dropna()
        joined = a.merge(b, on="frame", suffixes=("_l", "_r"))
        assert (joined["box_x1_l"] < joined["box_x0_r"] + 20).all()


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.glob("annotations/*/*/*.txt")) + sorted(root.glob("*.txt")):
        h.update(p.read_bytes())
    for p in sorted(root.glob("batch*/*")):
        vr = decord.VideoReader(str(p))
        h.update(vr.get_batch(list(range(0, len(vr), 7))).asnumpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_same_seed_same_data_other_seed_other_data(tmp_path):
    cfg = DemoConfig(seed=11, n_train=1, n_val=1, n_test=1, frames=60, n_unlabeled_renders=4)
    a = build_demo(tmp_path / "a", cfg, progress=False)
    b = build_demo(tmp_path / "b", cfg, progress=False)
    c = build_demo(tmp_path / "c", DemoConfig(seed=12, n_train=1, n_val=1, n_test=1, frames=60,
                                              n_unlabeled_renders=4), progress=False)
    assert _digest(a) == _digest(b) != _digest(c)


@pytest.mark.slow
def test_class_does_not_leak_through_position_colour_or_time(tiny_demo, tiny_manifest):
    """Trained on other subjects, a classifier on face position, size, frame index and background colour
    stays at chance on a held-out subject: only the face shows the class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict

    from abawkit.metrics import macro_f1

    feats, ys, groups = [], [], []
    truth_labels = load_label_folder(tiny_demo / "test_ground_truth")
    for vid in tiny_manifest.video_ids():
        row = tiny_manifest.row(vid)
        truth = pd.read_csv(tiny_demo / "render_truth" / f"{vid}.csv")
        labels = truth_labels.get(vid, tiny_manifest.labels(vid))[: len(truth)]
        vr = decord.VideoReader(row["video_path"])
        corners = vr.get_batch(list(range(len(truth)))).asnumpy()[:, :16, :16].reshape(len(truth), -1, 3).mean(1)
        keep = (labels != IGNORE) & truth["has_face"].to_numpy()
        t = truth[keep]
        feats.append(np.column_stack([(t["box_x0"] + t["box_x1"]) / 2, (t["box_y0"] + t["box_y1"]) / 2,
                                      t["box_x1"] - t["box_x0"], t["frame"] / len(truth), corners[keep]]))
        ys.append(labels[keep])
        groups += [vid] * int(keep.sum())
    x, y = np.concatenate(feats), np.concatenate(ys)
    pred = cross_val_predict(LogisticRegression(max_iter=2000), (x - x.mean(0)) / x.std(0), y,
                             groups=groups, cv=GroupKFold(n_splits=len(set(groups))))
    assert macro_f1(y, pred) < 0.3  # few events in the tiny tree: the timeline test below is the precise one


def test_motion_lighting_and_time_are_independent_of_the_class():
    from abawkit.demo import _motion, _smooth_walk, class_schedule, make_timeline

    rng = np.random.default_rng(0)
    per_class = {c: [] for c in range(8)}
    for _ in range(300):
        n = 300
        tl = make_timeline(rng, n, class_schedule(rng, 8), no_face=True)
        nuisance = np.column_stack([_motion(rng, n, 22.0), 1 + _smooth_walk(rng, n, 0.22, (60, 200)),
                                    np.arange(n) / n])
        for c in range(8):
            per_class[c].append(nuisance[tl.klass == c])
    allx = np.concatenate([np.concatenate(v) for v in per_class.values()])
    for c, parts in per_class.items():
        diff = np.abs(np.concatenate(parts).mean(0) - allx.mean(0)) / allx.std(0)
        assert (diff < 0.2).all(), (c, diff)  # sampling noise is ~0.06; a real leak moves a mean by far more


def test_demo_data_and_evaluate_commands(tmp_path, tiny_demo, tiny_manifest, capsys):
    # The example file is itself a valid submission (random labels): scoring it gives a chance-level F1.
    example = tiny_demo / "CVPR_6th_ABAW_Expr_test_set_example.txt"
    assert main(["evaluate", str(example), "--truth", str(tiny_demo / "test_ground_truth")]) == 0
    out = capsys.readouterr().out
    assert "macro F1 (P_EXPR)" in out
    score = float(out.strip().splitlines()[-1].split("=")[1].split()[0])
    assert 0.0 < score < 0.4
    assert main(["evaluate", str(example), "--manifest", str(tiny_manifest.path), "--split", "Nope"]) == 2
    assert "no subject in split 'Nope'" in capsys.readouterr().err


def test_help_of_every_command(capsys):
    from abawkit.cli import build_parser, command_modules

    parser = build_parser()
    for action in parser._subparsers._group_actions:
        for name in action.choices:
            with pytest.raises(SystemExit) as exc:
                main([name, "--help"])
            assert exc.value.code == 0
            assert "usage: abawkit " + name in capsys.readouterr().out
    assert command_modules()[:3] == ["run", "demo_data", "manifest"]


def test_module_entry_point_reports_user_errors_without_traceback(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "abawkit.cli", "evaluate", str(tmp_path / "missing.txt"),
                           "--truth", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "holds no <video_id>.txt" in proc.stderr
