"""Omni-supervised selection (prototypes, similarity, margin, per-class cap, streaming in chunks, resumption, bad
input) and the frame trainer's several labeled CSVs with their sampling weights."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from abawkit.labels import CLASSES
from abawkit.omni.select import (SelectConfig, cap_per_class, class_prototypes, normalize, passes, score,
                                 select_faces)


def test_prototypes_are_the_centred_class_means():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 5)) + 2.0
    labels = np.repeat([0, 3, 5], 10)
    protos, owner, centre = class_prototypes(emb, labels)
    means = np.stack([emb[labels == c].mean(0) for c in (0, 3, 5)])
    assert owner.tolist() == [0, 3, 5]
    np.testing.assert_allclose(centre, means.mean(0))
    np.testing.assert_allclose(protos, normalize(means - means.mean(0)))
    protos2, owner2, _ = class_prototypes(emb, labels, per_class=3)  # k-means: up to 3 per class
    assert protos2.shape == (9, 5) and sorted(set(owner2.tolist())) == [0, 3, 5]


def _probs(classes, n=8):
    p = np.full((len(classes), n), 0.01)
    p[np.arange(len(classes)), classes] = 1 - 0.01 * (n - 1)
    return p


def test_a_face_equidistant_to_two_prototypes_is_rejected_by_the_margin():
    protos, owner, centre = np.eye(3)[:2], np.array([0, 1]), np.zeros(3)
    mid = np.array([[1.0, 1.0, 0.0]])
    s = score(mid, _probs([0]), protos, owner, centre)
    assert s["similarity"][0] == pytest.approx(np.sqrt(0.5)) and s["margin"][0] == pytest.approx(0.0)
    assert not passes(s, SelectConfig(min_similarity=0.5, margin=0.05))[0]
    assert passes(s, SelectConfig(min_similarity=0.5, margin=0.0))[0]  # the margin alone rejected it
    near = score(np.array([[1.0, 0.2, 0.0]]), _probs([0]), protos, owner, centre)
    assert passes(near, SelectConfig(min_similarity=0.5, margin=0.05))[0]
    disagree = score(np.array([[1.0, 0.2, 0.0]]), _probs([1]), protos, owner, centre)  # the classifier says 1
    assert not passes(disagree, SelectConfig(min_similarity=0.5, margin=0.05))[0]


def test_an_image_far_from_every_prototype_is_not_selected():
    protos, owner, centre = np.eye(3)[:2], np.array([0, 1]), np.zeros(3)
    far = score(np.array([[0.05, 0.0, 1.0]]), _probs([0]), protos, owner, centre)  # nearly orthogonal to both
    assert far["nearest"][0] == 0 and far["margin"][0] > 0.04
    assert not passes(far, SelectConfig(min_similarity=0.5, margin=0.0))[0]


def test_per_class_cap_keeps_the_most_similar_first():
    cand = pd.DataFrame({"path": list("abcdefg"), "label": [0, 0, 0, 2, 2, 0, 2],
                         "similarity": [0.7, 0.9, 0.8, 0.6, 0.95, 0.75, 0.65], "confidence": [0.5] * 7})
    out = cap_per_class(cand, SelectConfig(per_class=2))
    assert out["path"].tolist() == ["b", "c", "e", "g"]
    assert len(cap_per_class(cand, SelectConfig(per_class=None))) == 7
    rnd = cap_per_class(cand, SelectConfig(per_class=2, rule="random"))
    assert rnd.groupby("label").size().tolist() == [2, 2]


@pytest.fixture(scope="module")
def digits_world(tmp_path_factory):
    """Real images (scikit-learn's digits 0-7 as 32 px RGB, the digit as the class), a labeled CSV, a folder of
    unlabeled ones and a frame-model checkpoint (untrained resnet10t: the mechanics, not the accuracy)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from abawkit.frame_model import FrameModel, FrameModelConfig, save_frame_checkpoint

    root = tmp_path_factory.mktemp("omni")
    d = load_digits()
    keep = np.flatnonzero(d.target < 8)[:140]
    rows = []
    for k, i in enumerate(keep):
        img = (d.images[i] / 16 * 255).astype(np.uint8)
        img = np.stack([np.kron(img, np.ones((4, 4), np.uint8))] * 3, -1)
        folder = root / ("labeled" if k < 100 else "unlabeled/sub")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{k:03d}.png")
        if k < 100 and d.target[i] != 7:  # no labeled example of the last class
            rows.append((f"labeled/{k:03d}.png", CLASSES[d.target[i]]))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(root / "labeled.csv", index=False)
    import torch

    torch.manual_seed(0)
    model = FrameModel(FrameModelConfig(image_size=32))
    save_frame_checkpoint(root / "model.pt", model)
    return root


def _select(world, out, **kw):
    base = dict(checkpoint=str(world / "model.pt"), labeled_csv=(str(world / "labeled.csv"),),
                image_dirs=(str(world / "unlabeled"),), out_dir=str(out), chunk=16, batch_size=8, progress=False,
                min_similarity=-1.0, margin=0.0, agree=False, per_class=3)
    base.update(kw)
    return SelectConfig(**base)


def test_select_faces_streams_in_chunks_writes_a_labeled_csv_and_resumes(digits_world, tmp_path):
    import torch

    from abawkit.semisup.data import frames_from_csv

    torch.set_num_threads(1)
    out = tmp_path / "sel"
    result = select_faces(_select(digits_world, out))
    parts = sorted((out / "scores").glob("part_*.csv"))
    assert len(parts) == 3  # 40 images in chunks of 16: no more than a chunk of scores in memory
    assert sum(len(pd.read_csv(p)) for p in parts) == 40
    assert "embedding" not in pd.read_csv(parts[0]).columns.str.cat()
    sel = pd.read_csv(out / "selected.csv")
    assert list(sel.columns) == ["path", "label", "similarity", "margin", "confidence"]
    assert result["selected"] == len(sel) and sel.groupby("label").size().max() <= 3
    table = frames_from_csv(out / "selected.csv")  # usable as a --labeled-csv of train-frame
    assert len(table) == len(sel) and all(os.path.isfile(p) for p in table["path"])
    summary = pd.read_csv(out / "summary.csv")
    assert "no labeled example of Other" in summary.set_index("class").loc["Other", "warning"]
    assert summary.set_index("class").loc["Other", "n_selected"] == 0
    assert (out / "selected.png").is_file() and (out / "run_record.json").is_file()
    # a re-run keeps the finished chunks; one removed is scored again
    before = {p.name: p.stat().st_mtime_ns for p in parts}
    parts[1].unlink()
    select_faces(_select(digits_world, out))
    after = {p.name: p.stat().st_mtime_ns for p in sorted((out / "scores").glob("part_*.csv"))}
    assert after["part_00000.csv"] == before["part_00000.csv"] and after["part_00002.csv"] == before["part_00002.csv"]
    assert "part_00001.csv" in after


def test_select_faces_bad_input_names_the_folder_or_file(digits_world, tmp_path):
    from abawkit.errors import UserError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=str(empty)):
        select_faces(_select(digits_world, tmp_path / "a", image_dirs=(str(empty),)))
    other = tmp_path / "other.pt"
    import torch

    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(UserError, match="other.pt"):
        select_faces(_select(digits_world, tmp_path / "b", checkpoint=str(other)))
    with pytest.raises(ValueError, match="per_class 0"):
        SelectConfig(per_class=0)


def test_class_uniform_sampler_draws_within_a_class_in_proportion_to_the_weights():
    from abawkit.semisup.sampler import ClassUniformBatchSampler

    labels = np.array([0, 0, 0, 1])
    weights = np.array([1.0, 1.0, 2.0, 1.0])
    it = iter(ClassUniformBatchSampler(labels, 64, seed=0, weights=weights))
    rows = np.array([i for _ in range(100) for i, _ in next(it)])
    share = np.bincount(rows, minlength=4) / len(rows)
    assert share[3] == pytest.approx(0.5, abs=0.03)  # classes stay uniform
    assert share[2] / share[0] == pytest.approx(2.0, rel=0.15)  # weight 2 drawn twice as often
    same = iter(ClassUniformBatchSampler(labels, 8, seed=0, weights=np.ones(4)))
    plain = iter(ClassUniformBatchSampler(labels, 8, seed=0))
    assert next(same) == next(plain)  # equal weights: the unweighted stream


def test_trainer_reads_several_labeled_csvs_with_their_weights(digits_world, tmp_path):
    from abawkit.semisup.config import TrainConfig, preset
    from abawkit.semisup.train import load_tables

    second = tmp_path / "second.csv"
    pd.read_csv(digits_world / "labeled.csv").head(10).assign(
        path=lambda d: [str(digits_world / p) for p in d["path"]]).to_csv(second, index=False)
    cfg = TrainConfig(labeled_csv=(str(digits_world / "labeled.csv"), str(second)), labeled_weight=(1.0, 0.25),
                      semisup=preset("supervised"))
    train, _, _ = load_tables(cfg)
    n_first = len(pd.read_csv(digits_world / "labeled.csv"))
    assert len(train) == n_first + 10
    assert train["weight"].tolist() == [1.0] * n_first + [0.25] * 10
    with pytest.raises(ValueError, match="one weight per --labeled-csv"):
        TrainConfig(labeled_csv=(str(second),), labeled_weight=(1.0, 0.5))
    from abawkit.config import cli

    parsed = cli(TrainConfig, ["--labeled-csv", "a.csv", "--labeled-csv", "b.csv", "--labeled-weight", "0.5",
                               "--labeled-weight", "2"], prog="t")
    assert parsed.labeled_csv == ("a.csv", "b.csv") and parsed.labeled_weight == (0.5, 2.0)
