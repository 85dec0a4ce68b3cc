"""Dataset distillation by distribution matching (``abawkit distill``): the loss formula, the siamese
augmentation, that distillation lowers the loss, the outputs, bad input and resuming. Images are
scikit-learn's handwritten digits (real data), upsampled to 24 px RGB, one digit per expression class."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from abawkit.config import ConfigError, build
from abawkit.errors import UserError
from abawkit.labels import CLASSES
from abawkit.omni.config import DistillConfig
from abawkit.omni.distill import augmentation, distill, matching_loss, siamese
from abawkit.semisup.data import DataError, frames_from_csv

SIZE = 24
#: Three classes with labeled images: Neutral, Anger, Disgust (digits 0, 1, 2); the other five have none.
PRESENT = CLASSES[:3]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    """``labeled.csv`` of 10 digit images per present class (paths relative to the CSV), as class names."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    rows = []
    for index, name in enumerate(PRESENT):
        for k, image in enumerate(digits.images[digits.target == index][:10]):
            grey = cv2.resize((image * 255 / 16).astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            (root / "images").mkdir(exist_ok=True)
            cv2.imwrite(str(root / "images" / f"{name}_{k}.png"), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
            rows.append((f"images/{name}_{k}.png", name))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(root / "labeled.csv", index=False)
    return root / "labeled.csv"


def tiny(csv, out, **overrides) -> DistillConfig:
    values = dict(labeled_csvs=(str(csv),), out_dir=str(out), image_size=SIZE, per_class=2, iterations=3,
                  real_batch=8, eval_draws=2, network="test_efficientnet", progress=False)
    return build(DistillConfig, {**values, **overrides})


@pytest.fixture(scope="module")
def distilled(digits_csv, tmp_path_factory):
    """One small run shared by the output tests (real data, a timm test network)."""
    cfg = tiny(digits_csv, tmp_path_factory.mktemp("distilled") / "out")
    return cfg, distill(cfg)


def test_matching_loss_is_zero_for_identical_embeddings_and_the_squared_distance_of_the_means():
    rng = np.random.default_rng(0)
    real, syn = rng.normal(size=(7, 5)), rng.normal(1.0, 2.0, size=(3, 5))
    expected = float(np.sum((real.mean(axis=0) - syn.mean(axis=0)) ** 2))
    assert float(matching_loss(torch.tensor(real), torch.tensor(syn))) == pytest.approx(expected, rel=1e-5)
    assert float(matching_loss(torch.tensor(real), torch.tensor(real))) == 0.0
    # only the means count: a set and its mean, repeated, are one point
    mean = torch.tensor(real).mean(0, keepdim=True).repeat(2, 1)
    assert float(matching_loss(torch.tensor(real), mean)) == pytest.approx(0.0, abs=1e-10)


def test_siamese_augmentation_applies_one_draw_to_both_batches():
    torch.manual_seed(0)
    aug = augmentation(SIZE)
    image = torch.rand(1, 3, SIZE, SIZE)
    syn = image.repeat(2, 1, 1, 1).requires_grad_(True)
    for _ in range(5):
        real_aug, syn_aug = siamese(aug, image.repeat(6, 1, 1, 1), syn)
        assert real_aug.shape == (6, 3, SIZE, SIZE) and syn_aug.shape == (2, 3, SIZE, SIZE)
        torch.testing.assert_close(syn_aug, real_aug[:2])  # identical inputs, identical outputs: one draw
        torch.testing.assert_close(real_aug, real_aug[:1].expand_as(real_aug))
    assert not torch.allclose(real_aug[:1], image)  # it does augment
    syn_aug.sum().backward()
    assert syn.grad is not None and syn.grad.abs().sum() > 0  # differentiable: gradients reach the pixels


def test_distillation_lowers_the_matching_loss_on_fixed_draws(digits_csv, tmp_path):
    cfg = tiny(digits_csv, tmp_path / "out", network="resnet10t", iterations=10, eval_draws=3)
    summary = distill(cfg).summary.set_index("class").loc[list(PRESENT)]
    assert (summary["final_loss"] < summary["initial_loss"]).all(), summary


def test_outputs_keep_shape_dtype_range_and_distilled_csv_reads_back(distilled):
    cfg, result = distilled
    out = result.out
    table = frames_from_csv(out / "distilled.csv")
    assert table["label"].tolist() == [i for i in range(len(PRESENT)) for _ in range(cfg.per_class)]
    for path in table["path"]:
        image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert 0 <= image.min() and image.max() <= 255 and image.std() > 0
    assert sorted(p.name for p in (out / "images" / "Anger").iterdir()) == ["000.png", "001.png"]
    summary = pd.read_csv(out / "summary.csv")
    assert summary["class"].tolist() == list(CLASSES)
    assert summary.loc[summary["class"].isin(PRESENT), "per_class"].tolist() == [2, 2, 2]
    assert summary.loc[summary["class"].isin(PRESENT), ["initial_loss", "final_loss", "seconds"]].notna().all().all()
    assert cv2.imread(str(out / "distilled.png")) is not None
    assert (out / "run_record.json").is_file()
    assert not list(out.rglob("*.tmp"))


def test_a_class_without_examples_is_a_warning_and_the_others_distil(digits_csv, tmp_path, capsys):
    result = distill(tiny(digits_csv, tmp_path / "out", iterations=1))
    summary = result.summary.set_index("class")
    err = capsys.readouterr().err
    for name in CLASSES[3:]:
        assert f"class {name} has no labeled example" in summary.loc[name, "warning"]
        assert f"class {name} has no labeled example" in err
        assert not (tmp_path / "out" / "images" / name).exists()
    assert set(result.distilled["label"]) == set(PRESENT)


def test_more_images_per_class_than_real_ones_start_from_repeats_plus_noise_and_warn(tmp_path, digits_csv, capsys):
    few = tmp_path / "few.csv"
    table = pd.read_csv(digits_csv)
    table["path"] = [str(digits_csv.parent / p) for p in table["path"]]
    table.groupby("label").head(2).to_csv(few, index=False)
    result = distill(tiny(few, tmp_path / "out", per_class=3, iterations=1, lr=1e-6))
    row = result.summary.set_index("class").loc["Neutral"]
    assert "2 real image(s) for per_class 3" in row["warning"] and "per_class 3" in capsys.readouterr().err
    images = [cv2.imread(str(tmp_path / "out" / "images" / "Neutral" / f"{k:03d}.png")).astype(int) for k in range(3)]
    assert 0 < np.abs(images[2] - images[0]).mean() < 20  # image 2 is image 0 (2 mod 2 real ones) plus noise


def test_missing_or_empty_labeled_csv_is_an_error_naming_the_file(tmp_path):
    with pytest.raises(UserError, match="no labeled CSV given"):
        distill(build(DistillConfig, {"out_dir": str(tmp_path / "out")}))
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    with pytest.raises(DataError, match=f"{empty}.*no labeled row"):
        distill(build(DistillConfig, {"labeled_csvs": (str(empty),), "out_dir": str(tmp_path / "out")}))


@pytest.mark.parametrize("setting", [{"image_size": 15}, {"iterations": 0}, {"per_class": 0}, {"momentum": 1.0}])
def test_unusable_settings_are_config_errors_naming_the_value(setting):
    name, value = next(iter(setting.items()))
    with pytest.raises(ConfigError, match=f"{name} {value}"):
        build(DistillConfig, setting)


def test_a_rerun_skips_finished_classes_and_refuses_other_settings(distilled, tmp_path):
    from abawkit.cli import main

    cfg, first = distilled
    png = first.out / "images" / "Neutral" / "000.png"
    before = png.stat().st_mtime_ns
    (first.out / "images" / "Disgust" / "001.png").unlink()  # an unfinished class is distilled again
    argv = ["distill", "--labeled-csv", cfg.labeled_csvs[0], "--out", cfg.out_dir, "--image-size", str(SIZE),
            "--per-class", "2", "--iterations", "3", "--real-batch", "8", "--eval-draws", "2",
            "--network", "test_efficientnet", "--no-progress"]
    assert main(argv) == 0
    again = pd.read_csv(first.out / "summary.csv")
    assert png.stat().st_mtime_ns == before
    assert (first.out / "images" / "Disgust" / "001.png").is_file()
    assert again.loc[again["class"] == "Neutral", "seconds"].item() == first.summary.loc[0, "seconds"]
    assert len(frames_from_csv(first.out / "distilled.csv")) == 6
    assert main(argv[:-1] + ["--iterations", "4", "--no-progress"]) == 2  # other settings into the same OUT
