"""Debiased pseudo-labels (DebiasPL, Wang et al., CVPR 2022, following the authors' code).

p_hat is a momentum estimate of the teacher's class marginal on unlabeled data (a vector, p_hat_0 = 1/C).
Per batch: (1) q = softmax(z_w - tau_d log p_hat) with the current p_hat; (2) p_hat <- m p_hat + (1-m)
mean_b softmax(z_w) (the raw softmax, averaged over the batch axis); (3) the student's adaptive-margin loss
CE(z_s + tau_d log p_hat, y_hat) with the updated p_hat, masked.
Our option: a class ``prior`` pi the marginal is moved towards instead of uniform (log p_hat becomes
log(p_hat / pi) in steps 1 and 3), for pools that are not class-balanced; a uniform pi is DebiasPL.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import all_reduce_mean


class DebiasedPseudoLabels:
    def __init__(self, num_classes: int, strength: float = 0.5, momentum: float = 0.999,
                 prior: tuple[float, ...] | torch.Tensor = ()):
        self.num_classes, self.strength, self.momentum = num_classes, strength, momentum
        self.p_hat = torch.full((num_classes,), 1.0 / num_classes)
        #: log pi (0 without a prior: DebiasPL's uniform target, up to a constant that changes no softmax)
        self.log_prior = torch.zeros(num_classes)
        if len(prior):
            pi = torch.as_tensor(prior, dtype=torch.float32)
            if pi.shape != (num_classes,) or not bool((pi > 0).all()):
                raise ValueError(f"debias_prior {[float(v) for v in pi]}: expected {num_classes} positive class "
                                 "shares, one per class")
            self.log_prior = torch.log(pi / pi.sum())

    def log_bias(self, device: torch.device) -> torch.Tensor:
        """log(p_hat / pi): how far the teacher's marginal is above the prior, per class."""
        return torch.log(self.p_hat.to(device)) - self.log_prior.to(device)

    def initialise(self, z_w: torch.Tensor) -> None:
        """Our choice: p_hat_0 = the mean raw softmax of the teacher's logits ``z_w`` (N, C) on an
        unlabeled pass, instead of 1/C (all-reduced under DDP)."""
        self.p_hat = all_reduce_mean(torch.softmax(z_w.detach().float(), dim=1).mean(dim=0)).clone()

    def debiased_probs(self, z_w: torch.Tensor) -> torch.Tensor:
        """Step 1: q = softmax(z_w - tau_d * log(p_hat / pi)) (B, C), from the current p_hat."""
        return torch.softmax(z_w.detach().float() - self.strength * self.log_bias(z_w.device), dim=1)

    def update(self, z_w: torch.Tensor) -> None:
        """Step 2: p_hat <- m p_hat + (1-m) mean over the batch axis of the raw softmax (all-reduced under DDP)."""
        mean_prob = all_reduce_mean(torch.softmax(z_w.detach().float(), dim=1).mean(dim=0))
        self.p_hat = self.momentum * self.p_hat.to(z_w.device) + (1 - self.momentum) * mean_prob

    def __call__(self, z_w: torch.Tensor) -> torch.Tensor:
        """Steps 1 and 2: the debiased probabilities of this batch, then the marginal updated with it."""
        q = self.debiased_probs(z_w)
        self.update(z_w)
        return q

    def margin_logits(self, z_s: torch.Tensor) -> torch.Tensor:
        """Step 3's logits z_s + tau_d log(p_hat / pi) (classes predicted above their prior get a larger margin)."""
        return z_s + self.strength * self.log_bias(z_s.device).to(z_s.dtype)

    def loss(self, z_s: torch.Tensor, y_hat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Step 3: mean_b mask_b * CE(z_s + tau_d log(p_hat / pi), y_hat)."""
        return (F.cross_entropy(self.margin_logits(z_s).float(), y_hat, reduction="none") * mask).mean()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"p_hat": self.p_hat.detach().cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.p_hat = state["p_hat"].clone()
