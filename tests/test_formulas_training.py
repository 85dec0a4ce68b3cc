"""Formulas of the training loops, against values computed by hand: the frame trainer's EMA decay and its
warm-up, the warm-up + cosine learning rate, the weight-decay and layer-decay groups of the optimizer, the
global step that drives an algorithm's warm-up; the temporal stage's class weights, window sampling weights
and window starts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from abawkit.frame_model import FrameModel, FrameModelConfig
from abawkit.semisup.algorithms import build_algorithm
from abawkit.semisup.config import TrainConfig, preset
from abawkit.semisup.train import make_ema, make_optimizer, make_scheduler
from helpers_algorithms import tiny_batch, tiny_context
from abawkit.temporal.data import (VideoFeatures, WindowDataset, balanced_window_weights, class_counts,
                                   class_weights, window_starts)


# --- EMA of the student (timm ModelEmaV3) ---------------------------------------------------------------------

@pytest.mark.parametrize("t, expected", [(1, 0.0), (2, 1 / 10), (10, 9 / 18), (100, 99 / 108), (891, 890 / 899),
                                         (893, 0.99), (20000, 0.99)])
def test_ema_decay_warms_up_as_t_minus_1_over_t_plus_8_then_caps_at_ema_decay(t, expected):
    # d_t = min(decay, (t-1)/(t+8)) with t the number of optimizer steps done; decay 0.99 caps it from t = 892
    ema = make_ema(nn.Linear(2, 2), decay=0.99)
    assert ema.get_decay(t) == pytest.approx(expected)


def test_ema_decay_reaches_the_configured_value_where_the_warm_up_passes_it():
    ema = make_ema(nn.Linear(2, 2), decay=0.999)
    # (t-1)/(t+8) >= 0.999  <=>  t >= 8992
    assert ema.get_decay(8991) == pytest.approx(8990 / 8999) and ema.get_decay(8991) < 0.999
    assert ema.get_decay(8993) == pytest.approx(0.999) and ema.get_decay(10**6) == pytest.approx(0.999)


def test_ema_update_averages_weights_and_batchnorm_statistics_and_copies_the_counter():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = make_ema(student, decay=0.9)
    assert not any(p.requires_grad for p in ema.parameters())  # never part of a graph
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        student[0].weight.add_(1.0)
    student.train()
    student(torch.randn(16, 3) * 3 + 2)  # moves BatchNorm's running statistics and its counter
    ema.update(student, step=5)
    d = 4 / 13  # (t-1)/(t+8) at t = 5, below the cap 0.9
    now, src = ema.module.state_dict(), student.state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.running_mean", "1.running_var"):
        assert torch.allclose(now[key], d * before[key] + (1 - d) * src[key]), key
    assert now["1.num_batches_tracked"] == src["1.num_batches_tracked"] == 1
    # past the warm-up the decay is ema_decay itself
    prev = ema.module.state_dict()["0.weight"].clone()
    ema.update(student, step=10**5)
    assert torch.allclose(ema.module.state_dict()["0.weight"], 0.9 * prev + 0.1 * student[0].weight)


def test_ema_state_dict_round_trips_for_resume():
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = make_ema(student, decay=0.9)
    with torch.no_grad():
        student[0].weight.mul_(3.0)
    ema.update(student, step=3)
    other = make_ema(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), decay=0.9)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module[0].weight, ema.module[0].weight)


# --- learning rate: linear warm-up then cosine (timm CosineLRScheduler, per step) -----------------------------

def _lr_after(t: int, lr=0.1, steps=100, warmup=10) -> float:
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(TrainConfig(lr=lr, steps=steps, warmup_steps=warmup), opt)
    if t:
        sched.step_update(t)
    return opt.param_groups[0]["lr"]


@pytest.mark.parametrize("t, expected", [
    (0, 0.0),  # the first step: warm-up from 0
    (5, 0.05),  # lr * t / w
    (9, 0.09),  # the last warm-up step
    (10, 0.1),  # end of warm-up: the peak, where the cosine over the remaining T - w steps starts
    (55, 0.05),  # halfway through the cosine: lr / 2
    (75, 0.05 * (1 + math.cos(math.pi * 65 / 90))),
    (100, 0.0),  # the end
])
def test_lr_schedule_warm_up_then_cosine(t, expected):
    assert _lr_after(t) == pytest.approx(expected, abs=1e-12)


def test_lr_schedule_without_warm_up_starts_at_lr():
    assert _lr_after(0, warmup=0) == pytest.approx(0.1)
    assert _lr_after(50, warmup=0) == pytest.approx(0.05)


# --- optimizer: weight decay off for biases and norm weights, optional layer-wise decay ----------------------

def _frame_model() -> FrameModel:
    torch.manual_seed(0)
    return FrameModel(FrameModelConfig(backbone="resnet10t", image_size=32))


def test_optimizer_excludes_biases_and_norm_weights_from_weight_decay():
    model = _frame_model()
    opt = make_optimizer(TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=0.05), model)
    assert isinstance(opt, torch.optim.AdamW)
    decay_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert len(decay_of) == sum(1 for _ in model.parameters())  # every parameter, once
    for name, p in model.named_parameters():
        assert decay_of[id(p)] == (0.05 if p.ndim > 1 else 0.0), name
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)
    sgd = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1, weight_decay=1e-4), model)
    assert isinstance(sgd, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] for g in sgd.param_groups)


def test_layer_decay_scales_lr_by_depth_and_the_schedule_keeps_the_scale():
    model = _frame_model()
    cfg = TrainConfig(lr=0.1, weight_decay=0.05, steps=100, warmup_steps=10, layer_decay=0.5)
    opt = make_optimizer(cfg, model)
    scale_of = {id(p): g["lr_scale"] for g in opt.param_groups for p in g["params"]}
    head = model.backbone.get_classifier()
    stem = next(model.backbone.parameters())
    assert scale_of[id(head.weight)] == 1.0  # the head learns at the full rate
    scales = sorted(set(scale_of.values()))
    # lr_scale = layer_decay^(L-1-i): consecutive layers differ by the factor 0.5, the stem is the lowest
    assert scale_of[id(stem)] == scales[0] < 1.0
    assert np.allclose(np.array(scales[1:]) / np.array(scales[:-1]), 2.0)
    for g in opt.param_groups:  # no weight decay on 1-d parameters there either
        assert g["weight_decay"] == (0.0 if all(p.ndim <= 1 for p in g["params"]) else 0.05)
    sched = make_scheduler(cfg, opt)
    sched.step_update(55)  # halfway through the cosine that follows the 10 warm-up steps
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(0.05 * g["lr_scale"])


# --- the algorithm's warm-up follows the loop's global step ---------------------------------------------------

@pytest.mark.parametrize("algorithm", ["fixmatch", "full"])
def test_unlabeled_warm_up_is_decided_by_the_global_step_not_by_a_count_of_calls(algorithm):
    cfg = TrainConfig(lr=0.1, steps=100, warmup_steps=10)
    # no floor: a tiny untrained model is never 0.95 sure, and the test needs pseudo-labels to pass once it starts
    semi = preset(algorithm, unlabeled_warmup=50, threshold="self-adaptive", debias=True, threshold_floor=0.0)
    algo = build_algorithm(semi, tiny_context(cfg), 8, 16)
    state0 = algo.labeler.state_dict()
    # a resumed run's first call is at step 49: still a warm-up step, though it is the algorithm's first call
    stats = algo.train_step(*tiny_batch(0), step=49)
    assert stats["loss_u"] == 0.0 and stats["mask_rate"] == 0.0
    assert torch.equal(algo.labeler.state_dict()["threshold"]["tau"], state0["threshold"]["tau"])
    assert torch.equal(algo.labeler.state_dict()["debias"]["p_hat"], state0["debias"]["p_hat"])
    # its second call, at step 50, is the first step with the unlabeled parts
    stats = algo.train_step(*tiny_batch(1), step=50)
    assert stats["mask_rate"] > 0.0
    assert not torch.equal(algo.labeler.state_dict()["debias"]["p_hat"], state0["debias"]["p_hat"])
    assert "steps_done" not in algo.state_dict()  # no second count in the checkpoint
    if algorithm == "full":  # the teacher's schedule follows the global step too: lr after 51 steps, 41 of them past the warm-up
        assert algo.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 41 / 90)))


# --- temporal stage: class weights, window sampling weights, window starts ------------------------------------

def test_class_weights_are_inverse_frequency_to_a_power_with_mean_one_over_present_classes():
    counts = np.array([6.0, 3.0, 1.0, 0.0])
    # power 1: freq (0.6, 0.3, 0.1) -> 1/freq (5/3, 10/3, 10), mean 5 -> (1/3, 2/3, 2); absent class 0
    assert np.allclose(class_weights(counts, 1.0), [1 / 3, 2 / 3, 2.0, 0.0])
    # power 0: uniform over present classes
    assert np.allclose(class_weights(counts, 0.0), [1.0, 1.0, 1.0, 0.0])
    # power 0.5: freq^-0.5 = (1.290994, 1.825742, 3.162278), mean 2.093005
    assert np.allclose(class_weights(counts, 0.5), [0.616814, 0.872307, 1.510879, 0.0], atol=1e-6)
    assert np.allclose(class_weights(np.zeros(4), 1.0), 0.0)  # nothing labeled: no weight, no division by 0


def _video(vid: str, labels) -> VideoFeatures:
    n = len(labels)
    return VideoFeatures(vid, np.zeros((n, 2), np.float32), np.ones(n, bool), np.zeros((n, 8), np.float32),
                         np.asarray(labels, np.int64))


def test_balanced_window_weights_are_the_mean_inverse_class_count_of_a_windows_labeled_frames():
    videos = [_video("a", [0, 0, 0, 1, -1, 2]), _video("b", [-1, -1, -1, -1])]
    ds = WindowDataset(videos, window=4, stride=2)
    assert ds.index == [(0, 0), (0, 2), (1, 0)]
    counts = class_counts(videos)
    assert counts[:3].tolist() == [3.0, 1.0, 1.0] and counts[3:].sum() == 0
    w = balanced_window_weights(ds, counts)
    # window a[0:4] = (0, 0, 0, 1): (1/3 + 1/3 + 1/3 + 1) / 4 = 0.5; a[2:6] = (0, 1, -1, 2): (1/3 + 1 + 1) / 3
    # = 7/9; b has no labeled frame: 0
    assert np.allclose(w, [0.5, 7 / 9, 0.0])
    only_unlabeled = WindowDataset([videos[1]], window=4, stride=2)
    assert np.allclose(balanced_window_weights(only_unlabeled, counts), [1.0])  # nothing to balance: uniform


@pytest.mark.parametrize("n, window, stride, expected", [
    (10, 4, 2, [0, 2, 4, 6]),  # 6 = n - window: the last window ends at the video's end already
    (11, 4, 3, [0, 3, 6, 7]),  # the stride leaves frame 10 out: one more window ends at the end
    (5, 4, 2, [0, 1]),
    (4, 4, 2, [0]),
    (3, 4, 2, [0]),  # shorter than a window: one window, padded
])
def test_window_starts_step_by_stride_and_end_at_the_videos_end(n, window, stride, expected):
    assert window_starts(n, window, stride) == expected
