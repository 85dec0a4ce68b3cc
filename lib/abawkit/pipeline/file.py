"""A pipeline file: the YAML list of stages (notebook, parameters, outputs), read and checked, and ``--set``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import UserError
from ..readers import read_yaml_mapping

DEFAULT_KERNEL = "abawkit"


class PipelineError(UserError):
    """A pipeline file, a parameter or a stage selection that cannot be used; the message names it."""


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
    data = read_yaml_mapping(path, "a pipeline file (YAML: name, defaults, stages)",
                             "see pipelines/demo.yaml and pipelines/affwild2.yaml for examples")
    if not isinstance(data.get("stages"), list) or not data["stages"]:
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
