"""The training loop of ``abawkit train-frame``: timm's optimizer, warm-up + cosine schedule and EMA,
bf16/channels_last on CUDA, DDP under torchrun, periodic validation (macro F1), resumable checkpoints, metrics
CSV, curves, run record."""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ..frame_model import (CPU_BACKBONE, FrameModel, FrameModelConfig, autocast, eval_transform,
                           load_frame_checkpoint, read_weights, save_frame_checkpoint)
from ..io import write_csv
from ..labels import CLASSES, NUM_CLASSES
from ..metrics import f1_report
from . import distributed as D
from .algorithms import Context, build_algorithm
from .config import TrainConfig
from .data import (LabeledImages, UnlabeledImages, WeakViews, frames_from_csv, frames_from_manifest,
                   strong_transform, unlabeled_frames_from_manifest, unlabeled_images, weak_transform)
from .sampler import ClassUniformBatchSampler, UniformBatchSampler

METRIC_COLUMNS = ["step", "lr", "loss", "loss_l", "loss_u", "mask_rate", "h", "h_raw", "loss_wc",
                  "val_macro_f1", *[f"f1_{c}" for c in CLASSES]]


@dataclass(frozen=True)
class TrainResult:
    out: Path
    final_val_macro_f1: float
    best_val_macro_f1: float
    best_step: int
    steps: int
    train_images_per_s: float

    @classmethod
    def recorded(cls, folder: str | os.PathLike) -> "TrainResult":
        """The result of a finished training, from its ``run_record.json``."""
        import json

        record = json.loads((Path(folder) / "run_record.json").read_text())
        r, params = record["result"], record["params"]
        return cls(Path(folder), float(r["final_val_macro_f1"]), float(r["best_val_macro_f1"]), int(r["best_step"]),
                   int(params["steps"]), float(r["train_images_per_s"]))


#: The architecture of a run that names none and starts from no abawkit weights file.
DEFAULT_ARCHITECTURE = {"backbone": CPU_BACKBONE, "image_size": 112, "patch_size": None, "input_norm": "none"}


def model_config(cfg: TrainConfig) -> FrameModelConfig:
    """The frame model of ``cfg``. With ``--weights`` an abawkit file (pretrain-mae's ``encoder.pt``, or a
    train-frame checkpoint for a second stage), the backbone, image and patch size, input normalisation and
    mean/std are the file's (a given value that differs is an error naming both); otherwise the settings left
    None take :data:`DEFAULT_ARCHITECTURE`."""
    arch = {name: getattr(cfg, name) for name in DEFAULT_ARCHITECTURE}
    ours = read_weights(cfg.weights) if cfg.weights else None
    extra = {}
    if ours is not None:
        from ..config import ConfigError

        theirs = ours["architecture"]
        for name, value in arch.items():
            if value is not None and value != theirs[name]:
                option = "--" + name.replace("_", "-")
                raise ConfigError(f"{option} {value}: {cfg.weights} is a {theirs['backbone']} model trained with "
                                  f"{name} {theirs[name]}; leave {option} out (it is taken from the file) or give "
                                  f"{theirs[name]}")
        arch = dict(theirs)
        extra = {"mean": tuple(ours["mean"]), "std": tuple(ours["std"])}
    else:
        arch = {k: DEFAULT_ARCHITECTURE[k] if v is None else v for k, v in arch.items()}
    return FrameModelConfig(**arch, pretrained=cfg.pretrained, weights=cfg.weights, drop_rate=cfg.drop_rate,
                            drop_path_rate=cfg.drop_path, **extra)


def fold_table(cfg: TrainConfig, manifest=None) -> pd.DataFrame | None:
    """The cross-fitting folds of ``cfg`` (``abawkit.folds.assign_folds``; None when ``folds`` is 1)."""
    from ..folds import FoldError, assign_folds

    if cfg.folds == 1:
        return None
    if not cfg.manifest_dir or not cfg.crops_dir:
        raise FoldError(f"--folds {cfg.folds} splits the manifest's Train_Set videos: pass --manifest DIR and "
                        f"--crops DIR (a --labeled-csv joins the training of every fold)")
    if manifest is None:
        from ..manifest import load_manifest

        manifest = load_manifest(cfg.manifest_dir)
    return assign_folds(manifest, cfg.folds, cfg.seed)


def model_dir(cfg: TrainConfig) -> Path:
    """Where ``cfg``'s model goes: OUT, or OUT/fold_i for the model without fold i."""
    from ..folds import FULL, fold_dir

    return fold_dir(cfg.out_dir, FULL if cfg.fold is None else cfg.fold)


def load_tables(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """Labeled training frames, validation frames (None when no validation source) and unlabeled paths."""
    from .data import DataError

    manifest = None
    if cfg.manifest_dir:
        from ..manifest import load_manifest

        manifest = load_manifest(cfg.manifest_dir)
    left_out: list[str] = []  # the videos of the fold this model must not see
    if cfg.fold is not None:
        from ..folds import fold_videos

        left_out = fold_videos(fold_table(cfg, manifest), cfg.fold)
    parts = []
    if manifest is not None and cfg.crops_dir:
        frames = frames_from_manifest(manifest, cfg.crops_dir, cfg.train_split, cfg.frame_stride)
        # the temporal stage fits its post-processing on these videos: they must be unseen
        unseen = set(manifest.video_ids(holdout=True)) | set(left_out)
        parts.append(frames[~frames["video_id"].isin(unseen)].assign(source="manifest", weight=1.0))
    weights = cfg.labeled_weight or (1.0,) * len(cfg.labeled_csv)
    parts += [frames_from_csv(csv).assign(source=str(csv), weight=float(w)) for csv, w in zip(cfg.labeled_csv, weights)]
    if not parts:
        raise DataError("give the labeled data: --labeled-csv FILE, or --manifest DIR with --crops DIR")
    train = pd.concat(parts, ignore_index=True)
    if cfg.val_csv:
        val = frames_from_csv(cfg.val_csv)
    elif manifest is not None and cfg.crops_dir and cfg.val_split:
        val = frames_from_manifest(manifest, cfg.crops_dir, cfg.val_split, cfg.val_stride)
    else:
        val = None
    unl: list[str] = []
    if cfg.semisup.unlabeled:
        unl = unlabeled_images(cfg.unlabeled_dirs)
        splits = (cfg.train_split,) * cfg.unlabeled_frames + ("Test_Set",) * cfg.unlabeled_test_videos
        if splits:
            if manifest is None or not cfg.crops_dir:
                raise DataError("--unlabeled-frames and --unlabeled-test-videos take the manifest's crops: pass "
                                "--manifest DIR and --crops DIR")
            unl += unlabeled_frames_from_manifest(manifest, cfg.crops_dir, splits, cfg.unlabeled_stride,
                                                  exclude=left_out)
        if not unl:
            raise DataError(f"{cfg.semisup.name} needs unlabeled faces: pass --unlabeled-dir FOLDER (none found "
                            f"under {list(cfg.unlabeled_dirs)}) or --unlabeled-frames, or use --algorithm supervised")
    return train, val, unl


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module):
    """timm's optimizer factory on ``model``: AdamW or Nesterov SGD (momentum 0.9), no weight decay on 1-d
    parameters (biases, norm weights) nor on the network's ``no_weight_decay()`` names; ``cfg.layer_decay`` scales
    the lr of layer i of L by layer_decay^(L-1-i) (layer-wise decay of BEiT/MAE fine-tuning; None: off)."""
    from timm.optim import create_optimizer_v2

    # A FrameModel's parameters are all its timm network's, which carries group_matcher and no_weight_decay; any
    # other module (the pseudo head) has no layers to decay.
    frame = isinstance(model, FrameModel)
    return create_optimizer_v2(model.backbone if frame else model, opt=cfg.optimizer, lr=cfg.lr,
                               weight_decay=cfg.weight_decay, layer_decay=cfg.layer_decay if frame else None)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    """Per-step schedule (``step_update(t)`` after the t-th optimizer step): lr_t = lr * t / w for t < w =
    ``cfg.lr_warmup_steps``, then lr_t = lr/2 * (1 + cos(pi (t - w) / (T - w))), T = ``steps``: the cosine
    starts after the warm-up and reaches 0 at T (timm's ``warmup_prefix``)."""
    from timm.scheduler import CosineLRScheduler

    warmup = min(cfg.lr_warmup_steps, cfg.steps - 1)
    scheduler = CosineLRScheduler(optimizer, t_initial=cfg.steps - warmup, warmup_t=warmup, warmup_prefix=True,
                                  warmup_lr_init=0.0, lr_min=0.0, t_in_epochs=False)
    scheduler.step_update(0)  # the first step's lr in every group, times its lr_scale (layer decay)
    return scheduler


def make_ema(model: torch.nn.Module, decay: float):
    """timm's ModelEmaV3 of ``model``: each floating-point tensor of the state_dict (parameters and buffers,
    BatchNorm running statistics included) moves as e <- d_t e + (1 - d_t) x; integer buffers are copied.
    Updated with t = the number of optimizer steps done (global step + 1, so a resumed run continues the
    warm-up), d_t = min(decay, 1 - (1 + (t-1)/9)^-1) = min(decay, (t-1)/(t+8)): the first update copies the
    student and a short run is not dominated by its initial weights (TensorFlow's (1+t)/(10+t) warm-up of
    ExponentialMovingAverage, two updates later)."""
    from timm.utils import ModelEmaV3

    ema = ModelEmaV3(model, decay=decay, use_warmup=True, warmup_gamma=9.0, warmup_power=1.0)
    ema.requires_grad_(False)
    return ema


def _infinite(loader):
    while True:
        yield from loader


@torch.no_grad()
def predict(model: torch.nn.Module, table: pd.DataFrame, config: FrameModelConfig, device: torch.device,
            batch_size: int = 128, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities (n, C) and labels of a labeled table, in eval mode."""
    loader = DataLoader(LabeledImages(table, eval_transform(config)), batch_size=batch_size, num_workers=workers)
    was = model.training
    model.eval()
    probs, labels = [], []
    for x, y in loader:
        x = x.to(device, memory_format=torch.channels_last) if device.type == "cuda" else x
        with autocast(device):
            probs.append(torch.softmax(model(x).float(), dim=1).cpu())
        labels.append(y)
    model.train(was)
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


def fit_linear_probe(x: np.ndarray, y: np.ndarray):
    """(scaler, classifier): scikit-learn's logistic regression (C = 1, balanced class weights, as the class-uniform
    batches) on standardised features; the linear probe of ``--probe-head`` and of benchmarks/mae_probe.py."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    return scaler, LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced").fit(scaler.transform(x), y)


@torch.no_grad()
def probe_head(model: FrameModel, table: pd.DataFrame, images: int, seed: int) -> float:
    """Set the classifier head to :func:`fit_linear_probe` of the frozen network's ``embed`` of up to ``images``
    labeled frames (eval transform): linear probing before fine-tuning (LP-FT, Kumar et al. 2022), so that a
    pretrained encoder's first gradients come from a head that already reads it, not a random one. Returns the
    probe's macro F1 on those frames. A class with no frame gets a zero weight row and a bias below every logit of
    those frames."""
    from sklearn.metrics import f1_score

    from ..omni.select import embed_batches
    from .data import DataError

    head = model.backbone.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise DataError(f"probe_head needs a linear classifier head; {model.config.backbone}'s is a "
                        f"{type(head).__name__}: turn probe_head off")
    if len(table) > images:
        table = table.sample(n=images, random_state=seed)
    was = model.training
    model.eval()
    x = np.concatenate([emb for _, emb, _, _ in embed_batches(model, table["path"].tolist(), batch_size=128)])
    model.train(was)
    y = table["label"].to_numpy()
    scaler, clf = fit_linear_probe(x, y)
    coef = clf.coef_ if len(clf.classes_) > 2 else np.vstack([-clf.coef_[0], clf.coef_[0]]) / 2
    intercept = clf.intercept_ if len(clf.classes_) > 2 else np.array([-clf.intercept_[0], clf.intercept_[0]]) / 2
    # the standardisation folded into the linear map: w' = w / s, b' = b - w' . mean
    present_w = coef / scaler.scale_
    present_b = intercept - present_w @ scaler.mean_
    logits = x @ present_w.T + present_b
    weight = np.zeros((head.out_features, x.shape[1]), np.float32)
    bias = np.full(head.out_features, float(logits.min()) - 10.0, np.float32)
    weight[clf.classes_], bias[clf.classes_] = present_w, present_b
    head.weight.copy_(torch.from_numpy(weight))
    head.bias.copy_(torch.from_numpy(bias))
    score = float(f1_score(y, clf.classes_[logits.argmax(1)], average="macro"))
    print(f"probe_head: logistic regression on {len(y)} labeled frames' embeddings, macro F1 {score:.3f} on them")
    return score


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


PseudoLabelHook = Callable[[int, list[str], np.ndarray, np.ndarray], None]


def train(cfg: TrainConfig, on_pseudo_labels: PseudoLabelHook | None = None) -> TrainResult:
    """Train the frame model of ``cfg`` (under torchrun when WORLD_SIZE > 1) and return its scores. The first
    process holds the lock of the model's folder (OUT, or OUT/fold_i with ``fold``) meanwhile: a second training
    into it stops at once (when the first is rank 0 of torchrun, torchrun then stops the other ranks).

    ``on_pseudo_labels(step, paths, pseudo_labels, mask)``, called on each unlabeled step of rank 0, lets a
    benchmark that knows the unlabeled images' classes measure the pseudo-labels' precision and mask rate."""
    from ..runlock import command_line, folder_lock

    if int(os.environ.get("RANK", "0")) != 0:
        return _train(cfg, on_pseudo_labels)
    if cfg.folds > 1:
        from ..folds import write_folds

        write_folds(cfg.out_dir, fold_table(cfg))  # or check that OUT's fold models share this assignment
    with folder_lock(model_dir(cfg), f"frame-model training: {command_line()}"):
        return _train(cfg, on_pseudo_labels)


def train_folds(cfg: TrainConfig, on_pseudo_labels: PseudoLabelHook | None = None) -> list[TrainResult]:
    """``folds`` 1: :func:`train` of ``cfg``. Otherwise every fold model (only ``fold`` when given), then the
    model on every training video, each skipped when its folder holds a finished training with these settings
    (resumed from its ``last.pt`` when one was interrupted): re-running finishes what is missing, and
    several machines can each take ``--fold i`` of one folder. Returns every model's result (fold 0, ..., the
    model on every training video last; a skipped one's from its run record)."""
    from ..folds import FULL, fold_dir, is_trained, write_folds

    if cfg.folds == 1:
        return [train(cfg, on_pseudo_labels)]
    # a fold count the manifest cannot hold, or another assignment in OUT, fails before any training
    if int(os.environ.get("RANK", "0")) == 0:
        write_folds(cfg.out_dir, fold_table(cfg))
    results = []
    for fold in [*range(cfg.folds), FULL] if cfg.fold is None else [cfg.fold]:
        sub = cfg.with_(fold=None if fold == FULL else fold)
        folder = fold_dir(cfg.out_dir, fold)
        if is_trained(folder, sub.to_dict(), ignore=("resume", "progress", "workers", "out_dir")):
            print(f"{folder}: trained already, skipped")
            results.append(TrainResult.recorded(folder))
            continue
        results.append(train(sub.with_(resume=(folder / "last.pt").is_file()), on_pseudo_labels))
    return results


def _train(cfg: TrainConfig, on_pseudo_labels: PseudoLabelHook | None = None) -> TrainResult:
    with D.process_group():
        return _train_in_group(cfg, on_pseudo_labels)


def _train_in_group(cfg: TrainConfig, on_pseudo_labels: PseudoLabelHook | None = None) -> TrainResult:
    from tqdm.auto import tqdm

    from ..runinfo import save_run_record

    rank = D.rank()
    device = D.device()
    out = model_dir(cfg)
    train_table, val_table, unl_paths = load_tables(cfg)
    label_counts = np.bincount(train_table["label"], minlength=NUM_CLASSES).tolist()
    semi = cfg.semisup.with_label_prior(label_counts)
    mcfg = model_config(cfg)
    seed_all(cfg.seed)  # same init on every rank
    student = FrameModel(mcfg).to(device)
    if device.type == "cuda":
        student = student.to(memory_format=torch.channels_last)
    if cfg.probe_head and not cfg.resume and D.rank() == 0:  # DDP copies rank 0's head to the others
        probe_head(student, train_table, cfg.probe_images, cfg.seed)

    def wrap(model):
        if not D.is_dist():
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    student_ddp = wrap(student)
    optimizer = make_optimizer(cfg, student)
    scheduler = make_scheduler(cfg, optimizer)
    ema = make_ema(student, semi.ema_decay)

    def student_step(loss: torch.Tensor, step: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.clip_grad)
        optimizer.step()
        scheduler.step_update(step + 1)
        ema.update(student, step=step + 1)

    ctx = Context(student=student_ddp, student_step=student_step, ema=ema, autocast=lambda: autocast(device),
                  make_optimizer=lambda model: make_optimizer(cfg, model),
                  make_scheduler=lambda opt: make_scheduler(cfg, opt), wrap=wrap, clip_grad=cfg.clip_grad,
                  total_steps=cfg.steps, mix=cfg.mix)
    algo = build_algorithm(semi, ctx, NUM_CLASSES, len(unl_paths))

    start, best, best_step, history = 0, -1.0, 0, []
    if cfg.resume:
        last = out / "last.pt"
        if not last.is_file():
            from ..errors import UserError

            raise UserError(f"--resume: {last} not found; start without --resume")
        from ..readers import restore_states

        state = load_frame_checkpoint(last)
        restore_states(last, state, {"student": student, "optimizer": optimizer, "scheduler": scheduler,
                                     "ema": ema, "algorithm": algo}, "backbone, algorithm or threshold")
        start, best, best_step = int(state["step"]), float(state["best_val_macro_f1"]), int(state["best_step"])
        if (out / "metrics.csv").is_file():
            old = pd.read_csv(out / "metrics.csv")
            history = old[old["step"] <= start].to_dict("records")
    # The batches and their augmentations are functions of (seed, rank, batch number) (semisup/sampler.py): a
    # resumed run continues both streams exactly. The process's own random state (anything else random in a
    # step) is each rank's own and continues from the checkpoint.
    torch.manual_seed(cfg.seed * 7919 + rank * 104729)
    if cfg.resume and rank == 0:
        torch.set_rng_state(state["rng"]["torch"])

    def loader(dataset, sampler):
        return _infinite(DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.workers,
                                    pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0,
                                    multiprocessing_context="spawn" if cfg.workers > 0 else None,
                                    generator=torch.Generator().manual_seed(cfg.seed)))  # not the process's

    weak, strong = weak_transform(mcfg, cfg.colour_aug), strong_transform(mcfg, cfg.colour_aug)
    labels = train_table["label"].to_numpy()
    weights = train_table["weight"].to_numpy()
    boxes, box_counts = None, None
    if cfg.mix == "facemix":  # before any data-loader process starts (mediapipe, spawn)
        from .boxes import face_boxes

        boxes, box_counts = face_boxes(train_table, cfg.crops_dir, out, cfg.progress and rank == 0)
    lab_iter = loader(LabeledImages(train_table, weak, boxes),
                      ClassUniformBatchSampler(labels, cfg.batch_size, cfg.seed, rank, start_batch=start,
                                               weights=weights))
    unl_iter = h_iter = None
    if algo.uses_unlabeled:
        # no unlabeled batch is drawn during the algorithm's warm-up: the stream continues at the batches drawn
        unl_done = sum(not algo.warming_up(s) for s in range(start))
        unl_iter = loader(UnlabeledImages(unl_paths, weak, strong),
                          UniformBatchSampler(len(unl_paths), cfg.batch_size * semi.uratio, cfg.seed, rank,
                                              start_batch=unl_done))
        if algo.needs_h_batch:  # the feedback's second labeled batch: a stream of its own
            h_iter = loader(LabeledImages(train_table, weak),
                            ClassUniformBatchSampler(labels, cfg.batch_size, cfg.seed, rank,
                                                     start_batch=unl_done, stream=53, weights=weights))

    def teacher_pass():
        """Weak views of the same ``init_images`` unlabeled images on every run of this seed (each rank its
        share), batch by batch: the pass that starts the thresholds (FixMatch.start_unlabeled)."""
        rng = np.random.default_rng([cfg.seed, 54])
        picks = rng.permutation(len(unl_paths))[:min(semi.init_images, len(unl_paths))]
        share = np.array_split(picks, D.world_size())[rank] if len(picks) >= D.world_size() else picks
        items = list(zip(share.tolist(), rng.integers(2**62, size=len(share)).tolist()))
        views = DataLoader(WeakViews(unl_paths, items, weak), batch_size=cfg.batch_size * semi.uratio,
                           num_workers=cfg.workers, multiprocessing_context="spawn" if cfg.workers > 0 else None)
        return (_to(u_w, device) for u_w, _ in views)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    params = {**cfg.to_dict(), "world_size": D.world_size(), "n_labeled": len(train_table),
              "n_val": 0 if val_table is None else len(val_table), "n_unlabeled": len(unl_paths),
              "train_videos": (sorted(train_table["video_id"].dropna().unique())
                               if "video_id" in train_table else None),
              "labeled_class_counts": label_counts,
              "debias_prior_used": list(semi.debias_prior) if semi.debias else None,
              "labeled_sources": train_table.groupby("source", sort=False).size().to_dict(),
              "model": asdict(mcfg), "face_boxes": box_counts}

    def evaluate() -> dict[str, float]:
        if val_table is None:
            return {}
        probs, labels = predict(ema.module, val_table, mcfg, device)
        rep = f1_report(labels, probs.argmax(1))
        return {"val_macro_f1": rep.macro_f1, **{f"f1_{c}": float(f) for c, f in zip(CLASSES, rep.per_class_f1)}}

    def checkpoint(step: int, name: str) -> None:
        if name == "best.pt":  # the model for later stages: no trainer state (several times its size)
            save_frame_checkpoint(out / name, ema.module, step=step, val_macro_f1=best if best >= 0 else None,
                                  train_config=cfg.to_dict())
            return
        save_frame_checkpoint(out / name, ema.module, step=step, student=student.state_dict(),
                              optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                              ema=ema.state_dict(), algorithm=algo.state_dict(),
                              rng={"torch": torch.get_rng_state()}, best_val_macro_f1=best, best_step=best_step,
                              train_config=cfg.to_dict())

    student_ddp.train()
    running: dict[str, list[float]] = {}
    t0, n_images = time.time(), 0
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=f"train-frame {semi.name}",
               disable=not cfg.progress or rank != 0, unit="step", mininterval=3)
    last_metrics: dict[str, float] = {}
    for step in bar:
        x_l, y_l, *box_l = next(lab_iter)  # (images, labels[, face boxes]) of the labeled batch
        x_l, y_l = _to(x_l, device), y_l.to(device)
        box_l = box_l[0].to(device) if box_l else None
        # No unlabeled batch is loaded during the algorithm's warm-up (it would not use it).
        if unl_iter is not None and not algo.warming_up(step):
            if not algo.started:
                algo.start_unlabeled(teacher_pass())
            u_w, u_s, idx = next(unl_iter)
            x_h = y_h = None
            if h_iter is not None:
                x_h, y_h = next(h_iter)
                x_h, y_h = _to(x_h, device), y_h.to(device)
            stats = algo.train_step(x_l, y_l, _to(u_w, device), _to(u_s, device), idx.to(device), x_h, y_h,
                                    step=step, boxes=box_l)
            if on_pseudo_labels is not None and rank == 0 and algo.last_pseudo_labels is not None:
                i, y_hat, mask = (t.cpu().numpy() for t in algo.last_pseudo_labels)
                on_pseudo_labels(step, [unl_paths[k] for k in i], y_hat, mask)
            n_images += x_l.shape[0] + u_w.shape[0]
        else:
            stats = algo.train_step(x_l, y_l, step=step, boxes=box_l)
            n_images += x_l.shape[0]
        for k, v in stats.items():
            running.setdefault(k, []).append(v)
        done = step + 1
        if done % cfg.eval_interval == 0 or done == cfg.steps:
            row = {"step": done, "lr": max(g["lr"] for g in optimizer.param_groups),
                   **{k: float(np.mean(v)) for k, v in running.items()}}
            running = {}
            if rank == 0:
                row.update(evaluate())
                last_metrics = row
                history.append(row)
                f1 = row.get("val_macro_f1", -1.0)
                if f1 > best:
                    best, best_step = f1, done
                    checkpoint(done, "best.pt")
                write_csv(out / "metrics.csv", pd.DataFrame(history).reindex(columns=METRIC_COLUMNS))
                f = row.get("val_macro_f1")
                bar.set_postfix(loss=f"{row['loss']:.3f}", f1=f"{f:.3f}" if f is not None else "-")
        if done % cfg.ckpt_interval == 0 or done == cfg.steps:
            if rank == 0:
                checkpoint(done, "last.pt")
            D.barrier()  # the other ranks wait for validation and the checkpoint
    elapsed = time.time() - t0
    rate = n_images * D.world_size() / max(elapsed, 1e-9)
    final = float(last_metrics.get("val_macro_f1", float("nan"))) if last_metrics else float("nan")
    if rank == 0 and cfg.steps > start:
        if val_table is None:  # nothing to select on: best is the last
            checkpoint(cfg.steps, "best.pt")
        from .inspect import plot_curves

        plot_curves(pd.DataFrame(history), out / "curves.png")
        save_run_record(out / "run_record.json", params,
                        result={"final_val_macro_f1": final, "best_val_macro_f1": best, "best_step": best_step,
                                "train_images_per_s": rate, "seconds": elapsed, "algorithm": semi.name})
    if rank == 0 and cfg.steps <= start and history:
        final = float(history[-1].get("val_macro_f1", float("nan")))
    return TrainResult(out, final, best, best_step, cfg.steps, rate)


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x
