"""DST's pseudo head (Chen et al., 2022; ``SemiSupConfig.pseudo_head``) on a real timm frame model: the pseudo-labels
train the pseudo head and the shared network, never the classifier that predicts and (as the EMA) labels; the head
learns, and its state comes back on --resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from abawkit.frame_model import FrameModelConfig, build_frame_model
from abawkit.semisup.algorithms import FixMatch
from abawkit.semisup.config import preset
from helpers_algorithms import tiny_context

C = 8


def frame_student():
    return build_frame_model(FrameModelConfig(backbone="resnet10t", image_size=32))


def gradients(pseudo_head: bool, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's and the first convolution's gradients of the student's loss on one fixed batch with the
    pseudo-labels ``y_hat`` of its strong views."""
    ctx = tiny_context(seed=0, student=frame_student)
    algo = FixMatch(preset("fixmatch", pseudo_head=pseudo_head), ctx, C, 16)
    g = torch.Generator().manual_seed(1)
    x_l, y_l = torch.rand(8, 3, 32, 32, generator=g), torch.arange(8)
    u_w = torch.rand(16, 3, 32, 32, generator=g)
    logits, _ = algo.student_logits(x_l, u_w, u_w.flip(3))
    loss = F.cross_entropy(logits[:8], y_l) + algo.labeler.loss(logits[-16:], y_hat, torch.ones(16))
    loss.backward()
    net = ctx.student.backbone
    return net.get_classifier().weight.grad.clone(), net.conv1[0].weight.grad.clone()


@pytest.mark.parametrize("pseudo_head", [True, False])
def test_pseudo_labels_reach_the_classifier_only_without_a_pseudo_head(pseudo_head):
    y_hat = torch.arange(16) % C
    fc_a, conv_a = gradients(pseudo_head, y_hat)
    fc_b, conv_b = gradients(pseudo_head, (y_hat + 3) % C)
    assert torch.allclose(fc_a, fc_b) == pseudo_head  # with the head, the classifier sees the labels alone
    assert not torch.allclose(conv_a, conv_b)          # the shared network learns the pseudo-labels either way


def test_the_pseudo_head_learns_and_comes_back_on_resume():
    ctx = tiny_context(seed=0, student=frame_student)
    algo = FixMatch(preset("fixmatch", pseudo_head=True, tau=0.0, lambda_u_ramp=0), ctx, C, 16)
    before = [p.clone() for p in algo.head.module.parameters()]
    g = torch.Generator().manual_seed(2)
    x_l, u = torch.rand(8, 3, 32, 32, generator=g), torch.rand(16, 3, 32, 32, generator=g)
    algo.train_step(x_l, torch.arange(8), u, u.flip(3), torch.arange(16), step=50)  # past the lr warm-up
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.head.module.parameters()))
    again = FixMatch(preset("fixmatch", pseudo_head=True), tiny_context(seed=5, student=frame_student), C, 16)
    again.load_state_dict(algo.state_dict())
    for a, b in zip(algo.head.module.parameters(), again.head.module.parameters()):
        assert torch.equal(a, b)
    assert again.head.optimizer.state_dict()["state"]  # the optimizer's moments came along


def test_a_pseudo_head_saved_in_the_earlier_layout_still_resumes():
    algo = FixMatch(preset("fixmatch", pseudo_head=True), tiny_context(seed=0, student=frame_student), C, 16)
    head = algo.head.state_dict()
    old = {"labeler": algo.labeler.state_dict(), "started": True, "pseudo_head": head["module"],
           "head_optimizer": head["optimizer"], "head_scheduler": head["scheduler"]}
    again = FixMatch(preset("fixmatch", pseudo_head=True), tiny_context(seed=5, student=frame_student), C, 16)
    again.load_state_dict(old)
    for a, b in zip(algo.head.module.parameters(), again.head.module.parameters()):
        assert torch.equal(a, b)
