"""A notebook's ``parameters`` cell: its names, types, defaults and comments, and the check of a stage's values."""

from __future__ import annotations

import ast
import difflib
import io
import json
import logging
import os
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .file import PipelineError

REQUIRED_MARK = "required"


@dataclass(frozen=True)
class NotebookParameter:
    """One name of a notebook's ``parameters`` cell: its declared or inferred type, default and comment."""

    name: str
    type_name: str | None  # annotation ("int", "str | None") or the type of the default; None: unknown
    default: Any  # the literal default (None when it is not a plain literal)
    required: bool  # written ``name: type = None  # required``
    help: str = ""



def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def parameters_cell_source(notebook: str | os.PathLike) -> str | None:
    """The source of the cell tagged ``parameters`` (None when the notebook has none)."""
    with open(notebook, encoding="utf-8") as fh:
        nb = json.load(fh)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell.get("source", "")
            return "".join(src) if isinstance(src, list) else src
    return None


def _ast_parameters(source: str) -> dict[str, tuple[str | None, str, str]]:
    """``{name: (annotation, default source, comment)}`` of the top-level assignments of a cell.

    papermill's line parser skips some valid lines (a ``**`` or ``=`` in a comment, a literal over several
    lines); the AST never does, so it fills in what papermill missed.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError):
        pass
    out: dict[str, tuple[str | None, str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            out[node.target.id] = (ast.unparse(node.annotation), ast.unparse(node.value),
                                   comments.get(node.end_lineno or node.lineno, ""))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = (None, ast.unparse(node.value), comments.get(node.end_lineno or node.lineno, ""))
    return out


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, NotebookParameter]:
    """Names, types and defaults of a notebook's parameters cell, from papermill's inference (AST as backup).

    A notebook without a parameters cell is an error naming it: every notebook of the chain needs one.
    """
    import papermill as pm

    notebook = Path(notebook)
    if not notebook.is_file():
        raise PipelineError(f"notebook {notebook} does not exist")
    source = parameters_cell_source(notebook)
    if source is None:
        raise PipelineError(f"{notebook} has no cell tagged 'parameters'; tag the cell holding its parameters "
                            f"(JupyterLab: property inspector -> cell tags)")
    pm_logger = logging.getLogger("papermill")
    level = pm_logger.level
    pm_logger.setLevel(logging.ERROR)  # its "Unable to parse line" warnings are covered by the AST below
    try:
        inferred = pm.inspect_notebook(str(notebook))
    finally:
        pm_logger.setLevel(level)
    by_ast = _ast_parameters(source)
    out: dict[str, NotebookParameter] = {}
    names = list(inferred) + [n for n in by_ast if n not in inferred]
    for name in names:
        if name in inferred:
            info = inferred[name]
            annotation = info.get("inferred_type_name")
            annotation = None if annotation in (None, "None") else annotation
            default_src, help_text = info.get("default") or "None", info.get("help") or ""
        else:
            annotation, default_src, help_text = by_ast[name]
        if annotation is None and name in by_ast:
            annotation = by_ast[name][0]
        default = _literal(default_src)
        required = default is None and default_src.strip() == "None" and help_text.lower().startswith(REQUIRED_MARK)
        type_name = annotation or (type(default).__name__ if default is not None else None)
        out[name] = NotebookParameter(name, type_name, default, required, help_text)
    return out


def stage_config(notebook: str | os.PathLike) -> tuple[type, str | None, frozenset[str]] | None:
    """The config a stage notebook builds from its parameters (metadata ``abawkit.config``, ``module:Class``),
    the preset its defaults are, and its display-only parameters; None for a notebook without one."""
    import importlib

    with open(notebook, encoding="utf-8") as fh:
        meta = (json.load(fh).get("metadata") or {}).get("abawkit") or {}
    if "config" not in meta:
        return None
    module, _, name = str(meta["config"]).partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise PipelineError(f"{notebook}: its metadata names the config {meta['config']!r}, which does not exist") from None
    return cls, meta.get("preset"), frozenset(meta.get("notebook_parameters", ()))


def _declared_type(param: NotebookParameter) -> Any:
    """The type a parameter's annotation names (evaluated as Python would), else its default's type."""
    import builtins
    import typing

    if param.type_name:
        try:
            return eval(param.type_name, {"__builtins__": builtins, **vars(typing)})  # an annotation, not data
        except Exception:  # an annotation we cannot evaluate: no check
            return Any
    if param.default is None:
        return Any
    return float | int if isinstance(param.default, float) else type(param.default)


def check_value(param: NotebookParameter, value: Any) -> str | None:
    """Why ``value`` does not fit ``param`` (None when it does)."""
    from ..config import _type_problem

    if value is None:
        return "is required (the notebook declares it '# required'); give it a value" if param.required else None
    hint = _declared_type(param)
    if hint is Any or _type_problem(param.name, value, hint) is None:
        return None
    return f"must be {param.type_name or type(param.default).__name__}, got {type(value).__name__} {value!r}"


def expand_preset(notebook: str | os.PathLike, declared: dict[str, NotebookParameter],
                  params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a ``preset`` of the stage's config spelled out: the preset's value of every setting the
    notebook's cell declares (its defaults are another preset's) and of every setting the preset changes;
    the stage's own values win. Unchanged for a notebook without a config or a stage without ``preset``."""
    from .. import config as settings

    found = stage_config(notebook)
    if found is None or settings.PRESET_KEY not in params:
        return params
    cls = found[0]
    own = {k: v for k, v in params.items() if k != settings.PRESET_KEY}
    try:
        chosen = settings.preset(cls, params[settings.PRESET_KEY])
    except settings.ConfigError as exc:
        raise PipelineError(f"{notebook}: {exc}") from None
    values = settings.flat_values(chosen)
    names = (set(declared) & set(values)) | set(settings.presets(cls)[params[settings.PRESET_KEY]])
    return {**{k: values[k] for k in sorted(names)}, **own}


def check_stage_parameters(declared: dict[str, NotebookParameter], params: dict[str, Any],
                           notebook: str | os.PathLike = "the notebook", name: str | None = None) -> list[str]:
    """What is wrong with the values ``params`` a stage passes to ``notebook``, which declares ``declared``.

    A stage notebook (one that names its config) accepts every setting of that config, checked by building
    it from the cell's defaults and the stage's values: the config's own checks apply. Its other parameters,
    and those of a notebook without a config, are checked against their annotation or default's type. One
    message each, without the stage's name (the caller adds it); ``name``: how to call the notebook there.
    """
    from .. import config as settings

    found = stage_config(notebook) if Path(notebook).is_file() else None
    fields: set[str] = set()
    if found is not None:
        fields = set(settings.flat_fields(found[0])) | set(settings.selectors(found[0]))
    problems = []
    for key in params:
        if key not in declared and key not in fields:
            hint = _closest(key, set(declared) | fields)
            problems.append(f"unknown parameter {key!r}{f' (did you mean {hint!r}?)' if hint else ''}; "
                            f"{name or notebook} declares: {', '.join(declared)}"
                            + (f" and the settings of {found[0].__name__}" if found else ""))
    for key, param in declared.items():
        if key in fields:
            continue
        why = check_value(param, params.get(key, param.default))
        if why:
            problems.append(f"parameter {key!r} {why}")
    if found is not None and not problems:
        values = {k: p.default for k, p in declared.items() if k in fields}
        values.update({k: v for k, v in params.items() if k in fields})
        try:
            settings.build(found[0], values)
        except settings.ConfigError as exc:
            problems.append(f"{found[0].__name__}: {exc}")
    return problems


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None
