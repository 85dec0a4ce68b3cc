"""The layouts every stage shares: crop folders, frame-model checkpoints, per-video predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawkit.crops import crop_frames, crop_path, crop_video_ids, has_face_mask
from abawkit.frame_model import (FrameModelConfig, build_frame_model, load_frame_model,
                                 save_frame_checkpoint)
from abawkit.predictions import PredictionError, load_predictions, predicted_labels, save_video_predictions
from abawkit.readers import BadFileError, read_image


def test_crop_folder_layout(tmp_path):
    for frame in (1, 2, 5, 12):
        path = crop_path(tmp_path, "video7_left", frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / "video7_left" / "notes.txt").write_text("ignored")
    assert path.name == "00012.jpg"
    assert crop_frames(tmp_path, "video7_left").tolist() == [1, 2, 5, 12]
    assert has_face_mask(tmp_path, "video7_left", 6).tolist() == [True, True, False, False, True, False]
    assert crop_video_ids(tmp_path) == ["video7_left"]
    assert crop_frames(tmp_path, "absent").size == 0


def test_frame_checkpoint_round_trip_and_local_weights(tmp_path):
    torch.manual_seed(0)
    model = build_frame_model(FrameModelConfig(image_size=32)).eval()
    x = torch.randn(2, 3, 32, 32)
    emb, logits = model.embed_and_logits(x)
    assert emb.shape == (2, model.embed_dim) and torch.allclose(logits, model(x), atol=1e-5)
    path = save_frame_checkpoint(tmp_path / "best.pt", model, step=7)
    loaded, payload = load_frame_model(path)
    assert payload["step"] == 7 and payload["config"]["backbone"] == model.config.backbone
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
    torch.save(model.backbone.state_dict(), tmp_path / "backbone.pth")
    warm = build_frame_model(FrameModelConfig(image_size=32, weights=str(tmp_path / "backbone.pth"))).eval()
    assert torch.allclose(warm.embed(x), emb, atol=1e-5)
    torch.save({"format": "someone-else/3", "weights": []}, tmp_path / "other.pt")
    with pytest.raises(BadFileError, match="other.pt: is a PyTorch file of another tool .*expected an abawkit frame"):
        load_frame_model(tmp_path / "other.pt")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BadFileError, match="broken.jpg: cannot be decoded"):
        read_image(tmp_path / "broken.jpg")


def test_predictions_round_trip(tmp_path):
    probs = np.full((4, 8), 1 / 8, dtype=np.float32)
    probs[2, 5] = 1.0
    save_video_predictions(tmp_path, "video1", probs, has_face=np.array([1, 1, 0, 1], bool))
    loaded = load_predictions(tmp_path, ["video1"])
    assert predicted_labels(loaded)["video1"][2] == 5
    with pytest.raises(PredictionError, match="video2.npz is missing"):
        load_predictions(tmp_path, ["video2"])
    with pytest.raises(PredictionError, match=r"shape \(n, 8\)"):
        save_video_predictions(tmp_path, "bad", np.zeros((3, 7)))
