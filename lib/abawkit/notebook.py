"""Small helpers shared by the notebooks: run from the project root, consistent figures, seeds."""

from __future__ import annotations

import json
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


#: Output MIME type under which a notebook reports its key metrics; ``abawkit run`` reads it from the executed copy.
METRICS_MIME = "application/vnd.abawkit.metrics+json"


def report_metrics(**metrics: float | int | str) -> dict:
    """Show a notebook's key figures (e.g. ``val_macro_f1=0.41``) and tag them for the run record.

    The values appear as a small table for the reader and, under :data:`METRICS_MIME`, in the executed
    notebook, where the pipeline runner collects them into ``run.json``.
    """
    clean = {k: (float(v) if hasattr(v, "item") else v) for k, v in metrics.items()}
    try:
        from IPython.display import display

        text = "\n".join(f"{k:>24s}  {v:.4f}" if isinstance(v, float) else f"{k:>24s}  {v}" for k, v in clean.items())
        display({METRICS_MIME: clean, "text/plain": text}, raw=True)
    except ImportError:  # pragma: no cover - outside IPython
        print(clean)
    return clean


#: Output MIME type under which a notebook reports a table; ``abawkit run`` prints every one at the end of a run.
TABLE_MIME = "application/vnd.abawkit.table+json"


def report_table(title: str, table, precision: int = 3) -> dict:
    """Show a table of a notebook's results (e.g. the validation comparison) and tag it for the run record.

    ``table`` is a DataFrame (or anything ``pandas.DataFrame`` accepts); floats are shown with ``precision``
    decimals. The pipeline runner collects it, under :data:`TABLE_MIME`, into the stage's ``tables`` in
    ``run.json`` and prints it at the end of ``abawkit run``; a later table with the same title replaces it.
    """
    import pandas as pd

    frame = pd.DataFrame(table)
    split = json.loads(frame.to_json(orient="split", index=False))  # numpy scalars and NaN as plain JSON
    payload = {"title": title, "columns": split["columns"], "data": split["data"], "precision": precision}
    text = f"{title}:\n{format_table(payload)}"
    try:
        from IPython.display import display

        html = frame.to_html(index=False, float_format=lambda v: f"{v:.{precision}f}")
        display({TABLE_MIME: payload, "text/plain": text, "text/html": f"<b>{title}</b>{html}"}, raw=True)
    except ImportError:  # pragma: no cover - outside IPython
        print(text)
    return payload


def format_table(payload: dict) -> str:
    """A table reported with :func:`report_table` as plain text, floats with its precision."""
    import pandas as pd

    precision = payload.get("precision", 3)
    frame = pd.DataFrame(payload.get("data") or [], columns=payload.get("columns"))
    return frame.to_string(index=False, float_format=lambda v: f"{v:.{precision}f}")
