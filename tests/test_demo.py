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


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    cfg = DemoConfig(seed=11, n_train=1, n_val=1, n_test=1, frames=60, n_unlabeled_renders=4)
    a = build_demo(tmp_path / "a", cfg, progress=False)
    b = build_demo(tmp_path / "b", cfg, progress=False)
    c = build_demo(tmp_path / "c", DemoConfig(seed=12, n_train=1, n_val=1, n_test=1, frames=60,
                                              n_unlabeled_renders=4), progress=False)
    assert _digest(a) == _digest(b) != _digest(c)


def test_class_does_not_leak_through_position_colour_or_time(tiny_demo, tiny_manifest):
    """A classifier on face position, size, frame index and background colour stays near chance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    feats, ys = [], []
    for vid in tiny_manifest.video_ids("Train_Set") + tiny_manifest.video_ids("Validation_Set"):
        row = tiny_manifest.row(vid)
        truth = pd.read_csv(tiny_demo / "render_truth" / f"{vid}.csv")
        labels = tiny_manifest.labels(vid)[: len(truth)]
        vr = decord.VideoReader(row["video_path"])
        corners = vr.get_batch(list(range(len(truth)))).asnumpy()[:, :16, :16].reshape(len(truth), -1, 3).mean(1)
        keep = (labels != IGNORE) & truth["has_face"].to_numpy()
        t = truth[keep]
        feats.append(np.column_stack([(t["box_x0"] + t["box_x1"]) / 2, (t["box_y0"] + t["box_y1"]) / 2,
                                      t["box_x1"] - t["box_x0"], t["frame"] / len(truth), corners[keep]]))
        ys.append(labels[keep])
    x, y = np.concatenate(feats), np.concatenate(ys)
    pred = cross_val_predict(LogisticRegression(max_iter=2000), (x - x.mean(0)) / x.std(0), y, cv=3)
    majority = np.bincount(y).max() / y.size
    assert (pred == y).mean() < majority + 0.15


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
    from abawkit.cli import COMMAND_MODULES, build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions:
        for name in action.choices:
            with pytest.raises(SystemExit) as exc:
                main([name, "--help"])
            assert exc.value.code == 0
            assert "usage: abawkit " + name in capsys.readouterr().out
    assert len(COMMAND_MODULES) >= 4
