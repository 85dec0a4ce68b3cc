"""The figure functions the stage notebooks call return a matplotlib Figure (and save it when given a path), on
small synthetic inputs; the tables beside them count what they claim."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from abawkit.features import FeatureError, labeled_embeddings
from abawkit.io import save_npz
from abawkit.labels import CLASSES
from abawkit.manifest import COUNT_COLUMNS, class_counts_by_split
from abawkit.report import (class_share_figure, embedding_pca_figure, first_frames_figure, frames_per_subject_figure,
                            stage_timelines_figure, temporal_curves_figure)


def _videos() -> pd.DataFrame:
    rows = [("a", "Train_Set", 30, [3, 0, 0, 0, 5, 0, 0, 2]), ("b", "Train_Set", 20, [1, 1, 0, 0, 0, 0, 0, 0]),
            ("c", "Validation_Set", 25, [0, 0, 0, 0, 4, 0, 0, 0]), ("d", "Test_Set", 40, [0] * 8)]
    return pd.DataFrame([{"video_id": v, "split": s, "n_frames": n, **dict(zip(COUNT_COLUMNS, c))}
                         for v, s, n, c in rows])


def test_class_counts_by_split_sums_labeled_splits_only():
    counts = class_counts_by_split(SimpleNamespace(videos=_videos()))
    assert list(counts.index) == ["Train_Set", "Validation_Set"]  # Test_Set has no labels
    assert list(counts.columns) == list(CLASSES)
    assert counts.loc["Train_Set"].tolist() == [4, 1, 0, 0, 5, 0, 0, 2]


def test_class_share_figure_returns_a_figure_and_saves_it(tmp_path):
    fig = class_share_figure(class_counts_by_split(SimpleNamespace(videos=_videos())), path=tmp_path / "share.png")
    assert isinstance(fig, Figure) and len(fig.axes[0].patches) == 2 * len(CLASSES)  # 2 splits x 8 classes
    assert (tmp_path / "share.png").stat().st_size > 0


def test_frames_per_subject_figure_has_one_bar_per_subject():
    fig = frames_per_subject_figure(_videos())
    assert isinstance(fig, Figure)
    assert sorted(p.get_height() for p in fig.axes[0].patches) == [20, 25, 30, 40]


def test_first_frames_figure_shows_each_readable_video(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for k in range(3):
        writer.write(np.full((24, 32, 3), 60 * k, np.uint8))
    writer.release()
    videos = pd.DataFrame({"video_id": ["clip", "gone"], "video_name": ["clip", "gone"],
                           "video_path": [str(path), ""], "problems": ["", "no video file"]})
    manifest = SimpleNamespace(videos=videos, labels=lambda vid: np.array([4, 4, 4]))
    fig = first_frames_figure(manifest)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert fig.axes[0].get_title().endswith("frame 1: Happiness")


def test_embedding_pca_figure_draws_at_most_max_points(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)).astype(np.float16), rng.integers(0, 8, 50)
    fig = embedding_pca_figure(x, y, max_points=20, path=tmp_path / "pca.png")
    assert isinstance(fig, Figure) and (tmp_path / "pca.png").is_file()
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 20


def test_labeled_embeddings_keeps_face_frames_with_a_label(tmp_path):
    save_npz(tmp_path / "a.npz", embeddings=np.arange(8, dtype=np.float16).reshape(4, 2),
             has_face=np.array([True, True, False, True]), logits=np.zeros((4, 8), np.float32))
    manifest = SimpleNamespace(path=tmp_path, video_ids=lambda split: ["a"] if split == "Train_Set" else [],
                               labels=lambda vid: np.array([2, -1, 3, 5]))
    x, y = labeled_embeddings(tmp_path, manifest)
    assert x.dtype == np.float32 and x.tolist() == [[0, 1], [6, 7]] and y.tolist() == [2, 5]
    with pytest.raises(FeatureError, match="no subject in Validation_Set"):
        labeled_embeddings(tmp_path, manifest, "Validation_Set")


def test_temporal_curves_figure_plots_loss_and_f1_per_epoch():
    metrics = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.2], "val_macro_f1": [0.1, 0.2, 0.25]})
    fig = temporal_curves_figure(metrics)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[1].lines[0].get_ydata().tolist() == [0.1, 0.2, 0.25]
    # the held-out videos' and the cross-validation's curves, each with its best epoch marked
    metrics["holdout_macro_f1"] = [0.3, 0.1, 0.2]
    cv = pd.DataFrame({"epoch": [1, 2, 3, 1, 2, 3], "fold": ["0"] * 3 + ["all"] * 3,
                       "macro_f1": [0.0, 0.0, 0.0, 0.2, 0.4, 0.3]})
    lines = temporal_curves_figure(metrics, cv_epochs=cv).axes[1].lines
    assert [line.get_ydata().tolist() for line in lines[1::2]] == [[0.25], [0.3], [0.4]]
    assert lines[4].get_ydata().tolist() == [0.2, 0.4, 0.3]
    assert len(temporal_curves_figure(metrics, cv_epochs="absent.csv").axes[1].lines) == 4


def test_stage_timelines_figure_draws_truth_frame_model_and_final_per_video():
    from abawkit.postprocess import PostProcess
    from abawkit.temporal.data import VideoFeatures
    from abawkit.temporal.model import TemporalConfig, build_temporal_model

    rng = np.random.default_rng(0)
    model = build_temporal_model(TemporalConfig(window=16, depth=1, heads=2, width=16), embed_dim=8)
    videos = [VideoFeatures(f"v{i}", rng.normal(size=(30, 8)).astype(np.float32), rng.random(30) > 0.2,
                            rng.normal(size=(30, 8)).astype(np.float32), rng.integers(-1, 8, 30)) for i in range(2)]
    fig = stage_timelines_figure(videos, model, PostProcess())
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [len(ax.lines) for ax in fig.axes] == [3, 3] and fig.axes[1].get_title() == "v1"
