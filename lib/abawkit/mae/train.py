"""The loop of ``abawkit pretrain-mae``: timm's AdamW (betas 0.9, 0.95) and warm-up + cosine schedule, bf16 and
DDP under torchrun on GPUs, resumable ``mae.pt``, metrics CSV, loss curve and reconstructions of held-out faces,
run record; ``encoder.pt`` is written last, when the run is complete."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..frame_model import autocast
from ..io import atomic_path, write_csv
from ..readers import BadFileError, read_image
from ..semisup import distributed as D
from ..semisup.data import DataError, item_rng, unlabeled_images
from .config import FACE_MEAN, FACE_STD, MAEConfig
from .model import MaskedAutoencoder, patchify, save_encoder, unpatchify

STATE_FORMAT = "abawkit-mae/1"
METRIC_COLUMNS = ["step", "lr", "loss", "preview_loss", "images_per_s"]


@dataclass(frozen=True)
class MAEResult:
    out: Path
    first_loss: float
    final_loss: float
    first_preview_loss: float
    final_preview_loss: float
    steps: int
    images_per_s: float
    seconds: float
    n_images: int


def pretraining_images(cfg: MAEConfig) -> list[str]:
    """The images of ``cfg``, sorted: every image under --images, then the crops of the manifest's --splits videos
    (every k-th with ``stride``; held-out Train_Set videos excepted, as train-frame leaves them out). A folder with
    no image, or whose first images cannot be decoded, is an error naming it."""
    paths: list[str] = []
    for folder in cfg.images_dirs:
        found = unlabeled_images([folder])
        if not found:
            raise DataError(f"--images {folder}: no image file (.jpg, .png, ...) under it; pass a folder of face "
                            f"images")
        _check_readable(found, f"--images {folder}")
        paths += found
    if cfg.manifest_dir or cfg.crops_dir:
        if not (cfg.manifest_dir and cfg.crops_dir):
            raise DataError("--manifest and --crops go together (the crops of the manifest's videos)")
        from ..crops import crop_frames, crop_path
        from ..manifest import load_manifest

        manifest = load_manifest(cfg.manifest_dir)
        if not Path(cfg.crops_dir).is_dir():
            raise DataError(f"crops folder {cfg.crops_dir} not found; run abawkit extract-faces (notebook 01)")
        held = set(manifest.video_ids(holdout=True))
        crops = []
        for split in cfg.splits:
            for vid in manifest.video_ids(split):
                if vid not in held:
                    crops += [str(crop_path(cfg.crops_dir, vid, int(f)))
                              for f in crop_frames(cfg.crops_dir, vid)[::cfg.stride]]
        if not crops:
            raise DataError(f"no crop of the {list(cfg.splits)} videos of {cfg.manifest_dir} under {cfg.crops_dir}; "
                            f"are the crops for this manifest?")
        _check_readable(crops, f"--crops {cfg.crops_dir}")
        paths += crops
    if not paths:
        raise DataError("no image to pretrain on: pass --images DIR (repeatable) and/or --manifest DIR --crops DIR")
    return sorted(set(paths))


def _check_readable(paths: list[str], what: str, probe: int = 16) -> None:
    """At least one of ``probe`` images spread over ``paths`` decodes; else the error of the first."""
    first = None
    for i in np.linspace(0, len(paths) - 1, min(probe, len(paths))).astype(int):
        try:
            read_image(paths[i])
            return
        except BadFileError as exc:
            first = first or exc
    raise DataError(f"{what}: none of {min(probe, len(paths))} images tried can be decoded ({first}); pass a folder of "
                    f"readable JPEG/PNG face images")


def pretrain_transform(cfg: MAEConfig):
    """A random resized crop of 20-100 % of the image (the authors'), a flip, the face mean/std."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop((cfg.image_size, cfg.image_size), scale=(0.2, 1.0), antialias=True),
                       v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(FACE_MEAN), list(FACE_STD))])


def preview_transform(cfg: MAEConfig):
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize((cfg.image_size, cfg.image_size), antialias=True),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(FACE_MEAN), list(FACE_STD))])


class Images(Dataset):
    """The image of each (index, augmentation seed) item, transformed under that seed."""

    def __init__(self, paths: list[str], transform):
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> torch.Tensor:
        i, seed = item if isinstance(item, tuple) else (item, None)
        image = read_image(self.paths[i])
        with item_rng(seed):
            return self.transform(image)


def split_preview(paths: list[str], cfg: MAEConfig) -> tuple[list[str], list[str]]:
    """(training images, preview images): the preview ones, drawn with the seed, are never trained on."""
    k = min(cfg.preview_images, max(0, len(paths) - 1))
    picks = set(np.random.default_rng([cfg.seed, 61]).permutation(len(paths))[:k].tolist())
    return [p for i, p in enumerate(paths) if i not in picks], [p for i, p in enumerate(paths) if i in picks]


def make_optimizer(cfg: MAEConfig, model: MaskedAutoencoder, world_size: int = 1):
    """timm's AdamW with MAE's betas (0.9, 0.95) at lr = base_lr x global batch / 256; no weight decay on 1-d
    tensors, the position embeddings and the tokens."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr(world_size), weight_decay=cfg.weight_decay,
                               betas=(0.9, 0.95))


@torch.no_grad()
def preview_loss(model: MaskedAutoencoder, images: torch.Tensor, seed: int = 0):
    """Loss, predictions and masks of ``images`` under fixed masks (the same at every call), in eval mode."""
    was = model.training
    model.eval()
    gen = torch.Generator(device=images.device).manual_seed(seed)
    loss, pred, mask = model(images, generator=gen)
    model.train(was)
    return float(loss), pred, mask


def pretrain(cfg: MAEConfig) -> MAEResult:
    """Pretrain the masked autoencoder of ``cfg`` (under torchrun when WORLD_SIZE > 1); rank 0 holds the lock of
    OUT meanwhile."""
    from ..runlock import command_line, folder_lock

    if int(os.environ.get("RANK", "0")) != 0:
        with D.process_group():
            return _pretrain(cfg)
    with folder_lock(cfg.out_dir, f"MAE pretraining: {command_line()}"), D.process_group():
        return _pretrain(cfg)


def _pretrain(cfg: MAEConfig) -> MAEResult:
    from timm.utils import dispatch_clip_grad
    from tqdm.auto import tqdm

    from ..runinfo import save_run_record
    from ..semisup.sampler import UniformBatchSampler
    from ..semisup.train import make_scheduler, seed_all

    rank, world, device = D.rank(), D.world_size(), D.device()
    out = Path(cfg.out_dir)
    train_paths, preview_paths = split_preview(pretraining_images(cfg), cfg)
    seed_all(cfg.seed)  # the same initial weights on every rank
    model = MaskedAutoencoder(cfg).to(device)
    net = model
    if D.is_dist():
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(cfg, model, world)
    scheduler = make_scheduler(cfg, optimizer)
    start, history = 0, []
    if cfg.resume:
        start, history = _resume(cfg, model, optimizer, scheduler)
    torch.manual_seed(cfg.seed * 7919 + rank * 104729 + start)  # the masks' stream (a resumed run draws anew)
    loader = DataLoader(Images(train_paths, pretrain_transform(cfg)),
                        batch_sampler=UniformBatchSampler(len(train_paths), cfg.batch_size, cfg.seed, rank,
                                                          start_batch=start),
                        num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
                        multiprocessing_context="spawn" if cfg.workers > 0 else None)
    preview = (torch.stack([Images(preview_paths, preview_transform(cfg))[i] for i in range(len(preview_paths))])
               .to(device) if preview_paths else None)
    params = {**cfg.to_dict(), "world_size": world, "n_images": len(train_paths), "n_preview": len(preview_paths),
              "lr": cfg.lr(world)}

    def state(step: int) -> dict:
        return {"format": STATE_FORMAT, "config": cfg.to_dict(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "history": history}

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    running: list[float] = []
    t0, seen, t_row, seen_row = time.time(), 0, time.time(), 0
    bar = tqdm(total=cfg.steps, initial=start, desc="pretrain-mae", unit="step", mininterval=3,
               disable=not cfg.progress or rank != 0)
    batches = iter(loader)
    for step in range(start, cfg.steps):
        x = next(batches).to(device, non_blocking=True)
        with autocast(device):
            loss, _, _ = net(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            dispatch_clip_grad(model.parameters(), cfg.clip_grad)
        optimizer.step()
        scheduler.step_update(step + 1)
        running.append(loss.item())
        seen += x.shape[0]
        seen_row += x.shape[0]
        bar.update(1)
        done = step + 1
        if done % cfg.eval_interval == 0 or done == cfg.steps:
            loss_now = float(D.all_reduce_mean(torch.tensor(np.mean(running), device=device)))
            row = {"step": done, "lr": optimizer.param_groups[0]["lr"], "loss": loss_now,
                   "preview_loss": preview_loss(model, preview, cfg.seed)[0] if preview is not None else np.nan,
                   "images_per_s": seen_row * world / max(time.time() - t_row, 1e-9)}
            running, t_row, seen_row = [], time.time(), 0
            history.append(row)
            bar.set_postfix(loss=f"{loss_now:.4f}")
            if rank == 0:
                write_csv(out / "metrics.csv", pd.DataFrame(history).reindex(columns=METRIC_COLUMNS))
        if done % cfg.ckpt_interval == 0 or done == cfg.steps:
            if rank == 0:
                with atomic_path(out / "mae.pt") as tmp:
                    torch.save(state(done), tmp)
            D.barrier()
    bar.close()
    elapsed = time.time() - t0
    frame = pd.DataFrame(history)
    result = MAEResult(out, float(frame["loss"].iloc[0]), float(frame["loss"].iloc[-1]),
                       float(frame["preview_loss"].iloc[0]), float(frame["preview_loss"].iloc[-1]), cfg.steps,
                       seen * world / max(elapsed, 1e-9) if cfg.steps > start else float("nan"), elapsed,
                       len(train_paths))
    if rank == 0:
        plot_loss(frame, out / "loss.png")
        if preview is not None:
            plot_reconstructions(model, preview, cfg.seed, out / "reconstructions.png")
        save_run_record(out / "run_record.json", params,
                        result={k: v for k, v in result.__dict__.items() if k != "out"})
        # last: encoder.pt is what marks the pretraining complete
        save_encoder(out / "encoder.pt", model, steps=cfg.steps, images=len(train_paths),
                     final_loss=result.final_loss)
    D.barrier()
    return result


def _resume(cfg: MAEConfig, model, optimizer, scheduler) -> tuple[int, list[dict]]:
    from ..errors import UserError
    from ..readers import load_checkpoint, restore_states

    path = Path(cfg.out_dir) / "mae.pt"
    if not path.is_file():
        raise UserError(f"--resume: {path} not found; start without --resume")
    state = load_checkpoint(path, STATE_FORMAT, "resume from the OUT folder of an abawkit pretrain-mae run")
    restore_states(path, state, {"model": model, "optimizer": optimizer, "scheduler": scheduler},
                   "backbone, sizes or decoder")
    return int(state["step"]), list(state.get("history", []))


def plot_loss(history: pd.DataFrame, path: Path) -> Path | None:
    """Training and held-out reconstruction loss against the step."""
    if history.empty:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(history["step"], history["loss"], label="training batches")
    if history["preview_loss"].notna().any():
        ax.plot(history["step"], history["preview_loss"], marker="o", label="held-out faces (fixed masks)")
    ax.set_xlabel("step"), ax.set_ylabel("masked-patch MSE"), ax.set_title("MAE reconstruction loss"), ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def reconstructions(model: MaskedAutoencoder, images: torch.Tensor, seed: int = 0) -> dict[str, np.ndarray]:
    """Originals, masked inputs and reconstructions (visible patches from the original) of ``images``, as
    (N, H, W, 3) arrays in [0, 1], each image scaled by its original's range, in the space the model sees."""
    _, pred, mask = preview_loss(model, images, seed)
    x = model.prepare(images).float()
    true = patchify(x, model.patch)
    pred = pred.float()
    if model.cfg.norm_pix_loss:  # predictions are in per-patch normalised units: use each patch's own statistics
        pred = pred * (true.var(dim=-1, keepdim=True) + 1e-6) ** 0.5 + true.mean(dim=-1, keepdim=True)
    m = mask[..., None]
    visible = unpatchify((1 - m).expand_as(true), model.patch)  # 1 on the pixels of visible patches
    recon = unpatchify(true * (1 - m) + pred * m, model.patch)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)

    def show(t):
        return ((t - lo) / (hi - lo + 1e-6)).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()

    return {"original": show(x), "masked": show(x) * show(visible * (hi - lo) + lo), "reconstruction": show(recon)}


def plot_reconstructions(model: MaskedAutoencoder, images: torch.Tensor, seed: int, path: Path) -> Path:
    from matplotlib.figure import Figure

    rows = reconstructions(model, images, seed)
    n = images.shape[0]
    fig = Figure(figsize=(1.3 * n, 4.2))
    axes = fig.subplots(3, n, squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for i in range(n):
            axes[r][i].imshow(imgs[i])
            axes[r][i].set_xticks([]), axes[r][i].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"held-out faces: {int(model.cfg.mask_ratio * 100)} % of the patches masked")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
