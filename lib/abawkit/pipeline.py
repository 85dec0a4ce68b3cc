"""Run the notebook chain: a YAML pipeline of stages (notebook + parameters + outputs) executed with papermill.

Every stage's parameters are checked against its notebook's ``parameters`` cell before anything runs; each
executed copy and a run record (``run.json``: parameters, commit, versions, device, status, key metrics) go to
the run folder; a stage whose outputs exist and whose parameters did not change is skipped.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import logging
import os
import re
import sys
import time
import tokenize
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from .errors import UserError
from .io import write_json
from .notebook import METRICS_MIME
from .runinfo import device_info, git_commit, now, package_versions

DEFAULT_KERNEL = "abawkit"
RUN_RECORD = "run.json"
REQUIRED_MARK = "required"


class PipelineError(UserError):
    """A pipeline file, a parameter or a stage selection that cannot be used; the message names it."""


# ----------------------------------------------------------------------------------------------------------
# Notebook parameters


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


# ----------------------------------------------------------------------------------------------------------
# Pipeline files


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline: a notebook, the parameters passed to it, and the paths that mark it done."""

    name: str
    notebook: str
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    """A named list of stages; ``defaults`` go to every stage whose notebook declares the name."""

    name: str
    stages: tuple[Stage, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    kernel: str = DEFAULT_KERNEL
    path: str | None = None

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PipelineError(f"no stage {name!r} in pipeline {self.name!r}; stages: {', '.join(self.stage_names)}")

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]


_STAGE_KEYS = {"name", "notebook", "parameters", "outputs"}
_PIPELINE_KEYS = {"name", "stages", "defaults", "kernel", "description"}


def load_pipeline(path: str | os.PathLike) -> Pipeline:
    """Read a pipeline YAML file; structural mistakes are errors naming the file, the stage and the key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"pipeline file {path} does not exist (examples: pipelines/demo.yaml, pipelines/affwild2.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("stages"), list) or not data["stages"]:
        raise PipelineError(f"{path} must be a mapping with a non-empty 'stages' list")
    unknown = set(data) - _PIPELINE_KEYS
    if unknown:
        raise PipelineError(f"{path}: unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_PIPELINE_KEYS)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise PipelineError(f"{path}: 'defaults' must be a mapping of parameter: value")
    stages: list[Stage] = []
    for i, raw in enumerate(data["stages"]):
        where = f"{path}: stage {i + 1}"
        if not isinstance(raw, dict) or "name" not in raw or "notebook" not in raw:
            raise PipelineError(f"{where} must be a mapping with at least 'name' and 'notebook'")
        where = f"{path}: stage {raw['name']!r}"
        if set(raw) - _STAGE_KEYS:
            raise PipelineError(f"{where}: unknown key(s) {sorted(set(raw) - _STAGE_KEYS)}; allowed: {sorted(_STAGE_KEYS)}")
        name = str(raw["name"])
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
            raise PipelineError(f"{where}: a stage name may hold letters, digits, '_' and '-' only")
        if name in [s.name for s in stages]:
            raise PipelineError(f"{where}: two stages have this name")
        params = raw.get("parameters") or {}
        outputs = raw.get("outputs") or []
        if not isinstance(params, dict):
            raise PipelineError(f"{where}: 'parameters' must be a mapping")
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise PipelineError(f"{where}: 'outputs' must be a list of paths")
        stages.append(Stage(name, str(raw["notebook"]), dict(params), tuple(outputs)))
    return Pipeline(name=str(data.get("name") or path.stem), stages=tuple(stages), defaults=dict(defaults),
                    kernel=str(data.get("kernel") or DEFAULT_KERNEL), path=str(path))


def parse_set(item: str) -> tuple[str | None, str, Any]:
    """``STAGE.PARAM=VALUE`` (or ``PARAM=VALUE`` for every stage that declares it), the value a YAML literal."""
    if "=" not in item:
        raise PipelineError(f"--set {item!r}: write STAGE.PARAM=VALUE (or PARAM=VALUE for every stage)")
    key, text = item.split("=", 1)
    key = key.strip()
    stage, _, param = key.rpartition(".")
    if not param or not re.fullmatch(r"[A-Za-z_]\w*", param):
        raise PipelineError(f"--set {item!r}: {param!r} is not a parameter name")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise PipelineError(f"--set {item!r}: the value is not a YAML literal ({exc})") from None
    return (stage or None), param, value


def apply_overrides(pipeline: Pipeline, sets: Iterable[str]) -> Pipeline:
    """The pipeline with ``--set`` values applied: per stage, or into ``defaults`` when no stage is named."""
    stages = {s.name: s for s in pipeline.stages}
    defaults = dict(pipeline.defaults)
    for item in sets:
        stage, param, value = parse_set(item)
        if stage is None:
            defaults[param] = value
            # a stage that sets the name itself would hide the new default: the override wins there too
            for name, s in stages.items():
                if param in s.parameters:
                    stages[name] = replace(s, parameters={**s.parameters, param: value})
        else:
            s = stages.get(stage) or pipeline.stage(stage)
            stages[stage] = replace(s, parameters={**s.parameters, param: value})
    return replace(pipeline, stages=tuple(stages[s.name] for s in pipeline.stages), defaults=defaults)


# ----------------------------------------------------------------------------------------------------------
# Checking


@dataclass(frozen=True)
class ResolvedStage:
    """A stage ready to run: absolute notebook path, the full parameters passed, outputs with names filled in."""

    index: int
    name: str
    notebook: Path
    notebook_rel: str
    parameters: dict[str, Any]
    outputs: tuple[str, ...]
    declared: dict[str, NotebookParameter]

    @property
    def executed_name(self) -> str:
        return f"{self.index:02d}_{self.name}.ipynb"


def _substitute(value: Any, run_dir: str) -> Any:
    if isinstance(value, str):
        return value.replace("{run_dir}", run_dir).replace("{run_name}", Path(run_dir).name)
    if isinstance(value, list):
        return [_substitute(v, run_dir) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, run_dir) for k, v in value.items()}
    return value


def resolve(pipeline: Pipeline, root: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> list[ResolvedStage]:
    """Check every stage against its notebook's parameters cell; all problems are reported at once.

    ``{run_dir}`` in a string parameter or an output becomes the run folder (default ``runs/<pipeline name>``)
    and ``{run_name}`` its last part, so that one pipeline file serves several runs side by side.

    Errors: a missing notebook, an unknown parameter, a required parameter without a value, a value of the
    wrong type, a default used by no stage, an output path naming a parameter that does not exist.
    """
    root = Path(root)
    run_dir_str = str(run_dir if run_dir is not None else Path("runs") / pipeline.name)
    problems: list[str] = []
    resolved: list[ResolvedStage] = []
    used_defaults: set[str] = set()
    for index, stage in enumerate(pipeline.stages):
        nb_path = Path(stage.notebook) if Path(stage.notebook).is_absolute() else root / stage.notebook
        try:
            declared = notebook_parameters(nb_path)
        except PipelineError as exc:
            problems.append(f"stage {stage.name!r}: {exc}")
            continue
        params = {k: v for k, v in pipeline.defaults.items() if k in declared}
        used_defaults.update(params)
        params.update(stage.parameters)
        params = _substitute(params, run_dir_str)
        for name in stage.parameters:
            if name not in declared:
                hint = _closest(name, declared)
                problems.append(f"stage {stage.name!r}: unknown parameter {name!r} for {stage.notebook}"
                                f"{f' (did you mean {hint!r}?)' if hint else ''}; it declares: {', '.join(declared)}")
        for name, param in declared.items():
            value = params.get(name, param.default)
            why = check_value(param, value)
            if why:
                problems.append(f"stage {stage.name!r}: parameter {name!r} {why}")
        values = {name: params.get(name, p.default) for name, p in declared.items()} | {"run_dir": run_dir_str, "run_name": Path(run_dir_str).name}
        outputs = []
        for out in stage.outputs:
            try:
                outputs.append(out.format_map(values))
            except (KeyError, IndexError, ValueError) as exc:
                problems.append(f"stage {stage.name!r}: output {out!r} names {exc} which is not a parameter of "
                                f"{stage.notebook}")
        resolved.append(ResolvedStage(index, stage.name, nb_path, stage.notebook, params, tuple(outputs), declared))
    for name in set(pipeline.defaults) - used_defaults:
        problems.append(f"defaults: parameter {name!r} is declared by no stage's notebook")
    if problems:
        where = f"{pipeline.path}: " if pipeline.path else ""
        raise PipelineError(f"{where}{len(problems)} parameter problem(s):\n  " + "\n  ".join(problems))
    return resolved


def _closest(name: str, candidates: Iterable[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


# ----------------------------------------------------------------------------------------------------------
# Running


@dataclass
class StageFailed(Exception):
    """A stage's notebook raised: which notebook and cell, the error, where the executed copy is, how to resume."""

    stage: str
    notebook: str
    cell_index: int | None
    cell_first_line: str
    error: str
    executed: str
    resume: str

    def __str__(self) -> str:
        cell = f"cell {self.cell_index} (`{self.cell_first_line}`)" if self.cell_index is not None else "a cell"
        return (f"stage {self.stage!r} failed in {self.notebook}, {cell}: {self.error}\n"
                f"  executed copy (with the traceback): {self.executed}\n"
                f"  fix it, then resume with: {self.resume}")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def read_metrics(executed: str | os.PathLike) -> dict[str, Any]:
    """Key metrics a notebook reported (``abawkit.notebook.report_metrics``), later reports overriding earlier."""
    path = Path(executed)
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    metrics: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if METRICS_MIME in data:
                value = data[METRICS_MIME]
                if isinstance(value, str):
                    value = json.loads(value)
                if isinstance(value, dict):
                    metrics.update(value)
    return metrics


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a corrupt record only means nothing can be skipped


def _source_cell_index(notebook: Path, source: str) -> int | None:
    """Index of the failing cell in the source notebook (the executed copy has the injected parameters cell)."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for i, cell in enumerate(nb.get("cells", [])):
        src = cell.get("source", "")
        if ("".join(src) if isinstance(src, list) else src).strip() == (source or "").strip():
            return i
    return None


@dataclass(frozen=True)
class PlanItem:
    stage: ResolvedStage
    action: str  # "run" | "skip" | "keep" (before --from / outside --only: not touched)
    reason: str
    previous: dict[str, Any] | None = None  # the recorded run of this stage that the decision rests on


def read_history(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The run record of ``run_dir`` first, then those of its sibling runs (``run_dir/../*/run.json``)."""
    run_dir = Path(run_dir)
    own = read_run_record(run_dir)
    records = [own] if own else []
    if run_dir.parent.is_dir():
        for sibling in sorted(run_dir.parent.glob(f"*/{RUN_RECORD}")):
            if sibling.parent.resolve() != run_dir.resolve():
                rec = read_run_record(sibling.parent)
                if rec:
                    records.append(rec)
    return records


def last_producer(stage: ResolvedStage, history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recent recorded run (in any record of ``history``) of a stage writing the same outputs.

    Runs side by side share some outputs (the manifest, the crops): what counts is who wrote them last,
    whether it succeeded, and with which parameters.
    """
    best, best_time = None, ""
    for rec in history:
        entry = (rec.get("stages") or {}).get(stage.name)
        if not entry or not entry.get("started"):
            continue
        if sorted(entry.get("outputs") or []) != sorted(stage.outputs):
            continue
        when = entry.get("ended") or entry.get("started") or ""
        if best is None or when > best_time:
            best, best_time = entry, when
    return best


def plan(stages: list[ResolvedStage], history: list[dict[str, Any]], root: Path, from_stage: str | None = None,
         only: str | None = None, force: bool = False) -> list[PlanItem]:
    """What each stage will do and why. Once a stage runs, every later stage runs too: its inputs changed."""
    names = [s.name for s in stages]
    for flag, value in (("--from", from_stage), ("--only", only)):
        if value is not None and value not in names:
            raise PipelineError(f"{flag} {value!r}: no such stage; stages: {', '.join(names)}")
    if from_stage and only:
        raise PipelineError("give --from or --only, not both")
    own_stages = (history[0].get("stages") or {}) if history else {}
    items: list[PlanItem] = []
    upstream_ran = False
    start = names.index(from_stage) if from_stage else 0
    for i, s in enumerate(stages):
        if (only is not None and s.name != only) or i < start:
            items.append(PlanItem(s, "keep", f"--only {only}" if only else f"before --from {from_stage}",
                                  own_stages.get(s.name)))
            continue
        prev = last_producer(s, history)
        if force:
            action, reason = "run", "--force"
        elif only is not None:
            action, reason = "run", "--only"
        elif from_stage is not None and i == start:
            action, reason = "run", "--from"
        elif upstream_ran:
            action, reason = "run", "an earlier stage ran"
        else:
            action, reason = _skip_decision(s, prev, root)
        upstream_ran = upstream_ran or action == "run"
        items.append(PlanItem(s, action, reason, prev))
    return items


def _skip_decision(stage: ResolvedStage, prev: dict[str, Any] | None, root: Path) -> tuple[str, str]:
    if not stage.outputs:
        return "run", "no outputs declared"
    missing = [o for o in stage.outputs if not (root / o).exists()]
    if missing:
        return "run", f"output {missing[0]} missing"
    if not prev:
        return "run", "no recorded run wrote these outputs"
    if prev.get("status") not in ("done", "skipped"):
        return "run", f"the last recorded run of it {prev.get('status')}"
    if prev.get("parameters") != _jsonable(stage.parameters):
        old = prev.get("parameters") or {}
        changed = sorted(k for k in set(old) | set(stage.parameters) if old.get(k) != _jsonable(stage.parameters.get(k)))
        return "run", f"parameters changed: {', '.join(changed)}"
    return "skip", "outputs exist, parameters unchanged"


def run_pipeline(pipeline: Pipeline, run_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
                 from_stage: str | None = None, only: str | None = None, force: bool = False, dry_run: bool = False,
                 kernel: str | None = None, progress: bool = False, log: Callable[[str], None] = print,
                 command: str | None = None) -> dict[str, Any]:
    """Check, then run the pipeline's stages in order; return the run record (also in ``run_dir/run.json``).

    ``root`` is the working directory of the notebooks (the project root); relative paths in the pipeline
    (notebooks, outputs, ``run_dir``) are relative to it. Raises :class:`PipelineError` before running anything
    when a parameter is wrong, and :class:`StageFailed` when a notebook raises (the record says so first).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    root = Path(root or os.getcwd()).resolve()
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / pipeline.name
    run_dir_abs = run_dir if run_dir.is_absolute() else root / run_dir
    stages = resolve(pipeline, root, run_dir)
    items = plan(stages, read_history(run_dir_abs), root, from_stage=from_stage, only=only, force=force)
    check_kernel(kernel or pipeline.kernel)
    resume_cmd = command or f"abawkit run {pipeline.path or pipeline.name + '.yaml'} --run-dir {run_dir}"

    if dry_run:
        for item in items:
            log(f"[{item.stage.index:02d}] {item.stage.name:<20s} {item.action:<5s} ({item.reason})")
        return {"plan": [{"stage": it.stage.name, "action": it.action, "reason": it.reason,
                          "parameters": _jsonable(it.stage.parameters)} for it in items]}

    record: dict[str, Any] = {
        "pipeline": {"name": pipeline.name, "file": pipeline.path,
                     "sha256": _sha256(Path(pipeline.path)) if pipeline.path and Path(pipeline.path).is_file() else None},
        "run_dir": str(run_dir),
        "status": "running",
        "started": now(),
        "ended": None,
        "git_commit": git_commit(root),
        "versions": package_versions(),
        "device": device_info(),
        "kernel": kernel or pipeline.kernel,
        "command": command,
        "argv": sys.argv,
        "stages": {},
    }
    for item in items:
        s = item.stage
        entry: dict[str, Any] = {
            "index": s.index, "notebook": s.notebook_rel, "notebook_sha256": _sha256(s.notebook),
            "executed": str(run_dir / s.executed_name), "parameters": _jsonable(s.parameters),
            "outputs": list(s.outputs), "status": "pending", "reason": item.reason,
            "started": None, "ended": None, "seconds": None, "metrics": {},
        }
        old = item.previous
        if item.action in ("skip", "keep") and old:
            # carried over from the earlier run: what produced the outputs that are still there
            for key in ("executed", "started", "ended", "seconds", "metrics", "parameters", "git_commit"):
                if key in old:
                    entry[key] = old[key]
            entry["status"] = "skipped" if item.action == "skip" else old.get("status", "not run")
            if item.action == "keep" and old.get("status") == "failed":
                entry["error"] = old.get("error")
        elif item.action == "keep":
            entry["status"] = "not run"
        record["stages"][s.name] = entry
    run_dir_abs.mkdir(parents=True, exist_ok=True)
    write_json(run_dir_abs / RUN_RECORD, record)

    n = len(items)
    for item in items:
        s, entry = item.stage, record["stages"][item.stage.name]
        tag = f"[{s.index:02d}/{n - 1:02d}] {s.name}"
        if item.action != "run":
            log(f"{tag}: {'skipped' if item.action == 'skip' else 'not run'} ({item.reason})")
            continue
        log(f"{tag}: running {s.notebook_rel} ({item.reason}) -> {run_dir / s.executed_name}")
        entry.update(status="running", started=now(), git_commit=record["git_commit"])
        write_json(run_dir_abs / RUN_RECORD, record)
        t0 = time.monotonic()
        executed = run_dir_abs / s.executed_name
        try:
            pm.execute_notebook(str(s.notebook), str(executed), parameters=copy.deepcopy(s.parameters),
                                kernel_name=kernel or pipeline.kernel, cwd=str(root), progress_bar=progress,
                                log_output=False)
        except PapermillExecutionError as exc:
            first_line = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
            src_index = _source_cell_index(s.notebook, exc.source)
            failure = StageFailed(
                stage=s.name, notebook=s.notebook_rel,
                cell_index=src_index if src_index is not None else exc.cell_index,
                cell_first_line=first_line.strip()[:100], error=f"{exc.ename}: {exc.evalue}",
                executed=str(run_dir / s.executed_name), resume=f"{resume_cmd} --from {s.name}")
            entry.update(status="failed", ended=now(), seconds=round(time.monotonic() - t0, 1),
                         metrics=read_metrics(executed),
                         error={"cell_index": failure.cell_index, "cell_first_line": failure.cell_first_line,
                                "error": failure.error})
            _finish(record, run_dir_abs, "failed")
            raise failure from None
        except BaseException as exc:  # the kernel died, Ctrl-C: the record still says where the chain stopped
            entry.update(status="failed", ended=now(), seconds=round(time.monotonic() - t0, 1),
                         error={"cell_index": None, "cell_first_line": "", "error": f"{type(exc).__name__}: {exc}"})
            _finish(record, run_dir_abs, "failed")
            raise
        entry.update(status="done", ended=now(), seconds=round(time.monotonic() - t0, 1),
                     metrics=read_metrics(executed))
        missing = [o for o in s.outputs if not (root / o).exists()]
        if missing:
            entry["warning"] = f"declared outputs missing after the run: {', '.join(missing)}"
            log(f"{tag}: warning: {entry['warning']}")
        write_json(run_dir_abs / RUN_RECORD, record)
        log(f"{tag}: done in {entry['seconds']:.1f} s{_metrics_text(entry['metrics'], ' | ')}")
    failed = any(e["status"] == "failed" for e in record["stages"].values())
    _finish(record, run_dir_abs, "failed" if failed else "done")
    return record


def check_kernel(name: str) -> None:
    """A missing Jupyter kernel is an error saying how to register it (before any stage starts)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        found = sorted(KernelSpecManager().find_kernel_specs())
        raise PipelineError(f"no Jupyter kernel named {name!r} (found: {', '.join(found) or 'none'}); register it "
                            f"with 'make setup' (python -m ipykernel install --sys-prefix --name {name}) or pass "
                            f"--kernel NAME") from None


def _finish(record: dict[str, Any], run_dir: Path, status: str) -> None:
    record["status"] = status
    record["ended"] = now()
    write_json(run_dir / RUN_RECORD, record)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _metrics_text(metrics: dict[str, Any], prefix: str = "") -> str:
    if not metrics:
        return ""
    return prefix + ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.items())


def summary_table(record: dict[str, Any]) -> str:
    """Plain-text table of the stages: status, time, key metrics."""
    rows = [("stage", "status", "time", "key metrics")]
    for name, e in record.get("stages", {}).items():
        secs = e.get("seconds")
        rows.append((f"{e.get('index', 0):02d} {name}", str(e.get("status")),
                     "" if secs is None else (f"{secs:.1f} s" if secs < 120 else f"{secs / 60:.1f} min"),
                     _metrics_text(e.get("metrics") or {})))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows]
    lines.insert(1, "-" * max(len(ln) for ln in lines))
    return "\n".join(lines)


def results_text(record: dict[str, Any], root: str | os.PathLike = ".") -> str:
    """What a person looks for at the end of a run: every ``comparison.csv`` a stage declared as output
    (the validation macro-F1 of frame model, + temporal encoder, + post-processing, with per-class F1) and
    every ``submission`` a stage reported. Empty when the run has neither."""
    import pandas as pd

    parts = []
    for name, entry in record.get("stages", {}).items():
        for out in entry.get("outputs") or ():
            path = Path(root) / out
            if path.name == "comparison.csv" and path.is_file():
                table = pd.read_csv(path)
                parts.append(f"validation macro-F1 ({out}):\n"
                             + table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        submission = (entry.get("metrics") or {}).get("submission")
        if submission:
            parts.append(f"submission: {submission}")
    return "\n\n".join(parts)
