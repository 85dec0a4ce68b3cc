"""Masked-autoencoder face pretraining: masking, the masked-only loss, a short pretraining on real faces that
lowers the reconstruction loss, encoder.pt into timm (strict) and into train-frame without repeating the
architecture, and the errors of bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawkit.config import ConfigError, build
from abawkit.mae.config import MAEConfig
from abawkit.mae.model import MaskedAutoencoder, masked_mse, patchify, random_masking, unpatchify
from abawkit.readers import BadFileError
from abawkit.semisup.config import TrainConfig
from abawkit.semisup.data import DataError


def test_masking_keeps_exactly_the_visible_share():
    kept, mask = random_masking(5, 64, 0.75, generator=torch.Generator().manual_seed(0))
    assert kept.shape == (5, 16) and mask.shape == (5, 64)
    assert (mask.sum(1) == 48).all()
    for row in range(5):  # the kept tokens are exactly the unmasked ones, and they differ per image
        assert set(kept[row].tolist()) == set(torch.nonzero(mask[row] == 0).flatten().tolist())
    assert not torch.equal(kept[0], kept[1])


def test_loss_ignores_the_visible_patches():
    target = torch.randn(2, 16, 12)
    _, mask = random_masking(2, 16, 0.75, generator=torch.Generator().manual_seed(1))
    pred = target.clone()
    pred[mask == 0] += 5.0  # wrong on every visible patch only
    assert masked_mse(pred, target, mask).item() == 0.0
    pred = target.clone()
    pred[mask == 1] += 1.0  # off by 1 on every masked patch
    assert masked_mse(pred, target, mask).item() == pytest.approx(1.0)


def test_patchify_round_trip_and_model_shapes():
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(x, 8), 8), x)
    cfg = MAEConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8, decoder_width=32,
                    decoder_depth=1, decoder_heads=2)
    loss, pred, mask = MaskedAutoencoder(cfg)(x)
    assert pred.shape == (2, 16, 8 * 8 * 3) and mask.sum().item() == 2 * 12 and loss.ndim == 0


@pytest.fixture(scope="module")
def lfw_faces(tmp_path_factory):
    """scikit-image's 100 real 25x25 LFW faces as PNG files."""
    import cv2
    from skimage import data

    folder = tmp_path_factory.mktemp("lfw") / "faces"
    folder.mkdir()
    for i, face in enumerate(data.lfw_subset()[:100]):  # the first 100 are faces, the rest are not
        gray = (np.clip(face, 0, 1) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.dstack([gray] * 3))
    return folder


@pytest.fixture(scope="module")
def pretrained(lfw_faces, tmp_path_factory):
    from abawkit.mae.train import pretrain

    out = tmp_path_factory.mktemp("mae")
    cfg = MAEConfig(images_dirs=(str(lfw_faces),), backbone="vit_tiny_patch16_224", image_size=32, patch_size=8,
                    decoder_width=64, decoder_depth=1, decoder_heads=4, steps=80, batch_size=16, base_lr=8e-3,
                    warmup_steps=10, eval_every=10, workers=0, progress=False, out_dir=str(out))
    return cfg, pretrain(cfg)


def test_pretraining_lowers_the_loss_and_writes_its_outputs(pretrained):
    import pandas as pd

    cfg, result = pretrained
    metrics = pd.read_csv(result.out / "metrics.csv")
    assert len(metrics) == 8 and metrics["step"].iloc[-1] == 80
    # a short run on tiny real faces: the training and the held-out (never trained on) loss both fall
    assert metrics["loss"].iloc[-1] < 0.8 * metrics["loss"].iloc[0]
    assert result.final_preview_loss < 0.9 * result.first_preview_loss
    assert result.n_images == 100 - cfg.preview_images
    for name in ("encoder.pt", "mae.pt", "loss.png", "reconstructions.png", "run_record.json"):
        assert (result.out / name).is_file()


def test_encoder_loads_strictly_into_timm_and_into_train_frame(pretrained):
    import timm

    from abawkit.frame_model import FrameModel
    from abawkit.semisup.train import model_config

    cfg, result = pretrained
    payload = torch.load(result.out / "encoder.pt", weights_only=True)
    vit = timm.create_model(payload["model"], **payload["kwargs"])
    vit.load_state_dict(payload["state_dict"], strict=True)
    # train-frame takes the architecture from the file: no --backbone, --image-size, --patch-size
    mcfg = model_config(TrainConfig(weights=str(result.out / "encoder.pt")))
    assert (mcfg.backbone, mcfg.image_size, mcfg.patch_size) == ("vit_tiny_patch16_224", 32, 8)
    assert mcfg.mean == (0.588, 0.459, 0.402)
    model = FrameModel(mcfg).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.backbone.forward_features(x), vit.forward_features(x), atol=1e-5)
    assert model.backbone.global_pool == "avg"  # MAE fine-tuning pools the patch tokens
    # the same architecture from random weights, for the comparison
    scratch = model_config(TrainConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8))
    assert FrameModel(scratch).backbone.pos_embed.shape == model.backbone.pos_embed.shape
    with pytest.raises(ConfigError, match=r"--image-size 64: .*encoder.pt is a vit_tiny_patch16_224 model "
                                          r"trained with image_size 32; leave --image-size out"):
        model_config(TrainConfig(weights=str(result.out / "encoder.pt"), image_size=64))


def test_weights_of_another_architecture_are_named(pretrained, tmp_path):
    import timm

    from abawkit.frame_model import FrameModel
    from abawkit.semisup.train import model_config

    cfg, result = pretrained
    small = tmp_path / "vit_small.pth"
    torch.save(timm.create_model("vit_small_patch16_224", img_size=32, patch_size=8).state_dict(), small)
    with pytest.raises(BadFileError, match=r"vit_small.pth: does not fit the vit_tiny_patch16_224 backbone .*"
                                           r"another image or patch size"):
        FrameModel(model_config(TrainConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8,
                                            weights=str(small))))
    with pytest.raises(BadFileError, match=r"mae.pt: is an abawkit MAE pretraining state"):
        FrameModel(model_config(TrainConfig(weights=str(result.out / "mae.pt"))))


def test_bad_input_is_named(tmp_path, lfw_faces):
    from abawkit.mae.train import pretraining_images

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no image here")
    with pytest.raises(DataError, match=r"--images .*empty: no image file"):
        pretraining_images(MAEConfig(images_dirs=(str(empty),)))
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"--images .*broken: none of 3 images tried can be decoded"):
        pretraining_images(MAEConfig(images_dirs=(str(broken),)))
    with pytest.raises(ConfigError, match=r"patch_size 10 does not divide image_size 64"):
        build(MAEConfig, {"image_size": 64, "patch_size": 10})
    with pytest.raises(ConfigError, match=r"patch_size 10 does not divide image_size 64"):
        build(TrainConfig, {"image_size": 64, "patch_size": 10})
    from abawkit.mae.model import NotAVisionTransformer

    with pytest.raises(NotAVisionTransformer, match="resnet10t.*not a timm Vision Transformer|resnet10t.*cannot be"):
        MaskedAutoencoder(MAEConfig(backbone="resnet10t", image_size=32, patch_size=8))


def test_resume_continues_and_ends_with_the_same_steps(lfw_faces, tmp_path):
    import pandas as pd

    from abawkit.mae.train import pretrain

    cfg = MAEConfig(images_dirs=(str(lfw_faces),), backbone="vit_tiny_patch16_224", image_size=32, patch_size=8,
                    decoder_width=32, decoder_depth=1, decoder_heads=2, steps=12, batch_size=8, eval_every=3,
                    ckpt_every=6, workers=0, progress=False, out_dir=str(tmp_path / "run"))
    pretrain(cfg.with_(steps=6))
    state = torch.load(tmp_path / "run" / "mae.pt", weights_only=True)
    assert state["step"] == 6
    result = pretrain(cfg.with_(resume=True))
    metrics = pd.read_csv(result.out / "metrics.csv")
    assert metrics["step"].tolist() == [3, 6, 9, 12]
    assert torch.load(result.out / "encoder.pt", weights_only=True)["pretraining"]["steps"] == 12
