"""A notebook's ``parameters`` cell: its names, types, defaults and comments, and the check of a stage's values."""

from __future__ import annotations

import ast
import difflib
import io
import json
import logging
import os
import re
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


_BUILTIN_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (float, int), "str": (str,), "bool": (bool,), "list": (list,),
    "dict": (dict,), "tuple": (tuple, list), "none": (type(None),), "nonetype": (type(None),),
}


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


def _accepted_types(type_name: str) -> tuple[type, ...] | None:
    """Python types a value may have for an annotation such as ``int``, ``list[str]``, ``str | None``,
    ``Optional[float]``; None when the annotation is not one we know (then any value passes)."""
    text = type_name.strip()
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", text)
    parts = [m.group(1), "None"] if m else re.split(r"\s*\|\s*", text)
    accepted: list[type] = []
    for part in parts:
        base = re.sub(r"\[.*\]$", "", part.strip()).split(".")[-1].lower()
        base = {"sequence": "list", "mapping": "dict"}.get(base, base)
        if base not in _BUILTIN_TYPES:
            return None
        accepted.extend(_BUILTIN_TYPES[base])
    return tuple(accepted)


def check_value(param: NotebookParameter, value: Any) -> str | None:
    """Why ``value`` does not fit ``param`` (None when it does)."""
    if value is None:
        return "is required (the notebook declares it '# required'); give it a value" if param.required else None
    if param.type_name is None:
        return None
    accepted = _accepted_types(param.type_name)
    if accepted is None:
        return None
    ok = isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted)
    if not ok:
        return f"must be {param.type_name}, got {type(value).__name__} {value!r}"
    return None


def check_stage_parameters(declared: dict[str, NotebookParameter], params: dict[str, Any],
                           notebook: str = "the notebook") -> list[str]:
    """What is wrong with the values ``params`` a stage passes to ``notebook``, which declares ``declared``.

    Unknown names, required names without a value, values of the wrong type; one message each, without the
    stage's name (the caller adds it). The one place that judges values, so that it can become "build the
    stage's config" without touching the pipeline around it.
    """
    problems = []
    for name in params:
        if name not in declared:
            hint = _closest(name, declared)
            problems.append(f"unknown parameter {name!r}{f' (did you mean {hint!r}?)' if hint else ''}; "
                            f"{notebook} declares: {', '.join(declared)}")
    for name, param in declared.items():
        why = check_value(param, params.get(name, param.default))
        if why:
            problems.append(f"parameter {name!r} {why}")
    return problems


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None
