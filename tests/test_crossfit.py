"""Cross-fitting: folds by source video, fold models that never see their fold, features from the right model,
a trained fold skipped on re-run, and the temporal stage's cross-validation report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from abawkit.cli import main
from abawkit.folds import FoldError, assign_folds, read_folds


def _manifest_with(tiny_manifest, n_sources: int, two_person: bool = True, holdout: int = 1):
    """A copy of the tiny manifest's table with ``n_sources`` training source videos (every other one with two
    sides) of which the last ``holdout`` are held out: fold assignment reads only the table."""
    rows = []
    for i in range(n_sources):
        sides = ("left", "right") if two_person and i % 2 == 0 else ("",)
        for side in sides:
            vid = f"v{i}" + (f"_{side}" if side else "")
            rows.append({"video_id": vid, "split": "Train_Set", "video_name": f"v{i}", "side": side,
                         "n_frames": 100 + 10 * i, "holdout": i >= n_sources - holdout})
    rows.append({"video_id": "val", "split": "Validation_Set", "video_name": "val", "side": "", "n_frames": 50,
                 "holdout": False})

    class M:
        videos = pd.DataFrame(rows)
        path = tiny_manifest.path
    return M()


def test_folds_keep_both_sides_together_and_leave_out_the_held_out_videos(tiny_manifest):
    m = _manifest_with(tiny_manifest, 9)
    table = assign_folds(m, 3, seed=0)
    held = set(m.videos.loc[m.videos["holdout"], "video_id"])
    assert not held & set(table["video_id"])  # held out: in no fold
    assert "val" not in set(table["video_id"])
    assert table.groupby("video_name")["fold"].nunique().max() == 1  # both sides of a video share a fold
    assert sorted(table["fold"].unique()) == [0, 1, 2]
    assert table.equals(assign_folds(m, 3, seed=0))  # deterministic
    frames = table.merge(m.videos[["video_id", "n_frames"]]).groupby("fold")["n_frames"].sum()
    assert frames.max() - frames.min() <= 240  # balanced by frames: within one source video's size
    with pytest.raises(FoldError, match="folds 9 is larger than the 8 training source video"):
        assign_folds(m, 9)


def _train_argv(world, out, *extra):
    return ["train-frame", "--algorithm", "supervised", "--manifest", str(world["manifest"]), "--crops",
            str(world["crops"]), "--image-size", "32", "--steps", "2", "--batch-size", "4", "--workers", "0",
            "--no-progress", "--out", str(out), *extra]


def test_fold_models_never_see_their_fold_and_a_trained_fold_is_skipped(world, tmp_path, capsys):
    out = tmp_path / "frame"
    assert main(_train_argv(world, out, "--folds", "2")) == 0
    folds = read_folds(out)
    assert sorted(folds["fold"].unique()) == [0, 1]
    for f in (0, 1):
        seen = json.loads((out / f"fold_{f}" / "run_record.json").read_text())["params"]["train_videos"]
        assert seen and not set(seen) & set(folds.loc[folds["fold"] == f, "video_id"])
        assert set(seen) == set(folds.loc[folds["fold"] != f, "video_id"])
    full = json.loads((out / "run_record.json").read_text())["params"]["train_videos"]
    assert set(full) == set(folds["video_id"])
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")}
    capsys.readouterr()
    assert main(_train_argv(world, out, "--folds", "2")) == 0  # re-run: everything is trained already
    assert capsys.readouterr().out.count("trained already, skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in out.rglob("best.pt")} == stamps
    # a fold trained with other settings is not taken for this run's model
    assert main(_train_argv(world, out, "--folds", "2", "--steps", "3")) != 0
    assert "holds a model trained with other settings (steps differ)" in capsys.readouterr().err
    # another assignment into the same folder would mix models that saw other videos
    folds.assign(fold=1 - folds["fold"]).to_csv(out / "folds.csv", index=False)
    assert main(_train_argv(world, out, "--folds", "2", "--fold", "0")) != 0
    assert "holds another fold assignment" in capsys.readouterr().err


def test_each_training_video_gets_the_features_of_the_model_that_did_not_see_it(world, tmp_path):
    from abawkit.features import FeatureConfig, extract_features, load_video_features
    from abawkit.manifest import load_manifest

    out = tmp_path / "frame"
    assert main(_train_argv(world, out, "--folds", "2")) == 0
    manifest = load_manifest(world["manifest"])
    feats = tmp_path / "features"
    base = dict(crops_dir=str(world["crops"]), manifest_dir=str(world["manifest"]), workers=0, progress=False)
    extract_features(FeatureConfig(checkpoint=str(out / "best.pt"), features_dir=str(feats), folds=2, **base),
                     manifest)
    folds = read_folds(out)
    sources = pd.read_csv(feats / "sources.csv", dtype={"video_id": str}).set_index("video_id")
    for f in (0, 1):  # the same frames through the fold model alone
        alone = tmp_path / f"alone_{f}"
        extract_features(FeatureConfig(checkpoint=str(out / f"fold_{f}" / "best.pt"), features_dir=str(alone),
                                       **base), manifest)
        for vid in manifest.video_ids():
            got = load_video_features(feats, vid)
            ref = load_video_features(alone, vid)
            mine = vid in set(folds.loc[folds["fold"] == f, "video_id"])
            assert np.allclose(got["logits"], ref["logits"], atol=1e-5) == mine, vid
            if mine:
                assert str(got["source"]) == f"fold_{f}/best.pt" and int(got["fold"]) == f
                assert sources.loc[vid, "fold"] == f
    val = manifest.video_ids("Validation_Set")[0]
    assert str(load_video_features(feats, val)["source"]) == "best.pt"  # unseen videos: the full model
    # a file from another model is recomputed on re-run, not kept
    stamp = (feats / f"{val}.npz").stat().st_mtime_ns
    extract_features(FeatureConfig(checkpoint=str(out / "best.pt"), features_dir=str(feats), folds=2,
                                   eval_model="mean", **base), manifest)
    assert (feats / f"{val}.npz").stat().st_mtime_ns != stamp
    assert str(load_video_features(feats, val)["source"]) == "mean of fold_0..1/best.pt"
    with pytest.raises(FoldError, match="assigns 2 folds but --folds is 3"):
        extract_features(FeatureConfig(checkpoint=str(out / "best.pt"), features_dir=str(feats), folds=3, **base),
                         manifest)


def test_temporal_stage_reports_cross_validation_on_cross_fitted_features(world, tmp_path):
    from abawkit.io import save_npz
    from abawkit.manifest import load_manifest

    manifest = load_manifest(world["manifest"])
    folds = assign_folds(manifest, 2)
    feats = tmp_path / "features"
    rng = np.random.default_rng(0)
    fold_of = dict(zip(folds["video_id"], folds["fold"]))
    for vid in manifest.video_ids():
        n = int(manifest.row(vid)["n_frames"])
        save_npz(feats / f"{vid}.npz", embeddings=rng.normal(size=(n, 16)).astype(np.float16),
                 has_face=np.ones(n, bool), logits=rng.normal(size=(n, 8)).astype(np.float32),
                 source=np.array("x"), fold=np.array(fold_of.get(vid, -1)))
    out = tmp_path / "temporal"
    assert main(["train-temporal", "--features", str(feats), "--manifest", str(world["manifest"]), "--epochs", "2",
                 "--inputs", "both", "--no-progress", "--out", str(out)]) == 0
    cv = pd.read_csv(out / "cv.csv", dtype={"fold": str})
    assert set(cv["fold"]) == {"0", "1", "all"}
    assert set(cv["stage"]) == {"frame model", "frame model + smoothing", "+ temporal encoder", "+ post-processing"}
    assert cv["macro_f1"].between(0, 1).all()
    for f in (0, 1):  # each fold's encoder trained without the fold's videos
        seen = set(__import__("torch").load(out / "cv" / f"fold_{f}" / "best.pt", weights_only=True)["train_videos"])
        assert seen == set(folds.loc[folds["fold"] != f, "video_id"])
    comparison = pd.read_csv(out / "comparison.csv")
    assert "frame model + smoothing" in set(comparison["stage"])
    # no held-out video in this manifest: by default the post-processing falls back to the training videos
    assert json.loads((out / "postprocess.json").read_text())["fit_info"]["fold"] == "train (no holdout available)"
    both = tmp_path / "temporal_cv_fit"
    assert main(["train-temporal", "--features", str(feats), "--manifest", str(world["manifest"]), "--epochs", "1",
                 "--post-fit", "holdout+cv", "--no-progress", "--out", str(both)]) == 0
    info = json.loads((both / "postprocess.json").read_text())["fit_info"]
    assert info["fold"] == "cross-validation (out-of-fold)" and set(info["fold_ids"]) == set(folds["video_id"])
    # --select cv: the epoch of the best pooled out-of-fold score, for the fold encoders and the final one
    chosen = tmp_path / "temporal_select_cv"
    assert main(["train-temporal", "--features", str(feats), "--manifest", str(world["manifest"]), "--epochs", "4",
                 "--select", "cv", "--no-progress", "--out", str(chosen)]) == 0
    curve = pd.read_csv(chosen / "cv" / "epochs.csv", dtype={"fold": str})
    assert set(curve["fold"]) == {"0", "1", "all"} and len(curve) == 12
    pooled = curve[curve["fold"] == "all"].set_index("epoch")["macro_f1"]
    epoch = int(pooled.idxmax())
    assert __import__("torch").load(chosen / "best.pt", weights_only=True)["epoch"] == epoch
    assert json.loads((chosen / "run_record.json").read_text())["result"]["epoch"] == epoch
    cv = pd.read_csv(chosen / "cv.csv", dtype={"fold": str}).set_index(["fold", "stage"])["macro_f1"]
    # the stored probabilities of the chosen epoch score what the per-epoch confusion matrices gave
    assert cv["all", "+ temporal encoder"] == pytest.approx(pooled[epoch], abs=2e-3)
    assert not list((chosen / "cv").rglob("epoch_probs.npy"))  # removed once the epoch is known
    last = tmp_path / "temporal_select_last"
    assert main(["train-temporal", "--features", str(feats), "--manifest", str(world["manifest"]), "--epochs", "2",
                 "--select", "last", "--no-cv", "--no-progress", "--out", str(last)]) == 0
    assert __import__("torch").load(last / "best.pt", weights_only=True)["epoch"] == 2


def test_select_names_what_it_lacks(world, tmp_path, capsys):
    argv = ["train-temporal", "--manifest", str(world["manifest"]), "--epochs", "1", "--no-progress",
            "--features", str(world["features"]), "--out", str(tmp_path / "t")]
    assert main([*argv, "--select", "cv"]) != 0  # features of one model that saw every training video
    assert "select cv needs cross-fitted features" in capsys.readouterr().err
    assert main([*argv, "--select", "holdout"]) != 0  # this manifest holds no held-out video
    assert "no held-out Train_Set video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # the option parser's error
        main([*argv, "--select", "cv", "--no-cv"])
    assert exc.value.code == 2 and "needs cv on" in capsys.readouterr().err


def test_temporal_stage_names_a_missing_video_and_a_wrong_frame_count(world, tmp_path, capsys):
    import shutil

    from abawkit.io import save_npz
    from abawkit.manifest import load_manifest

    manifest = load_manifest(world["manifest"])
    vid = manifest.video_ids("Train_Set")[0]
    argv = ["train-temporal", "--manifest", str(world["manifest"]), "--epochs", "1", "--no-progress"]
    missing = shutil.copytree(world["features"], tmp_path / "missing")
    (missing / f"{vid}.npz").unlink()
    assert main([*argv, "--features", str(missing), "--out", str(tmp_path / "t1")]) != 0
    err = capsys.readouterr().err
    assert f"no cached features for {vid}" in err and "extract-features" in err
    short = shutil.copytree(world["features"], tmp_path / "short")
    n = int(manifest.row(vid)["n_frames"])
    save_npz(short / f"{vid}.npz", embeddings=np.zeros((n - 5, 16), np.float16), has_face=np.ones(n - 5, bool),
             logits=np.zeros((n - 5, 8), np.float32))
    assert main([*argv, "--features", str(short), "--out", str(tmp_path / "t2")]) != 0
    err = capsys.readouterr().err
    assert f"{vid}.npz has {n - 5} rows but the annotation has {n} frames" in err
