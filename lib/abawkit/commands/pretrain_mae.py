"""``abawkit pretrain-mae``: masked-autoencoder pretraining of a timm Vision Transformer on unlabeled faces
(options from :class:`abawkit.mae.config.MAEConfig`, as notebook 02)."""

from __future__ import annotations

ORDER = 35  # place in ``abawkit --help`` (pipeline order): after extract-faces, before train-frame
NAME = "pretrain-mae"
HELP = "pretrain a ViT face encoder on unlabeled faces as a masked autoencoder (encoder.pt for train-frame)"


def main(argv: list[str]) -> int:
    import os

    from ..config import cli
    from ..mae.config import MAEConfig
    from ..mae.train import pretrain

    cfg = cli(MAEConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit pretrain-mae --preset demo --steps 200 --out runs/mae; then abawkit "
                     "train-frame --preset demo --weights runs/mae/encoder.pt --layer-decay 0.75 (the backbone, "
                     "image and patch size come from encoder.pt); several GPUs: torchrun --standalone "
                     "--nproc_per_node=N -m abawkit.cli pretrain-mae ...")
    result = pretrain(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"encoder written to {result.out}/encoder.pt: {result.n_images} images, {result.steps} steps, "
              f"{result.images_per_s:.1f} images/s")
        print(f"masked-patch loss {result.first_loss:.4f} -> {result.final_loss:.4f} (held-out faces "
              f"{result.first_preview_loss:.4f} -> {result.final_preview_loss:.4f})")
    return 0
