"""Settings of masked-autoencoder pretraining (``abawkit pretrain-mae``, notebook 02): :class:`MAEConfig`, with
the ``demo`` and ``gpu`` presets. Torch-free, so that ``--help`` stays fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Annotated, Any, ClassVar, Literal

import tyro

#: Face statistics of the authors' pretraining corpus (Song et al. 2024), the encoder's input normalisation.
FACE_MEAN = (0.588, 0.459, 0.402)
FACE_STD = (0.228, 0.202, 0.190)


@dataclass(frozen=True)
class MAEConfig:
    """Pretrain a timm Vision Transformer on unlabeled faces as a masked autoencoder (He et al. 2022; Song et al.
    2024 for faces): a random (1 - mask_ratio) of the patch tokens enters the encoder, a light decoder fills the
    rest with a learned mask token and predicts every patch's pixels, the loss is the mean squared error on the
    masked patches. Images: any folders (--images, recursively) and/or a manifest's crops of --splits (labels
    unused; held-out videos excepted). Writes OUT/encoder.pt (a timm state_dict with the model's name and
    arguments: train-frame --weights OUT/encoder.pt), OUT/mae.pt (resumable), OUT/metrics.csv, OUT/loss.png,
    OUT/reconstructions.png and OUT/run_record.json. Several processes: torchrun --standalone
    --nproc_per_node=N -m abawkit.cli pretrain-mae ..."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        # Minutes on 2 CPU cores: a ViT-Tiny at 64 px with 8-pixel patches (64 tokens, 16 visible) on the demo's
        # unlabeled faces and Train_Set crops (docs/mae.md "Measured").
        "demo": dict(images_dirs=("data/faces/demo_unlabeled/cropped_aligned",), manifest_dir="data_manifests/demo",
                     crops_dir="data/faces/demo/cropped_aligned", backbone="vit_tiny_patch16_224", image_size=64,
                     patch_size=8, decoder_width=128, decoder_depth=2, decoder_heads=4, input_norm="per-image",
                     base_lr=1.5e-3, steps=1500, batch_size=64, workers=1, out_dir="runs/demo/mae"),
        # The authors' settings on a GPU: ViT-B/16 at 224, decoder 512 x 8 x 16, 1.5e-4 x 256/256.
        "gpu": dict(images_dirs=("data/unlabeled_faces",), manifest_dir="data_manifests/affwild2",
                    crops_dir="data/faces/affwild2/cropped", backbone="vit_base_patch16_224", image_size=224,
                    patch_size=16, steps=100000, batch_size=256, workers=8, out_dir="runs/affwild2/mae"),
    }

    # data
    images_dirs: Annotated[tuple[str, ...], tyro.conf.arg(name="images", metavar="DIR"),
                           tyro.conf.UseAppendAction] = ()
    """folder of face images, searched recursively (repeatable)"""
    manifest_dir: Annotated[str | None, tyro.conf.arg(name="manifest", metavar="DIR")] = None
    """manifest folder (abawkit manifest): with --crops, the crops of its --splits videos join the images"""
    crops_dir: Annotated[str | None, tyro.conf.arg(name="crops", metavar="DIR")] = None
    """folder of <video_id>/00001.jpg face crops (cropped_aligned or cropped)"""
    splits: Annotated[tuple[str, ...], tyro.conf.arg(metavar="SPLIT"), tyro.conf.UseAppendAction] = ("Train_Set",)
    """manifest splits whose crops are used, labeled or not (held-out Train_Set videos excepted); Test_Set is
    transductive use of the test videos: read the challenge year's rules first"""
    stride: int = 1
    """keep every k-th crop of a video (consecutive frames are near-duplicates)"""
    preview_images: int = 8
    """images set aside (never trained on) for the reconstruction figure"""
    workers: int = 2
    """data-loader processes per rank"""
    # model
    backbone: str = "vit_base_patch16_224"
    """timm Vision Transformer name (built with --image-size and --patch-size)"""
    image_size: int = 224
    """input side in pixels"""
    patch_size: int = 16
    """patch side in pixels; must divide --image-size"""
    mask_ratio: float = 0.75
    """share of the patch tokens masked"""
    decoder_width: int = 512
    """decoder embedding width"""
    decoder_depth: int = 8
    """decoder transformer blocks"""
    decoder_heads: int = 16
    """decoder attention heads"""
    norm_pix_loss: bool = True
    """reconstruct each patch's pixels normalised by its own mean and variance (He et al.: sharper features)"""
    input_norm: Literal["none", "per-image"] = "none"
    """per-image: standardize each image per channel inside the model, as train-frame --input-norm per-image
    (recorded in encoder.pt, which train-frame follows); none: the face mean/std only"""
    # optimization
    steps: int = 100000
    """optimizer steps"""
    batch_size: int = 256
    """images per step and rank"""
    base_lr: float = 1.5e-4
    """learning rate per 256 images: lr = base_lr x batch_size x ranks / 256 (MAE's rule)"""
    weight_decay: float = 0.05
    """AdamW weight decay (not on norms, biases, position embeddings and tokens)"""
    warmup_steps: int | None = None
    """linear warm-up before the cosine decay (None: steps / 20)"""
    clip_grad: float = 0.0
    """gradient-norm clipping (0: none, as MAE)"""
    eval_every: int | None = None
    """record the mean loss every N steps (None: twenty times in the run)"""
    ckpt_every: int | None = None
    """write OUT/mae.pt every N steps (None: six times in the run)"""
    # run
    out_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/mae"
    """output folder"""
    resume: bool = False
    """continue from OUT/mae.pt (step, optimizer, schedule, data stream)"""
    seed: int = 0
    """random seed"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        if self.image_size < 16 or self.patch_size < 1 or self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} does not divide image_size {self.image_size}: choose a "
                             f"patch side that divides the image side (e.g. 8 or 16 for 64, 16 for 224)")
        if not 0 < self.mask_ratio < 1:
            raise ValueError(f"mask_ratio {self.mask_ratio}: expected a share strictly between 0 and 1")
        if (self.image_size // self.patch_size) ** 2 * (1 - self.mask_ratio) < 1:
            raise ValueError(f"mask_ratio {self.mask_ratio} leaves no visible patch of the "
                             f"{(self.image_size // self.patch_size) ** 2}: lower it or use smaller patches")
        if self.decoder_width % self.decoder_heads or min(self.decoder_depth, self.decoder_heads) < 1:
            raise ValueError(f"decoder_heads {self.decoder_heads} must divide decoder_width {self.decoder_width} "
                             f"and decoder_depth ({self.decoder_depth}) be at least 1")
        if self.steps < 1 or self.batch_size < 1 or self.stride < 1 or self.workers < 0 or self.preview_images < 0:
            raise ValueError("steps, batch_size and stride must be positive, workers and preview_images >= 0")
        for name in ("warmup_steps", "eval_every", "ckpt_every"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "warmup_steps" else 1):
                raise ValueError(f"{name} {value}: expected a positive number of steps, or None")
        if self.input_norm not in ("none", "per-image"):
            raise ValueError(f"input_norm {self.input_norm!r}: expected none or per-image")

    @property
    def lr_warmup_steps(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)

    @property
    def eval_interval(self) -> int:
        return self.eval_every or max(1, self.steps // 20)

    @property
    def ckpt_interval(self) -> int:
        return self.ckpt_every or max(1, self.steps // 6)

    def lr(self, world_size: int = 1) -> float:
        return self.base_lr * self.batch_size * world_size / 256

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("images_dirs", "splits"):
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MAEConfig":
        from ..config import from_dict

        return from_dict(cls, data)

    def with_(self, **changes: Any) -> "MAEConfig":
        return replace(self, **changes)
