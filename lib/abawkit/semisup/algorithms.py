"""The algorithms, each a small class with a ``train_step`` and a ``state_dict`` (USB's structure):
:class:`Supervised`, :class:`FixMatch` (EMA teacher; Sohn et al., 2020) and :class:`FeedbackTeacher` (Meta
Pseudo Labels, Pham et al., 2021). Confidence thresholds (FixMatch, FreeMatch, FlexMatch) and debiased
pseudo-labels (DebiasPL, Wang et al., 2022) are parts of :class:`PseudoLabeler`, switched by the config.
The training loop owns the step count: ``train_step`` receives the global step (0-based), so a resumed run
continues the warm-up where its checkpoint stopped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import SemiSupConfig
from .debias import DebiasedPseudoLabels
from .distributed import all_reduce_mean
from .thresholds import Threshold, make_threshold


@dataclass
class Context:
    """What an algorithm needs from the trainer: the (maybe DDP-wrapped) student, the step that applies a
    student loss at a global step (backward, clipping, optimizer, schedule, EMA), the EMA (timm's ModelEmaV3;
    ``ema.module`` is the averaged network), autocast, and factories for a teacher's optimizer (from a module)
    and its per-step schedule (``step_update``)."""

    student: nn.Module
    student_step: Callable[[torch.Tensor, int], None]
    ema: nn.Module
    autocast: Callable
    make_optimizer: Callable
    make_scheduler: Callable
    wrap: Callable[[nn.Module], nn.Module]
    clip_grad: float = 0.0


class PseudoLabeler:
    """Teacher logits of weak views -> (pseudo-labels, mask, confidence): debiased q = softmax(z_w - tau_d log
    p_hat) (DebiasPL) or plain softmax, then the threshold. With debiasing the threshold sees the debiased
    probabilities: max_c q(c) is the confidence that enters the mask. ``loss`` is the masked student loss on
    strong views."""

    def __init__(self, cfg: SemiSupConfig, num_classes: int, n_unlabeled: int):
        self.threshold: Threshold = make_threshold(cfg.threshold, num_classes, n_unlabeled, cfg.tau,
                                                   cfg.threshold_momentum)
        self.debias = DebiasedPseudoLabels(num_classes, cfg.debias_strength, cfg.debias_momentum) if cfg.debias else None

    def __call__(self, z_w: torch.Tensor, idx: torch.Tensor | None = None):
        z_w = z_w.detach().float()
        q = self.debias(z_w) if self.debias is not None else torch.softmax(z_w, dim=1)
        mask = self.threshold.mask(q, idx)
        conf, y_hat = q.max(dim=1)
        return y_hat, mask, conf

    def loss(self, z_s: torch.Tensor, y_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.debias is not None:
            return self.debias.loss(z_s, y_hat, mask)
        return (F.cross_entropy(z_s.float(), y_hat, reduction="none") * mask).mean()

    def state_dict(self) -> dict:
        return {"threshold": self.threshold.state_dict(),
                "debias": self.debias.state_dict() if self.debias is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.threshold.load_state_dict(state["threshold"])
        if self.debias is not None and state.get("debias"):
            self.debias.load_state_dict(state["debias"])


class Supervised:
    """Labeled frames only (class-uniform batches come from the sampler): the baseline."""

    uses_unlabeled = False

    def __init__(self, cfg: SemiSupConfig, ctx: Context, num_classes: int, n_unlabeled: int = 0):
        self.cfg, self.ctx = cfg, ctx

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, *, step: int) -> dict[str, float]:
        """One optimizer step of the student at global step ``step`` (0-based); the loss statistics."""
        with self.ctx.autocast():
            logits = self.ctx.student(x_l)
        loss = F.cross_entropy(logits.float(), y_l)
        self.ctx.student_step(loss, step)
        return {"loss": loss.item(), "loss_l": loss.item()}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FixMatch(Supervised):
    """Teacher = EMA of the student labels weak views (no gradient); the student learns labeled CE plus
    lambda_u times the masked pseudo-label loss on strong views."""

    uses_unlabeled = True

    def __init__(self, cfg, ctx, num_classes, n_unlabeled=0):
        super().__init__(cfg, ctx, num_classes, n_unlabeled)
        self.labeler = PseudoLabeler(cfg, num_classes, n_unlabeled)

    def warming_up(self, step: int) -> bool:
        """True for the first ``cfg.unlabeled_warmup`` global steps: the unlabeled parts wait."""
        return step < self.cfg.unlabeled_warmup

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, *, step: int):
        if self.warming_up(step):
            return {**Supervised.train_step(self, x_l, y_l, step=step), "loss_u": 0.0, "mask_rate": 0.0}
        with torch.no_grad(), self.ctx.autocast():
            z_w = self.ctx.ema.module(u_w)
        y_hat, mask, _ = self.labeler(z_w, idx)
        n = x_l.shape[0]
        with self.ctx.autocast():
            logits = self.ctx.student(torch.cat([x_l, u_s]))
        loss_l = F.cross_entropy(logits[:n].float(), y_l)
        loss_u = self.labeler.loss(logits[n:], y_hat, mask)
        loss = loss_l + self.cfg.lambda_u * loss_u
        self.ctx.student_step(loss, step)
        return {"loss": loss.item(), "loss_l": loss_l.item(), "loss_u": loss_u.item(),
                "mask_rate": float(mask.mean())}

    def state_dict(self):
        return {"labeler": self.labeler.state_dict()}

    def load_state_dict(self, state):
        self.labeler.load_state_dict(state["labeler"])


def feedback_signal(ce_old: torch.Tensor, ce_new: torch.Tensor) -> torch.Tensor:
    """h = CE(S_old(x_l), y_l) - CE(S_new(x_l), y_l): positive when the student's step on the teacher's
    pseudo-labels lowered its labeled loss. A detached scalar (no gradient flows through it)."""
    return (ce_old.detach().float() - ce_new.detach().float()).reshape(())


def feedback_teacher_loss(t_l: torch.Tensor, y_l: torch.Tensor, t_s: torch.Tensor, y_hat: torch.Tensor,
                          mask: torch.Tensor, h: torch.Tensor, consistency: float = 1.0) -> dict[str, torch.Tensor]:
    """Teacher loss of the feedback loop (Meta Pseudo Labels, Pham et al., 2021): CE(T(x_l), y_l)
    + consistency * masked CE(T(u_s), y_hat) + h * CE(T(u_s), argmax T(u_s)). With h > 0 the teacher is pushed
    towards its own predictions (they helped the student); with h < 0 away from them."""
    sup = F.cross_entropy(t_l.float(), y_l)
    cons = (F.cross_entropy(t_s.float(), y_hat, reduction="none") * mask).mean()
    mpl = h * F.cross_entropy(t_s.float(), t_s.detach().argmax(dim=1))
    return {"loss": sup + consistency * cons + mpl, "sup": sup, "cons": cons, "mpl": mpl}


class FeedbackTeacher(FixMatch):
    """Meta Pseudo Labels (Pham et al., 2021), as Face2Exp (Zeng et al., 2022) uses it: a separate teacher
    network (own optimizer and schedule) labels the weak views; the student steps on (u_s, y_hat) (plus its
    labeled batch, weight ``student_labeled_weight``); the change of the student's labeled loss, h, then
    weights the teacher's self-label term. With ``debias`` the pseudo-labels are DebiasPL's ("debiased
    feedback")."""

    def __init__(self, cfg, ctx, num_classes, n_unlabeled=0):
        super().__init__(cfg, ctx, num_classes, n_unlabeled)
        self.teacher_module = copy.deepcopy(_unwrap(ctx.student)).train()
        self.teacher = ctx.wrap(self.teacher_module)
        self.optimizer = ctx.make_optimizer(self.teacher_module)
        self.scheduler = ctx.make_scheduler(self.optimizer)

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, *, step: int):
        if self.warming_up(step):
            stats = Supervised.train_step(self, x_l, y_l, step=step)
            with self.ctx.autocast():  # the teacher learns the labeled batch too, so it is ready to label
                t_loss = F.cross_entropy(self.teacher(x_l).float(), y_l)
            self._teacher_update(t_loss, step)
            return {**stats, "loss_u": 0.0, "mask_rate": 0.0, "h": 0.0, "teacher_loss": t_loss.item()}
        n, nu = x_l.shape[0], u_w.shape[0]
        with self.ctx.autocast():
            t_logits = self.teacher(torch.cat([x_l, u_w, u_s]))
        t_l, t_w, t_s = t_logits[:n], t_logits[n:n + nu], t_logits[n + nu:]
        y_hat, mask, _ = self.labeler(t_w, idx)

        ce_old = self._labeled_ce(x_l, y_l)
        with self.ctx.autocast():
            s_logits = self.ctx.student(torch.cat([x_l, u_s]))
        loss_l = F.cross_entropy(s_logits[:n].float(), y_l)
        loss_u = self.labeler.loss(s_logits[n:], y_hat, mask)
        loss = self.cfg.student_labeled_weight * loss_l + self.cfg.lambda_u * loss_u
        self.ctx.student_step(loss, step)
        h = all_reduce_mean(feedback_signal(ce_old, self._labeled_ce(x_l, y_l)))

        t = feedback_teacher_loss(t_l, y_l, t_s, y_hat, mask, h, self.cfg.teacher_consistency)
        self._teacher_update(t["loss"], step)
        return {"loss": loss.item(), "loss_l": loss_l.item(), "loss_u": loss_u.item(),
                "mask_rate": float(mask.mean()), "h": float(h), "teacher_loss": t["loss"].item()}

    def _teacher_update(self, loss: torch.Tensor, step: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.ctx.clip_grad:
            nn.utils.clip_grad_norm_(self.teacher_module.parameters(), self.ctx.clip_grad)
        self.optimizer.step()
        self.scheduler.step_update(step + 1)

    @torch.no_grad()
    def _labeled_ce(self, x_l: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
        """CE of the student on the labeled batch alone, in eval mode: the before/after pair of h must see the
        same normalisation (train-mode BN statistics of the mixed labeled+strong batch would bias h)."""
        student = _unwrap(self.ctx.student)
        student.eval()
        with self.ctx.autocast():
            ce = F.cross_entropy(student(x_l).float(), y_l)
        student.train()
        return ce

    def state_dict(self):
        return {**super().state_dict(), "teacher": self.teacher_module.state_dict(),
                "teacher_optimizer": self.optimizer.state_dict(), "teacher_scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.teacher_module.load_state_dict(state["teacher"])
        self.optimizer.load_state_dict(state["teacher_optimizer"])
        self.scheduler.load_state_dict(state["teacher_scheduler"])


def build_algorithm(cfg: SemiSupConfig, ctx: Context, num_classes: int, n_unlabeled: int = 0) -> Supervised:
    if not cfg.unlabeled:
        return Supervised(cfg, ctx, num_classes, n_unlabeled)
    if cfg.feedback:
        return FeedbackTeacher(cfg, ctx, num_classes, n_unlabeled)
    return FixMatch(cfg, ctx, num_classes, n_unlabeled)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)
