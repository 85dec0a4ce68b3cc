"""The corrections of the semi-supervised method (docs/semisup.md, "Corrections"), each on hand-made tensors, real
digits (scikit-learn's load_digits) or the tiny demo tree: the threshold starts from the teacher's statistics, the floor
holds, lambda_u ramps, the feedback h has the right sign and sees one normalisation state, weak views reach the
student's BatchNorm, colour augmentation changes hue and can make grayscale, and the unlabeled pool can be the
manifest's unlabeled frames."""

from __future__ import annotations

import colorsys
import copy

import numpy as np
import pytest
import torch
from torch import nn

from abawkit.semisup.algorithms import Context, FeedbackTeacher, FixMatch, build_algorithm
from abawkit.semisup.config import TrainConfig, preset
from abawkit.semisup.thresholds import FixedThreshold, SelfAdaptiveThreshold
from helpers_algorithms import tiny_context

C = 8


@pytest.mark.parametrize("debias", [False, True])
def test_threshold_starts_from_the_teachers_statistics_on_the_pass(debias):
    cfg = preset("fixmatch", threshold="self-adaptive", debias=debias)
    algo = build_algorithm(cfg, tiny_context(), C, 64)
    batches = [torch.randn(16, 3, 2, 2, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    with torch.no_grad():
        z = torch.cat([algo.teacher()(b) for b in batches])
    algo.start_unlabeled(iter(batches))
    assert algo.started
    q = torch.softmax(z, 1)
    if debias:
        p_hat = q.mean(0)
        assert torch.allclose(algo.labeler.debias.p_hat, p_hat, atol=1e-6)
        q = torch.softmax(z - cfg.debias_strength * torch.log(p_hat), 1)
    th = algo.labeler.threshold
    assert th.tau.item() == pytest.approx(q.max(1).values.mean().item(), abs=1e-6)
    assert torch.allclose(th.p, q.mean(0), atol=1e-6)
    # switched off: FreeMatch's 1/C
    off = build_algorithm(preset("fixmatch", threshold="self-adaptive", init_from_teacher=False), tiny_context(), C, 64)
    off.start_unlabeled(iter(batches))
    assert off.started and off.labeler.threshold.tau.item() == pytest.approx(1 / C)


def test_the_teachers_pass_leaves_its_normalisation_state_alone():
    ctx = tiny_context()
    ctx.ema.module = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8)).train()
    algo = build_algorithm(preset("fixmatch", threshold="self-adaptive"), ctx, C, 64)
    before = copy.deepcopy(ctx.ema.module[2].state_dict())
    algo.start_unlabeled(iter([torch.randn(16, 3, 2, 2) + 3]))
    after = ctx.ema.module[2].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_floor_holds():
    th = SelfAdaptiveThreshold(C, momentum=0.9, floor=0.6)
    q = torch.full((4, C), 0.5 / (C - 1))
    q[:, 0] = 0.5
    assert (th.threshold_per_class() >= 0.6).all()
    assert th.mask(q).sum() == 0  # 0.5 is below the floor, whatever tau * p says
    q[:, 0], q[:, 1:] = 0.65, 0.35 / (C - 1)
    assert th.mask(q).sum() == 4


def test_the_default_floor_keeps_fixmatchs_pseudo_labels_until_the_teacher_is_surer_than_fixmatchs_threshold():
    cfg = preset("full")
    assert cfg.threshold == "self-adaptive" and cfg.threshold_floor == cfg.tau == 0.95
    th = build_algorithm(cfg, tiny_context(), C, 64).labeler.threshold
    fixed, gen = FixedThreshold(C, cfg.tau), torch.Generator().manual_seed(0)
    for _ in range(50):  # a teacher of mean confidence about 0.8: exactly FixMatch's mask, batch after batch
        q = torch.softmax(3 * torch.randn(32, C, generator=gen), 1)
        assert torch.equal(th.mask(q), fixed.mask(q))
    assert th.tau < 0.95
    th.momentum = 0.5  # a sure teacher that predicts class 0 most: its threshold rises above FixMatch's, the rest stay
    q = torch.full((32, C), 0.01 / (C - 1))
    q[:, 0], q[:8, 0], q[:8, 1] = 0.99, 0.01 / (C - 1), 0.99
    for _ in range(20):
        th.mask(q)
    per_class = th.threshold_per_class()
    assert per_class[0] > 0.97 and torch.allclose(per_class[1:], torch.tensor(0.95))
    sure = torch.full((2, C), 0.04 / (C - 1))
    sure[0, 0], sure[1, 1] = 0.96, 0.96
    assert th.mask(sure).tolist() == [0.0, 1.0]  # 0.96 passes FixMatch's threshold, only class 1's here


def test_lambda_u_ramps_from_zero_over_the_ramp_then_stays():
    ctx = tiny_context()
    ctx.total_steps = 100
    algo = build_algorithm(preset("fixmatch", unlabeled_warmup=50, lambda_u=2.0), ctx, C, 16)
    ramp = algo.cfg.ramp_steps(50)
    assert ramp == 10  # a fifth of the 50 unlabeled steps
    weights = [algo.unlabeled_weight(s) for s in range(50, 100)]
    assert weights[0] == pytest.approx(0.2) and weights[4] == pytest.approx(1.0)
    assert np.all(np.diff(weights) >= 0) and weights[9] == pytest.approx(2.0) and weights[-1] == pytest.approx(2.0)
    flat = build_algorithm(preset("fixmatch", unlabeled_warmup=50, lambda_u_ramp=0), ctx, C, 16)
    assert flat.unlabeled_weight(50) == pytest.approx(1.0)


def test_debias_momentum_follows_the_runs_length():
    cfg = preset("full")
    assert cfg.debias_m(75) == pytest.approx(0.9)      # the demo's unlabeled phase: a time constant of 10 steps
    assert cfg.debias_m(5000) == pytest.approx(0.998)  # 500 steps
    assert cfg.debias_m(10**6) == pytest.approx(0.999)
    assert preset("full", debias_momentum=0.99).debias_m(10**6) == 0.99


# ---------------------------------------------------------------- feedback h on real digits (8 classes)

def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < C
    x = torch.tensor(d.data[keep] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return x, torch.tensor(d.target[keep])


def bn_context(seed: int = 0) -> Context:
    """An MLP with BatchNorm on 8x8 digits, SGD 0.05 without warm-up."""
    def mlp():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, C))

    return tiny_context(TrainConfig(optimizer="sgd", lr=0.05, steps=1000, warmup_steps=0, weight_decay=0.0), seed,
                        student=mlp, total_steps=1000)


def feedback_h(labeled_weight: float, trials: int = 12) -> dict[str, list[float]]:
    """Raw h (no baseline) of one student step on 64 unlabeled digits labeled with their true classes or with those
    labels shuffled (plus its 8 labeled digits at ``labeled_weight``), measured on 64 other labeled digits; the same
    partly trained student (15 supervised steps) for both kinds."""
    x, y = digits()
    hs = {"true": [], "shuffled": []}
    for trial in range(trials):
        g = torch.Generator().manual_seed(trial)
        il, iu, ih = (torch.randint(len(x), (n,), generator=g) for n in (8, 64, 64))
        shuffled = y[iu][torch.randperm(64, generator=g)]
        for kind, labels in (("true", y[iu]), ("shuffled", shuffled)):
            ctx = bn_context(seed=trial)
            warm = torch.optim.SGD(ctx.student.parameters(), lr=0.05)
            for s in range(15):
                i = torch.randint(len(x), (32,), generator=torch.Generator().manual_seed(100 * trial + s))
                warm.zero_grad()
                nn.functional.cross_entropy(ctx.student(x[i]), y[i]).backward()
                warm.step()
            cfg = preset("full", feedback_baseline=0.0, lambda_u_ramp=0, threshold="fixed", tau=0.0,
                         student_labeled_weight=labeled_weight)
            algo = FeedbackTeacher(cfg, ctx, C, len(x))
            h, _ = algo.student_feedback(x[il], y[il], x[iu], x[iu], labels, torch.ones(64), x[ih], y[ih], step=20)
            hs[kind].append(h)
    return hs


def test_h_is_positive_for_true_pseudo_labels_and_negative_for_shuffled_ones():
    """On the pseudo-labels alone (student_labeled_weight 0) h's sign says whether they helped. With the default
    weight 1 the student's labeled batch adds a positive part to both (about +0.035 here): true labels still score
    higher, and the moving-average baseline (test below) removes that common part."""
    alone = feedback_h(0.0)
    assert np.mean(alone["true"]) > 0 > np.mean(alone["shuffled"])
    both = feedback_h(1.0, trials=6)
    assert np.mean(both["true"]) > np.mean(both["shuffled"]) + 0.01


def test_both_losses_of_h_see_the_same_normalisation_state_and_training_keeps_its_own():
    x, y = digits()
    ctx = bn_context()
    algo = FeedbackTeacher(preset("full", threshold="fixed", tau=0.0), ctx, C, len(x))
    bn = ctx.student[2]
    seen = []
    bn.register_forward_pre_hook(lambda m, _: None if m.training else seen.append(m.running_mean.clone()))
    before = bn.running_mean.clone()
    algo.train_step(x[:16], y[:16], x[16:48], x[16:48] + 0.05, torch.arange(32), x[48:64], y[48:64], step=5)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1]) and torch.equal(seen[0], before)
    assert not torch.equal(bn.running_mean, before)  # the student's train-mode forward still updated it


@pytest.mark.parametrize("weak_in_student", [True, False])
def test_weak_views_reach_the_students_batchnorm(weak_in_student):
    x, y = digits()
    ctx = bn_context()
    algo = FixMatch(preset("fixmatch", weak_in_student=weak_in_student), ctx, C, len(x))
    sizes = []
    ctx.student[2].register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]) if m.training else None)
    algo.train_step(x[:16], y[:16], x[16:48], x[16:48] + 0.05, torch.arange(32), step=0)
    assert sizes == [16 + 32 + 32 if weak_in_student else 16 + 32]


def test_the_baseline_is_subtracted_from_h():
    algo = FeedbackTeacher(preset("full", feedback_baseline=0.5), tiny_context(), C, 16)
    assert algo._baselined(1.0) == pytest.approx(0.5)   # b = 0.5
    assert algo._baselined(1.0) == pytest.approx(0.25)  # b = 0.75: a steady h fades to 0
    assert algo._baselined(-1.0) < 0


# ---------------------------------------------------------------- colour augmentation

def test_colour_augmentation_changes_hue_and_can_make_grayscale():
    from torchvision.transforms import v2

    from abawkit.semisup.data import colour_transforms, item_rng

    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[0], image[1], image[2] = 200, 120, 60  # skin-like orange
    tf = v2.Compose(colour_transforms(True))
    hues, grey = [], 0
    for seed in range(60):
        with item_rng(seed):
            out = tf(image).float()
        if torch.equal(out[0], out[1]) and torch.equal(out[1], out[2]):
            grey += 1
            continue
        r, g, b = (out[c].mean().item() / 255 for c in range(3))
        hues.append(colorsys.rgb_to_hsv(r, g, b)[0])
    base = colorsys.rgb_to_hsv(200 / 255, 120 / 255, 60 / 255)[0]
    assert grey >= 1 and len(hues) >= 30
    assert max(abs(h - base) for h in hues) > 0.03
    assert colour_transforms(False) == []


# ---------------------------------------------------------------- the manifest's unlabeled frames

def test_unlabeled_frames_are_the_manifests_crops_without_a_label(tiny_demo, tiny_manifest, tmp_path):
    from helpers_semisup import truth_crops

    from abawkit.crops import crop_frames
    from abawkit.labels import IGNORE
    from abawkit.semisup.data import unlabeled_frames_from_manifest

    crops = truth_crops(tiny_demo, tiny_manifest, tmp_path / "faces", size=24)
    train = unlabeled_frames_from_manifest(tiny_manifest, crops)
    expected = []
    for vid in tiny_manifest.video_ids("Train_Set"):
        labels = tiny_manifest.labels(vid)
        expected += [f"{vid}/{f:05d}.jpg" for f in crop_frames(crops, vid)
                     if f > labels.size or labels[f - 1] == IGNORE]
    assert expected and sorted(p.split("cropped_aligned/")[1] for p in train) == sorted(expected)
    with_test = unlabeled_frames_from_manifest(tiny_manifest, crops, ("Train_Set", "Test_Set"))
    test_vids = tiny_manifest.video_ids("Test_Set")
    added = set(with_test) - set(train)
    assert added and all(any(f"/{v}/" in p for v in test_vids) for p in added)
    assert len(added) == sum(len(crop_frames(crops, v)) for v in test_vids)
