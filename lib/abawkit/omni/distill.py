"""Dataset distillation by distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution
Matching", WACV 2023): a few synthetic images per class whose embedding mean, under randomly initialised
networks and a shared differentiable augmentation, matches that of the class's real images."""

from __future__ import annotations

import functools
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..errors import UserError
from ..io import atomic_path, write_csv, write_json
from ..labels import CLASSES
from ..readers import read_json
from ..runinfo import save_run_record
from .config import DistillConfig

#: ImageNet statistics. A fixed affine map keeps every image's brightness and contrast in what is matched;
#: per-image standardisation would hide them from the loss, and they would drift until clamped.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Standard deviation of the noise added to a repeated real image when K exceeds the class's real images, so
#: that the copies are not one point (identical images get identical gradients and stay identical).
REPEAT_NOISE = 0.03
SUMMARY_COLUMNS = ["class", "n_real", "per_class", "initial_loss", "final_loss", "seconds", "peak_rss_mb",
                   "peak_cuda_mb", "warning"]


def matching_loss(real_emb: torch.Tensor, syn_emb: torch.Tensor) -> torch.Tensor:
    """|| mean_i real_emb_i - mean_j syn_emb_j ||^2 (sum over the embedding dimensions)."""
    return (real_emb.float().mean(0) - syn_emb.float().mean(0)).pow(2).sum()


def augmentation(image_size: int):
    """The differentiable augmentation of the reference's DSA strategy (colour, crop/translation, scale, rotation,
    flip, cutout) in kornia, with one parameter draw per batch (``same_on_batch``)."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.ColorJiggle(brightness=0.2, contrast=0.2, saturation=0.2, p=1.0),
        K.RandomAffine(degrees=15.0, translate=(0.125, 0.125), scale=(0.8, 1.2), p=1.0),
        K.RandomHorizontalFlip(p=0.5),
        K.RandomErasing(scale=(0.02, 0.25), ratio=(0.5, 2.0), p=0.5),
        same_on_batch=True)


def siamese(aug, real: torch.Tensor, syn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``real`` and ``syn`` under one random draw of ``aug``'s parameters (siamese augmentation). kornia replays
    recorded parameters only on a batch of the recorded size, and the two batches differ in size, so both go
    through one call on their concatenation, where ``same_on_batch`` gives every image the same draw."""
    out = aug(torch.cat([real, syn]))
    return out[:len(real)], out[len(real):]


def fresh_network(name: str, device: torch.device) -> torch.nn.Module:
    """A randomly initialised timm network that outputs its pooled features (``num_classes=0``).

    Eval mode: in train mode BatchNorm would normalise the real and the synthetic batch each with its own
    statistics, removing at every layer the per-channel mean that the loss compares (and, for K = 1, reducing
    the synthetic side to per-image statistics). A never trained BatchNorm in eval mode is the identity
    (running mean 0, variance 1), so an image's embedding does not depend on its batch, as with the reference
    ConvNet's instance norm. timm zero-initialises the last norm of each residual block so that training starts
    from the identity; untrained, that would switch every residual branch off, so norm weights are set to 1."""
    import timm

    net = timm.create_model(name, pretrained=False, num_classes=0)
    for module in net.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)):
            if getattr(module, "weight", None) is not None:
                torch.nn.init.ones_(module.weight)
    return net.to(device).eval().requires_grad_(False)


def embed(net: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Pooled features of images in [0, 1] (normalised with :data:`MEAN`/:data:`STD`); bf16 autocast on a GPU."""
    mean = pixels.new_tensor(MEAN).view(1, 3, 1, 1)
    std = pixels.new_tensor(STD).view(1, 3, 1, 1)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=pixels.is_cuda):
        return net((pixels - mean) / std).float()


def image_loader(image_size: int, cache_images: int) -> Callable[[str], torch.Tensor]:
    """``path -> uint8 CHW tensor`` resized to ``image_size`` (torchvision v2), the last ``cache_images`` kept."""
    from torchvision.transforms import v2

    from ..readers import read_image

    resize = v2.Resize((image_size, image_size), antialias=True)

    def load(path: str) -> torch.Tensor:
        return resize(read_image(path))

    return functools.lru_cache(maxsize=cache_images)(load) if cache_images else load


def real_batch(load, paths: list[str], size: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """``size`` real images of the class (all when it has fewer), drawn without replacement, as floats in [0, 1]."""
    pick = rng.permutation(len(paths))[:size]
    return torch.stack([load(paths[i]) for i in pick]).to(device).float().div_(255)


def initial_images(load, paths: list[str], k: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """K real images of the class at random; beyond the class's real images, repeated ones plus noise."""
    pick = rng.permutation(len(paths))
    images = torch.stack([load(paths[pick[i % len(paths)]]) for i in range(k)]).float().div_(255)
    if k > len(paths):
        noise = torch.from_numpy(rng.normal(0, REPEAT_NOISE, images[len(paths):].shape).astype(np.float32))
        images[len(paths):] = (images[len(paths):] + noise).clamp_(0, 1)
    return images.to(device)


def draw_loss(cfg: DistillConfig, load, paths: list[str], syn: torch.Tensor, aug, seed: int,
              rng: np.random.Generator, device: torch.device) -> torch.Tensor:
    """The matching loss of ``syn`` under one draw: a fresh network (from ``seed``), a real batch, an augmentation."""
    torch.manual_seed(seed)
    net = fresh_network(cfg.network, device)
    real = real_batch(load, paths, cfg.real_batch, rng, device)
    real_aug, syn_aug = siamese(aug, real, syn)
    with torch.no_grad():
        real_emb = embed(net, real_aug)
    return matching_loss(real_emb, embed(net, syn_aug))


def evaluation_loss(cfg: DistillConfig, load, paths: list[str], syn: torch.Tensor, aug, class_seed: int,
                    device: torch.device) -> float:
    """The mean matching loss over ``cfg.eval_draws`` fixed draws (the same for any ``syn``), RNG state kept."""
    devices = [device] if device.type == "cuda" else []
    total = 0.0
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        for j in range(cfg.eval_draws):
            rng = np.random.default_rng([class_seed, 1_000_000 + j])
            total += float(draw_loss(cfg, load, paths, syn, aug, 1_000_000 * (j + 1) + class_seed, rng, device))
    return total / cfg.eval_draws


@dataclass(frozen=True)
class ClassResult:
    images: torch.Tensor  # (K, 3, S, S) float in [0, 1], on the CPU
    initial_loss: float
    final_loss: float


def distill_class(cfg: DistillConfig, paths: list[str], class_seed: int, device: torch.device,
                  desc: str = "") -> ClassResult:
    """Distil one class's real images (``paths``) into ``cfg.per_class`` synthetic images."""
    from tqdm.auto import tqdm

    load = image_loader(cfg.image_size, min(cfg.cache_images, len(paths)) if cfg.cache_images else 0)
    rng = np.random.default_rng([cfg.seed, class_seed])
    torch.manual_seed(class_seed)
    aug = augmentation(cfg.image_size)
    syn = initial_images(load, paths, cfg.per_class, rng, device).requires_grad_(True)
    initial = evaluation_loss(cfg, load, paths, syn.detach(), aug, class_seed, device)
    optimizer = torch.optim.SGD([syn], lr=cfg.lr, momentum=cfg.momentum)
    bar = tqdm(range(cfg.iterations), desc=desc, disable=not cfg.progress, leave=False, file=sys.stderr)
    for it in bar:
        loss = draw_loss(cfg, load, paths, syn, aug, class_seed * 1_000_003 + it, rng, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            syn.clamp_(0, 1)  # pixel space: the written PNGs keep the range
        if it % 25 == 0 or it == cfg.iterations - 1:
            bar.set_postfix(loss=f"{loss.item():.4g}")
    final = evaluation_loss(cfg, load, paths, syn.detach(), aug, class_seed, device)
    return ClassResult(syn.detach().cpu(), initial, final)


@dataclass(frozen=True)
class DistillResult:
    out: Path
    summary: pd.DataFrame  # SUMMARY_COLUMNS, one row per class
    distilled: pd.DataFrame  # path,label of the written images (paths relative to ``out``)
    skipped: tuple[str, ...]  # classes finished by an earlier run


def labeled_table(csvs: tuple[str, ...]) -> pd.DataFrame:
    """The union of the rows of the labeled CSVs (``path,label``), each read by ``frames_from_csv``."""
    from ..semisup.data import frames_from_csv

    if not csvs:
        raise UserError("no labeled CSV given; pass one or more --labeled-csv FILE (columns path,label)")
    return pd.concat([frames_from_csv(p) for p in csvs], ignore_index=True).drop_duplicates("path")


def write_png(path: Path, image: torch.Tensor) -> None:
    """A float CHW image in [0, 1] as an 8-bit RGB PNG, written atomically."""
    import cv2

    rgb = (image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OSError(f"PNG encoding failed for {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _finished(record_path: Path, out: Path, cfg: DistillConfig) -> dict | None:
    """The record of a class finished earlier (its PNGs all present), or None; other settings are an error."""
    if not record_path.is_file():
        return None
    record = read_json(record_path, "a class record written by abawkit distill", "delete it to distil the class again")
    if record.get("settings") != cfg.result_settings():
        raise UserError(f"{record_path}: this class was distilled with other settings ({record.get('settings')}); "
                        f"use another --out, or delete {record_path} to distil it again with the new ones")
    return record if all((out / p).is_file() for p in record["images"]) else None


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far (it only grows; Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def distill(cfg: DistillConfig) -> DistillResult:
    """Distil every class of the labeled CSVs into OUT (see :class:`DistillConfig`); finished classes are kept."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    table = labeled_table(cfg.labeled_csvs)
    out = Path(cfg.out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, listed, skipped = [], [], []
    for index, name in enumerate(CLASSES):
        paths = table.loc[table["label"] == index, "path"].tolist()
        record_path = out / "classes" / f"{name}.json"
        if not paths:
            warning = (f"class {name} has no labeled example in {', '.join(cfg.labeled_csvs)}; skipped (add "
                       f"labeled images of it to distil it)")
            print(f"warning: {warning}", file=sys.stderr)
            rows.append({**dict.fromkeys(SUMMARY_COLUMNS), "class": name, "n_real": 0, "per_class": 0,
                         "warning": warning})
            continue
        record = _finished(record_path, out, cfg)
        if record is not None:
            skipped.append(name)
        else:
            record = _distill_one(cfg, name, index, paths, out, device)
            write_json(record_path, record)  # after its PNGs: a record means the class is complete
        rows.append(record["summary"])
        listed += [(p, name) for p in record["images"]]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    distilled = pd.DataFrame(listed, columns=["path", "label"])
    write_csv(out / "summary.csv", summary)
    write_csv(out / "distilled.csv", distilled)
    if listed:
        figure(out, distilled, out / "distilled.png")
    save_run_record(out / "run_record.json", cfg.to_dict(), skipped_classes=skipped,
                    classes=summary["class"][summary["final_loss"].notna()].tolist())
    return DistillResult(out, summary, distilled, tuple(skipped))


def _distill_one(cfg: DistillConfig, name: str, index: int, paths: list[str], out: Path,
                 device: torch.device) -> dict:
    warning = ""
    if cfg.per_class > len(paths):
        warning = (f"class {name} has {len(paths)} real image(s) for per_class {cfg.per_class}; the extra "
                   f"{cfg.per_class - len(paths)} start from repeated real images plus noise (lower --per-class "
                   f"or add images)")
        print(f"warning: {warning}", file=sys.stderr)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = distill_class(cfg, paths, cfg.seed * 1000 + index, device, desc=name)
    seconds = time.perf_counter() - start
    images = []
    for k, image in enumerate(result.images):
        rel = f"images/{name}/{k:03d}.png"
        write_png(out / rel, image)
        images.append(rel)
    summary = {"class": name, "n_real": len(paths), "per_class": cfg.per_class,
               "initial_loss": result.initial_loss, "final_loss": result.final_loss, "seconds": round(seconds, 2),
               "peak_rss_mb": _peak_rss_mb(),
               "peak_cuda_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                                if device.type == "cuda" else None),
               "warning": warning}
    return {"class": name, "settings": cfg.result_settings(), "images": images, "summary": summary}


def figure(out: Path, distilled: pd.DataFrame, path: Path) -> Path:
    """All synthetic images, one row per class with its name, as a PNG (matplotlib Agg)."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(name, group["path"].tolist()) for name, group in distilled.groupby("label", sort=False)]
    k = max(len(p) for _, p in groups)
    fig, axes = plt.subplots(len(groups), 1, figsize=(max(3.0, 1.0 * k + 1.2), 1.1 * len(groups) + 0.3),
                             squeeze=False)
    for ax, (name, paths) in zip(axes[:, 0], groups):
        tiles = [cv2.imread(str(out / p))[:, :, ::-1] for p in paths]
        side = tiles[0].shape[0]
        pad = np.full((side, max(1, side // 16), 3), 255, np.uint8)
        row = np.concatenate([t for tile in tiles for t in (tile, pad)][:-1], axis=1)
        ax.imshow(row)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(f"distilled images ({k} per class)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
