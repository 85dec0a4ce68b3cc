"""What was run, with what: parameters, git commit, package versions and device, saved beside every output."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .io import write_json

_PACKAGES = (
    "abawkit", "torch", "torchvision", "timm", "kornia", "numpy", "pandas", "scikit-learn", "scikit-image",
    "decord", "mediapipe", "opencv-contrib-python", "papermill",
)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The commit of the working tree (with ``+dirty`` when it has changes), or None outside git."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": sys.version.split()[0],
                            "cpu_count": os.cpu_count()}
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = False
    return info


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_record(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A record of one run: parameters, time, commit, versions and device."""
    return {"params": params, "time": now(), "command": sys.argv, "git_commit": git_commit(),
            "versions": package_versions(), "device": device_info(), **extra}


def save_run_record(path: str | os.PathLike, params: dict[str, Any], **extra: Any) -> Path:
    return write_json(path, run_record(params, **extra))
