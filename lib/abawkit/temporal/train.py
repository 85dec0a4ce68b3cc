"""Train the temporal encoder on cached features, fit the post-processing on held-out training subjects,
and compare frame model / + temporal encoder / + post-processing on the validation split."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import CLASSES, IGNORE
from .config import TemporalTrainConfig


def _probs(model, videos) -> list[np.ndarray]:
    from .predict import predict_logits, softmax

    return [softmax(predict_logits(model, v.embeddings, v.has_face, v.logits)) for v in videos]


def _report(videos, probs):
    from ..metrics import f1_report

    y = np.concatenate([v.labels for v in videos])
    return f1_report(y, np.concatenate(probs).argmax(1))


def train_temporal(config: TemporalTrainConfig, manifest=None) -> dict:
    """Train, keep ``best.pt`` (the epoch ``config.select`` chooses) and ``last.pt``, write ``metrics.csv``,
    ``postprocess.json``, ``comparison.csv`` and ``run_record.json`` under ``config.out_dir``; return a summary.

    ``manifest``: the loaded manifest of ``config.manifest_dir`` when the caller has it already. Holds the lock of
    ``config.out_dir`` meanwhile (a second training into it stops at once)."""
    from ..runlock import command_line, folder_lock

    with folder_lock(config.out_dir, f"temporal training: {command_line()}"):
        return _train_temporal(config, manifest)


def _train_temporal(config: TemporalTrainConfig, manifest=None) -> dict:
    import torch

    from ..features import FeatureError
    from ..io import write_csv
    from ..manifest import ManifestError, load_manifest
    from ..postprocess import fit_postprocess
    from ..runinfo import save_run_record
    from .data import load_videos
    from .model import load_temporal_model

    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    torch.set_num_threads(config.threads)
    features_dir, out_dir = config.features_dir, Path(config.out_dir)
    manifest = manifest if manifest is not None else load_manifest(config.manifest_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_ids = manifest.video_ids("Train_Set", holdout=False)
    held_ids = manifest.video_ids("Train_Set", holdout=True)
    val_ids = manifest.video_ids("Validation_Set")
    if not train_ids:
        raise ManifestError(f"the manifest {manifest.path} has no Train_Set subject to train on")
    if not val_ids:
        raise ManifestError(f"the manifest {manifest.path} has no Validation_Set subject to validate on")
    train, held, val = (load_videos(features_dir, manifest, ids) for ids in (train_ids, held_ids, val_ids))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # the fold each training video's features left out of their model's training (None: not cross-fitted)
    folds = {v.video_id: v.fold for v in train}
    crossfitted = all(f is not None and f >= 0 for f in folds.values())

    if config.select == "cv" and not crossfitted:
        raise FeatureError(f"select cv needs cross-fitted features: {features_dir} holds features of a model that "
                           f"saw the training videos; extract them with --folds K (abawkit extract-features) or "
                           f"choose another --select")
    if config.select == "holdout" and not held:
        raise ManifestError(f"select holdout: the manifest {manifest.path} holds no held-out Train_Set video; "
                            f"make one with abawkit manifest --holdout-fraction 0.2 or choose another --select")

    extra = {"train_config": asdict(config), "train_videos": train_ids, "holdout_videos": held_ids,
             "crossfitted": crossfitted}
    oof, cv_epoch = (cross_validate(config, train, folds, val, held, out_dir / "cv", device)
                     if config.cv and crossfitted else ([], None))
    keep = (cv_epoch or None) if config.select == "cv" else None
    fit = fit_encoder(config, train, val, out_dir, device, extra, held=held, keep_epoch=keep)
    model, _ = load_temporal_model(out_dir / "best.pt", device)
    # Post-processing is fitted on TRAINING subjects the encoder did not see, never on the validation split it is
    # reported on: the held-out videos and, with post_fit holdout+cv, every training video's out-of-fold prediction.
    extend = oof if config.post_fit == "holdout+cv" else []
    fold = list(held) if held else ([] if extend else list(train))
    fold_probs = _probs(model, fold)
    for _, videos, probs in extend:
        fold += videos
        fold_probs += probs
    source = ("holdout" if held else "") + (" + cross-validation (out-of-fold)" if extend else "")
    fit_info = {"fold": source.strip(" +") or "train (no holdout available)", "fold_ids": [v.video_id for v in fold]}
    post = fit_postprocess(fold_probs, [v.has_face for v in fold], [v.labels for v in fold])
    post = type(post)(window=post.window, bias=post.bias, fill=post.fill, fit_info={**post.fit_info, **fit_info})
    post.save(out_dir / "postprocess.json")
    # The smoothing-only baseline: the same post-processing fitted on the frame model's probabilities.
    smooth = fit_postprocess([frame_model_probs(v) for v in fold], [v.has_face for v in fold],
                             [v.labels for v in fold])
    smooth = type(smooth)(window=smooth.window, bias=smooth.bias, fill=smooth.fill,
                          fit_info={**smooth.fit_info, **fit_info, "probabilities": "frame model"})
    smooth.save(out_dir / "postprocess_frame_model.json")
    comparison = compare_stages(model, post, val, smooth)
    write_csv(out_dir / "comparison.csv", comparison)
    summary = {"best_val_macro_f1": fit["best_val_macro_f1"], "val_macro_f1": fit["val_macro_f1"],
               "select": config.select, "epoch": fit["epoch"], "epochs": config.epochs, "crossfitted": crossfitted,
               "postprocess": {"window": post.window, "bias": list(post.bias), "fold": fit_info["fold"]},
               "comparison": comparison.to_dict(orient="records")}
    if oof:
        cv = cv_report(oof, post, smooth)
        write_csv(out_dir / "cv.csv", cv)
        summary["cv"] = cv[cv["fold"] == "all"][["stage", "macro_f1"]].to_dict(orient="records")
    save_run_record(out_dir / "run_record.json", asdict(config), result=summary)
    return summary


def fit_encoder(config: TemporalTrainConfig, train, val, out_dir: Path, device, extra: dict,
                progress: bool | None = None, held=(), keep_epoch: int | None = None, on_epoch=None) -> dict:
    """Train an encoder on the videos ``train``, scoring ``val`` (and the held-out videos ``held``) each epoch;
    write ``best.pt`` (the epoch ``config.select`` chooses; ``keep_epoch`` when given), ``last.pt`` and
    ``metrics.csv`` into ``out_dir``. ``on_epoch(epoch, model)`` runs after each epoch. Returns the kept
    ``epoch``, its ``val_macro_f1`` and the ``best_val_macro_f1`` over all epochs."""
    import torch
    from torch.utils.data import DataLoader, WeightedRandomSampler
    from tqdm.auto import tqdm

    from ..io import write_csv
    from .data import WindowDataset, balanced_window_weights, class_counts, class_weights, face_feature_stats
    from .model import build_temporal_model, save_temporal_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    mcfg = config.model
    model = build_temporal_model(mcfg, embed_dim=int(train[0].embeddings.shape[1]))
    # streamed over the training face frames: the memory-mapped features are never gathered
    mean, std, n_faces = face_feature_stats(train, inputs=model.inputs_of, dim=model.in_dim)
    if n_faces:
        model.set_normalization(mean, std)
    model.to(device)

    data = WindowDataset(train, mcfg.window, mcfg.train_stride)
    counts = class_counts(train)
    gen = torch.Generator().manual_seed(config.seed)
    if config.balanced_sampling:
        sampler = WeightedRandomSampler(balanced_window_weights(data, counts), num_samples=len(data),
                                        replacement=True, generator=gen)
        loader = DataLoader(data, batch_size=config.batch_size, sampler=sampler)
        weights = None
    else:
        loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=gen)
        weights = torch.tensor(class_weights(counts, config.loss_weight_power), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE, label_smoothing=config.label_smoothing)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = max(1, config.epochs * len(loader))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps, pct_start=0.1)

    held = list(held)
    history, kept, best_val = [], {"epoch": 0, "val_macro_f1": float("nan"), "score": -1.0}, -1.0
    show = config.progress if progress is None else progress
    bar = tqdm(range(1, config.epochs + 1), desc="temporal", unit="epoch", disable=not show)
    for epoch in bar:
        model.train()
        total, seen = 0.0, 0
        for x, face, lg, y, valid in loader:
            x, face, lg, y = x.to(device), face.to(device), lg.to(device), y.to(device)
            if config.frame_drop > 0:
                face = face & (torch.rand(face.shape, device=device) >= config.frame_drop)
            out = model(x, face, lg, noise=config.feature_noise)
            loss = loss_fn(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            if not torch.isfinite(loss):  # a batch without any labeled frame
                continue
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
        row = {"epoch": epoch, "train_loss": total / max(seen, 1),
               "val_macro_f1": _report(val, _probs(model, val)).macro_f1, "lr": sched.get_last_lr()[0]}
        if held:
            row["holdout_macro_f1"] = _report(held, _probs(model, held)).macro_f1
        history.append(row)
        write_csv(out_dir / "metrics.csv", pd.DataFrame(history))
        if on_epoch is not None:
            on_epoch(epoch, model)
        best_val = max(best_val, row["val_macro_f1"])
        score = (float(epoch == keep_epoch) if keep_epoch is not None else
                 {"validation": row["val_macro_f1"], "holdout": row.get("holdout_macro_f1", -1.0),
                  "last": float(epoch), "cv": float(epoch)}[config.select])
        if score > kept["score"]:
            kept = {"epoch": epoch, "val_macro_f1": row["val_macro_f1"], "score": score}
            save_temporal_checkpoint(out_dir / "best.pt", model, epoch=epoch, val_macro_f1=row["val_macro_f1"],
                                     select=config.select, **extra)
        save_temporal_checkpoint(out_dir / "last.pt", model, epoch=epoch, val_macro_f1=row["val_macro_f1"], **extra)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_f1=f"{row['val_macro_f1']:.3f}",
                        kept=f"{kept['epoch']}")
    return {"epoch": kept["epoch"], "val_macro_f1": kept["val_macro_f1"], "best_val_macro_f1": best_val}


def cross_validate(config: TemporalTrainConfig, train, folds: dict[str, int], val, held, out_dir: Path,
                   device) -> tuple[list[tuple[int, list, list[np.ndarray]]], int]:
    """Per fold f of cross-fitted features: an encoder trained without fold f's videos (into ``out_dir/fold_f``,
    its epoch chosen like the main one's) and its probabilities on fold f's videos, ``(f, videos, probs)``; and
    the epoch of the best pooled out-of-fold score. The per-epoch curve ``epoch, fold, macro_f1`` of each fold's
    encoder on its left-out videos (``fold`` all: pooled over every fold) is written to ``out_dir/epochs.csv``.

    With ``select`` cv the epoch is the curve's best pooled one, the same for every fold; each fold's
    probabilities of every epoch wait in ``out_dir/fold_f/epoch_probs.npy`` (float16, epochs x frames x 8, on disk)
    until it is known, and the file is removed after; the fold's ``best.pt`` is then its last epoch."""
    from tqdm.auto import tqdm

    from ..io import write_csv
    from ..labels import NUM_CLASSES
    from ..metrics import macro_f1_from_confusion
    from .model import load_temporal_model

    by_cv = config.select == "cv"
    runs, confusions = [], {}
    for f in tqdm(sorted(set(folds.values())), desc="cross-validation", unit="fold", disable=not config.progress):
        inside = [v for v in train if folds[v.video_id] != f]
        left = [v for v in train if folds[v.video_id] == f]
        if not inside or not left:
            continue
        fold_dir = out_dir / f"fold_{f}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        sizes = np.cumsum([0] + [len(v.labels) for v in left])
        store = (np.lib.format.open_memmap(fold_dir / "epoch_probs.npy", mode="w+", dtype=np.float16,
                                           shape=(config.epochs, int(sizes[-1]), NUM_CLASSES)) if by_cv else None)
        confusions[f] = []

        def record(epoch, model, left=left, store=store, f=f, sizes=sizes):
            probs = _probs(model, left)
            confusions[f].append(_report(left, probs).confusion)
            if store is not None:
                store[epoch - 1] = np.concatenate(probs).astype(np.float16)

        # the held-out videos are scored each epoch only when they choose the fold encoder's epoch
        fit_encoder(config, inside, val, fold_dir, device,
                    {"train_videos": [v.video_id for v in inside], "cv_fold": f}, progress=False,
                    held=held if config.select == "holdout" else (), on_epoch=record)
        runs.append((f, left, store, sizes))
    rows = [{"epoch": e + 1, "fold": str(f), "macro_f1": macro_f1_from_confusion(cms[e])}
            for f, cms in confusions.items() for e in range(len(cms))]
    rows += [{"epoch": e + 1, "fold": "all",
              "macro_f1": macro_f1_from_confusion(sum(cms[e] for cms in confusions.values()))}
             for e in range(config.epochs) if confusions]
    curve = pd.DataFrame(rows, columns=["epoch", "fold", "macro_f1"])
    write_csv(out_dir / "epochs.csv", curve)
    pooled = curve[curve["fold"] == "all"].reset_index(drop=True)
    chosen = int(pooled.loc[pooled["macro_f1"].idxmax(), "epoch"]) if len(pooled) else 0
    out = []
    while runs:
        f, left, store, sizes = runs.pop(0)
        if store is not None:
            flat = np.asarray(store[chosen - 1], dtype=np.float32)
            probs = [flat[a:b] for a, b in zip(sizes[:-1], sizes[1:])]
            del store
            (out_dir / f"fold_{f}" / "epoch_probs.npy").unlink()
        else:
            model, _ = load_temporal_model(out_dir / f"fold_{f}" / "best.pt", device)
            probs = _probs(model, left)
        out.append((f, left, probs))
    return out, chosen


def cv_report(oof, post, smooth) -> pd.DataFrame:
    """Macro F1 per fold and over every out-of-fold frame (``fold = all``) of the frame model (its out-of-fold
    logits), + smoothing (``smooth``), + the temporal encoder and + its post-processing (``post``): rows
    ``fold, videos, stage, macro_f1``. With ``post_fit`` holdout+cv, ``post`` and ``smooth`` were fitted on these
    predictions too, so their rows are optimistic; the frame-model and encoder rows are out-of-fold."""
    stages = ("frame model", "frame model + smoothing", "+ temporal encoder", "+ post-processing")
    rows, pooled, pooled_videos = [], {name: [] for name in stages}, []
    for f, held, raw in oof:
        probs = stage_probs(held, raw, post, smooth)
        names = " ".join(v.video_id for v in held)
        for name in stages:
            rows.append({"fold": str(f), "videos": names, "stage": name,
                         "macro_f1": _report(held, probs[name]).macro_f1})
            pooled[name] += probs[name]
        pooled_videos += held
    for name in stages:
        if pooled_videos:
            rows.append({"fold": "all", "videos": f"{len(pooled_videos)} videos", "stage": name,
                         "macro_f1": _report(pooled_videos, pooled[name]).macro_f1})
    return pd.DataFrame(rows, columns=["fold", "videos", "stage", "macro_f1"])


def frame_model_probs(v) -> np.ndarray:
    """The frame model alone: softmax of its cached logits, frames without a face filled from neighbours."""
    from ..postprocess import fill_no_face
    from .predict import softmax

    return fill_no_face(softmax(v.logits), v.has_face)


def stage_probs(videos, raw, post, smooth=None) -> dict[str, list[np.ndarray]]:
    """Per-video probabilities of each stage: ``frame model``, ``frame model + smoothing`` (with ``smooth``: the
    post-processing fitted on the frame model's probabilities), ``+ temporal encoder`` (``raw``, the encoder's)
    and ``+ post-processing`` (``post`` on ``raw``)."""
    frame = [frame_model_probs(v) for v in videos]
    stages = {"frame model": frame}
    if smooth is not None:
        stages["frame model + smoothing"] = [smooth.apply(p, v.has_face) for p, v in zip(frame, videos)]
    stages.update({"+ temporal encoder": raw,
                   "+ post-processing": [post.apply(p, v.has_face) for p, v in zip(raw, videos)]})
    return stages


def compare_stages(model, post, val, smooth=None) -> pd.DataFrame:
    """Rows of :func:`stage_probs` on ``val``: macro F1 and per-class F1."""
    rows = []
    for name, probs in stage_probs(val, _probs(model, val), post, smooth).items():
        rep = _report(val, probs)
        rows.append({"stage": name, "macro_f1": rep.macro_f1, **dict(zip(CLASSES, rep.per_class_f1))})
    return pd.DataFrame(rows, columns=["stage", "macro_f1", *CLASSES])
