"""Typed configuration of a semi-supervised run: the algorithm's parts (:class:`SemiSupConfig`) and the
training loop's data, model and optimization (:class:`TrainConfig`), with the presets of ``--algorithm``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

THRESHOLDS = ("fixed", "self-adaptive", "flexmatch")
ALGORITHMS = ("supervised", "fixmatch", "full")


@dataclass(frozen=True)
class SemiSupConfig:
    """The parts of the algorithm; ``--algorithm`` picks a preset and the switches override it one by one.

    ``unlabeled=False`` is the supervised baseline (class-uniform labeled batches only). Otherwise a teacher
    pseudo-labels weak views and the student learns from strong views: the teacher is the EMA of the student
    unless ``feedback`` (SPEC 5.5), where it is a separate network trained with the student's feedback.
    """

    algorithm: str = "full"
    unlabeled: bool = True
    threshold: str = "self-adaptive"  # fixed | self-adaptive (FreeMatch, SPEC 5.3) | flexmatch
    debias: bool = True  # SPEC 5.4
    feedback: bool = True  # SPEC 5.5
    tau: float = 0.95  # fixed threshold, and the FlexMatch base threshold
    threshold_momentum: float = 0.999  # lambda of the self-adaptive threshold
    debias_strength: float = 0.5  # tau_d of DebiasPL (1.0 in the original paper)
    debias_momentum: float = 0.999  # m of the marginal p_hat
    ema_decay: float = 0.999  # EMA teacher (fixmatch) and the evaluated EMA of the student
    lambda_u: float = 1.0  # weight of the unlabeled loss
    uratio: int = 2  # unlabeled images per labeled image in a step
    # Our choice (the papers leave it open): the feedback student still learns from its labeled batch too;
    # 0 gives Meta Pseudo Labels' pure variant where the student learns only from the teacher's labels.
    student_labeled_weight: float = 1.0
    teacher_consistency: float = 1.0  # weight of the teacher's consistency term in the feedback loop
    # Our choice: supervised steps before the unlabeled parts start (the student, and the feedback teacher, learn
    # from labeled batches only; thresholds and p_hat are not updated). A from-scratch teacher pseudo-labels
    # noise at first; at demo scale (a few hundred CPU steps) those labels cost more than they give.
    unlabeled_warmup: int = 0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
        if self.unlabeled_warmup < 0:
            raise ValueError(f"unlabeled_warmup {self.unlabeled_warmup}: expected 0 or more steps")
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold {self.threshold!r}: expected one of {', '.join(THRESHOLDS)}")

    @property
    def name(self) -> str:
        """A short label of the parts actually switched on (for tables)."""
        if not self.unlabeled:
            return "supervised"
        parts = ["fixmatch" if not self.feedback else "feedback", self.threshold]
        if self.debias:
            parts.append("debias")
        return "+".join(parts)


PRESETS: dict[str, dict[str, Any]] = {
    "supervised": dict(unlabeled=False, threshold="fixed", debias=False, feedback=False),
    "fixmatch": dict(unlabeled=True, threshold="fixed", debias=False, feedback=False),
    "full": dict(unlabeled=True, threshold="self-adaptive", debias=True, feedback=True),
}


def preset(algorithm: str, **overrides: Any) -> SemiSupConfig:
    """The preset of ``algorithm`` with ``overrides`` (None values are ignored, so CLI switches pass through)."""
    if algorithm not in PRESETS:
        raise ValueError(f"algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}")
    values = {**PRESETS[algorithm], **{k: v for k, v in overrides.items() if v is not None}}
    return SemiSupConfig(algorithm=algorithm, **values)


@dataclass(frozen=True)
class TrainConfig:
    """Data, model and optimization of one run. Labeled data: ``labeled_csv`` or ``manifest`` + ``crops``."""

    out: str = "runs/demo/frame_model"
    labeled_csv: str | None = None
    manifest: str | None = None
    crops: str | None = None
    train_split: str = "Train_Set"
    unlabeled_dirs: tuple[str, ...] = ()
    val_csv: str | None = None
    val_split: str = "Validation_Set"
    frame_stride: int = 1  # keep every k-th labeled frame of a video (consecutive frames are near-duplicates)
    val_stride: int = 1
    # Training videos left out of the frame model so that stage 04 fits its post-processing (window, biases) on
    # frames the frame model never saw; same fraction and seed as stage 04's holdout (temporal.train.split_holdout).
    # 0: train on every Train_Set video. Manifest data only (ignored with labeled_csv).
    holdout_fraction: float = 0.0
    backbone: str = "resnet10t"
    pretrained: bool = False
    weights: str | None = None
    image_size: int = 112
    drop_rate: float = 0.0
    input_norm: str = "none"  # none | per-image (FrameModelConfig.input_norm)
    steps: int = 1000
    batch_size: int = 32
    optimizer: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    clip_grad: float = 5.0
    eval_every: int = 100
    ckpt_every: int = 100
    seed: int = 0
    workers: int = 2
    resume: bool = False
    progress: bool = True
    semisup: SemiSupConfig = field(default_factory=SemiSupConfig)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r}: expected adamw or sgd")
        if self.steps < 1 or self.batch_size < 1 or self.image_size < 16:
            raise ValueError("steps and batch_size must be positive and image_size at least 16")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["unlabeled_dirs"] = list(self.unlabeled_dirs)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if isinstance(values.get("semisup"), dict):
            semi = values["semisup"]
            values["semisup"] = SemiSupConfig(**semi)
        if "unlabeled_dirs" in values:
            values["unlabeled_dirs"] = tuple(values["unlabeled_dirs"] or ())
        return cls(**values)

    def with_(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)
