"""Test helper: a semi-supervised algorithm on a tiny linear student, with the trainer's own optimizer,
schedule and EMA (timm), and random labeled/unlabeled batches of 3x2x2 "images"."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from abawkit.semisup.algorithms import Context
from abawkit.semisup.config import TrainConfig
from abawkit.semisup.train import make_ema, make_optimizer, make_scheduler


def tiny_context(cfg: TrainConfig = TrainConfig(optimizer="sgd", lr=0.1, steps=100, warmup_steps=10),
                 seed: int = 0, student=None, total_steps: int = 0) -> Context:
    """``student`` is a function making the network (after seeding; default: a linear layer on 3x2x2 inputs)."""
    torch.manual_seed(seed)
    student = student() if student is not None else nn.Sequential(nn.Flatten(), nn.Linear(12, 8))
    opt = make_optimizer(cfg, student)
    sched = make_scheduler(cfg, opt)
    ema = make_ema(student, 0.9)

    def student_step(loss, step):
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step_update(step + 1)
        ema.update(student, step=step + 1)

    return Context(student=student, student_step=student_step, ema=ema, autocast=contextlib.nullcontext,
                   make_optimizer=lambda m: make_optimizer(cfg, m), make_scheduler=lambda o: make_scheduler(cfg, o),
                   wrap=lambda m: m, total_steps=total_steps)


def tiny_batch(seed: int):
    """8 labeled images with labels, 16 unlabeled weak views, their strong views, their indices."""
    g = torch.Generator().manual_seed(seed)
    x_l, y_l = torch.randn(8, 3, 2, 2, generator=g), torch.randint(0, 8, (8,), generator=g)
    u = torch.randn(16, 3, 2, 2, generator=g)
    return x_l, y_l, u, u + 0.1 * torch.randn(u.shape, generator=g), torch.arange(16)
