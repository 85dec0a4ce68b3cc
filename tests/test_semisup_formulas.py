"""The semi-supervised formulas on hand-made tensors: thresholds (FreeMatch, FlexMatch), debiasing (DebiasPL),
feedback (Meta Pseudo Labels), the class-uniform sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawkit.semisup.algorithms import PseudoLabeler, feedback_signal, feedback_teacher_loss
from abawkit.semisup.config import SemiSupConfig
from abawkit.semisup.debias import DebiasedPseudoLabels
from abawkit.semisup.sampler import ClassUniformBatchSampler, UniformBatchSampler
from abawkit.semisup.thresholds import (FixedThreshold, FlexMatchThreshold, SelfAdaptiveThreshold,
                                        flexmatch_mapping)

C = 4


def test_self_adaptive_initial_value_update_and_mask():
    th = SelfAdaptiveThreshold(C, momentum=0.9)
    assert th.tau.item() == pytest.approx(1 / C)
    assert torch.allclose(th.p, torch.full((C,), 1 / C))
    q = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.2, 0.5, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1]])
    mask = th.mask(q)
    # update before masking: tau_1 = 0.9*0.25 + 0.1*mean(0.7, 0.5, 0.3); p_1 = 0.9*0.25 + 0.1*mean_b q_b
    tau1 = 0.9 * 0.25 + 0.1 * 0.5
    p1 = 0.9 * 0.25 + 0.1 * q.mean(0)
    assert th.tau.item() == pytest.approx(tau1)
    assert torch.allclose(th.p, p1)
    local = tau1 * p1 / p1.max()
    expected = torch.tensor([float(0.7 >= local[0]), float(0.5 >= local[1]), float(0.3 >= local[0])])
    assert torch.equal(mask, expected)
    # a class the teacher rarely predicts gets a lower threshold than the head class
    assert local[3] < local[0]
    # a second update uses the first as its previous value
    th.mask(q)
    assert th.tau.item() == pytest.approx(0.9 * tau1 + 0.1 * 0.5)
    state = th.state_dict()
    other = SelfAdaptiveThreshold(C, momentum=0.9)
    other.load_state_dict(state)
    assert torch.allclose(other.threshold_per_class(), th.threshold_per_class())


def test_self_adaptive_mask_at_start_keeps_confident_rows_only():
    th = SelfAdaptiveThreshold(C, momentum=0.999)
    q = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.9, 0.05, 0.03, 0.02]])
    m = th.mask(q)
    # by hand: tau = 0.999/4 + 0.001 * mean(0.25, 0.9); p(0) = 0.999/4 + 0.001 * mean(0.25, 0.9) is the largest p,
    # so class 0's threshold is tau * p(0) / max p = tau = 0.250325, just above the uniform row's 0.25
    tau = 0.999 / 4 + 0.001 * (0.25 + 0.9) / 2
    assert th.threshold_per_class()[0].item() == pytest.approx(tau)
    assert m.tolist() == [0.0, 1.0]  # the uniform row is cut, the confident one kept


def test_fixed_threshold():
    m = FixedThreshold(C, 0.8).mask(torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.7, 0.1, 0.1, 0.1]]))
    assert m.tolist() == [1.0, 0.0]


def test_flexmatch_mapping_and_curriculum():
    beta = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(flexmatch_mapping(beta), torch.tensor([0.0, 1 / 3, 1.0]))
    th = FlexMatchThreshold(C, n_unlabeled=10, tau=0.9)
    # at start sigma = 0 everywhere, N_unused = 10 -> beta = 0 -> threshold 0: everything passes
    assert torch.allclose(th.threshold_per_class(), torch.zeros(C))
    q = torch.tensor([[0.95, 0.02, 0.02, 0.01]] * 3 + [[0.02, 0.95, 0.02, 0.01]] + [[0.5, 0.3, 0.1, 0.1]])
    mask = th.mask(q, torch.tensor([0, 1, 2, 3, 4]))
    # sigma = [3, 1, 0, 0], N_unused = 6 -> beta = sigma / 6
    beta = torch.tensor([3, 1, 0, 0]) / 6.0
    assert torch.allclose(th.beta(), beta)
    thr = 0.9 * beta / (2 - beta)
    assert torch.allclose(th.threshold_per_class(), thr)
    assert mask.tolist() == [1.0, 1.0, 1.0, 1.0, float(0.5 >= thr[0])]
    # once most samples are used the normaliser is max sigma
    th.mask(torch.tensor([[0.95, 0.02, 0.02, 0.01]] * 5), torch.tensor([5, 6, 7, 8, 9]))
    assert th.beta()[0] == pytest.approx(1.0) and th.beta()[1] == pytest.approx(1 / 8)


def skewed_logits(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    # the teacher prefers class 0 strongly, then 1; classes 2, 3 are rarely the argmax
    return torch.randn(n, C, generator=g) + torch.tensor([2.0, 1.0, 0.0, -0.5])


def test_debiased_marginal_moves_away_from_uniform_and_stays_a_vector():
    d = DebiasedPseudoLabels(C, strength=0.5, momentum=0.9)
    assert torch.allclose(d.p_hat, torch.full((C,), 1 / C))
    z = skewed_logits()
    for _ in range(30):
        d(z)
    assert d.p_hat.shape == (C,)
    assert d.p_hat.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert d.p_hat[0] > 0.4 and d.p_hat[3] < 0.15  # far from 0.25 each
    # one update is exactly m p + (1-m) mean over the batch axis of the raw softmax
    d2 = DebiasedPseudoLabels(C, strength=0.5, momentum=0.9)
    d2.update(z)
    assert torch.allclose(d2.p_hat, 0.9 * 0.25 + 0.1 * torch.softmax(z, 1).mean(0))


def test_debiased_labels_use_current_marginal_and_spread_over_more_classes():
    d = DebiasedPseudoLabels(C, strength=1.0, momentum=0.9)
    z = skewed_logits()
    for _ in range(30):
        d.update(z)
    p_before = d.p_hat.clone()
    q = d(z)  # step 1 with the current p_hat, then step 2
    assert torch.allclose(q, torch.softmax(z - torch.log(p_before), 1))
    raw = torch.bincount(z.argmax(1), minlength=C)
    deb = torch.bincount(q.argmax(1), minlength=C)
    assert (deb > 0).sum() >= (raw > 0).sum()
    # more even: the largest class shrinks and the entropy of the label histogram grows
    assert deb.max() < raw.max()
    ent = lambda h: float(-(h / h.sum() * torch.log(h / h.sum() + 1e-12)).sum())
    assert ent(deb.float()) > ent(raw.float())


def test_adaptive_margin_term():
    d = DebiasedPseudoLabels(C, strength=0.5, momentum=0.9)
    d.p_hat = torch.tensor([0.5, 0.3, 0.15, 0.05])
    z_s = torch.zeros(2, C)
    y = torch.tensor([0, 3])
    assert torch.allclose(d.margin_logits(z_s), 0.5 * torch.log(d.p_hat).expand(2, C))
    mask = torch.tensor([1.0, 0.0])
    expected = torch.nn.functional.cross_entropy(z_s + 0.5 * torch.log(d.p_hat), y, reduction="none") * mask
    assert d.loss(z_s, y, mask).item() == pytest.approx(expected.mean().item())
    # the margin makes a head-class target easier to reach than a tail-class one from equal logits
    per = torch.nn.functional.cross_entropy(d.margin_logits(torch.zeros(2, C)), torch.tensor([0, 3]), reduction="none")
    assert per[0] < per[1]


@pytest.mark.parametrize("margin", [True, False])
def test_the_student_loss_takes_the_margin_only_when_asked(margin):
    labeler = PseudoLabeler(SemiSupConfig(threshold="fixed", debias_margin=margin, debias_momentum=0.9), C, 16)
    labeler.debias.p_hat = torch.tensor([0.5, 0.3, 0.15, 0.05])
    z_s, y, mask = torch.zeros(2, C), torch.tensor([0, 3]), torch.tensor([1.0, 1.0])
    plain, with_margin = torch.nn.functional.cross_entropy(z_s, y), labeler.debias.loss(z_s, y, mask)
    assert with_margin.item() != pytest.approx(plain.item())  # the margin changes this batch's loss
    assert labeler.loss(z_s, y, mask).item() == pytest.approx((with_margin if margin else plain).item())


def test_feedback_signal_sign_and_use():
    h = feedback_signal(torch.tensor(1.2, requires_grad=True), torch.tensor(0.9))
    assert h.item() == pytest.approx(0.3) and not h.requires_grad and h.dim() == 0
    assert feedback_signal(torch.tensor(0.9), torch.tensor(1.2)).item() < 0
    torch.manual_seed(0)
    t_l, y_l = torch.randn(4, C), torch.tensor([0, 1, 2, 3])
    y_hat, mask = torch.tensor([0, 0, 1, 1]), torch.tensor([1.0, 0.0, 1.0, 1.0])

    def grad_of_feedback(hval):
        t_s = torch.randn(4, C, generator=torch.Generator().manual_seed(1)).requires_grad_()
        out = feedback_teacher_loss(t_l, y_l, t_s, y_hat, mask, torch.tensor(hval), consistency=0.0)
        # the term is on the pseudo-labels the student trained on (y_hat, masked), not on argmax T(u_s)
        ce_used = (torch.nn.functional.cross_entropy(t_s, y_hat, reduction="none") * mask).mean()
        assert out["mpl"].item() == pytest.approx(hval * ce_used.item())
        out["mpl"].backward()
        return t_s, t_s.grad

    t_s, g_pos = grad_of_feedback(0.5)
    _, g_neg = grad_of_feedback(-0.5)
    # h > 0: a gradient step raises the logit of the label the student used; h < 0 lowers it; masked rows untouched
    used = mask.bool()
    assert (g_pos.gather(1, y_hat[:, None])[used] < 0).all()
    assert (g_neg.gather(1, y_hat[:, None])[used] > 0).all()
    assert torch.equal(g_pos[~used], torch.zeros_like(g_pos[~used]))
    out = feedback_teacher_loss(t_l, y_l, t_s.detach(), y_hat, mask, torch.tensor(0.0))
    sup = torch.nn.functional.cross_entropy(t_l, y_l)
    cons = (torch.nn.functional.cross_entropy(t_s.detach(), y_hat, reduction="none") * mask).mean()
    assert out["loss"].item() == pytest.approx((sup + cons).item())


def test_class_uniform_sampler_is_uniform_over_present_classes_and_per_rank():
    labels = np.array([0] * 900 + [1] * 90 + [4] * 9 + [7] * 1)
    s = ClassUniformBatchSampler(labels, batch_size=64, seed=0, rank=0)
    it = iter(s)
    drawn = np.concatenate([labels[[i for i, _ in next(it)]] for _ in range(200)])
    counts = np.bincount(drawn, minlength=8)
    assert set(np.flatnonzero(counts)) == {0, 1, 4, 7}
    share = counts[[0, 1, 4, 7]] / drawn.size
    assert np.allclose(share, 0.25, atol=0.02)
    a = next(iter(ClassUniformBatchSampler(labels, 32, seed=0, rank=0)))
    b = next(iter(ClassUniformBatchSampler(labels, 32, seed=0, rank=1)))
    a2 = next(iter(ClassUniformBatchSampler(labels, 32, seed=0, rank=0)))
    assert a == a2 and a != b


def test_batch_b_and_its_augmentation_seeds_depend_on_seed_rank_and_b_only():
    """A stream started at batch b (a resumed run) yields what the stream from 0 yields from b on; the items carry
    distinct augmentation seeds; the unlabeled stream likewise."""
    labels = np.array([0] * 50 + [3] * 20 + [5] * 5)
    full = iter(ClassUniformBatchSampler(labels, 16, seed=4, rank=1))
    from_0 = [next(full) for _ in range(12)]
    later = iter(ClassUniformBatchSampler(labels, 16, seed=4, rank=1, start_batch=7))
    assert [next(later) for _ in range(5)] == from_0[7:]
    seeds = [s for batch in from_0 for _, s in batch]
    assert len(set(seeds)) == len(seeds)
    unl = iter(UniformBatchSampler(100, 8, seed=4, rank=0))
    unl_from_0 = [next(unl) for _ in range(6)]
    assert [next(iter(UniformBatchSampler(100, 8, seed=4, rank=0, start_batch=3)))] == unl_from_0[3:4]
    assert all(0 <= i < 100 for batch in unl_from_0 for i, _ in batch)


def test_an_items_augmentation_is_its_seeds_and_leaves_the_process_random_state():
    from abawkit.frame_model import FrameModelConfig
    from abawkit.semisup.data import item_rng, weak_transform

    tf = weak_transform(FrameModelConfig(image_size=24))
    img = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with item_rng(123):
        a = tf(img)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)  # another process state: the same seed gives the same view
    with item_rng(123):
        b = tf(img)
    with item_rng(124):
        c = tf(img)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_debiasing_towards_a_prior_leaves_a_marginal_that_matches_it_alone():
    z = skewed_logits()
    pi = (0.5, 0.3, 0.15, 0.05)
    d = DebiasedPseudoLabels(C, strength=1.0, momentum=0.9, prior=pi)
    d.p_hat = torch.tensor(pi)  # the teacher's marginal is the prior: nothing to correct
    assert torch.allclose(d.debiased_probs(z), torch.softmax(z, 1), atol=1e-6)
    assert torch.allclose(d.margin_logits(z), z, atol=1e-6)
    # a uniform prior is DebiasPL's: log(p_hat / pi) differs from log p_hat by a constant only
    u = DebiasedPseudoLabels(C, strength=1.0, momentum=0.9, prior=(1.0,) * C)
    plain = DebiasedPseudoLabels(C, strength=1.0, momentum=0.9)
    u.p_hat = plain.p_hat = torch.tensor([0.6, 0.2, 0.15, 0.05])
    assert torch.allclose(u.debiased_probs(z), plain.debiased_probs(z), atol=1e-6)
    # a head class predicted below its prior is pushed up, not down as towards uniform
    d.p_hat = torch.tensor([0.3, 0.3, 0.3, 0.1])
    assert d.debiased_probs(z)[:, 0].mean() > torch.softmax(z, 1)[:, 0].mean() > plain.debiased_probs(z)[:, 0].mean()
    with pytest.raises(ValueError, match="debias_prior"):
        DebiasedPseudoLabels(C, prior=(0.5, 0.5))
    with pytest.raises(ValueError, match="debias_prior"):
        DebiasedPseudoLabels(C, prior=(0.5, 0.5, 0.0, 0.0))


def test_the_label_prior_is_the_labeled_frames_smoothed_class_shares_unless_a_prior_is_given():
    from abawkit.semisup.config import preset

    full = preset("full")
    assert full.debias_prior_from_labels and full.debias_prior == ()
    shares = full.with_label_prior([5, 0, 3, 0]).debias_prior  # (n_c + 1) / (n + C): an absent class stays > 0
    assert shares == pytest.approx((6 / 12, 1 / 12, 4 / 12, 1 / 12)) and sum(shares) == pytest.approx(1)
    assert full.with_label_prior([4] * C).debias_prior == pytest.approx((1 / C,) * C)  # balanced: DebiasPL's
    given = preset("full", debias_prior=(0.4, 0.3, 0.2, 0.1))
    assert given.with_label_prior([5, 0, 3, 0]) == given  # an explicit prior wins
    for off in (preset("full", debias_prior_from_labels=False), preset("fixmatch"), preset("supervised")):
        assert off.with_label_prior([5, 0, 3, 0]).debias_prior == ()


def test_an_excluded_class_never_passes_the_mask_and_the_others_are_unchanged():
    from abawkit.labels import CLASSES
    from abawkit.semisup.config import preset

    n, other = len(CLASSES), CLASSES.index("Other")
    z = torch.full((n, n), -10.0)
    z[torch.arange(n), torch.arange(n)] = 10.0  # row c: a sure pseudo-label c
    plain = PseudoLabeler(preset("fixmatch"), n, n)(z)[1]
    y_hat, mask, _ = PseudoLabeler(preset("fixmatch", pseudo_label_exclude=("Other",)), n, n)(z)
    kept = torch.arange(n) != other
    assert plain.tolist() == [1.0] * n
    assert mask[other] == 0 and y_hat[other] == other
    assert torch.equal(mask[kept], plain[kept])
    with pytest.raises(ValueError, match="Others"):
        preset("fixmatch", pseudo_label_exclude=("Others",))


def test_a_strict_class_needs_its_floor_and_the_others_keep_the_threshold():
    from abawkit.labels import CLASSES
    from abawkit.semisup.config import preset

    n, other, anger = len(CLASSES), CLASSES.index("Other"), CLASSES.index("Anger")
    logit = torch.tensor([4.5, 5.5, 7.5])  # confidence ~0.93, ~0.97, ~0.996 against seven logits of 0
    z = torch.zeros(6, n)
    z[:3, other], z[3:, anger] = logit, logit
    cfg = preset("fixmatch", pseudo_label_strict=("Other",), pseudo_label_strict_floor=0.99)
    y_hat, mask, conf = PseudoLabeler(cfg, n, 6)(z)
    plain = PseudoLabeler(preset("fixmatch"), n, 6)(z)[1]
    assert y_hat.tolist() == [other] * 3 + [anger] * 3
    assert plain.tolist() == [0.0, 1.0, 1.0] * 2  # FixMatch's 0.95 alone
    assert mask.tolist() == [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]  # Other from 0.99, Anger from 0.95 as before
    assert conf[1] > 0.95 > conf[0] and conf[2] > 0.99
    with pytest.raises(ValueError, match="pseudo_label_strict_floor"):
        preset("fixmatch", pseudo_label_strict_floor=1.5)
    with pytest.raises(ValueError, match="Others"):
        preset("fixmatch", pseudo_label_strict=("Others",))
