"""What each stage of a run will do: stages resolved against their notebooks, the recorded history, skip or run."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .file import Pipeline, PipelineError
from .parameters import NotebookParameter, check_stage_parameters, expand_preset, notebook_parameters

RUN_RECORD = "run.json"


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
    code_sha256: str  # notebook_code_sha256 of the notebook, compared with the recorded run's

    @property
    def executed_name(self) -> str:
        return f"{self.index:02d}_{self.name}.ipynb"


def notebook_code_sha256(notebook: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of the sources of a notebook's code cells, in order.

    The code, not the file: executing a notebook in JupyterLab and saving it changes its outputs, execution
    counts and metadata but not what it computes, and should not re-run the stage; an edited markdown cell
    neither. The parameters cell is code, so a changed default counts as a change.
    """
    with open(notebook, encoding="utf-8") as fh:
        cells = json.load(fh).get("cells", [])
    sources = [c.get("source", "") for c in cells if c.get("cell_type") == "code"]
    sources = ["".join(s) if isinstance(s, list) else s for s in sources]
    return hashlib.sha256(json.dumps(sources).encode("utf-8")).hexdigest()[:16]


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
        try:
            params = _substitute(expand_preset(nb_path, declared, params), run_dir_str)
        except PipelineError as exc:
            problems.append(f"stage {stage.name!r}: {exc}")
            continue
        problems += [f"stage {stage.name!r}: {why}" for why in check_stage_parameters(declared, params, nb_path, stage.notebook)]
        values = {name: params.get(name, p.default) for name, p in declared.items()} | {"run_dir": run_dir_str, "run_name": Path(run_dir_str).name}
        outputs = []
        for out in stage.outputs:
            try:
                outputs.append(out.format_map(values))
            except (KeyError, IndexError, ValueError) as exc:
                problems.append(f"stage {stage.name!r}: output {out!r} names {exc} which is not a parameter of "
                                f"{stage.notebook}")
        resolved.append(ResolvedStage(index, stage.name, nb_path, stage.notebook, params, tuple(outputs), declared,
                                      notebook_code_sha256(nb_path)))
    for name in set(pipeline.defaults) - used_defaults:
        problems.append(f"defaults: parameter {name!r} is declared by no stage's notebook")
    if problems:
        where = f"{pipeline.path}: " if pipeline.path else ""
        raise PipelineError(f"{where}{len(problems)} parameter problem(s):\n  " + "\n  ".join(problems))
    return resolved


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from ``run.json`` (paths and other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # a corrupt record only means nothing can be skipped


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


@dataclass(frozen=True)
class PlanItem:
    stage: ResolvedStage
    action: str  # "run" | "skip" | "keep" (before --from / outside --only: not touched)
    reason: str
    previous: dict[str, Any] | None = None  # the recorded run of this stage that the decision rests on


def plan_stages(stages: list[ResolvedStage], history: list[dict[str, Any]], root: Path, from_stage: str | None = None,
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
    """Skip only when the outputs are there and were written by a successful run of the same notebook code with
    the same parameters; otherwise say every reason to run."""
    if not stage.outputs:
        return "run", "no outputs declared"
    missing = [o for o in stage.outputs if not (root / o).exists()]
    if missing:
        return "run", f"output {missing[0]} missing"
    if not prev:
        return "run", "no recorded run wrote these outputs"
    if prev.get("status") == "running":  # its run was killed (a live one would hold the folder's lock)
        return "run", "interrupted during its last run"
    if prev.get("status") not in ("done", "skipped"):
        return "run", f"the last recorded run of it {prev.get('status')}"
    reasons = []
    if not prev.get("code_sha256"):  # a record written before the runner compared notebooks
        reasons.append("the last run recorded no notebook hash")
    elif prev["code_sha256"] != stage.code_sha256:
        reasons.append("notebook changed since the last run")
    if prev.get("parameters") != jsonable(stage.parameters):
        old = prev.get("parameters") or {}
        changed = sorted(k for k in set(old) | set(stage.parameters) if old.get(k) != jsonable(stage.parameters.get(k)))
        reasons.append(f"parameters changed: {', '.join(changed)}")
    if reasons:
        return "run", "; ".join(reasons)
    return "skip", "outputs exist, notebook and parameters unchanged"
