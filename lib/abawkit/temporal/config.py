"""Settings of the temporal stage: the encoder's architecture and ``abawkit train-temporal`` (notebook 06).

Torch-free, so that ``--help`` and the pipeline's checks stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

import tyro

@dataclass(frozen=True)
class TemporalConfig:
    """The encoder's architecture; its fields are settings of ``abawkit train-temporal`` (TemporalTrainConfig)."""

    window: int = 64
    """frames per window T"""
    stride: int | None = None
    """training stride between windows (None: T/2)"""
    depth: int = 2
    """transformer layers"""
    heads: int = 4
    """attention heads (width must be a multiple)"""
    width: int = 128
    """model width"""
    dropout: float = 0.1
    """dropout in the encoder"""
    residual_logits: bool = False
    """add the frame model's logits (times a learned scale) to the output"""
    inputs: Literal["embeddings", "logits", "both"] = "embeddings"
    """what the encoder reads per frame: the frame model's embeddings, its 8 logits, or both concatenated
    (cross-fitted features come from K different models whose logits share one meaning and embeddings do
    not; on the demo the embeddings still did best, docs/temporal.md)"""

    def __post_init__(self) -> None:
        for name in ("window", "depth", "heads", "width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be >= 1 or None (got {self.stride})")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1) (got {self.dropout})")
        if self.inputs not in ("embeddings", "logits", "both"):
            raise ValueError(f"inputs {self.inputs!r}: expected embeddings, logits or both")

    @property
    def train_stride(self) -> int:
        return max(1, self.stride or self.window // 2)


@dataclass(frozen=True)
class TemporalTrainConfig:
    """Train a transformer encoder over windows of T cached frame embeddings (a folder of <video_id>.npz with
    'embeddings', 'has_face', 'logits'), validating macro F1 on the Validation_Set each epoch; fit the
    post-processing (smoothing window, per-class biases) on the manifest's held-out Train_Set videos; compare
    frame model / + temporal encoder / + post-processing on the Validation_Set. Writes OUT/best.pt, OUT/last.pt,
    OUT/metrics.csv, OUT/postprocess.json, OUT/comparison.csv and OUT/run_record.json (cross-fitted features:
    also OUT/cv.csv and OUT/cv/epochs.csv); prints the kept epoch and its validation macro F1 last."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # 8 training videos: a small, strongly regularized encoder (docs/temporal.md, benchmarks/temporal_settings.py)
        "demo": dict(epochs=40, depth=1, width=64, dropout=0.5),
        # Aff-Wild2 on a GPU: the published systems use windows of 64-300 frames and 2-8 layers
        "gpu": dict(window=128, epochs=60, depth=4, width=256, heads=8, dropout=0.1),
    }

    features_dir: Annotated[str, tyro.conf.arg(name="features", metavar="DIR")] = "runs/demo/features"
    """feature folder (abawkit extract-features)"""
    manifest_dir: Annotated[str, tyro.conf.arg(name="manifest", metavar="DIR")] = "data_manifests/demo"
    """manifest folder: labels, splits and the held-out Train_Set videos"""
    out_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/temporal"
    """run folder to write"""
    model: TemporalConfig = field(default_factory=TemporalConfig)
    epochs: int = 30
    """training epochs"""
    batch_size: int = 32
    """windows per batch"""
    lr: float = 1e-3
    """peak learning rate (one-cycle schedule)"""
    weight_decay: float = 0.05
    """AdamW weight decay"""
    loss_weight_power: float = 0.5
    """class weights = inverse frequency ** POWER (0: plain cross-entropy)"""
    balanced_sampling: bool = False
    """class-balanced window sampling instead of loss weights"""
    label_smoothing: float = 0.1
    """label smoothing of the cross-entropy"""
    # Augmentations (ours): the frame model has seen the training frames, so their embeddings are cleaner
    # than validation/test ones; noise and dropped frames make the encoder lean on temporal context.
    feature_noise: float = 0.5
    """Gaussian noise on the training features, in units of each feature's standard deviation"""
    frame_drop: float = 0.2
    """share of face frames turned into no-face frames in each training window"""
    post_fit: Literal["holdout", "holdout+cv"] = "holdout"
    """what the post-processing (and the smoothing baseline) is fitted on: the held-out Train_Set videos, or
    those plus every training video's out-of-fold prediction from the cross-validation (cross-fitted features;
    on the demo it did worse: the folds' errors are not the validation videos', docs/temporal.md)"""
    select: Literal["validation", "holdout", "cv", "last"] = "validation"
    """the epoch whose encoder is kept as best.pt: the best validation macro F1 (the validation rows are then
    optimistic: chosen and scored on the same videos), the best on the held-out Train_Set videos, the best pooled
    out-of-fold macro F1 of the cross-validation (cross-fitted features; every fold's encoder scored each epoch
    on the videos it left out, the final encoder kept at that epoch), or the last epoch (on the demo none of
    them made the encoder beat the frame model on the test split, docs/temporal.md)"""
    cv: bool = True
    """with cross-fitted features (abawkit extract-features --folds K): also train one encoder per fold
    without that fold's videos and report frame model / + smoothing / + temporal encoder per fold on their
    out-of-fold features (OUT/cv.csv), a check on more videos than the validation split's"""
    seed: int = 0
    """random seed"""
    threads: int = 1
    """torch CPU threads; >1 only on an otherwise idle machine (OpenMP spin-waits when cores are shared)"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("feature_noise", "lr", "weight_decay", "loss_weight_power"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.select not in ("validation", "holdout", "cv", "last"):
            raise ValueError(f"select {self.select!r}: expected validation, holdout, cv or last")
        if self.select == "cv" and not self.cv:
            raise ValueError("select cv chooses the epoch by the cross-validation: it needs cv on (drop --no-cv)")
        if self.post_fit not in ("holdout", "holdout+cv"):
            raise ValueError(f"post_fit {self.post_fit!r}: expected holdout or holdout+cv")
        if not 0 <= self.frame_drop < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError(f"frame_drop and label_smoothing must be in [0, 1) "
                             f"(got {self.frame_drop}, {self.label_smoothing})")


@dataclass(frozen=True)
class PredictConfig:
    """Run a trained temporal run (abawkit train-temporal) over cached features and write OUT/<video_id>.npz per
    subject with 'probs' (after the fitted post-processing: fill, smoothing, class biases from
    TEMPORAL/postprocess.json), 'probs_raw' and 'has_face'."""

    temporal_dir: Annotated[str, tyro.conf.arg(name="temporal", metavar="DIR")] = "runs/demo/temporal"
    """run folder of abawkit train-temporal"""
    features_dir: Annotated[str, tyro.conf.arg(name="features", metavar="DIR")] = "runs/demo/features"
    """feature folder (abawkit extract-features)"""
    manifest_dir: Annotated[str, tyro.conf.arg(name="manifest", metavar="DIR")] = "data_manifests/demo"
    """manifest folder"""
    predictions_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/predictions"
    """predictions folder to write"""
    splits: Annotated[tuple[str, ...], tyro.conf.arg(name="split"), tyro.conf.UseAppendAction] = (
        "Validation_Set", "Test_Set")
    """split to predict (repeatable); a split the manifest does not have is skipped when it is a default"""
    checkpoint: str = "best.pt"
    """checkpoint file name in the run folder"""
    postprocess: bool = True
    """apply the fitted post-processing (--no-postprocess: raw probabilities as 'probs')"""
