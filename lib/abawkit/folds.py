"""Cross-fitting: K frame models, each trained without one fold of the Train_Set videos, so that every training
video's cached features come from a model that never saw it.

Without it the temporal encoder trains on embeddings and logits of frames the frame model has fitted (training
macro F1 near 1), much cleaner than those of the unseen validation and test videos, and learns to trust them.

Layout of a frame-model folder trained with ``folds = K > 1``::

    OUT/best.pt, OUT/run_record.json ...   the model on every training video (validation and test features)
    OUT/folds.csv                          video_id, video_name, fold: the assignment, written once
    OUT/fold_0/best.pt ... OUT/fold_{K-1}/ the model trained without fold i (the features of fold i's videos)

Folds split the manifest's Train_Set by source video (``video_name``: both sides of a two-person video share a
fold) and never contain its held-out videos (those are unseen by every frame model already). Torch-free.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import UserError

FOLDS_FILE = "folds.csv"
FULL = -1
"""the fold number recorded for a model trained on every training video (no fold left out)"""


class FoldError(UserError, ValueError):
    """A fold setting or folds file that cannot be used; the message names the value or file and what to do."""


def assign_folds(manifest, k: int, seed: int = 0) -> pd.DataFrame:
    """Columns ``video_id, video_name, fold`` for the manifest's Train_Set videos that are not held out.

    Source videos are shuffled with ``seed``, then each is given, largest first, to the fold with the fewest
    frames so far (so folds hold similar numbers of frames; our choice). Both sides of a video share its fold.
    """
    videos = manifest.videos
    train = videos[(videos["split"] == "Train_Set") & ~videos["holdout"].astype(bool)]
    groups = train.groupby("video_name", sort=True)["n_frames"].sum()
    if k < 1:
        raise FoldError(f"folds {k}: expected a positive number (1 = no cross-fitting)")
    if k > len(groups):
        raise FoldError(f"folds {k} is larger than the {len(groups)} training source video(s) of the manifest "
                        f"{manifest.path} (held-out videos excluded); use --folds {max(1, len(groups))} or fewer")
    order = np.random.default_rng(seed).permutation(len(groups))
    names = groups.index.to_numpy()[order]
    frames = groups.to_numpy()[order]
    ranked = sorted(range(len(names)), key=lambda i: -int(frames[i]))  # stable: ties keep the shuffled order
    load = np.zeros(k, np.int64)
    fold_of: dict[str, int] = {}
    for i in ranked:
        f = int(np.argmin(load))
        fold_of[str(names[i])] = f
        load[f] += int(frames[i])
    table = pd.DataFrame({"video_id": train["video_id"].astype(str).to_numpy(),
                          "video_name": train["video_name"].astype(str).to_numpy()})
    table["fold"] = table["video_name"].map(fold_of).astype(int)
    return table.sort_values(["fold", "video_id"]).reset_index(drop=True)


def fold_dir(out_dir: str | os.PathLike, fold: int) -> Path:
    """Folder of the model trained without ``fold`` (FULL: ``out_dir`` itself)."""
    return Path(out_dir) if fold == FULL else Path(out_dir) / f"fold_{fold}"


def write_folds(out_dir: str | os.PathLike, table: pd.DataFrame) -> Path:
    """Write ``OUT/folds.csv``, or check that the one there is the same assignment: models of one folder must
    share it, or a video's features could come from a model that saw it."""
    from .io import write_csv

    path = Path(out_dir) / FOLDS_FILE
    if path.is_file():
        old = read_folds(path)
        same = (len(old) == len(table)
                and (old.sort_values("video_id")[["video_id", "fold"]].to_numpy()
                     == table.sort_values("video_id")[["video_id", "fold"]].to_numpy()).all())
        if not same:
            raise FoldError(f"{path} holds another fold assignment (other folds, seed or manifest) than this run; "
                            f"its fold models do not match these settings: use another --out, or delete {path} and "
                            f"the fold_* folders beside it")
        return path
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return write_csv(path, table)


def read_folds(path: str | os.PathLike) -> pd.DataFrame:
    """``folds.csv`` (file or the folder holding it), checked."""
    from .readers import read_csv

    path = Path(path)
    if path.is_dir():
        path = path / FOLDS_FILE
    table = read_csv(path, "the fold assignment of a cross-fitted frame model (video_id,video_name,fold)",
                     "train the fold models first: abawkit train-frame --folds K (notebook 03)",
                     columns=("video_id", "fold"), dtype={"video_id": str, "video_name": str})
    table["fold"] = table["fold"].astype(int)
    return table


def fold_videos(table: pd.DataFrame, fold: int) -> list[str]:
    return table.loc[table["fold"] == fold, "video_id"].astype(str).tolist()


def is_trained(folder: str | os.PathLike, params: dict | None = None, ignore: tuple[str, ...] = ()) -> bool:
    """Whether ``folder`` holds a finished training (``best.pt`` and a ``run_record.json`` with a result).

    With ``params``, a finished training with other settings (apart from ``ignore``) is an error naming them:
    it must not be taken for this run's model."""
    folder = Path(folder)
    record = folder / "run_record.json"
    if not (folder / "best.pt").is_file() or not record.is_file():
        return False
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if "result" not in data:
        return False
    if params is not None:
        old = data.get("params", {})
        differ = sorted(k for k in params if k not in ignore and k in old and old[k] != params[k])
        if differ:
            raise FoldError(f"{folder} holds a model trained with other settings ({', '.join(differ)} differ); "
                            f"delete that folder to train it again, or use another --out")
    return True
