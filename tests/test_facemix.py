"""FaceMix and mixup (semisup/mix.py), the face boxes they use, layer-wise learning-rate decay, and a second
training stage started from the first's checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from abawkit.semisup.mix import mixed_loss, paired_iou


class Recorder(torch.nn.Module):
    """A linear classifier that keeps the inputs of its last call."""

    def __init__(self, dim: int = 12, classes: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(dim, classes)
        self.seen = None

    def forward(self, x):
        self.seen = x.detach().clone()
        return self.fc(x.flatten(1))


def batch(n: int = 6):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 3, 2, 2, generator=g), torch.tensor([0, 1, 2, 3, 4, 5][:n])


def test_identical_boxes_give_plain_mixup_and_disjoint_boxes_add_both_real_terms():
    model = Recorder()
    x, y = batch()
    same = torch.tensor([[0.1, 0.1, 0.9, 0.9]]).repeat(6, 1)
    mixup = mixed_loss(model, x, y, "mixup", lam=0.3)
    assert mixed_loss(model, x, y, "facemix", lam=0.3, boxes=same).item() == pytest.approx(mixup.item(), rel=1e-6)
    # disjoint boxes: IoU 0, real-image weight 1 on both images of every pair
    left, right = torch.tensor([0.0, 0.0, 0.4, 1.0]), torch.tensor([0.6, 0.0, 1.0, 1.0])
    disjoint = torch.stack([left, right, left, right, left, right])
    assert paired_iou(disjoint).tolist() == [0.0] * 6
    real = F.cross_entropy(model(x), y, reduction="none")
    expected = mixup.item() + (real + real.flip(0)).mean().item()
    assert mixed_loss(model, x, y, "facemix", lam=0.3, boxes=disjoint).item() == pytest.approx(expected, rel=1e-5)


def test_the_real_terms_see_unmixed_images():
    model = Recorder()
    x, y = batch()
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5]] * 3 + [[0.5, 0.5, 1.0, 1.0]] * 3)
    mixed_loss(model, x, y, "facemix", lam=0.25, boxes=boxes)
    n = x.shape[0]
    assert torch.equal(model.seen[n:], x)  # the clean batch, untouched by the mixing
    assert torch.allclose(model.seen[:n], 0.25 * x + 0.75 * x.flip(0))
    # the mixed target: lambda of the image's class, 1 - lambda of its partner's
    logits = model.fc(model.seen[:n].flatten(1))
    onehot = F.one_hot(y, 8).float()
    want = F.cross_entropy(logits, 0.25 * onehot + 0.75 * onehot.flip(0))
    assert mixed_loss(model, x, y, "mixup", lam=0.25).item() == pytest.approx(want.item(), rel=1e-6)


def test_boxes_follow_the_flip_and_crop_of_their_image(tmp_path):
    import cv2
    import pandas as pd
    from torchvision.transforms import v2

    from abawkit.semisup.data import LabeledImages

    image = np.zeros((40, 40, 3), np.uint8)
    image[:, :10] = 255  # a white band on the left, where the box is
    cv2.imwrite(str(tmp_path / "a.png"), image)
    table = pd.DataFrame({"path": [str(tmp_path / "a.png")], "label": [3]})
    flip = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize((20, 20), antialias=True),
                       v2.ToDtype(torch.float32, scale=True)])
    x, label, box = LabeledImages(table, flip, boxes=np.array([[0.0, 0.0, 0.25, 1.0]]))[0]
    assert label == 3 and box.tolist() == pytest.approx([15.0, 0.0, 20.0, 20.0])
    assert x[:, :, 16:].mean() > 0.9 and x[:, :, :14].mean() < 0.1  # the band moved with the box


def test_face_boxes_from_the_index_and_the_detector_with_its_fallback(tmp_path):
    import cv2
    import matplotlib.cbook
    import pandas as pd

    from abawkit.semisup.boxes import WHOLE_IMAGE, face_boxes

    hopper = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    cv2.imwrite(str(tmp_path / "hopper.jpg"), hopper)
    cv2.imwrite(str(tmp_path / "tiny.png"), np.full((64, 64, 3), 128, np.uint8))  # no face in it
    csv = tmp_path / "labeled.csv"
    csv.write_text("path,label\nhopper.jpg,4\ntiny.png,0\n")
    # extract-faces' index beside a crops folder: one frame with a box and five points, one without a face
    crops = tmp_path / "faces" / "cropped"
    (crops / "v1").mkdir(parents=True)
    (tmp_path / "faces" / "index").mkdir()
    cols = ["frame", "has_face", "score", "face_score", "box_x0", "box_y0", "box_x1", "box_y1"]
    pd.DataFrame([[1, True, 0.9, 1.0, 100, 50, 200, 170], [2, False] + [np.nan] * 6], columns=cols).to_csv(
        tmp_path / "faces" / "index" / "v1.csv", index=False)
    table = pd.DataFrame({"path": [str(tmp_path / "hopper.jpg"), str(tmp_path / "tiny.png"), "x", "y"],
                          "label": [4, 0, 1, 1], "source": [str(csv), str(csv), "manifest", "manifest"],
                          "video_id": [None, None, "v1", "v1"], "frame": [0, 0, 1, 2]})
    boxes, counts = face_boxes(table, str(crops), tmp_path / "out", progress=False)
    assert counts == {"index": 1, "detector": 1, "whole_image": 2}
    x0, y0, x1, y1 = boxes[0]  # Grace Hopper's face: the middle of the portrait's upper half
    assert 0.2 < x0 < x1 < 0.8 and 0.05 < y0 < y1 < 0.7
    assert tuple(boxes[1]) == WHOLE_IMAGE and tuple(boxes[3]) == WHOLE_IMAGE
    # the loose crop is centred on the box, 1/LOOSE_SCALE of its side: a centred square
    assert boxes[2][0] == pytest.approx(1 - boxes[2][2]) and boxes[2][1] == pytest.approx(1 - boxes[2][3])
    cache = tmp_path / "labeled.faceboxes.csv"
    assert cache.is_file()  # cached: a second call reads it
    pd.DataFrame({"path": table["path"][:2], "x0": 0.0, "y0": 0.0, "x1": 0.5, "y1": 0.5}).to_csv(cache, index=False)
    again, _ = face_boxes(table, str(crops), tmp_path / "out", progress=False)
    assert again[0].tolist() == [0.0, 0.0, 0.5, 0.5]


def test_layer_decay_gives_the_earliest_block_the_smallest_learning_rate():
    from abawkit.frame_model import FrameModel, FrameModelConfig
    from abawkit.semisup.config import TrainConfig
    from abawkit.semisup.train import make_optimizer, make_scheduler

    model = FrameModel(FrameModelConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8))
    cfg = TrainConfig(layer_decay=0.7, lr=1e-3, steps=10, warmup_steps=0)
    optimizer = make_optimizer(cfg, model)
    make_scheduler(cfg, optimizer)
    names = {id(p): n for n, p in model.backbone.named_parameters()}

    def lr_of(prefix):
        return {g["lr"] for g in optimizer.param_groups for p in g["params"] if names[id(p)].startswith(prefix)}

    stem, first, last, head = lr_of("patch_embed"), lr_of("blocks.0."), lr_of("blocks.11."), lr_of("head")
    assert len(stem) == len(first) == len(head) == 1
    assert max(stem) < min(first) < min(last) < min(head) == pytest.approx(1e-3)
    assert max(first) == pytest.approx(1e-3 * 0.7 ** 12)  # 14 layers: stem 0, blocks 1..12, head 13


def test_drop_path_reaches_the_vit():
    from abawkit.frame_model import FrameModel, FrameModelConfig

    model = FrameModel(FrameModelConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8,
                                        drop_path_rate=0.1))
    assert model.backbone.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_probe_head_sets_the_head_to_a_logistic_regression_of_the_frozen_embeddings(tmp_path):
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from abawkit.frame_model import FrameModel, FrameModelConfig, eval_transform
    from abawkit.readers import read_image
    from abawkit.semisup.train import probe_head

    torch.set_num_threads(1)
    d = load_digits()
    keep = np.flatnonzero(d.target < 7)[:120]  # classes 0..6: class 7 has no labeled frame
    rows = []
    for i in keep:
        img = np.kron((d.images[i] / 16 * 255).astype(np.uint8), np.ones((4, 4), np.uint8))
        Image.fromarray(np.stack([img] * 3, -1)).save(tmp_path / f"{i}.png")
        rows.append((str(tmp_path / f"{i}.png"), int(d.target[i])))
    table = pd.DataFrame(rows, columns=["path", "label"])
    torch.manual_seed(0)
    model = FrameModel(FrameModelConfig(backbone="vit_tiny_patch16_224", image_size=32, patch_size=8))
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.head.")}
    score = probe_head(model, table, images=1000, seed=0)

    after = model.state_dict()
    assert all(torch.equal(body[k], after[k]) for k in body)  # only the head was set
    model.eval()
    x = torch.stack([eval_transform(model.config)(read_image(p)) for p in table["path"]])
    with torch.no_grad():
        emb, logits = model.embed(x).numpy(), model(x)
    # the same regression fitted here predicts what the head now predicts
    scaler = StandardScaler().fit(emb)
    ref = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(scaler.transform(emb), table["label"])
    want = ref.predict(scaler.transform(emb))
    assert (logits.argmax(1).numpy() == want).mean() > 0.99
    assert score > 0.8  # digits are nearly linearly separable in a random ViT's embedding
    assert torch.count_nonzero(model.backbone.head.weight[7]) == 0  # the absent class: never predicted on them
    assert (logits[:, 7] < logits[:, :7].min(1).values).all()
