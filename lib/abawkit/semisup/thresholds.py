"""Confidence thresholds for pseudo-labels: fixed (FixMatch, Sohn et al., 2020), self-adaptive (FreeMatch,
Wang et al., 2023) and the class-wise curriculum of FlexMatch (Zhang et al., 2021).

Each takes the teacher's class probabilities ``q`` (B, C) of the weak views and returns a 0/1 mask (B,);
its state (``state_dict``) goes into the checkpoint. Under DDP the batch statistics are all-reduced, so
every rank holds the same state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .distributed import all_gather_cat, all_reduce_mean


class Threshold(ABC):
    @abstractmethod
    def mask(self, q: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Update the state with this batch (where the method does), then the float mask (B,)."""

    def threshold_per_class(self) -> torch.Tensor:
        """The current effective threshold of each class (C,), for the logs."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for key, value in state.items():
            setattr(self, key, value.clone())


class FixedThreshold(Threshold):
    """FixMatch: ``max_c q(c) >= tau``."""

    def __init__(self, num_classes: int, tau: float = 0.95):
        self.num_classes, self.tau = num_classes, tau

    def mask(self, q, idx=None):
        return (q.max(dim=1).values >= self.tau).float()

    def threshold_per_class(self):
        return torch.full((self.num_classes,), self.tau)


class SelfAdaptiveThreshold(Threshold):
    """FreeMatch self-adaptive thresholding (Wang et al., 2023), with tau_0 = p_0 = 1/C and lambda = 0.999:

    tau_t = lambda*tau_{t-1} + (1-lambda)*mean_b max_c q_b(c);  p_t = lambda*p_{t-1} + (1-lambda)*mean_b q_b;
    mask_b = 1[max_c q_b(c) >= max(floor, tau_t * p_t(argmax q_b) / max_c p_t(c))], the current batch counted
    first.

    Our choices (FreeMatch has neither; docs/semisup.md, "Corrections"): :meth:`initialise` replaces
    tau_0 = p_0 = 1/C by the teacher's statistics on an unlabeled pass, so the threshold does not admit every
    pseudo-label for the hundreds of steps 1/C takes to rise; ``floor`` (default 0: off) bounds every class's
    threshold below.
    """

    def __init__(self, num_classes: int, momentum: float = 0.999, floor: float = 0.0):
        self.num_classes, self.momentum, self.floor = num_classes, momentum, floor
        self.tau = torch.tensor(1.0 / num_classes)
        self.p = torch.full((num_classes,), 1.0 / num_classes)

    def initialise(self, q: torch.Tensor) -> None:
        """tau_0 = mean_i max_c q_i(c), p_0 = mean_i q_i over the teacher's probabilities ``q`` (N, C) of an
        unlabeled pass (all-reduced under DDP: every rank passes over the same number of images)."""
        q = q.detach().float()
        stats = all_reduce_mean(torch.cat([q.max(dim=1).values.mean().reshape(1), q.mean(dim=0)]))
        self.tau, self.p = stats[0].clone(), stats[1:].clone()

    def update(self, q: torch.Tensor) -> None:
        q = q.detach().float()
        stats = all_reduce_mean(torch.cat([q.max(dim=1).values.mean().reshape(1), q.mean(dim=0)]))
        lam = self.momentum
        self.tau = lam * self.tau.to(q.device) + (1 - lam) * stats[0]
        self.p = lam * self.p.to(q.device) + (1 - lam) * stats[1:]

    def mask(self, q, idx=None):
        self.update(q)
        conf, cls = q.detach().float().max(dim=1)
        return (conf >= self.threshold_per_class()[cls]).float()

    def threshold_per_class(self):
        return (self.tau * self.p / self.p.max()).clamp(min=self.floor)

    def state_dict(self):
        return {"tau": self.tau.detach().cpu(), "p": self.p.detach().cpu()}


def flexmatch_mapping(beta: torch.Tensor) -> torch.Tensor:
    """FlexMatch's convex mapping M(beta) = beta / (2 - beta) of the normalized learning effect."""
    return beta / (2.0 - beta)


class FlexMatchThreshold(Threshold):
    """FlexMatch curriculum (Zhang et al., 2021): sigma(c) = unlabeled samples whose latest confident (>= tau)
    prediction is c; beta(c) = sigma(c) / max(max_c sigma, N_unused); threshold tau * M(beta(c)).

    Needs the dataset index of each unlabeled sample. The batch updates the state before its mask (as in
    the authors' code); under DDP the indices and predictions of every rank are gathered.
    """

    def __init__(self, num_classes: int, n_unlabeled: int, tau: float = 0.95):
        self.num_classes, self.tau = num_classes, tau
        self.selected = torch.full((n_unlabeled,), -1, dtype=torch.long)

    def update(self, q: torch.Tensor, idx: torch.Tensor) -> None:
        conf, cls = q.detach().float().max(dim=1)
        idx, conf, cls = all_gather_cat(idx.long()), all_gather_cat(conf), all_gather_cat(cls)
        sure = conf >= self.tau
        self.selected[idx[sure].cpu()] = cls[sure].cpu()

    def beta(self) -> torch.Tensor:
        sigma = torch.bincount(self.selected[self.selected >= 0], minlength=self.num_classes).float()
        unused = float((self.selected < 0).sum())
        denom = max(float(sigma.max()), unused)
        return sigma / denom if denom > 0 else torch.zeros(self.num_classes)

    def threshold_per_class(self):
        return self.tau * flexmatch_mapping(self.beta())

    def mask(self, q, idx=None):
        if idx is None:
            raise ValueError("FlexMatch needs the unlabeled sample indices")
        self.update(q, idx)
        conf, cls = q.detach().float().max(dim=1)
        return (conf >= self.threshold_per_class().to(q.device)[cls]).float()

    def state_dict(self):
        return {"selected": self.selected.clone()}


def make_threshold(kind: str, num_classes: int, n_unlabeled: int = 0, tau: float = 0.95,
                   momentum: float = 0.999, floor: float = 0.0) -> Threshold:
    if kind == "fixed":
        return FixedThreshold(num_classes, tau)
    if kind == "self-adaptive":
        return SelfAdaptiveThreshold(num_classes, momentum, floor)
    if kind == "flexmatch":
        return FlexMatchThreshold(num_classes, n_unlabeled, tau)
    raise ValueError(f"threshold {kind!r}: expected fixed, self-adaptive or flexmatch")
