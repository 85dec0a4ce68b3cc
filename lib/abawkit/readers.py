"""Every file the suite reads goes through one of these readers.

A file that is missing, empty, truncated, binary where text was expected, or of another kind becomes a
:class:`BadFileError` that names the path, what was expected and what to do; the command line prints it as one
line (exit code 2). Only the failures of reading itself are caught: a bug in the code that uses the contents
still shows its traceback.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import UserError

#: The formats of abawkit's own checkpoints, with the command that writes each (to name a file given in the
#: wrong place).
CHECKPOINT_KINDS = {
    "abawkit-frame-model/1": ("frame-model checkpoint", "abawkit train-frame (notebook 03)"),
    "abawkit-temporal/1": ("temporal checkpoint", "abawkit train-temporal (notebook 06)"),
    "abawkit-mae/1": ("MAE pretraining state", "abawkit pretrain-mae (notebook 02)"),
    "abawkit-mae-encoder/1": ("MAE encoder", "abawkit pretrain-mae (notebook 02)"),
}

_MAGIC = {b"PK\x03\x04": "a zip archive", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
          b"%PDF": "a PDF document", b"\x1f\x8b": "a gzip archive", b"\x93NUMPY": "a NumPy .npy array"}


class BadFileError(UserError, ValueError):
    """A file that cannot be read as what the suite expected; the message names the path, the problem,
    what was expected and what to do."""

    def __init__(self, path: str | os.PathLike, problem: str = "", expected: str = "", remedy: str = ""):
        if not problem:  # one message: the form torch's DataLoader re-raises a worker's error in
            super().__init__(str(path))
            return
        self.path, self.problem, self.expected, self.remedy = Path(path), problem, expected, remedy
        message = f"{path}: {problem}; expected {expected}"
        super().__init__(f"{message}. {remedy[:1].upper()}{remedy[1:]}" if remedy else message)


def existing_file(path: str | os.PathLike, expected: str, remedy: str = "") -> Path:
    """``path`` as a Path when it is a non-empty regular file; otherwise a :class:`BadFileError`."""
    path = Path(path)
    if path.is_dir():
        raise BadFileError(path, "is a folder, not a file", expected, remedy)
    if not path.is_file():
        raise BadFileError(path, "not found", expected, remedy)
    if path.stat().st_size == 0:
        raise BadFileError(path, "is empty (0 bytes)", expected, remedy)
    return path


def read_text(path: str | os.PathLike, expected: str, remedy: str = "", allow_empty: bool = False) -> str:
    """The UTF-8 text of a file (a byte-order mark is dropped); binary data is named, with what it looks like."""
    path = Path(path)
    if allow_empty and path.is_file() and path.stat().st_size == 0:
        return ""
    data = existing_file(path, expected, remedy).read_bytes()
    kind = _looks_like(data)
    if kind or b"\x00" in data[:65536]:
        raise BadFileError(path, f"holds binary data ({kind or 'NUL bytes'}), not text", expected, remedy)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise BadFileError(path, f"is not UTF-8 text (byte {exc.start}, line {line})", expected, remedy) from None


def read_csv(path: str | os.PathLike, expected: str, remedy: str = "", columns: Iterable[str] = (), **kwargs):
    """A pandas table read from a UTF-8 CSV; ``columns`` that must be present are checked by name."""
    import pandas as pd

    text = read_text(path, expected, remedy)
    try:
        table = pd.read_csv(io.StringIO(text), **kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise BadFileError(path, f"is not a CSV table ({str(exc).strip()})", expected, remedy) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns))
        raise BadFileError(path, f"has no column {', '.join(missing)} (found {found})", expected, remedy)
    return table


def read_json(path: str | os.PathLike, expected: str, remedy: str = "") -> Any:
    text = read_text(path, expected, remedy)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadFileError(path, f"is not valid JSON (line {exc.lineno}: {exc.msg})", expected, remedy) from None


def read_yaml_mapping(path: str | os.PathLike, expected: str, remedy: str = "", allow_empty: bool = False) -> dict:
    """A YAML file whose top level is a mapping (an empty file is ``{}`` when ``allow_empty``)."""
    import yaml

    text = read_text(path, expected, remedy, allow_empty=allow_empty)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise BadFileError(path, f"is not valid YAML{at} ({getattr(exc, 'problem', None) or exc})",
                           expected, remedy) from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise BadFileError(path, f"holds a YAML {type(data).__name__}, not a mapping of key: value", expected, remedy)
    return data


def load_npz(path: str | os.PathLike, expected: str, remedy: str = "") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read in full (so a truncated member fails here, not later)."""
    path = existing_file(path, expected, remedy)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise BadFileError(path, f"is truncated or not an .npz archive ({type(exc).__name__}: {exc})",
                           expected, remedy) from None
    raise BadFileError(path, "is a single .npy array, not an .npz archive", expected, remedy)


def read_parquet(path: str | os.PathLike, expected: str, remedy: str = ""):
    import pandas as pd

    path = existing_file(path, expected, remedy)
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise BadFileError(path, f"is not a readable Parquet file ({exc})", expected, remedy) from None


def read_image(path: str | os.PathLike, remedy: str = "delete or replace the file"):
    """A JPEG/PNG as a uint8 RGB CHW tensor.

    OpenCV decodes (libjpeg-turbo): torchvision.io's decoders are deprecated from 0.29 on."""
    import cv2
    import torch

    expected = "a JPEG or PNG image"
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        existing_file(path, expected, remedy)  # names missing / a folder
        raise
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:  # the checks are made only for a file that failed: no stat per crop on the hot path
        existing_file(path, expected, remedy)  # names an empty file
        raise BadFileError(path, "cannot be decoded (truncated, or not an image)", expected, remedy)
    return torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)))


def torch_file(path: str | os.PathLike, expected: str, remedy: str = "") -> Any:
    """What ``torch.load(weights_only=True)`` reads (no code runs on load); an unreadable file is named."""
    import torch

    path = existing_file(path, expected, remedy)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        with path.open("rb") as fh:
            kind = _looks_like(fh.read(16))
        what = f"it is {kind}" if kind and kind != "a zip archive" else f"torch.load: {first[:160]}"
        raise BadFileError(path, f"is not a readable PyTorch file, truncated or from another tool ({what})",
                           expected, remedy) from None


def load_checkpoint(path: str | os.PathLike, fmt: str, remedy: str) -> dict[str, Any]:
    """An abawkit checkpoint of format ``fmt``; one of abawkit's other kinds, or plain weights (a state_dict,
    such as timm's), is named as such."""
    what, command = CHECKPOINT_KINDS[fmt]
    expected = f"an abawkit {what} (written by {command})"
    payload = torch_file(path, expected, remedy)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found == fmt:
        return payload
    if found in CHECKPOINT_KINDS:
        other, other_command = CHECKPOINT_KINDS[found]
        raise BadFileError(path, f"is an abawkit {other} (written by {other_command})", expected, remedy)
    if _is_state_dict(_unwrap(payload)):
        raise BadFileError(path, "holds plain model weights (a state_dict, such as timm's), not an abawkit checkpoint",
                           expected, "to start a frame model from backbone weights, pass them as --weights "
                           "(train-frame)")
    raise BadFileError(path, f"is a PyTorch file of another tool (format {found!r})", expected, remedy)


def restore_states(path: str | os.PathLike, state: dict[str, Any], objects: dict[str, Any], differs: str) -> None:
    """``--resume``: load ``state[key]`` into each of ``objects`` (models, optimizers, schedulers: anything with
    ``load_state_dict``); a state that does not fit is a run of other settings, named with ``differs`` (what
    may have changed)."""
    try:
        for key, obj in objects.items():
            obj.load_state_dict(state[key])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UserError(f"--resume: {path} was written with other settings ({differs} differ: "
                        f"{type(exc).__name__}: {str(exc)[:200]}); resume with the same options or use a new --out"
                        ) from None


def load_state_dict(path: str | os.PathLike, remedy: str) -> dict[str, Any]:
    """Plain model weights (``.pth``/``.pt``/``.safetensors``, optionally under ``state_dict`` or ``model``)."""
    path = Path(path)
    expected = "backbone weights (a state_dict in a .pth/.pt or .safetensors file)"
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        existing_file(path, expected, remedy)
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise BadFileError(path, f"is not a readable safetensors file ({exc})", expected, remedy) from None
    payload = torch_file(path, expected, remedy)
    if isinstance(payload, dict) and payload.get("format") in CHECKPOINT_KINDS:
        other, command = CHECKPOINT_KINDS[payload["format"]]
        raise BadFileError(path, f"is an abawkit {other} (written by {command}), not backbone weights", expected,
                           "an abawkit checkpoint is read by the stages after training (--checkpoint); "
                           "to resume training, re-run train-frame on its output folder")
    payload = _unwrap(payload)
    if not _is_state_dict(payload):
        raise BadFileError(path, f"holds a {type(payload).__name__}, not a mapping of tensor names to tensors",
                           expected, remedy)
    return payload


def _unwrap(payload: Any) -> Any:
    """The weights of a file that nests them under ``state_dict`` or ``model`` (training scripts' habit)."""
    return payload.get("state_dict", payload.get("model", payload)) if isinstance(payload, dict) else payload


def _is_state_dict(payload: Any) -> bool:
    import torch

    return (isinstance(payload, dict) and bool(payload)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()))


def _looks_like(head: bytes) -> str:
    return next((kind for magic, kind in _MAGIC.items() if head.startswith(magic)), "")
