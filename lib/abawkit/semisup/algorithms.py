"""The algorithms, each a small class with a ``train_step`` and a ``state_dict`` (USB's structure):
:class:`Supervised`, :class:`FixMatch` (EMA teacher; Sohn et al., 2020) and :class:`FeedbackTeacher` (Meta
Pseudo Labels, Pham et al., 2021). Confidence thresholds (FixMatch, FreeMatch, FlexMatch) and debiased
pseudo-labels (DebiasPL, Wang et al., 2022) are parts of :class:`PseudoLabeler`, switched by the config.
The training loop owns the step count: ``train_step`` receives the global step (0-based), so a resumed run
continues the warm-up where its checkpoint stopped.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import CLASSES
from .config import SemiSupConfig
from .debias import DebiasedPseudoLabels
from .distributed import all_reduce_mean
from .mix import mixed_loss
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
    total_steps: int = 0
    mix: str = "none"  # the labeled loss of the supervised steps: none | mixup | facemix (semisup/mix.py)


def buffers_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the module's buffers (BatchNorm running statistics and counters)."""
    return {name: b.detach().clone() for name, b in _unwrap(module).named_buffers()}


@contextlib.contextmanager
def buffers_as(module: nn.Module, state: dict[str, torch.Tensor]):
    """Run the block with the module's buffers set to ``state`` (from :func:`buffers_of`), then put back the
    ones it had: a forward pass inside sees, and leaves, exactly that normalisation state."""
    module = _unwrap(module)
    now = buffers_of(module)
    named = dict(module.named_buffers())
    try:
        for name, value in state.items():
            named[name].copy_(value)
        yield
    finally:
        for name, value in now.items():
            named[name].copy_(value)


class PseudoLabeler:
    """Teacher logits of weak views -> (pseudo-labels, mask, confidence): debiased q = softmax(z_w - tau_d log
    p_hat) (DebiasPL) or plain softmax, then the threshold. With debiasing the threshold sees the debiased
    probabilities: max_c q(c) is the confidence that enters the mask; a pseudo-label of a class in
    ``pseudo_label_exclude`` is masked out whatever its confidence, one of a class in ``pseudo_label_strict`` below
    ``pseudo_label_strict_floor``. ``loss`` is the masked student loss on strong views: DebiasPL's adaptive margin
    with debiasing (unless ``debias_margin`` is off), else CE."""

    def __init__(self, cfg: SemiSupConfig, num_classes: int, n_unlabeled: int, unlabeled_steps: int = 0):
        self.threshold: Threshold = make_threshold(cfg.threshold, num_classes, n_unlabeled, cfg.tau,
                                                   cfg.threshold_momentum, cfg.threshold_floor)
        self.debias = (DebiasedPseudoLabels(num_classes, cfg.debias_strength, cfg.debias_m(unlabeled_steps),
                                           cfg.debias_prior)
                       if cfg.debias else None)
        self.margin = cfg.debias_margin
        # the confidence each class's pseudo-labels need on top of the threshold: 0, the strict floor, or never
        self.class_floor = torch.zeros(num_classes)
        self.class_floor[[CLASSES.index(c) for c in cfg.pseudo_label_strict]] = cfg.pseudo_label_strict_floor
        self.class_floor[[CLASSES.index(c) for c in cfg.pseudo_label_exclude]] = float("inf")

    def initialise(self, z_w: torch.Tensor) -> None:
        """Start the debiasing marginal and the self-adaptive threshold from the teacher's logits ``z_w`` (N, C)
        on an unlabeled pass: p_hat = mean softmax(z_w), then tau and p from the probabilities the
        threshold will see (debiased with that p_hat when debiasing is on). FixMatch's and FlexMatch's thresholds
        have no such state."""
        z_w = z_w.detach().float()
        if self.debias is not None:
            self.debias.initialise(z_w)
            q = self.debias.debiased_probs(z_w)
        else:
            q = torch.softmax(z_w, dim=1)
        if hasattr(self.threshold, "initialise"):
            self.threshold.initialise(q)

    def __call__(self, z_w: torch.Tensor, idx: torch.Tensor | None = None):
        z_w = z_w.detach().float()
        q = self.debias(z_w) if self.debias is not None else torch.softmax(z_w, dim=1)
        mask = self.threshold.mask(q, idx)
        conf, y_hat = q.max(dim=1)
        if self.class_floor.any():
            mask = mask * (conf >= self.class_floor.to(conf.device)[y_hat])
        return y_hat, mask, conf

    def loss(self, z_s: torch.Tensor, y_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.debias is not None and self.margin:
            return self.debias.loss(z_s, y_hat, mask)
        return (F.cross_entropy(z_s.float(), y_hat, reduction="none") * mask).mean()

    def state_dict(self) -> dict:
        return {"threshold": self.threshold.state_dict(),
                "debias": self.debias.state_dict() if self.debias is not None else {}}

    def load_state_dict(self, state: dict) -> None:
        self.threshold.load_state_dict(state["threshold"])
        if self.debias is not None and state.get("debias"):
            self.debias.load_state_dict(state["debias"])


def dst_head(embed_dim: int, num_classes: int) -> nn.Module:
    """DST's head (Chen et al., 2022, as in the authors' code; the pseudo head and the worst-case head alike):
    Linear(d, 2d), ReLU, dropout 0.5, Linear(2d, C) on the student's embedding."""
    width = 2 * embed_dim
    return nn.Sequential(nn.Linear(embed_dim, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, num_classes))


class ExtraHead:
    """A head on the student's embedding with its own optimizer and the student's schedule (DST's heads)."""

    def __init__(self, ctx: Context, embed_dim: int, num_classes: int, device: torch.device):
        self.ctx = ctx
        self.module = dst_head(embed_dim, num_classes).to(device)
        self.net = ctx.wrap(self.module)
        self.optimizer = ctx.make_optimizer(self.module)
        self.scheduler = ctx.make_scheduler(self.optimizer)

    def __call__(self, emb: torch.Tensor) -> torch.Tensor:
        return self.net(emb)

    def step(self, step: int) -> None:
        if self.ctx.clip_grad:
            nn.utils.clip_grad_norm_(self.module.parameters(), self.ctx.clip_grad)
        self.scheduler.step_update(step)  # the student's lr of this step (the head skips the warm-up)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class _ReverseGradient(torch.autograd.Function):
    """Identity forward; the gradient times -coeff backward (a gradient reversal layer, Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return _ReverseGradient.apply(x, coeff)


#: DST's gradient reversal coefficient once warmed up (WarmStartGradientReverseLayer's hi)
WORST_CASE_REVERSAL = 0.1


def worst_case_loss(adv_l: torch.Tensor, pred_l: torch.Tensor, adv_u: torch.Tensor, pred_u: torch.Tensor,
                    labeled_weight: float = 2.0) -> torch.Tensor:
    """DST's worst-case estimation loss: eta' CE(adv_l, pred_l) - mean log(1 - softmax(adv_u)[pred_u]), the
    worst-case head's logits ``adv_*`` against the classifier's predictions ``pred_*`` on the labeled and the
    unlabeled views: right on the labeled frames, as wrong as it can be on the unlabeled ones."""
    loss_l = F.cross_entropy(adv_l.float(), pred_l)
    p_u = torch.softmax(adv_u.float(), dim=1).gather(1, pred_u[:, None]).squeeze(1)
    loss_u = -torch.log((1.0 - p_u).clamp_min(1e-6)).mean()
    return labeled_weight * loss_l + loss_u


class Supervised:
    """Labeled frames only (class-uniform batches come from the sampler): the baseline."""

    uses_unlabeled = False
    needs_h_batch = False
    started = True

    def __init__(self, cfg: SemiSupConfig, ctx: Context, num_classes: int, n_unlabeled: int = 0):
        self.cfg, self.ctx, self.num_classes = cfg, ctx, num_classes

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, x_h=None, y_h=None, *,
                   step: int, boxes=None) -> dict[str, float]:
        """One optimizer step of the student at global step ``step`` (0-based); the loss statistics. The labeled
        loss is the context's ``mix`` (mixup, FaceMix with the images' face ``boxes``; semisup/mix.py)."""
        loss = mixed_loss(self.ctx.student, x_l, y_l, self.ctx.mix, boxes=boxes, num_classes=self.num_classes,
                          autocast=self.ctx.autocast)
        self.ctx.student_step(loss, step)
        return {"loss": loss.item(), "loss_l": loss.item()}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FixMatch(Supervised):
    """Teacher = EMA of the student labels weak views (no gradient); the student learns labeled CE plus
    lambda_u (ramped) times the masked pseudo-label loss on strong views. With ``weak_in_student`` the weak views
    go through the student's forward as well (USB's batch: labeled, weak, strong), so BatchNorm's statistics,
    which the EMA teacher inherits, cover the weak views it labels. With ``pseudo_head`` the strong views' logits
    are a pseudo head's on the student's embedding (DST, Chen et al., 2022; own optimizer and schedule), so the
    student's classifier, whose EMA labels and predicts, learns from the labels only. With ``worst_case_head``
    DST's worst-case head plays against the shared network through a gradient reversal layer on the labeled and
    weak views' embeddings (``worst_case_loss``)."""

    uses_unlabeled = True

    def __init__(self, cfg, ctx, num_classes, n_unlabeled=0):
        super().__init__(cfg, ctx, num_classes, n_unlabeled)
        self.unlabeled_steps = max(1, ctx.total_steps - cfg.unlabeled_warmup)
        self.labeler = PseudoLabeler(cfg, num_classes, n_unlabeled, self.unlabeled_steps)
        self.started = False
        #: (unlabeled indices, pseudo-labels, mask) of the last step, for a measurement hook (train's on_pseudo_labels)
        self.last_pseudo_labels: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        student = _unwrap(ctx.student)
        heads = {name: ExtraHead(ctx, student.embed_dim, num_classes, next(student.parameters()).device)
                 for name in ("pseudo_head", "worst_case_head") if getattr(cfg, name)}
        self.head, self.worst_head = heads.get("pseudo_head"), heads.get("worst_case_head")
        self.heads = heads

    def warming_up(self, step: int) -> bool:
        """True for the first ``cfg.unlabeled_warmup`` global steps: the unlabeled parts wait."""
        return step < self.cfg.unlabeled_warmup

    def ramp(self, step: int) -> float:
        """The share of the unlabeled parts' weight at ``step``: rising linearly from 0 to 1 over the ramp's first
        steps of the unlabeled phase (our choice)."""
        ramp = self.cfg.ramp_steps(self.unlabeled_steps)
        done = step - self.cfg.unlabeled_warmup + 1
        return min(1.0, done / ramp) if ramp > 0 else 1.0

    def unlabeled_weight(self, step: int) -> float:
        """lambda_u, ramped (``ramp``)."""
        return self.cfg.lambda_u * self.ramp(step)

    def teacher(self) -> nn.Module:
        """The network that labels the weak views."""
        return self.ctx.ema.module

    @torch.no_grad()
    def start_unlabeled(self, batches: Iterable[torch.Tensor]) -> None:
        """At the first step of the unlabeled phase: with ``init_from_teacher``, the teacher labels ``batches``
        (weak views of an unlabeled pass) in the mode it labels with, its normalisation state left as it was,
        and the pseudo-labeler starts from those statistics."""
        if self.cfg.init_from_teacher:
            teacher = self.teacher()
            kept = buffers_of(teacher)
            logits = []
            with buffers_as(teacher, kept):
                for u_w in batches:
                    with self.ctx.autocast():
                        logits.append(teacher(u_w).float())
            self.labeler.initialise(torch.cat(logits))
        self.started = True

    def student_logits(self, x_l, u_w, u_s, step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's logits of one forward over labeled, (weak,) strong views, the last rows u_s's (with
        ``pseudo_head``, the pseudo head's), and the worst-case loss of that forward (0 without
        ``worst_case_head``; its reversed gradient reaches the shared network ramped like lambda_u at ``step``)."""
        parts = [x_l, u_w, u_s] if self.cfg.weak_in_student else [x_l, u_s]
        zero = torch.zeros((), device=x_l.device)
        with self.ctx.autocast():
            if not self.heads:
                return self.ctx.student(torch.cat(parts)), zero
            emb, logits = self.ctx.student(torch.cat(parts), with_embedding=True)
            n, nu, ns = x_l.shape[0], u_w.shape[0], u_s.shape[0]
            wc = zero
            if self.worst_head is not None:
                ramp = 1.0 if step is None else self.ramp(step)
                adv = self.worst_head(reverse_gradient(emb[:n + nu], WORST_CASE_REVERSAL * ramp))
                pred = logits[:n + nu].detach().argmax(dim=1)
                wc = self.cfg.worst_case_weight * worst_case_loss(adv[:n], pred[:n], adv[n:], pred[n:],
                                                                   self.cfg.worst_case_labeled_weight)
            if self.head is not None:
                logits = torch.cat([logits[:-ns], self.head(emb[-ns:]).to(logits.dtype)])
            return logits, wc

    def step_student(self, loss: torch.Tensor, step: int) -> None:
        """The student's step on ``loss`` (the context's), and its extra heads' (DST's) when there are any."""
        self.ctx.student_step(loss, step)
        for head in self.heads.values():
            head.step(step)

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, x_h=None, y_h=None, *, step: int, boxes=None):
        if self.warming_up(step):
            return {**Supervised.train_step(self, x_l, y_l, step=step, boxes=boxes), "loss_u": 0.0, "mask_rate": 0.0}
        with torch.no_grad(), self.ctx.autocast():
            z_w = self.teacher()(u_w)
        y_hat, mask, _ = self.labeler(z_w, idx)
        self.last_pseudo_labels = (idx, y_hat, mask)
        logits, loss_wc = self.student_logits(x_l, u_w, u_s, step)
        n, ns = x_l.shape[0], u_s.shape[0]
        loss_l = F.cross_entropy(logits[:n].float(), y_l)
        loss_u = self.labeler.loss(logits[-ns:], y_hat, mask)
        loss = loss_l + self.unlabeled_weight(step) * loss_u + loss_wc
        self.step_student(loss, step)
        return {"loss": loss.item(), "loss_l": loss_l.item(), "loss_u": loss_u.item(),
                "loss_wc": loss_wc.item(), "mask_rate": float(mask.mean())}

    def state_dict(self):
        return {"labeler": self.labeler.state_dict(), "started": self.started,
                **{name: head.state_dict() for name, head in self.heads.items()}}

    def load_state_dict(self, state):
        self.labeler.load_state_dict(state["labeler"])
        self.started = bool(state.get("started", True))
        if "head_optimizer" in state:  # a pseudo head saved before the heads shared one layout
            state = {**state, "pseudo_head": {"module": state["pseudo_head"], "optimizer": state["head_optimizer"],
                                              "scheduler": state["head_scheduler"]}}
        for name, head in self.heads.items():
            head.load_state_dict(state[name])


def feedback_signal(ce_old: torch.Tensor, ce_new: torch.Tensor) -> torch.Tensor:
    """h = CE(S_old(x_l), y_l) - CE(S_new(x_l), y_l): positive when the student's step on the teacher's
    pseudo-labels lowered its labeled loss. A detached scalar (no gradient flows through it)."""
    return (ce_old.detach().float() - ce_new.detach().float()).reshape(())


def feedback_teacher_loss(t_l: torch.Tensor, y_l: torch.Tensor, t_s: torch.Tensor, y_hat: torch.Tensor,
                          mask: torch.Tensor, h: torch.Tensor, consistency: float = 1.0) -> dict[str, torch.Tensor]:
    """Teacher loss of the feedback loop (Meta Pseudo Labels, Pham et al., 2021): CE(T(x_l), y_l)
    + consistency * masked CE(T(u_s), y_hat) + h * masked CE(T(u_s), y_hat), where y_hat and the mask are the
    pseudo-labels the student trained on (as in the authors' code: the hard labels of the weak views). With
    h > 0 the teacher is pushed towards those labels (they helped the student); with h < 0 away from them."""
    sup = F.cross_entropy(t_l.float(), y_l)
    ce = F.cross_entropy(t_s.float(), y_hat, reduction="none") * mask
    cons, mpl = ce.mean(), h * ce.mean()
    return {"loss": sup + consistency * cons + mpl, "sup": sup, "cons": cons, "mpl": mpl}


class FeedbackTeacher(FixMatch):
    """Meta Pseudo Labels (Pham et al., 2021), as Face2Exp (Zeng et al., 2022) uses it: a separate teacher
    network (own optimizer and schedule) labels the weak views; the student steps on (u_s, y_hat) (plus its
    labeled batch, weight ``student_labeled_weight``); the change h of the student's loss on a second labeled
    batch it does not train on, minus a moving-average baseline, then weights the teacher's term on the
    pseudo-labels the student trained on. With ``debias`` the pseudo-labels are DebiasPL's ("debiased
    feedback")."""

    def __init__(self, cfg, ctx, num_classes, n_unlabeled=0):
        super().__init__(cfg, ctx, num_classes, n_unlabeled)
        self.teacher_module = copy.deepcopy(_unwrap(ctx.student)).train()
        self.teacher_net = ctx.wrap(self.teacher_module)
        self.optimizer = ctx.make_optimizer(self.teacher_module)
        self.scheduler = ctx.make_scheduler(self.optimizer)
        self.h_baseline = 0.0

    @property
    def needs_h_batch(self) -> bool:
        return self.cfg.h_batch == "separate"

    def teacher(self) -> nn.Module:
        return self.teacher_net

    def train_step(self, x_l, y_l, u_w=None, u_s=None, idx=None, x_h=None, y_h=None, *, step: int, boxes=None):
        if self.warming_up(step):
            stats = Supervised.train_step(self, x_l, y_l, step=step, boxes=boxes)
            with self.ctx.autocast():  # the teacher learns the labeled batch too, so it is ready to label
                t_loss = F.cross_entropy(self.teacher_net(x_l).float(), y_l)
            self._teacher_update(t_loss, step)
            return {**stats, "loss_u": 0.0, "mask_rate": 0.0, "h": 0.0, "teacher_loss": t_loss.item()}
        n, nu = x_l.shape[0], u_w.shape[0]
        with self.ctx.autocast():
            t_logits = self.teacher_net(torch.cat([x_l, u_w, u_s]))
        t_l, t_w, t_s = t_logits[:n], t_logits[n:n + nu], t_logits[n + nu:]
        y_hat, mask, _ = self.labeler(t_w, idx)
        self.last_pseudo_labels = (idx, y_hat, mask)

        h_raw, stats = self.student_feedback(x_l, y_l, u_w, u_s, y_hat, mask, x_h, y_h, step=step)
        h = self._baselined(h_raw)

        t = feedback_teacher_loss(t_l, y_l, t_s, y_hat, mask, torch.tensor(h), self.cfg.teacher_consistency)
        self._teacher_update(t["loss"], step)
        return {**stats, "mask_rate": float(mask.mean()), "h": h, "h_raw": h_raw, "teacher_loss": t["loss"].item()}

    def student_feedback(self, x_l, y_l, u_w, u_s, y_hat, mask, x_h=None, y_h=None, *, step: int):
        """The student's step on its labeled batch and the pseudo-labels (y_hat, mask) of u_s, and h, the drop of
        its loss on the labeled batch (x_h, y_h) it does not train on (its own batch when ``h_batch`` is same or
        no such batch is given), both losses under the normalisation state from before the step. Returns
        (h, the student's loss statistics)."""
        if x_h is None or not self.needs_h_batch:
            x_h, y_h = x_l, y_l
        before = buffers_of(self.ctx.student)
        ce_old = self._labeled_ce(x_h, y_h)
        s_logits, loss_wc = self.student_logits(x_l, u_w, u_s, step)
        loss_l = F.cross_entropy(s_logits[:x_l.shape[0]].float(), y_l)
        loss_u = self.labeler.loss(s_logits[-u_s.shape[0]:], y_hat, mask)
        loss = self.cfg.student_labeled_weight * loss_l + self.unlabeled_weight(step) * loss_u + loss_wc
        self.step_student(loss, step)
        with buffers_as(self.ctx.student, before):  # the normalisation state of ce_old: h sees the weights only
            ce_new = self._labeled_ce(x_h, y_h)
        h = float(all_reduce_mean(feedback_signal(ce_old, ce_new)))
        return h, {"loss": loss.item(), "loss_l": loss_l.item(), "loss_u": loss_u.item(), "loss_wc": loss_wc.item()}

    def _baselined(self, h_raw: float) -> float:
        """h minus its moving average b <- d b + (1 - d) h (Meta Pseudo Labels' baseline, d = feedback_baseline;
        updated first, as in the authors' code): what the teacher is rewarded for is doing better than usual."""
        d = self.cfg.feedback_baseline
        if d <= 0:
            return h_raw
        self.h_baseline = d * self.h_baseline + (1 - d) * h_raw
        return h_raw - self.h_baseline

    def _teacher_update(self, loss: torch.Tensor, step: int) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.ctx.clip_grad:
            nn.utils.clip_grad_norm_(self.teacher_module.parameters(), self.ctx.clip_grad)
        self.optimizer.step()
        self.scheduler.step_update(step + 1)

    @torch.no_grad()
    def _labeled_ce(self, x_l: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
        """CE of the student on a labeled batch alone, in eval mode (its running statistics, which the caller
        holds equal for the before/after pair of h)."""
        student = _unwrap(self.ctx.student)
        student.eval()
        with self.ctx.autocast():
            ce = F.cross_entropy(student(x_l).float(), y_l)
        student.train()
        return ce

    def state_dict(self):
        return {**super().state_dict(), "teacher": self.teacher_module.state_dict(),
                "teacher_optimizer": self.optimizer.state_dict(), "teacher_scheduler": self.scheduler.state_dict(),
                "h_baseline": self.h_baseline}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.h_baseline = float(state.get("h_baseline", 0.0))
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
