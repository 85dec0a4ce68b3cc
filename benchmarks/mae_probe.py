"""What the MAE face encoder's features carry: linear probes of frozen features on the demo (Song et al. 2024's
pretraining, docs/mae.md "Why the MAE init does not help here").

The same ViT (``encoder.pt``'s architecture) with the pretrained weights and with random weights (three seeds)
embeds the frame model's training frames (demo preset, held-out videos excepted, every 3rd frame) and the
validation frames with the evaluation transform; a logistic regression (standardised features, balanced class
weights) is fitted on the training frames and scored on validation (macro F1 over the 8 classes). Readouts:

| readout | features |
|---|---|
| mean of the patch tokens | what train-frame's ViT classifies (``forward_head(pre_logits=True)``) |
| class token | the prefix token after the last block |
| all patch tokens | every token, flattened in grid order (keeps where each feature is) |
| face-region patch tokens | the tokens of the ArcFace template's face region (x 1/8..7/8, y 1/4..7/8 of the crop) |
| pixels (face region) | the standardised input pixels of that region, no network |

    PYTHONPATH=lib python benchmarks/mae_probe.py --encoder benchmarks/out/mae/mae/encoder.pt

(``benchmarks/mae_finetune.py`` writes that encoder.) Prints the table and writes OUT/table.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from abawkit.labels import CLASSES

#: The face region of the aligned crop as fractions of its side (x0, y0, x1, y1): the ArcFace 112 template puts
#: the eyes at y 0.46 and the mouth corners at y 0.82, x 0.37-0.63; the rest is hair, ears and background.
FACE_REGION = (0.125, 0.25, 0.875, 0.875)
READOUTS = ("mean of the patch tokens", "class token", "all patch tokens", "face-region patch tokens")


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    from abawkit.config import build
    from abawkit.semisup.config import TrainConfig
    from abawkit.semisup.train import load_tables

    train, val, _ = load_tables(build(TrainConfig, {"preset": "demo", "algorithm": "supervised"}))
    return train.iloc[::3].reset_index(drop=True), val


def region_mask(grid: int) -> np.ndarray:
    """(grid, grid) booleans: the cells whose centre lies inside :data:`FACE_REGION`."""
    centres = (np.arange(grid) + 0.5) / grid
    x0, y0, x1, y1 = FACE_REGION
    return ((centres[:, None] >= y0) & (centres[:, None] <= y1)) & ((centres[None] >= x0) & (centres[None] <= x1))


@torch.no_grad()
def features(model, table: pd.DataFrame, batch: int = 128) -> dict[str, np.ndarray]:
    from abawkit.frame_model import eval_transform
    from abawkit.readers import read_image

    transform = eval_transform(model.config)
    net = model.backbone
    grid = int(net.patch_embed.grid_size[0])
    keep = torch.from_numpy(region_mask(grid).reshape(-1))
    out: dict[str, list[np.ndarray]] = {name: [] for name in (*READOUTS, "pixels (face region)")}
    for i in range(0, len(table), batch):
        x = model._prepare(torch.stack([transform(read_image(p)) for p in table["path"].iloc[i:i + batch]]))
        tokens = net.forward_features(x)
        patches = tokens[:, net.num_prefix_tokens:]
        out["mean of the patch tokens"].append(net.forward_head(tokens, pre_logits=True).numpy())
        out["class token"].append(tokens[:, 0].numpy())
        out["all patch tokens"].append(patches.flatten(1).numpy())
        out["face-region patch tokens"].append(patches[:, keep].flatten(1).numpy())
        side = x.shape[-1]
        x0, y0, x1, y1 = (int(round(f * side)) for f in FACE_REGION)
        out["pixels (face region)"].append(x[:, :, y0:y1, x0:x1].flatten(1).numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> np.ndarray:
    """Per-class validation F1 (8 values; their mean is the macro F1) of train-frame --probe-head's regression."""
    from sklearn.metrics import f1_score

    from abawkit.semisup.train import fit_linear_probe

    scaler, clf = fit_linear_probe(train_x, train_y)
    pred = clf.predict(scaler.transform(val_x))
    return f1_score(val_y, pred, labels=range(8), average=None, zero_division=0)


def model_for(encoder: Path, pretrained: bool, seed: int):
    from abawkit.frame_model import FrameModel, FrameModelConfig, read_weights

    info = read_weights(encoder)
    if info is None:
        raise SystemExit(f"{encoder}: not an encoder.pt of abawkit pretrain-mae")
    torch.manual_seed(seed)
    arch = info["architecture"]
    config = FrameModelConfig(backbone=arch["backbone"], image_size=arch["image_size"], patch_size=arch["patch_size"],
                              input_norm=arch["input_norm"], mean=info["mean"], std=info["std"],
                              weights=str(encoder) if pretrained else None)
    return FrameModel(config).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", type=Path, default=Path("benchmarks/out/mae/mae/encoder.pt"),
                    help="pretrain-mae's encoder.pt")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the random-weight encoders")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/mae_probe"), help="output folder")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train, val = frames()
    rows = []
    encoders = [("MAE", True, 0)] + [("random", False, s) for s in args.seeds]
    for name, pretrained, seed in encoders:
        model = model_for(args.encoder, pretrained, seed)
        train_f, val_f = features(model, train), features(model, val)
        for readout in train_f:
            if readout.startswith("pixels") and name != "MAE":
                continue  # no network: once is enough
            per_class = probe(train_f[readout], train["label"].to_numpy(), val_f[readout], val["label"].to_numpy())
            score = float(per_class.mean())
            rows.append({"weights": name, "seed": seed, "readout": readout, "val_macro_f1": score,
                         **{f"f1_{c}": float(v) for c, v in zip(CLASSES, per_class)}})
            print(f"{name} (seed {seed}), {readout}: {score:.3f}", flush=True)
    runs = pd.DataFrame(rows)
    runs.to_csv(args.out / "runs.csv", index=False)
    lines = [f"Linear probes on {len(train)} training and {len(val)} validation frames (validation macro F1).", "",
             "| readout | MAE encoder | random weights, mean of seeds " + " / ".join(map(str, args.seeds)) + " |",
             "|---|---|---|"]
    for readout in (*READOUTS, "pixels (face region)"):
        mae = runs[(runs["weights"] == "MAE") & (runs["readout"] == readout)]["val_macro_f1"]
        rnd = runs[(runs["weights"] == "random") & (runs["readout"] == readout)]["val_macro_f1"]
        rnd_text = (f"{rnd.mean():.3f} ({' / '.join(f'{v:.3f}' for v in rnd)})" if len(rnd) else "(no network)")
        lines.append(f"| {readout} | {mae.mean():.3f} | {rnd_text} |")
    pixels = runs[runs["readout"] == "pixels (face region)"].iloc[0]
    lines += ["", "Per-class F1 of the pixel probe: " + ", ".join(f"{c} {pixels[f'f1_{c}']:.2f}" for c in CLASSES)]
    text = "\n".join(lines)
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
