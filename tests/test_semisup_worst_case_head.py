"""DST's worst-case estimation head (Chen et al., 2022; ``SemiSupConfig.worst_case_head``) on a real timm frame model:
the loss rewards a head right on the labeled views and wrong on the unlabeled ones, the head descends it while the
shared network, behind the gradient reversal layer, ascends it; the head learns and comes back on --resume."""

from __future__ import annotations

import pytest
import torch

from abawkit.semisup import algorithms
from abawkit.semisup.algorithms import FixMatch, reverse_gradient, worst_case_loss
from abawkit.semisup.config import preset
from test_semisup_pseudo_head import C, frame_student
from helpers_algorithms import tiny_context


def test_the_reversal_layer_passes_forward_and_turns_the_gradient_back():
    x, w = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6)
    y = reverse_gradient(x, 0.1)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -0.1 * w)


def test_the_loss_is_low_for_a_head_right_on_labels_and_wrong_on_the_pool():
    pred_l, pred_u = torch.tensor([0, 1]), torch.tensor([2, 3])
    adv_l = 10 * torch.nn.functional.one_hot(pred_l, C).float()
    agrees = 10 * torch.nn.functional.one_hot(pred_u, C).float()
    disagrees = 10 * torch.nn.functional.one_hot(pred_u + 2, C).float()
    low = worst_case_loss(adv_l, pred_l, disagrees, pred_u).item()
    high = worst_case_loss(adv_l, pred_l, agrees, pred_u).item()
    assert low < 0.01 < 5 < high
    # the labeled term counts eta' times
    wrong_l = 10 * torch.nn.functional.one_hot(pred_l + 4, C).float()
    assert worst_case_loss(wrong_l, pred_l, disagrees, pred_u, 2.0).item() == pytest.approx(
        2 * worst_case_loss(wrong_l, pred_l, disagrees, pred_u, 1.0).item(), rel=1e-3)


def grads(reversal: float, monkeypatch) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The worst-case loss's gradients on the first convolution and on the head's last layer, and the loss, for one
    fixed batch, with the reversal coefficient ``reversal``."""
    monkeypatch.setattr(algorithms, "WORST_CASE_REVERSAL", reversal)
    ctx = tiny_context(seed=0, student=frame_student)
    algo = FixMatch(preset("fixmatch", worst_case_head=True), ctx, C, 16)
    g = torch.Generator().manual_seed(1)
    x_l, u_w = torch.rand(8, 3, 32, 32, generator=g), torch.rand(16, 3, 32, 32, generator=g)
    torch.manual_seed(3)  # the head's dropout
    _, wc = algo.student_logits(x_l, u_w, u_w.flip(3))
    wc.backward()
    return (ctx.student.backbone.conv1[0].weight.grad.clone(), algo.worst_head.module[-1].weight.grad.clone(),
            wc.item())


def test_the_head_descends_the_loss_and_the_shared_network_ascends_it(monkeypatch):
    conv_rev, head_rev, loss_rev = grads(0.1, monkeypatch)
    conv_fwd, head_fwd, loss_fwd = grads(-1.0, monkeypatch)  # -(-1): the plain gradient
    assert loss_rev == pytest.approx(loss_fwd) and loss_rev > 0
    assert torch.allclose(head_rev, head_fwd)                        # the head minimises it as it is
    assert conv_fwd.abs().sum() > 0
    expected = -0.1 * conv_fwd                                        # the network gets it reversed
    assert torch.allclose(conv_rev, expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))


def test_the_worst_case_head_learns_and_comes_back_on_resume():
    ctx = tiny_context(seed=0, student=frame_student)
    algo = FixMatch(preset("fixmatch", worst_case_head=True, lambda_u_ramp=0), ctx, C, 16)
    before = [p.clone() for p in algo.worst_head.module.parameters()]
    g = torch.Generator().manual_seed(2)
    x_l, u = torch.rand(8, 3, 32, 32, generator=g), torch.rand(16, 3, 32, 32, generator=g)
    stats = algo.train_step(x_l, torch.arange(8), u, u.flip(3), torch.arange(16), step=50)  # past the lr warm-up
    assert stats["loss_wc"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.worst_head.module.parameters()))
    again = FixMatch(preset("fixmatch", worst_case_head=True), tiny_context(seed=5, student=frame_student), C, 16)
    again.load_state_dict(algo.state_dict())
    for a, b in zip(algo.worst_head.module.parameters(), again.worst_head.module.parameters()):
        assert torch.equal(a, b)
    assert again.worst_head.optimizer.state_dict()["state"]


def test_the_worst_case_head_needs_the_weak_views_in_the_student():
    with pytest.raises(ValueError, match="weak_in_student"):
        preset("fixmatch", worst_case_head=True, weak_in_student=False)
