"""Temporal stage: feature cache, masking, overlap averaging, a sequence task, post-processing, commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from abawkit.features import FeatureConfig, extract_features, load_video_features, video_frame_counts
from abawkit.labels import CLASSES
from abawkit.manifest import Manifest
from abawkit.postprocess import PostProcess, fast_macro_f1, fill_no_face, fit_postprocess, smooth, tune_bias
from abawkit.temporal.model import TemporalConfig, build_temporal_model
from abawkit.temporal.predict import predict_logits, predict_split
from abawkit.config import build
from abawkit.manifest import holdout_groups
from abawkit.temporal.config import TemporalTrainConfig
from abawkit.temporal.train import train_temporal
from conftest import REPO

torch.set_num_threads(1)  # 2 threads on shared cores spin-wait: 50x slower here


# ------------------------------------------------------------------------------------------------ model
def _model(window=16, dim=8, residual=False):
    torch.manual_seed(0)
    return build_temporal_model(TemporalConfig(window=window, depth=2, heads=2, width=16, dropout=0.0,
                                               residual_logits=residual), embed_dim=dim).eval()


def test_residual_encoder_starts_at_the_frame_model():
    model = _model(residual=True)
    rng = np.random.default_rng(0)
    x, lg = rng.normal(size=(2, 16, 8)).astype(np.float32), rng.normal(size=(2, 16, 8)).astype(np.float32)
    face = rng.random((2, 16)) > 0.3
    with torch.no_grad():
        out = model(torch.from_numpy(x), torch.from_numpy(face), torch.from_numpy(lg)).numpy()
    np.testing.assert_allclose(out, np.where(face[..., None], lg, 0.0), atol=1e-6)  # untrained: no correction


def test_masked_frame_features_reach_no_other_frame():
    model = _model(residual=True)
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a trained correction (it starts at zero)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 16, 8)).astype(np.float32)
    face = np.ones((1, 16), bool)
    face[0, [3, 9]] = False
    lg = rng.normal(size=(1, 16, 8)).astype(np.float32)
    with torch.no_grad():
        a = model(torch.from_numpy(x), torch.from_numpy(face), torch.from_numpy(lg)).numpy()
        x2, lg2 = x.copy(), lg.copy()
        x2[0, 3] += 50.0
        lg2[0, 9] -= 20.0
        b = model(torch.from_numpy(x2), torch.from_numpy(face), torch.from_numpy(lg2)).numpy()
        x3 = x.copy()
        x3[0, 5] += 5.0  # a face frame does reach the others
        c = model(torch.from_numpy(x3), torch.from_numpy(face), torch.from_numpy(lg)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.isfinite(a).all() and np.abs(a[0, 3] - a[0, 9]).max() > 1e-4  # no-face frames still get predictions
    assert np.abs(c[0, 0] - a[0, 0]).max() > 1e-4


def test_overlap_average_equals_single_pass_when_one_window_covers():
    model = _model(window=16)
    rng = np.random.default_rng(1)
    for n in (16, 11):
        x = rng.normal(size=(n, 8)).astype(np.float32)
        face = rng.random(n) > 0.2
        got = predict_logits(model, x, face)
        with torch.no_grad():
            ref = model(torch.from_numpy(x[None]), torch.from_numpy(face[None])).numpy()[0]
        np.testing.assert_allclose(got, ref, atol=1e-5)
    # longer video: every frame is predicted and windows overlap
    x = rng.normal(size=(50, 8)).astype(np.float32)
    assert predict_logits(model, x, np.ones(50, bool)).shape == (50, 8)


# ----------------------------------------------------------------------------------- synthetic sequences
def _synthetic(root: Path, n_train=10, n_val=4, n=160, dim=12, seed=0):
    """Piecewise-constant labels over 4 classes; per-frame features = weak class signal + strong noise. The
    cached 'logits' are a per-frame logistic regression, i.e. the best per-frame classifier of this data."""
    from sklearn.linear_model import LogisticRegression

    from abawkit.io import save_npz

    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(4, dim)) * 0.55
    vids, feats = [], {}
    for i in range(n_train + n_val):
        y = np.zeros(n, np.int64)
        t = 0
        while t < n:
            length = int(rng.integers(25, 60))
            y[t:t + length] = rng.integers(0, 4)
            t += length
        x = protos[y] + rng.normal(size=(n, dim))
        face = rng.random(n) > 0.1
        x[~face] = 0
        split = "Train_Set" if i < n_train else "Validation_Set"
        vids.append({"video_id": f"s{i}", "split": split, "video_name": f"s{i}", "n_frames": n})
        feats[f"s{i}"] = (x, face, y)
    train_x = np.concatenate([feats[v["video_id"]][0][feats[v["video_id"]][1]] for v in vids[:n_train]])
    train_y = np.concatenate([feats[v["video_id"]][2][feats[v["video_id"]][1]] for v in vids[:n_train]])
    clf = LogisticRegression(max_iter=500).fit(train_x, train_y)
    for vid, (x, face, y) in feats.items():
        logits = np.full((n, 8), -20.0, np.float32)
        logits[:, :4] = clf.decision_function(x)
        logits[~face] = 0
        save_npz(root / "features" / f"{vid}.npz", embeddings=x.astype(np.float16), has_face=face, logits=logits)
    videos = pd.DataFrame(vids)
    videos["holdout"] = videos["video_name"].isin(holdout_groups(videos, 0.2, seed))
    frames = pd.DataFrame([{"video_id": vid, "frame": k + 1, "label": int(lab)} for vid, (_, _, y) in feats.items()
                           for k, lab in enumerate(y)])
    return Manifest(path=root, root=root, videos=videos, frames=frames), root / "features"


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    manifest, features = _synthetic(root)
    out = root / "temporal"
    config = build(TemporalTrainConfig, dict(window=32, depth=1, heads=2, width=32, dropout=0.1, epochs=25,
                                             batch_size=16, lr=3e-3, progress=False, label_smoothing=0.0,
                                             features_dir=str(features), out_dir=str(out)))
    summary = train_temporal(config, manifest)
    return manifest, features, out, summary


def test_temporal_encoder_beats_per_frame_classifier(synthetic_run):
    _, _, out, summary = synthetic_run
    table = pd.read_csv(out / "comparison.csv").set_index("stage")
    assert list(table.columns) == ["macro_f1", *CLASSES]
    assert list(table.index) == ["frame model", "frame model + smoothing", "+ temporal encoder", "+ post-processing"]
    frame, temporal = table.loc["frame model", "macro_f1"], table.loc["+ temporal encoder", "macro_f1"]
    assert temporal > frame + 0.1, table
    assert summary["select"] == "validation"  # the default
    assert abs(summary["best_val_macro_f1"] - temporal) < 1e-6
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 25 and {"epoch", "train_loss", "val_macro_f1"} <= set(metrics.columns)
    for name in ("best.pt", "last.pt", "postprocess.json", "run_record.json"):
        assert (out / name).is_file()
    payload = torch.load(out / "best.pt", weights_only=True)
    assert payload["config"]["window"] == 32 and payload["holdout_videos"]  # post-processing fold held out
    assert not set(payload["holdout_videos"]) & set(payload["train_videos"])


def test_predict_split_applies_saved_postprocessing(synthetic_run, tmp_path):
    from abawkit.predictions import load_video_predictions

    manifest, features, out, _ = synthetic_run
    post = PostProcess.load(out / "postprocess.json")
    written = predict_split(out, features, manifest, ["Validation_Set"], tmp_path / "pred", progress=False)
    assert len(written) == 4
    pred = load_video_predictions(tmp_path / "pred", "s10")
    np.testing.assert_allclose(pred["probs"], post.apply(pred["probs_raw"], pred["has_face"]), atol=1e-6)
    np.testing.assert_allclose(pred["probs"].sum(1), 1.0, atol=1e-5)
    # a different saved bias is re-applied at prediction time
    PostProcess(window=1, bias=(0, 0, 0, 0, 0, 0, 0, 9.0)).save(out / "alt" / "postprocess.json")
    (out / "alt" / "best.pt").write_bytes((out / "best.pt").read_bytes())
    predict_split(out / "alt", features, manifest, ["Validation_Set"], tmp_path / "alt", progress=False)
    assert (load_video_predictions(tmp_path / "alt", "s10")["probs"].argmax(1) == 7).all()


# ------------------------------------------------------------------------------------------ post-processing
def test_fill_interpolates_between_face_neighbours_and_copies_at_edges():
    probs = np.zeros((7, 8), np.float32)
    probs[1, 0] = 1.0
    probs[5, 4] = 1.0
    face = np.array([0, 1, 0, 0, 0, 1, 0], bool)
    out = fill_no_face(probs, face)
    np.testing.assert_allclose(out[[2, 3, 4], 0], [0.75, 0.5, 0.25])  # fades from the earlier face frame ...
    np.testing.assert_allclose(out[[2, 3, 4], 4], [0.25, 0.5, 0.75])  # ... into the later one
    np.testing.assert_allclose(out[0], probs[1])
    np.testing.assert_allclose(out[6], probs[5])
    np.testing.assert_allclose(out[face], probs[face])


def test_smoothing_is_centered_and_keeps_constant_signal():
    probs = np.zeros((21, 8), np.float32)
    probs[10, 2] = 1.0
    out = smooth(probs, 5)
    np.testing.assert_allclose(out[8:13, 2], 0.2)
    assert out[7, 2] == 0 and out[13, 2] == 0  # symmetric: two frames each side, no more
    const = np.full((9, 8), 0.125, np.float32)
    np.testing.assert_allclose(smooth(const, 7), const, atol=1e-7)  # edges average only existing frames
    np.testing.assert_allclose(smooth(probs, 1), probs)


def test_bias_tuning_never_lowers_fold_f1_and_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    for seed in range(5):
        rng = np.random.default_rng(seed)
        y = rng.choice(8, size=600, p=[0.4, 0.05, 0.02, 0.03, 0.2, 0.1, 0.1, 0.1])
        logp = np.log(rng.dirichlet(np.ones(8), size=600)) + 1.5 * np.eye(8)[y] * rng.random((600, 1))
        bias, tuned = tune_bias(logp, y)
        base = fast_macro_f1(y, logp.argmax(1))
        assert tuned >= base and abs(tuned - fast_macro_f1(y, (logp + bias).argmax(1))) < 1e-12
    from abawkit.metrics import macro_f1

    assert abs(fast_macro_f1(y, logp.argmax(1)) - macro_f1(y, logp.argmax(1))) < 1e-12
    probs = [rng.dirichlet(np.ones(8), size=120).astype(np.float32) for _ in range(3)]
    labels = [rng.integers(0, 8, 120) for _ in range(3)]
    faces = [rng.random(120) > 0.2 for _ in range(3)]
    post = fit_postprocess(probs, faces, labels)
    assert post.fit_info["fold_f1_biased"] >= post.fit_info["fold_f1_smoothed"]
    post.save(tmp_path / "postprocess.json")
    back = PostProcess.load(tmp_path / "postprocess.json")
    assert back.window == post.window and np.allclose(back.bias, post.bias)
    np.testing.assert_allclose(back.apply(probs[0], faces[0]), post.apply(probs[0], faces[0]))



def test_biases_are_not_fitted_on_a_fold_that_lacks_classes_and_need_a_real_gain():
    rng = np.random.default_rng(3)
    y = rng.choice([0, 4, 6], size=400)  # a one-video fold: five classes absent
    probs = rng.dirichlet(np.ones(8), size=400).astype(np.float32) + 0.3 * np.eye(8, dtype=np.float32)[y]
    raw_bias, _ = tune_bias(np.log(probs), y)
    assert np.any(raw_bias != 0)  # the unguarded search does move the biases
    post = fit_postprocess([probs], [np.ones(400, bool)], [y])
    assert post.bias == (0.0,) * 8 and "not tuned" in post.fit_info["bias"] and "Anger" in post.fit_info["bias"]
    assert post.fit_info["fold_class_frames"][1] == 0
    y_all = np.concatenate([y, np.repeat(np.arange(8), 40)])
    probs_all = np.concatenate([probs, rng.dirichlet(np.ones(8), size=320).astype(np.float32)])
    tuned = fit_postprocess([probs_all], [np.ones(len(y_all), bool)], [y_all], windows=(1,))
    assert tuned.fit_info["fold_f1_biased"] > tuned.fit_info["fold_f1_smoothed"] and any(tuned.bias)
    strict, score = tune_bias(np.log(probs_all), y_all, min_gain=1.0)  # no step gains a whole point
    assert not strict.any() and score == fast_macro_f1(y_all, np.log(probs_all).argmax(1))

# -------------------------------------------------------------------------------------------- feature cache
def test_feature_cache_format_resume_and_single_video_loading(tiny_manifest, tmp_path):
    import cv2

    from abawkit.frame_model import FrameModelConfig, build_frame_model, save_frame_checkpoint

    torch.manual_seed(0)
    ckpt = save_frame_checkpoint(tmp_path / "frame.pt", build_frame_model(FrameModelConfig(image_size=32)).eval())
    counts = video_frame_counts(tiny_manifest)
    crops = tmp_path / "crops"
    rng = np.random.default_rng(0)
    faces = {}
    for vid, n in counts.items():
        face = rng.random(n) > 0.3
        face[-1] = False
        faces[vid] = face
        (crops / vid).mkdir(parents=True)
        for f in np.flatnonzero(face) + 1:
            cv2.imwrite(str(crops / vid / f"{f:05d}.jpg"), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    feats = tmp_path / "features"
    cfg = FeatureConfig(checkpoint=str(ckpt), crops_dir=str(crops), features_dir=str(feats), batch_size=64, workers=0,
                        progress=False)
    written = extract_features(cfg, tiny_manifest)
    assert len(written) == len(counts) == len(tiny_manifest.videos)
    test_rows = {}
    for vid, frame in tiny_manifest.test_order():
        test_rows[vid] = test_rows.get(vid, 0) + 1
    for vid, n in counts.items():
        with np.load(feats / f"{vid}.npz") as d:  # plain numpy opens it
            assert d["embeddings"].dtype == np.float16 and d["embeddings"].shape == (n, 512)
            assert d["logits"].dtype == np.float32 and d["logits"].shape == (n, 8)
            np.testing.assert_array_equal(d["has_face"], faces[vid])
            assert not d["embeddings"][~faces[vid]].any() and d["embeddings"][faces[vid]].any()
        if vid in test_rows:
            assert n == test_rows[vid]
        else:
            assert n == len(tiny_manifest.labels(vid))
    # resume: nothing recomputed; a deleted video alone is redone
    assert extract_features(cfg, tiny_manifest) == []
    victim = next(iter(counts))
    (feats / f"{victim}.npz").unlink()
    assert [p.name for p in extract_features(cfg, tiny_manifest)] == [f"{victim}.npz"]
    # loading one video reads only its own file: a broken neighbour does not matter
    other = [v for v in counts if v != victim][0]
    (feats / f"{other}.npz").write_bytes(b"broken")
    assert load_video_features(feats, victim)["embeddings"].shape[0] == counts[victim]


# ------------------------------------------------------------------------------------------------ commands
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "abawkit.cli", *args], capture_output=True, text=True, cwd=REPO)


@pytest.mark.slow
def test_cli_help_and_user_errors(tmp_path):
    for cmd, word in (("extract-features", "--checkpoint"), ("train-temporal", "--window"), ("predict", "--temporal")):
        res = _cli(cmd, "--help")
        assert res.returncode == 0 and word in res.stdout
    res = _cli("extract-features", "--checkpoint", "x.pt", "--crops", str(tmp_path / "nope"), "--manifest",
               str(tmp_path), "--out", str(tmp_path / "f"))
    assert res.returncode == 2 and "nope" in res.stderr and "Traceback" not in res.stderr
    res = _cli("train-temporal", "--features", str(tmp_path), "--manifest", str(tmp_path / "nomanifest"),
               "--out", str(tmp_path / "t"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
