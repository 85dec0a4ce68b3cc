"""Settings of the frame-model stage (``abawkit train-frame``, notebook 03): the semi-supervised method's parts
(:class:`SemiSupConfig`, with the ``algorithm`` presets) and the run's data, model and optimization
(:class:`TrainConfig`, with the ``demo`` and ``gpu`` presets). Torch-free, so that ``--help`` stays fast."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, ClassVar, Literal, get_args

import tyro

Threshold = Literal["fixed", "self-adaptive", "flexmatch"]
THRESHOLDS = get_args(Threshold)

#: ``--algorithm``: a name for a set of switches, expanded before the explicit settings apply; never stored.
ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    "supervised": dict(unlabeled=False, threshold="fixed", debias=False, feedback=False),
    "fixmatch": dict(unlabeled=True, threshold="fixed", debias=False, feedback=False),
    "full": dict(unlabeled=True, threshold="self-adaptive", debias=True, feedback=True),
}


@dataclass(frozen=True)
class SemiSupConfig:
    """The parts of the method. ``unlabeled=False`` is the supervised baseline (class-uniform labeled batches
    only). Otherwise a teacher pseudo-labels weak views and the student learns from strong views: the teacher is
    the EMA of the student unless ``feedback`` (Meta Pseudo Labels, Pham et al. 2021), where it is a separate
    network trained with the student's feedback."""

    SELECTORS: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {"algorithm": ALGORITHM_PRESETS}

    unlabeled: bool = True
    """learn from unlabeled faces (False: the supervised baseline)"""
    threshold: Threshold = "self-adaptive"
    """pseudo-label threshold: fixed | self-adaptive (FreeMatch, Wang et al. 2023) | flexmatch (Zhang et al. 2021)"""
    debias: bool = True
    """debiased pseudo-labels and adaptive margin (DebiasPL, Wang et al. 2022)"""
    feedback: bool = True
    """a separate teacher trained with the student's feedback (Meta Pseudo Labels)"""
    tau: float = 0.95
    """fixed threshold, and the FlexMatch base threshold"""
    threshold_momentum: float = 0.999
    """lambda of the self-adaptive threshold's moving averages (FreeMatch's value)"""
    # Our choices: FreeMatch starts from tau_0 = p_0 = 1/C, which admits every pseudo-label of a
    # half-trained teacher for hundreds of steps.
    init_from_teacher: bool = True
    """when the unlabeled phase starts, set the self-adaptive threshold's tau and p, and the debiasing marginal,
    from the teacher's statistics on an unlabeled pass (False: FreeMatch's and DebiasPL's 1/C)"""
    init_images: int = 2048
    """images of that pass (the whole pool when smaller)"""
    threshold_floor: float = 0.95
    """lower bound of every class's self-adaptive threshold (ours). At FixMatch's 0.95 the threshold only rises
    above FixMatch's: for the classes the teacher predicts most, once its mean confidence passes 0.95. 0 is
    FreeMatch's threshold, which follows the teacher's mean confidence down (on the demo's 4-label runs to 0.8,
    keeping 88% of the pool at 68% precision, which cost 0.03 macro F1 on new subjects; docs/semisup.md)"""
    debias_margin: bool = True
    """with debias: the student learns the debiased pseudo-labels through DebiasPL's adaptive-margin loss,
    CE(z_s + tau_d log(p_hat / pi), y_hat) (False: plain masked CE on them; an ablation switch, ours)"""
    debias_strength: float = 0.5
    """tau_d of the debiasing: logits minus tau_d * log(marginal) (1.0 in DebiasPL)"""
    debias_prior: tuple[float, ...] = ()
    """the class distribution the debiasing moves the pseudo-labels' marginal towards, one share per class (ours:
    logits minus tau_d * log(marginal / prior); DebiasPL's target is uniform, made for a class-balanced pool).
    Empty: the labeled frames' shares (debias_prior_from_labels) or uniform"""
    debias_prior_from_labels: bool = True
    """with an empty debias_prior: the labeled frames' class shares, counted before the class-uniform sampling
    and add-one smoothed, (n_c + 1) / (n + C) (ours: the labels are the estimate of a pool drawn like them; a
    class-balanced labeled set gives DebiasPL's uniform target). False: uniform"""
    debias_momentum: float | None = None
    """m of the moving marginal of the teacher's predictions (None: follows the run, 1 - 1/tc with a time
    constant tc = max(10, unlabeled steps / 10) steps, at most 0.999; DebiasPL's 0.999 suits long runs, its
    low-label script uses 0.99)"""
    pseudo_label_exclude: tuple[str, ...] = ()
    """classes whose pseudo-labels the student never learns (masked out whatever their confidence), e.g. Other,
    Aff-Wild2's catch-all of faces showing none of the seven expressions (ours; docs/semisup.md, "Other")"""
    pseudo_label_strict: tuple[str, ...] = ()
    """classes whose pseudo-labels the student learns only at a confidence of at least pseudo_label_strict_floor,
    whatever the threshold allows the other classes, e.g. Other (ours; docs/semisup.md, "Other, kept only when
    sure")"""
    pseudo_label_strict_floor: float = 0.99
    """the confidence a pseudo-label of a pseudo_label_strict class needs"""
    pseudo_head: bool = False
    """the student learns the pseudo-labels through a pseudo head, an MLP on the shared embedding, instead of its
    classifier, which then learns from labels only (DST's decoupled head, Chen et al. 2022): the classifier that
    predicts, and as the EMA teacher labels, does not fit its own pseudo-labels' errors"""
    worst_case_head: bool = False
    """DST's worst-case estimation head (Chen et al. 2022, as in the authors' code): an MLP on the student's
    embedding, behind a gradient reversal layer, learns to agree with the classifier's predictions on the labeled
    views and to disagree with them on the weak unlabeled views; the reversed gradient (rising to DST's 0.1 with
    the lambda_u ramp, where DST warms it up over its first thousand steps) trains the shared network so that no
    head that fits the labeled frames can: the part of DST that acts on the embedding (docs/semisup.md, "A
    worst-case head"). Needs weak_in_student"""
    worst_case_weight: float = 1.0
    """eta of DST: weight of the worst-case loss in the student's loss"""
    worst_case_labeled_weight: float = 2.0
    """eta' of DST: weight of the worst-case head's labeled term against its unlabeled one"""
    ema_decay: float = 0.999
    """EMA of the student: the fixmatch teacher and the evaluated model"""
    lambda_u: float = 1.0
    """weight of the unlabeled loss"""
    lambda_u_ramp: int | None = None
    """steps over which the unlabeled loss weight rises linearly from 0 to lambda_u once the unlabeled phase
    starts (None: a fifth of the unlabeled steps; 0: no ramp)"""
    uratio: int = 2
    """unlabeled images per labeled image in a step"""
    weak_in_student: bool = True
    """the weak unlabeled views go through the student's forward too (as in USB), so that its BatchNorm
    statistics, which the EMA teacher and validation use, cover what they see"""
    # Our choice (the papers leave it open): 0 gives Meta Pseudo Labels' pure variant.
    student_labeled_weight: float = 1.0
    """weight of the labeled loss of the feedback student (0: it learns from the teacher's labels only)"""
    teacher_consistency: float = 1.0
    """weight of the teacher's consistency term in the feedback loop"""
    h_batch: Literal["separate", "same"] = "separate"
    """labeled batch the feedback h is measured on: separate (a second batch the student does not train on)
    or same (its own labeled batch, which makes h positive whatever the pseudo-labels were)"""
    feedback_baseline: float = 0.99
    """decay of the moving-average baseline subtracted from h (Meta Pseudo Labels; 0: none)"""
    # Our choice: a from-scratch teacher pseudo-labels noise at first; at demo scale (a few hundred CPU steps)
    # those labels cost more than they give.
    unlabeled_warmup: int = 0
    """supervised steps before pseudo-labels, thresholds, debiasing and feedback start"""

    def __post_init__(self) -> None:
        if self.threshold not in THRESHOLDS:
            raise ValueError(f"threshold {self.threshold!r}: expected one of {', '.join(THRESHOLDS)}")
        if self.unlabeled_warmup < 0:
            raise ValueError(f"unlabeled_warmup {self.unlabeled_warmup}: expected 0 or more steps")
        if self.uratio < 1:
            raise ValueError(f"uratio {self.uratio}: expected 1 or more unlabeled images per labeled image")
        if self.init_images < 1 or (self.lambda_u_ramp is not None and self.lambda_u_ramp < 0):
            raise ValueError(f"init_images ({self.init_images}) must be >= 1 and lambda_u_ramp "
                             f"({self.lambda_u_ramp}) >= 0 steps or None")
        from ..labels import CLASSES

        for name in ("pseudo_label_exclude", "pseudo_label_strict"):
            unknown = [c for c in getattr(self, name) if c not in CLASSES]
            if unknown:
                raise ValueError(f"{name} {unknown}: expected class names among {', '.join(CLASSES)}")
        if self.worst_case_head and not self.weak_in_student:
            raise ValueError("worst_case_head needs weak_in_student: the head reads the weak views' embeddings "
                             "from the student's forward")
        if self.worst_case_weight < 0 or self.worst_case_labeled_weight < 0:
            raise ValueError(f"worst_case_weight ({self.worst_case_weight}) and worst_case_labeled_weight "
                             f"({self.worst_case_labeled_weight}) must be >= 0")
        if self.h_batch not in ("separate", "same"):
            raise ValueError(f"h_batch {self.h_batch!r}: expected separate or same")
        for name in ("tau", "threshold_momentum", "debias_momentum", "ema_decay", "threshold_floor",
                     "feedback_baseline", "pseudo_label_strict_floor"):
            if getattr(self, name) is not None and not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name)}: expected a value in [0, 1]")

    def with_label_prior(self, class_counts: list[int] | tuple[int, ...]) -> SemiSupConfig:
        """This config with the debiasing's prior filled in from the labeled frames' ``class_counts`` (one count
        per class) when ``debias_prior_from_labels`` asks for it; unchanged otherwise."""
        if not (self.unlabeled and self.debias and self.debias_prior_from_labels) or self.debias_prior:
            return self
        total = sum(class_counts) + len(class_counts)
        return replace(self, debias_prior=tuple((n + 1) / total for n in class_counts))

    def debias_m(self, unlabeled_steps: int) -> float:
        """The debiasing momentum of a run with ``unlabeled_steps`` steps of unlabeled phase."""
        if self.debias_momentum is not None:
            return self.debias_momentum
        return min(0.999, 1.0 - 1.0 / max(10.0, unlabeled_steps / 10))

    def ramp_steps(self, unlabeled_steps: int) -> int:
        """The lambda_u ramp of a run with ``unlabeled_steps`` steps of unlabeled phase."""
        return self.lambda_u_ramp if self.lambda_u_ramp is not None else unlabeled_steps // 5

    @property
    def name(self) -> str:
        """A short label of the parts switched on (for tables and messages)."""
        if not self.unlabeled:
            return "supervised"
        parts = ["fixmatch" if not self.feedback else "feedback", self.threshold]
        if self.debias:
            parts.append("debias")
        return "+".join(parts)


def preset(algorithm: str, **overrides: Any) -> SemiSupConfig:
    """The switches of ``algorithm`` with ``overrides`` (None values are ignored)."""
    from ..config import build

    return build(SemiSupConfig, {"algorithm": algorithm, **{k: v for k, v in overrides.items() if v is not None}})


DEMO_DATA = dict(manifest_dir="data_manifests/demo", crops_dir="data/faces/demo/cropped_aligned",
                 unlabeled_dirs=("data/faces/demo_unlabeled/cropped_aligned",), out_dir="runs/demo/frame_model")


@dataclass(frozen=True)
class TrainConfig:
    """Train a timm backbone with an 8-class head on labeled face crops (a manifest + crops folder, or any CSV of
    path,label) and, unless --algorithm supervised, on unlabeled faces (any folders, recursively): class-uniform
    labeled batches, a teacher that pseudo-labels weak views, class- and stage-adaptive thresholds, debiased
    pseudo-labels and feedback from the student. The manifest's held-out Train_Set videos are left out (the
    temporal stage fits its post-processing on them). Writes OUT/best.pt, OUT/last.pt (resumable),
    OUT/metrics.csv, OUT/curves.png and OUT/run_record.json; prints the final and best validation macro F1 last.
    Several processes: torchrun --standalone --nproc_per_node=N -m abawkit.cli train-frame ..."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # A few minutes on 2 CPU cores: mostly supervised steps, the unlabeled parts join for the last quarter;
        # per-image input standardization removes the demo videos' colour casts (docs/semisup.md "Demo settings").
        "demo": dict(DEMO_DATA, image_size=64, input_norm="per-image", steps=300,
                     batch_size=32, unlabeled_warmup=225, uratio=1, workers=1),
        # Aff-Wild2 on a GPU: about 2 passes over the 1M labeled training frames at batch 64 (loose crops).
        "gpu": dict(manifest_dir="data_manifests/affwild2", crops_dir="data/faces/affwild2/cropped",
                    unlabeled_dirs=("data/unlabeled_faces",), out_dir="runs/affwild2/frame_model",
                    backbone="convnext_tiny", image_size=224, steps=30000, batch_size=64, workers=8),
    }

    # data
    labeled_csv: Annotated[tuple[str, ...], tyro.conf.arg(metavar="CSV"), tyro.conf.UseAppendAction] = ()
    """CSV with columns path,label (label 0..7 or class name; paths relative to the CSV's folder), repeatable: with
    --manifest/--crops, added to its Train_Set frames (e.g. select-faces' selected.csv, distill's distilled.csv);
    without, the labeled data (e.g. AffectNet)"""
    labeled_weight: Annotated[tuple[float, ...], tyro.conf.arg(metavar="W"), tyro.conf.UseAppendAction] = ()
    """sampling weight of each --labeled-csv's images, in their order (default 1 each; the manifest's frames: 1):
    within a class of the class-uniform batches, an image is drawn with probability proportional to its weight"""
    manifest_dir: Annotated[str | None, tyro.conf.arg(name="manifest", metavar="DIR")] = None
    """manifest folder (abawkit manifest): its Train_Set frames are the labeled data"""
    crops_dir: Annotated[str | None, tyro.conf.arg(name="crops", metavar="DIR")] = None
    """folder of <video_id>/00001.jpg face crops (cropped_aligned or cropped)"""
    train_split: str = "Train_Set"
    """manifest split trained on"""
    unlabeled_dirs: Annotated[tuple[str, ...], tyro.conf.arg(name="unlabeled-dir", metavar="DIR"),
                              tyro.conf.UseAppendAction] = ()
    """folder of unlabeled face images, searched recursively (repeatable)"""
    unlabeled_frames: bool = False
    """also learn from the manifest's Train_Set crops whose frame carries no label (-1 or unannotated), in
    --crops' own alignment (held-out videos excepted)"""
    unlabeled_test_videos: bool = False
    """also learn from the crops of the manifest's Test_Set videos (opt-in: transductive use of the test set;
    read the challenge year's rules before submitting such a model, docs/semisup.md)"""
    unlabeled_stride: int = 1
    """keep every k-th of those unlabeled frames of a video"""
    folds: int = 1
    """cross-fitting: K > 1 trains K models into OUT/fold_i, each without fold i of the Train_Set videos (by
    source video; OUT/folds.csv), then the model on every training video into OUT; a model already trained
    there is skipped (abawkit extract-features --folds K gives each training video the features of the model
    that did not see it)"""
    fold: int | None = None
    """with --folds K: train only the model without fold FOLD (0..K-1), e.g. one fold per machine; --folds 1
    (default) trains the model on every training video"""
    val_csv: Annotated[str | None, tyro.conf.arg(metavar="CSV")] = None
    """validation CSV path,label (default: the manifest's --val-split frames)"""
    val_split: str = "Validation_Set"
    """manifest split used for validation"""
    frame_stride: int = 1
    """keep every k-th labeled frame of a video (consecutive frames are near-duplicates)"""
    val_stride: int = 1
    """keep every k-th validation frame of a video"""
    workers: int = 2
    """data-loader processes per rank"""
    # method
    semisup: SemiSupConfig = field(default_factory=SemiSupConfig)
    # model
    backbone: str | None = None
    """timm model name (None: the --weights encoder.pt's, else resnet10t; convnext_tiny on a GPU)"""
    pretrained: bool = False
    """timm pretrained weights (needs them in the local cache)"""
    weights: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """local backbone weights file (.pth/.pt/.safetensors), or abawkit pretrain-mae's encoder.pt (which sets the
    backbone, image and patch size and input normalisation left out)"""
    image_size: int | None = None
    """input side in pixels (None: the encoder.pt's, else 112)"""
    patch_size: int | None = None
    """build the --backbone Vision Transformer at --image-size with these patches (None: the encoder.pt's, else
    timm's model as named)"""
    drop_rate: float = 0.0
    """dropout before the classifier"""
    drop_path: float = 0.0
    """stochastic depth rate (timm's drop_path_rate; ViT fine-tuning, e.g. 0.1)"""
    mix: Literal["none", "mixup", "facemix"] = "none"
    """mixing of the labeled batches of the supervised steps: mixup (Zhang et al. 2018), or facemix (Song et al.
    2024: mixup plus the two real images' losses weighted by 1 - IoU of their face boxes); lambda ~ Beta(1, 1)"""
    colour_aug: bool = True
    """colour jitter with hue and random grayscale on the labeled, weak and strong views"""
    input_norm: Literal["none", "per-image"] | None = None
    """per-image: standardize each crop per channel inside the model, removing per-video colour casts and
    lighting (for a backbone trained from scratch); none: dataset mean/std only (pretrained weights expect it);
    None: the encoder.pt's, else none"""
    # optimization
    steps: int = 1000
    """training steps"""
    batch_size: int = 32
    """labeled images per step and rank"""
    optimizer: Literal["adamw", "sgd"] = "adamw"
    """optimizer (timm's factory)"""
    lr: float = 1e-3
    """peak learning rate"""
    weight_decay: float = 0.05
    """weight decay (not on norms and biases)"""
    layer_decay: float | None = None
    """layer-wise lr decay (timm's optimizer factory): layer i of L learns at lr * layer_decay^(L-1-i); for
    fine-tuning a pretrained ViT, e.g. 0.65 (None: off)"""
    warmup_steps: int | None = None
    """linear learning-rate warm-up before the cosine decay (None: steps / 10)"""
    probe_head: bool = False
    """before training, set the classifier head by logistic regression on the frozen network's embeddings of the
    labeled frames: linear probing, then fine-tuning (LP-FT, Kumar et al. 2022: a random head's first gradients
    distort pretrained features)"""
    probe_images: int = 4096
    """labeled frames of that probe (a random subset when there are more)"""
    clip_grad: float = 5.0
    """gradient-norm clipping"""
    eval_every: int | None = None
    """validate every N steps (None: six times in the run)"""
    ckpt_every: int | None = None
    """write last.pt every N steps (None: six times in the run)"""
    # run
    out_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/frame_model"
    """output folder"""
    resume: bool = False
    """continue from OUT/last.pt (step, optimizer, algorithm state)"""
    seed: int = 0
    """random seed"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        if isinstance(self.labeled_csv, str):  # TrainConfig(labeled_csv="one.csv") in Python code
            object.__setattr__(self, "labeled_csv", (self.labeled_csv,))
        if self.labeled_weight and len(self.labeled_weight) != len(self.labeled_csv):
            raise ValueError(f"labeled_weight {list(self.labeled_weight)}: give one weight per --labeled-csv "
                             f"({len(self.labeled_csv)} CSV(s)), or none")
        if any(not w > 0 for w in self.labeled_weight):
            raise ValueError(f"labeled_weight {list(self.labeled_weight)}: expected positive weights")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer {self.optimizer!r}: expected adamw or sgd")
        if self.input_norm not in (None, "none", "per-image"):
            raise ValueError(f"input_norm {self.input_norm!r}: expected none or per-image")
        if self.mix not in ("none", "mixup", "facemix"):
            raise ValueError(f"mix {self.mix!r}: expected none, mixup or facemix")
        if self.image_size is not None and self.patch_size is not None and self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}: choose a "
                             f"patch side that divides the image side")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path {self.drop_path}: expected a rate in [0, 1)")
        if self.steps < 1 or self.batch_size < 1 or (self.image_size or 16) < 16:
            raise ValueError(f"steps ({self.steps}) and batch_size ({self.batch_size}) must be positive and "
                             f"image_size ({self.image_size}) at least 16")
        for name in ("warmup_steps", "eval_every", "ckpt_every"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "warmup_steps" else 1):
                raise ValueError(f"{name} {value}: expected a positive number of steps, or None")
        if self.probe_images < 1:
            raise ValueError(f"probe_images {self.probe_images}: expected a positive number of frames")
        if self.folds < 1 or (self.fold is not None and not 0 <= self.fold < self.folds):
            raise ValueError(f"folds {self.folds} / fold {self.fold}: expected folds >= 1 and fold in 0..folds-1 "
                             f"(or no --fold)")
        if self.workers < 0 or min(self.frame_stride, self.val_stride, self.unlabeled_stride) < 1:
            raise ValueError("workers must be >= 0 and frame_stride, val_stride, unlabeled_stride >= 1")

    @property
    def lr_warmup_steps(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 10)

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 6)

    @property
    def ckpt_interval(self) -> int:
        return self.ckpt_every or max(1, self.steps // 6)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))  # tuples as lists, the form a run record gives back

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """From :meth:`to_dict` (a checkpoint or a run record); unknown names are an error naming them."""
        from ..config import from_dict

        return from_dict(cls, data)

    def with_(self, **changes: Any) -> "TrainConfig":
        return replace(self, **changes)
