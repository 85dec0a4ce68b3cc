"""Small helpers shared by the notebooks: run from the project root, consistent figures, seeds."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding pyproject.toml."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return here


def setup(seed: int | None = 0) -> Path:
    """Change to the project root (so the notebooks' relative paths work from JupyterLab and papermill alike),
    seed Python/NumPy/torch, and set readable figure defaults. Returns the root."""
    root = project_root()
    os.chdir(root)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        try:
            import torch

            torch.manual_seed(seed)
        except ImportError:  # pragma: no cover
            pass
    import matplotlib

    matplotlib.rcParams.update({"figure.dpi": 100, "figure.figsize": (9, 3.5), "axes.grid": True,
                                "grid.alpha": 0.3})
    return root
