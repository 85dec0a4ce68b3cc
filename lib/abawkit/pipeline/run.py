"""Running a planned pipeline: each notebook through papermill, the run record ``run.json``, the summary text."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..io import write_json
from ..notebook import METRICS_MIME, TABLE_MIME, format_table
from ..runinfo import device_info, git_commit, now, package_versions
from ..runlock import folder_lock
from .file import Pipeline, PipelineError
from .plan import RUN_RECORD, jsonable, plan_stages, read_history, resolve


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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _reports(executed: str | os.PathLike, mime: str) -> list[dict[str, Any]]:
    """The values a notebook showed under ``mime`` (``abawkit.notebook.report_*``), in the order shown."""
    path = Path(executed)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        nb = json.load(fh)
    found = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            value = (output.get("data") or {}).get(mime)
            if isinstance(value, str):
                value = json.loads(value)
            if isinstance(value, dict):
                found.append(value)
    return found


def read_metrics(executed: str | os.PathLike) -> dict[str, Any]:
    """Key metrics a notebook reported (``abawkit.notebook.report_metrics``), later reports overriding earlier."""
    metrics: dict[str, Any] = {}
    for report in _reports(executed, METRICS_MIME):
        metrics.update(report)
    return metrics


def read_tables(executed: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Tables a notebook reported (``abawkit.notebook.report_table``) by title, a later one replacing an earlier."""
    return {str(t.get("title")): {k: v for k, v in t.items() if k != "title"} for t in _reports(executed, TABLE_MIME)}


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


def run_pipeline(pipeline: Pipeline, run_dir: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
                 from_stage: str | None = None, only: str | None = None, force: bool = False, dry_run: bool = False,
                 kernel: str | None = None, progress: bool = False, log: Callable[[str], None] = print,
                 command: str | None = None) -> dict[str, Any]:
    """Check, then run the pipeline's stages in order; return the run record (also in ``run_dir/run.json``).

    ``root`` is the working directory of the notebooks (the project root); relative paths in the pipeline
    (notebooks, outputs, ``run_dir``) are relative to it. Raises :class:`PipelineError` before running anything
    when a parameter is wrong, and :class:`StageFailed` when a notebook raises (the record says so first).
    While it runs it holds the lock of ``run_dir`` (:mod:`abawkit.runlock`): a second run there stops at once.
    """
    root = Path(root or os.getcwd()).resolve()
    run_dir = Path(run_dir) if run_dir is not None else Path("runs") / pipeline.name
    run_dir_abs = run_dir if run_dir.is_absolute() else root / run_dir
    args = dict(from_stage=from_stage, only=only, force=force, dry_run=dry_run, kernel=kernel, progress=progress,
                log=log, command=command)
    if dry_run:  # reads only
        return _run(pipeline, run_dir, run_dir_abs, root, **args)
    with folder_lock(run_dir_abs, command or f"abawkit run {pipeline.path or pipeline.name}"):
        return _run(pipeline, run_dir, run_dir_abs, root, **args)


def _run(pipeline: Pipeline, run_dir: Path, run_dir_abs: Path, root: Path, *, from_stage, only, force, dry_run,
         kernel, progress, log, command) -> dict[str, Any]:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    stages = resolve(pipeline, root, run_dir)
    history = read_history(run_dir_abs)
    interrupted = _interrupted(history[0]) if history and not dry_run else None
    items = plan_stages(stages, history, root, from_stage=from_stage, only=only, force=force)
    check_kernel(kernel or pipeline.kernel)
    resume_cmd = command or f"abawkit run {pipeline.path or pipeline.name + '.yaml'} --run-dir {run_dir}"

    if dry_run:
        log(f"plan for {run_dir} (nothing runs with --dry-run):")
        for item in items:
            log(f"[{item.stage.index:02d}] {item.stage.name:<20s} {item.action:<5s} {item.reason}")
        return {"plan": [{"stage": it.stage.name, "action": it.action, "reason": it.reason,
                          "parameters": jsonable(it.stage.parameters)} for it in items]}

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
    if interrupted:
        record["previous_run"] = interrupted
        log(f"the last run in {run_dir} was interrupted during stage {interrupted['stage']!r} "
            f"(started {interrupted['started']}); that stage runs again")
    for item in items:
        s = item.stage
        entry: dict[str, Any] = {
            "index": s.index, "notebook": s.notebook_rel, "code_sha256": s.code_sha256,
            "executed": str(run_dir / s.executed_name), "parameters": jsonable(s.parameters),
            "outputs": list(s.outputs), "status": "pending", "reason": item.reason,
            "started": None, "ended": None, "seconds": None, "metrics": {}, "tables": {},
        }
        old = item.previous
        if item.action in ("skip", "keep") and old:
            # carried over from the earlier run: what produced the outputs that are still there
            for key in ("executed", "started", "ended", "seconds", "metrics", "tables", "parameters", "git_commit"):
                if key in old:
                    entry[key] = old[key]
            entry["code_sha256"] = old.get("code_sha256")  # the code that wrote the outputs, not today's
            entry["status"] = "skipped" if item.action == "skip" else old.get("status", "not run")
            if item.action == "keep" and old.get("status") == "failed":
                entry["error"] = old.get("error")
        elif item.action == "keep":
            entry.update(status="not run", code_sha256=None)
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
                                log_output=False, config=kernel_config())
        except PapermillExecutionError as exc:
            first_line = next((ln for ln in (exc.source or "").splitlines() if ln.strip()), "")
            src_index = _source_cell_index(s.notebook, exc.source)
            failure = StageFailed(
                stage=s.name, notebook=s.notebook_rel,
                cell_index=src_index if src_index is not None else exc.cell_index,
                cell_first_line=first_line.strip()[:100], error=f"{exc.ename}: {exc.evalue}",
                executed=str(run_dir / s.executed_name), resume=f"{resume_cmd} --from {s.name}")
            entry.update(status="failed", ended=now(), seconds=round(time.monotonic() - t0, 1),
                         metrics=read_metrics(executed), tables=read_tables(executed),
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
                     metrics=read_metrics(executed), tables=read_tables(executed))
        missing = [o for o in s.outputs if not (root / o).exists()]
        if missing:
            entry["warning"] = f"declared outputs missing after the run: {', '.join(missing)}"
            log(f"{tag}: warning: {entry['warning']}")
        write_json(run_dir_abs / RUN_RECORD, record)
        log(f"{tag}: done in {entry['seconds']:.1f} s{_metrics_text(entry['metrics'], ' | ')}")
    failed = any(e["status"] == "failed" for e in record["stages"].values())
    _finish(record, run_dir_abs, "failed" if failed else "done")
    return record


def _interrupted(own: dict[str, Any]) -> dict[str, Any] | None:
    """What an earlier run of this folder left unfinished: its record still says ``running`` although no
    process holds the folder (it was killed, or its machine went down)."""
    if own.get("status") != "running":
        return None
    stage = next((name for name, e in (own.get("stages") or {}).items() if e.get("status") == "running"), None)
    return {"status": "interrupted", "started": own.get("started"), "stage": stage, "command": own.get("command")}


def kernel_config():
    """Kernel manager settings for papermill: an encrypted (CurveZMQ) channel to kernels that support it.

    ipykernel 7 warns "Kernel is running over TCP without encryption" each time it starts without keys from
    its manager: one warning per stage among the stage lines. jupyter_client 8.10 hands it keys with
    ``transport_encryption="auto"`` when the kernelspec declares ``supported_encryption: curve`` (ipykernel's
    does); older versions, or a libzmq without curve, keep plain TCP and the warning.
    """
    import zmq
    from jupyter_client.manager import KernelManager
    from traitlets.config import Config

    if zmq.has("curve") and "transport_encryption" in KernelManager.class_trait_names():
        return Config({"KernelManager": {"transport_encryption": "auto"}})
    return Config()


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


def tables_text(record: dict[str, Any]) -> str:
    """Every table the stages of a run reported (``abawkit.notebook.report_table``), in stage order, each under
    its title: what a person looks for at the end of a run. Empty when no stage reported one."""
    return "\n\n".join(f"{title}:\n{format_table(table)}" for entry in record.get("stages", {}).values()
                        for title, table in (entry.get("tables") or {}).items())
