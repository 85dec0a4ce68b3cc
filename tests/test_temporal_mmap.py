"""Temporal stage over memory-mapped feature files: the same windows as in memory, streamed normalization
statistics, the compressed-archive fallback and clear errors for broken files."""

from __future__ import annotations

import io
import mmap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from abawkit.config import build
from abawkit.errors import UserError
from abawkit.features import FeatureError, load_video_features, open_video_features
from abawkit.io import save_npz
from abawkit.manifest import Manifest
from abawkit.temporal.config import TemporalTrainConfig
from abawkit.temporal.data import WindowDataset, face_feature_stats, load_videos
from abawkit.temporal.model import TemporalConfig, build_temporal_model
from abawkit.temporal.predict import predict_logits
from abawkit.temporal.train import train_temporal

torch.set_num_threads(1)  # 2 threads on shared cores spin-wait


def _feature_tree(root: Path, lengths=(150, 40, 97, 64, 1), dim=12, split_at=3, seed=0, mean=0.0):
    """A feature folder in the cache format (videos of the given lengths) and a manifest whose annotation
    lengths match; the first ``split_at`` subjects train, the others validate."""
    rng = np.random.default_rng(seed)
    videos, frames = [], []
    for i, n in enumerate(lengths):
        face = rng.random(n) > 0.15
        emb = (mean + rng.normal(size=(n, dim))).astype(np.float16)
        emb[~face] = 0
        save_npz(root / "features" / f"s{i}.npz", embeddings=emb, has_face=face,
                 logits=rng.normal(size=(n, 8)).astype(np.float32))
        videos.append({"video_id": f"s{i}", "split": "Train_Set" if i < split_at else "Validation_Set",
                       "video_name": f"s{i}", "n_frames": n, "holdout": False})
        y = rng.integers(-1, 8, n)
        y[:4] = np.arange(4)[:n]  # every split sees several classes
        frames += [{"video_id": f"s{i}", "frame": k + 1, "label": int(lab)} for k, lab in enumerate(y)]
    manifest = Manifest(path=root, root=root, videos=pd.DataFrame(videos), frames=pd.DataFrame(frames))
    return manifest, root / "features"


def test_memory_mapped_loader_gives_the_same_windows_as_the_in_memory_one(tmp_path):
    manifest, features = _feature_tree(tmp_path)
    ids = manifest.video_ids()
    mapped, loaded = load_videos(features, manifest, ids), load_videos(features, manifest, ids, mmap=False)
    for window, stride in ((64, 32), (16, 5)):
        a, b = WindowDataset(mapped, window, stride), WindowDataset(loaded, window, stride)
        assert a.index == b.index and len(a) > len(ids)
        for i in range(len(a)):
            got, ref = a[i], b[i]
            assert len(got) == len(ref) == 5
            for x, y in zip(got, ref):
                assert x.dtype == y.dtype and x.shape == y.shape
                assert torch.equal(x, y)


def test_memory_mapped_embeddings_are_a_read_only_map_of_the_file_not_a_copy(tmp_path):
    _, features = _feature_tree(tmp_path)
    f = open_video_features(features, "s0")
    emb = f["embeddings"]
    assert isinstance(emb, np.memmap) and isinstance(emb.base, mmap.mmap)
    assert Path(emb.filename) == (features / "s0.npz").resolve() and not emb.flags.writeable
    ref = load_video_features(features, "s0")
    for key in ("embeddings", "has_face", "logits"):
        assert f[key].dtype == ref[key].dtype
        np.testing.assert_array_equal(f[key], ref[key])
    # a window cut from the map is an ordinary array, like one from memory
    model = build_temporal_model(TemporalConfig(window=16, depth=1, heads=2, width=16, dropout=0.0), embed_dim=12).eval()
    np.testing.assert_array_equal(predict_logits(model, emb, f["has_face"], f["logits"]),
                                  predict_logits(model, np.array(emb), f["has_face"], f["logits"]))


@pytest.mark.parametrize("mean", [0.0, 300.0])
def test_streaming_face_statistics_equal_those_of_the_concatenated_face_frames(tmp_path, mean):
    manifest, features = _feature_tree(tmp_path, mean=mean)
    videos = load_videos(features, manifest, manifest.video_ids())
    faces = np.concatenate([v.embeddings[v.has_face].astype(np.float64) for v in videos])
    for chunk in (7, 64, 16384):  # chunks that cut videos, and one chunk per video
        got_mean, got_std, n = face_feature_stats(videos, chunk=chunk)
        assert n == len(faces) and got_mean.dtype == got_std.dtype == np.float32
        np.testing.assert_allclose(got_mean, faces.mean(0), rtol=1e-6)
        np.testing.assert_allclose(got_std, faces.std(0), rtol=1e-5)
    # the float32 concatenation the training used before
    old = np.concatenate([v.embeddings[v.has_face].astype(np.float32) for v in videos])
    got_mean, got_std, _ = face_feature_stats(videos)
    np.testing.assert_allclose(got_mean, old.mean(0), rtol=1e-5)
    np.testing.assert_allclose(got_std, old.std(0), rtol=1e-4)


def test_face_statistics_of_videos_without_any_face_frame_are_empty():
    from abawkit.temporal.data import VideoFeatures

    v = VideoFeatures("a", np.ones((5, 3), np.float16), np.zeros(5, bool), np.zeros((5, 8), np.float32),
                      np.zeros(5, np.int64))
    mean, std, n = face_feature_stats([v])
    assert n == 0 and mean.shape == std.shape == (3,)


def test_training_normalization_comes_from_the_streamed_face_statistics(tmp_path):
    manifest, features = _feature_tree(tmp_path, lengths=(80, 70, 60, 50), split_at=3)
    config = build(TemporalTrainConfig, dict(window=16, depth=1, heads=2, width=16, dropout=0.0, epochs=1,
                                             batch_size=8, progress=False, features_dir=str(features),
                                             out_dir=str(tmp_path / "temporal")))
    train_temporal(config, manifest)
    state = torch.load(tmp_path / "temporal" / "best.pt", weights_only=True)["state_dict"]
    train = load_videos(features, manifest, manifest.video_ids("Train_Set"), mmap=False)
    faces = np.concatenate([v.embeddings[v.has_face].astype(np.float32) for v in train])
    np.testing.assert_allclose(state["feat_mean"].numpy(), faces.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state["feat_std"].numpy(), faces.std(0), rtol=1e-4)


def test_compressed_feature_file_is_read_in_full_with_equal_values(tmp_path):
    manifest, features = _feature_tree(tmp_path)
    with np.load(features / "s1.npz") as d:
        arrays = {k: d[k] for k in d.files}
    np.savez_compressed(features / "s1.npz", **arrays)
    with zipfile.ZipFile(features / "s1.npz") as z:
        assert z.getinfo("embeddings.npy").compress_type == zipfile.ZIP_DEFLATED
    f = open_video_features(features, "s1")
    assert not isinstance(f["embeddings"], np.memmap)
    for key, value in arrays.items():
        np.testing.assert_array_equal(f[key], value)
    mapped = load_videos(features, manifest, ["s0", "s1"])
    assert isinstance(mapped[0].embeddings, np.memmap)
    np.testing.assert_array_equal(mapped[1].embeddings, arrays["embeddings"])


def test_truncated_or_broken_feature_files_name_the_file(tmp_path):
    manifest, features = _feature_tree(tmp_path)
    path = features / "s0.npz"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the zip directory at the end is gone
    with pytest.raises(UserError, match="s0.npz.*truncated"):
        open_video_features(features, "s0")
    with pytest.raises(UserError, match="s0.npz.*truncated"):
        load_videos(features, manifest, ["s0"])
    # a consistent zip whose embeddings member holds fewer bytes than its .npy header says
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros((150, 12), np.float16))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("embeddings.npy", buf.getvalue()[:-100])
    with pytest.raises(UserError, match="s0.npz.*truncated"):
        open_video_features(features, "s0")
    path.write_bytes(b"")
    with pytest.raises(UserError, match="s0.npz"):
        open_video_features(features, "s0")
    path.unlink()
    with pytest.raises(FeatureError, match="s0.npz is missing"):
        open_video_features(features, "s0")


def test_memory_mapped_loader_keeps_the_frame_count_check(tmp_path):
    manifest, features = _feature_tree(tmp_path)
    save_npz(features / "s2.npz", embeddings=np.zeros((10, 12), np.float16), has_face=np.ones(10, bool),
             logits=np.zeros((10, 8), np.float32))
    with pytest.raises(FeatureError, match="s2.npz has 10 rows but the annotation has 97 frames"):
        load_videos(features, manifest, ["s2"])
