"""Test/benchmark scaffolding for the temporal stage: face crops cut around the demo's TRUE face boxes
(``render_truth/``) and a quick frame model, so stages 05-07 run before stages 01/03 exist. Never used by
the product path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd


def truth_crops(affwild2_root, manifest, crops_dir, size: int = 48) -> Path:
    """``<crops_dir>/<video_id>/00001.jpg`` for every frame whose render truth has a face."""
    from abawkit.video import iter_frames

    affwild2_root, crops_dir = Path(affwild2_root), Path(crops_dir)
    for _, row in manifest.videos.iterrows():
        vid = row["video_id"]
        truth = pd.read_csv(affwild2_root / "render_truth" / f"{vid}.csv").set_index("frame")
        out = crops_dir / vid
        out.mkdir(parents=True, exist_ok=True)
        for first, frames in iter_frames(row["video_path"]):
            for k, img in enumerate(frames):
                f = first + k
                if f not in truth.index or not bool(truth.loc[f, "has_face"]):
                    continue
                t = truth.loc[f]
                cx, cy = (t.box_x0 + t.box_x1) / 2, (t.box_y0 + t.box_y1) / 2
                half = max(t.box_x1 - t.box_x0, t.box_y1 - t.box_y0) / 2
                h, w = img.shape[:2]
                x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
                x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
                crop = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (size, size))
                cv2.imwrite(str(out / f"{f:05d}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return crops_dir


def quick_frame_model(manifest, crops_dir, checkpoint, image_size: int = 32, steps: int = 150,
                      batch_size: int = 64, seed: int = 0, backbone: str = "resnet10t") -> Path:
    """A weak frame model trained for ``steps`` on the training crops (class-balanced sampling)."""
    import torch

    from abawkit.crops import crop_path, has_face_mask
    from abawkit.readers import read_image
    from abawkit.frame_model import (FrameModelConfig, build_frame_model, eval_transform,
                                     save_frame_checkpoint)

    torch.manual_seed(seed)
    model = build_frame_model(FrameModelConfig(backbone=backbone, image_size=image_size))
    tf = eval_transform(model.config)
    xs, ys = [], []
    for vid in manifest.video_ids("Train_Set"):
        labels = manifest.labels(vid)
        face = has_face_mask(crops_dir, vid, len(labels))
        for f in np.flatnonzero(face & (labels >= 0)) + 1:
            xs.append(tf(read_image(crop_path(crops_dir, vid, int(f)))))
            ys.append(int(labels[f - 1]))
    x, y = torch.stack(xs), torch.tensor(ys)
    counts = torch.bincount(y, minlength=8).float()
    w = (1.0 / counts.clamp(min=1))[y]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.multinomial(w, batch_size, replacement=True, generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return save_frame_checkpoint(checkpoint, model)


def synthetic_feature_dir(out_dir, n_videos: int = 3, n: int = 200, dim: int = 16, seed: int = 0) -> Path:
    """Random feature files in the cache format (for format / speed checks)."""
    from abawkit.io import save_npz

    rng = np.random.default_rng(seed)
    for i in range(n_videos):
        face = rng.random(n) > 0.1
        save_npz(Path(out_dir) / f"v{i}.npz", embeddings=rng.normal(size=(n, dim)).astype(np.float16),
                 has_face=face, logits=rng.normal(size=(n, 8)).astype(np.float32))
    return Path(out_dir)
