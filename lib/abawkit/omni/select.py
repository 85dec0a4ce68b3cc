"""Selection of unlabeled faces by feature similarity to class prototypes (omni-supervised learning, Liu et al.
2021): a frame model trained on the few labels embeds the labeled frames (``forward_head(pre_logits=True)``), each
class's prototype is the mean of its unit-length embeddings, and an unlabeled face is kept when its nearest
prototype is similar enough, clearly nearer than the second and agrees with the classifier; at most K per class,
most similar first. Torch is imported inside the functions, so that ``--help`` stays fast."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal

import numpy as np
import pandas as pd
import tyro

from ..errors import UserError
from ..labels import CLASSES, NUM_CLASSES

#: Columns of one chunk of scores (OUT/scores/part_*.csv): one row per readable unlabeled image.
SCORE_COLUMNS = ["path", "nearest", "similarity", "second", "margin", "predicted", "confidence"]
Rule = Literal["similarity", "confidence", "random"]


@dataclass(frozen=True)
class SelectConfig:
    """Select reliable faces from unlabeled folders with a frame model trained on few labels: class prototypes
    from the labeled frames' embeddings, cosine similarity of every unlabeled face to them, a threshold, a margin
    over the second-nearest class and agreement with the classifier; at most K per class, most similar first.
    Writes OUT/selected.csv (path,label,similarity,margin,confidence: another --labeled-csv of train-frame),
    OUT/summary.csv per class, OUT/selected.png and OUT/run_record.json; scores stream in chunks to OUT/scores/
    (a re-run continues from the last finished chunk)."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "demo": dict(checkpoint="runs/demo/frame_model/best.pt", manifest_dir="data_manifests/demo",
                     crops_dir="data/faces/demo/cropped_aligned",
                     image_dirs=("data/faces/demo_unlabeled/cropped_aligned",), out_dir="runs/demo/selected",
                     per_class=50),
    }

    checkpoint: Annotated[str, tyro.conf.arg(metavar="FILE")] = "runs/demo/frame_model/best.pt"
    """frame-model checkpoint (abawkit train-frame's best.pt): the primitive model"""
    image_dirs: Annotated[tuple[str, ...], tyro.conf.arg(name="images", metavar="DIR"),
                          tyro.conf.UseAppendAction] = ()
    """folder of unlabeled face images, searched recursively (repeatable; align them first with abawkit
    extract-faces --images)"""
    labeled_csv: Annotated[tuple[str, ...], tyro.conf.arg(metavar="CSV"), tyro.conf.UseAppendAction] = ()
    """labeled frames of the prototypes: CSV(s) of path,label (instead of, or beside, --manifest/--crops)"""
    manifest_dir: Annotated[str | None, tyro.conf.arg(name="manifest", metavar="DIR")] = None
    """manifest folder: its Train_Set frames (held-out videos excepted) give the prototypes"""
    crops_dir: Annotated[str | None, tyro.conf.arg(name="crops", metavar="DIR")] = None
    """folder of <video_id>/00001.jpg face crops, with --manifest"""
    frame_stride: int = 1
    """keep every k-th labeled frame of a video"""
    prototypes_per_class: int = 1
    """prototypes per class: 1 is the class mean; more are k-means centres of the class's embeddings (our
    choice, for classes with several modes)"""
    rule: Rule = "similarity"
    """similarity: the prototype rule; confidence: the classifier's confidence alone (--min-similarity is then
    the confidence threshold, no margin); random: K random faces per predicted class (baselines)"""
    min_similarity: float = 0.6
    """cosine similarity to the nearest prototype needed (the classifier's confidence with --rule confidence)"""
    margin: float = 0.1
    """needed lead of the nearest prototype's similarity over the nearest prototype of another class"""
    agree: bool = True
    """keep a face only when the classifier predicts the nearest prototype's class"""
    per_class: int | None = None
    """at most K faces per class, most similar first (None: every face that passes)"""
    batch_size: int = 128
    """images per forward pass"""
    chunk: int = 8192
    """images per chunk of scores (the unit of resumption)"""
    workers: int = 0
    """data-loader processes"""
    seed: int = 0
    """random seed (the random rule)"""
    out_dir: Annotated[str, tyro.conf.arg(name="out", metavar="DIR")] = "runs/demo/selected"
    """output folder"""
    progress: bool = True
    """progress bar"""

    def __post_init__(self) -> None:
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"per_class {self.per_class}: expected 1 or more faces per class, or None")
        if min(self.batch_size, self.chunk, self.prototypes_per_class, self.frame_stride) < 1 or self.workers < 0:
            raise ValueError("batch_size, chunk, prototypes_per_class and frame_stride must be >= 1, workers >= 0")
        if not -1 <= self.min_similarity <= 1 or not 0 <= self.margin <= 2:
            raise ValueError(f"min_similarity {self.min_similarity} must be in [-1, 1] and margin {self.margin} "
                             f"in [0, 2]")
        if self.rule not in ("similarity", "confidence", "random"):
            raise ValueError(f"rule {self.rule!r}: expected similarity, confidence or random")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class SelectError(UserError, ValueError):
    """Selection cannot run on this input; the message names the folder or value and what to do."""


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, a zero row left zero (scikit-learn's ``normalize``)."""
    from sklearn.preprocessing import normalize as unit_rows

    return unit_rows(x)


def class_prototypes(embeddings: np.ndarray, labels: np.ndarray, per_class: int = 1,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prototypes (P, D), unit length, their class (P,) and the centre (D,) the similarities are taken around:
    the centre is the mean of the class means; per class present, its prototype is the direction of its mean
    minus the centre, or with ``per_class`` > 1 of the k-means centres (scikit-learn; fewer when the class has
    fewer embeddings) of its centred embeddings. Our choice, the centring: pooled ReLU features all point into
    the positive orthant, where every cosine similarity is about 0.8 and a threshold separates nothing."""
    e = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    centre = np.mean([e[labels == c].mean(0) for c in np.unique(labels)], axis=0)
    z = e - centre
    protos, owner = [], []
    for c in np.unique(labels):
        zc = z[labels == c]
        if per_class == 1 or len(zc) <= 1:
            centres = zc.mean(0, keepdims=True)
        else:
            from sklearn.cluster import KMeans

            k = min(per_class, len(zc))
            centres = KMeans(k, n_init=4, random_state=seed).fit(zc).cluster_centers_
        protos.append(centres)
        owner += [int(c)] * len(centres)
    return normalize(np.concatenate(protos)), np.asarray(owner, dtype=np.int64), centre


def score(embeddings: np.ndarray, probs: np.ndarray, prototypes: np.ndarray, owner: np.ndarray,
          centre: np.ndarray) -> pd.DataFrame:
    """Per image: the nearest prototype's class and cosine similarity (of the embedding minus ``centre``, as
    :func:`class_prototypes`), the best similarity of another class
    (``second``; -1 when one class only), their difference (``margin``), the classifier's class and its
    probability (``confidence``)."""
    sims = normalize(np.asarray(embeddings, dtype=np.float64) - centre) @ prototypes.T  # (n, P)
    per_class = np.full((len(sims), NUM_CLASSES), -np.inf)
    for c in np.unique(owner):
        per_class[:, c] = sims[:, owner == c].max(1)
    order = np.argsort(-per_class, axis=1)
    nearest, runner = order[:, 0], order[:, 1]
    best = per_class[np.arange(len(sims)), nearest]
    second = per_class[np.arange(len(sims)), runner]
    second = np.where(np.isfinite(second), second, -1.0)
    return pd.DataFrame({"nearest": nearest, "similarity": best, "second": second, "margin": best - second,
                         "predicted": probs.argmax(1), "confidence": probs.max(1)})


def passes(scores: pd.DataFrame, cfg: SelectConfig) -> np.ndarray:
    """The rule's mask over ``scores`` (before the per-class cap)."""
    if cfg.rule == "random":
        return np.ones(len(scores), dtype=bool)
    if cfg.rule == "confidence":
        return scores["confidence"].to_numpy() >= cfg.min_similarity
    keep = (scores["similarity"] >= cfg.min_similarity) & (scores["margin"] >= cfg.margin)
    if cfg.agree:
        keep &= scores["nearest"] == scores["predicted"]
    return keep.to_numpy()


def cap_per_class(candidates: pd.DataFrame, cfg: SelectConfig) -> pd.DataFrame:
    """At most ``per_class`` rows per label, most similar first (most confident with the confidence rule, a
    random draw with the random rule); rows sorted by label then rank."""
    key = {"similarity": "similarity", "confidence": "confidence", "random": "_draw"}[cfg.rule]
    if cfg.rule == "random":
        candidates = candidates.assign(_draw=np.random.default_rng(cfg.seed).random(len(candidates)))
    ranked = candidates.sort_values(["label", key], ascending=[True, False], kind="stable")
    if cfg.per_class is not None:
        ranked = ranked.groupby("label", sort=True).head(cfg.per_class)
    return ranked.drop(columns=["_draw"], errors="ignore").reset_index(drop=True)


def label_of(scores: pd.DataFrame, cfg: SelectConfig) -> np.ndarray:
    """The label a selected face gets: the nearest prototype's class (the classifier's with the baselines)."""
    return (scores["nearest"] if cfg.rule == "similarity" else scores["predicted"]).to_numpy()


def labeled_table(cfg: SelectConfig) -> pd.DataFrame:
    from ..semisup.data import DataError, frames_from_csv, frames_from_manifest

    parts = [frames_from_csv(csv) for csv in cfg.labeled_csv]
    if cfg.manifest_dir and cfg.crops_dir:
        from ..manifest import load_manifest

        manifest = load_manifest(cfg.manifest_dir)
        frames = frames_from_manifest(manifest, cfg.crops_dir, "Train_Set", cfg.frame_stride)
        parts.append(frames[~frames["video_id"].isin(manifest.video_ids(holdout=True))][["path", "label"]])
    if not parts:
        raise DataError("give the labeled frames of the prototypes: --labeled-csv CSV, or --manifest DIR with "
                        "--crops DIR")
    return pd.concat(parts, ignore_index=True)[["path", "label"]]


class _Images:
    """(eval view, index, readable) of image files; an unreadable file gives a blank view and readable False."""

    def __init__(self, paths: list[str], transform, size: int):
        self.paths, self.transform, self.size = paths, transform, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        from ..readers import read_image

        try:
            return self.transform(read_image(self.paths[i])), i, True
        except Exception:  # a corrupt file in a corpus of millions: reported, not fatal
            return torch.zeros(3, self.size, self.size), i, False


def embed_batches(model, paths: list[str], batch_size: int, workers: int = 0, progress: bool = False,
                  desc: str = "embed") -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Batch by batch, (indices, embeddings, softmax probabilities, readable) of ``paths`` through
    ``model`` (a FrameModel in eval mode): nothing of the whole set is held."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from ..frame_model import autocast, eval_transform

    device = next(model.parameters()).device
    loader = DataLoader(_Images(paths, eval_transform(model.config), model.config.image_size),
                        batch_size=batch_size, num_workers=workers,
                        multiprocessing_context="spawn" if workers > 0 else None)
    with torch.no_grad():
        for x, idx, ok in tqdm(loader, desc=desc, disable=not progress, unit="batch", mininterval=3):
            x = x.to(device, memory_format=torch.channels_last) if device.type == "cuda" else x
            with autocast(device):
                emb, logits = model.embed_and_logits(x)
            yield (idx.numpy(), emb.float().cpu().numpy(),
                   torch.softmax(logits.float(), 1).cpu().numpy(), ok.numpy().astype(bool))


def prototypes_from(model, table: pd.DataFrame, cfg: SelectConfig) -> tuple[np.ndarray, ...]:
    """Prototypes, their classes, the centre and the labeled count per class, from ``table``'s frames
    (:func:`class_prototypes`). With one prototype per class the class sums stream (memory flat in the number
    of frames); k-means takes the embeddings of at most 5,000 frames per class."""
    labels = table["label"].to_numpy()
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if cfg.prototypes_per_class == 1:
        sums = None
        for idx, z, _, ok in embed_batches(model, table["path"].tolist(), cfg.batch_size, cfg.workers,
                                           cfg.progress, "labeled frames"):
            one_hot = np.eye(NUM_CLASSES)[labels[idx[ok]]]
            part = one_hot.T @ z[ok]
            sums = part if sums is None else sums + part
        present = np.flatnonzero(counts > 0)
        return (*class_prototypes(sums[present] / counts[present, None], present), counts)  # a mean per class
    rng = np.random.default_rng(cfg.seed)
    keep = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:5000] for c in np.flatnonzero(counts)])
    sub = table.iloc[np.sort(keep)].reset_index(drop=True)
    embs = np.zeros((len(sub), model.embed_dim))
    for idx, z, _, _ in embed_batches(model, sub["path"].tolist(), cfg.batch_size, cfg.workers, cfg.progress,
                                      "labeled frames"):
        embs[idx] = z
    return (*class_prototypes(embs, sub["label"].to_numpy(), cfg.prototypes_per_class, cfg.seed), counts)


def score_corpus(model, paths: list[str], protos: np.ndarray, owner: np.ndarray, centre: np.ndarray,
                 cfg: SelectConfig) -> list[Path]:
    """Write the scores of ``paths`` chunk by chunk to OUT/scores/part_NNNNN.csv (a chunk already written for the
    same paths is kept) and the unreadable files to OUT/scores/unreadable_NNNNN.csv; returns the chunk files."""
    from tqdm.auto import tqdm

    from ..io import save_npz, write_csv

    folder = Path(cfg.out_dir) / "scores"
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "prototypes.npz"  # the scores' model: chunks scored by another are scored again
    if key.is_file():
        with np.load(key) as old:
            same = all(k in old and old[k].shape == v.shape and np.allclose(old[k], v)
                       for k, v in dict(prototypes=protos, owner=owner, centre=centre).items())
        if not same:
            print(f"{folder}: scored with other prototypes (another checkpoint or labeled set); scoring again")
            for stale in folder.glob("*.csv"):
                stale.unlink()
    save_npz(key, prototypes=protos, owner=owner, centre=centre)
    files = []
    starts = range(0, len(paths), cfg.chunk)
    for n, start in enumerate(tqdm(starts, desc="unlabeled chunks", disable=not cfg.progress, unit="chunk")):
        part = folder / f"part_{n:05d}.csv"
        files.append(part)
        chunk = paths[start:start + cfg.chunk]
        if part.is_file() and (folder / f"unreadable_{n:05d}.csv").is_file():
            done = pd.read_csv(part, usecols=["path"])["path"].tolist()
            bad = pd.read_csv(folder / f"unreadable_{n:05d}.csv")["path"].tolist()
            if sorted(done + bad) == sorted(chunk):
                continue
        rows, unreadable = [], []
        for idx, z, probs, ok in embed_batches(model, chunk, cfg.batch_size, cfg.workers):
            s = score(z[ok], probs[ok], protos, owner, centre)
            s.insert(0, "path", [chunk[i] for i in idx[ok]])
            rows.append(s)
            unreadable += [chunk[i] for i in idx[~ok]]
        write_csv(folder / f"unreadable_{n:05d}.csv", pd.DataFrame({"path": unreadable}))
        write_csv(part, pd.concat(rows, ignore_index=True)[SCORE_COLUMNS])  # last: it marks the chunk done
    for stale in sorted(folder.glob("part_*.csv"))[len(files):]:  # a longer corpus of an earlier run
        stale.unlink()
    return files


def select_faces(cfg: SelectConfig) -> dict[str, Any]:
    """The whole stage: prototypes, scores of every unlabeled image, selection, outputs. Returns a summary
    (selected count, images/s, the summary table)."""
    import time

    import torch

    from ..frame_model import load_frame_model
    from ..io import write_csv
    from ..runinfo import save_run_record
    from ..semisup.data import unlabeled_images

    out = Path(cfg.out_dir)
    if not cfg.image_dirs:
        raise SelectError("give the unlabeled faces: --images DIR (repeatable)")
    paths = unlabeled_images(cfg.image_dirs)
    if not paths:
        raise SelectError(f"no image file under {', '.join(cfg.image_dirs)}: pass folders of face images "
                          f"(.jpg/.png), e.g. the output of abawkit extract-faces --images")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, _ = load_frame_model(cfg.checkpoint, device)
    table = labeled_table(cfg)
    out.mkdir(parents=True, exist_ok=True)
    protos, owner, centre, counts = prototypes_from(model, table, cfg)
    t0 = time.time()
    chunks = score_corpus(model, paths, protos, owner, centre, cfg)
    seconds = time.time() - t0
    kept, n_scored, n_unreadable, candidates = [], 0, 0, np.zeros(NUM_CLASSES, dtype=np.int64)
    for part in chunks:  # one chunk in memory at a time: only the passing rows are kept
        s = pd.read_csv(part)
        n_scored += len(s)
        n_unreadable += len(pd.read_csv(part.with_name(part.name.replace("part_", "unreadable_"))))
        s["label"] = label_of(s, cfg)
        candidates += np.bincount(s["label"], minlength=NUM_CLASSES)
        kept.append(s[passes(s, cfg)])
    passing = pd.concat(kept, ignore_index=True)
    selected = cap_per_class(passing, cfg)
    rel = [os.path.relpath(os.path.abspath(p), os.path.abspath(out)) for p in selected["path"]]  # as the CSV reads
    write_csv(out / "selected.csv", pd.DataFrame({
        "path": rel, "label": [CLASSES[c] for c in selected["label"]], "similarity": selected["similarity"].round(4),
        "margin": selected["margin"].round(4), "confidence": selected["confidence"].round(4)}))
    n_pass = np.bincount(passing["label"], minlength=NUM_CLASSES)
    n_sel = np.bincount(selected["label"], minlength=NUM_CLASSES)
    warnings = []
    for c in range(NUM_CLASSES):
        if counts[c] == 0:
            warnings.append(f"no labeled example of {CLASSES[c]}: no prototype, no face selected for it")
        elif cfg.per_class is not None and n_pass[c] < cfg.per_class:
            warnings.append(f"{CLASSES[c]}: per_class {cfg.per_class} but only {n_pass[c]} face(s) passed")
        else:
            warnings.append("")
    summary = pd.DataFrame({"class": CLASSES, "n_labeled": counts, "n_nearest": candidates, "n_passed": n_pass,
                            "n_selected": n_sel,
                            "mean_similarity": [float(selected["similarity"][selected["label"] == c].mean())
                                                if n_sel[c] else np.nan for c in range(NUM_CLASSES)],
                            "warning": warnings})
    write_csv(out / "summary.csv", summary)
    for w in filter(None, warnings):
        print(f"warning: {w}")
    plot_selected(selected, out / "selected.png")
    rate = n_scored / max(seconds, 1e-9)
    save_run_record(out / "run_record.json", {**cfg.to_dict(), "n_labeled": len(table), "n_unlabeled": len(paths)},
                    result={"n_selected": int(len(selected)), "n_unreadable": n_unreadable,
                            "images_per_s": rate, "n_prototypes": int(len(protos))})
    return {"selected": len(selected), "unreadable": n_unreadable, "images_per_s": rate, "summary": summary}


def plot_selected(selected: pd.DataFrame, path: Path, per_row: int = 8) -> Path:
    """A grid: one row per class, its most similar selected faces with their similarity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    from ..readers import read_image

    fig, axes = plt.subplots(NUM_CLASSES, per_row, figsize=(per_row * 1.1, NUM_CLASSES * 1.25), squeeze=False)
    for c in range(NUM_CLASSES):
        rows = selected[selected["label"] == c].head(per_row)
        for j in range(per_row):
            ax = axes[c, j]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(rows):
                ax.imshow(read_image(rows["path"].iloc[j]).permute(1, 2, 0).numpy())
                ax.set_title(f"{rows['similarity'].iloc[j]:.2f}", fontsize=7)
        axes[c, 0].set_ylabel(f"{CLASSES[c]}\n({int((selected['label'] == c).sum())})", fontsize=8)
    fig.suptitle("selected faces per class (cosine similarity to the prototype)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
