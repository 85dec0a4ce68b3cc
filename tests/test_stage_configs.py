"""One declaration per setting: each stage's config is what the notebook's parameters cell, the command line and
the pipeline files say, so that none of them can drift from it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml

from abawkit import config as settings
from abawkit.faces.extract import FacesConfig
from abawkit.features import FeatureConfig
from abawkit.manifest import ManifestConfig
from abawkit.mae.config import MAEConfig
from abawkit.omni.config import DistillConfig
from abawkit.omni.select import SelectConfig
from abawkit.report import ReportConfig
from abawkit.semisup.config import SemiSupConfig, TrainConfig
from abawkit.temporal.config import PredictConfig, TemporalTrainConfig
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CONFIGS = [ManifestConfig, FacesConfig, MAEConfig, TrainConfig, SelectConfig, DistillConfig, FeatureConfig, TemporalTrainConfig, PredictConfig, ReportConfig]


def _stage(notebook: Path):
    meta = json.loads(notebook.read_text())["metadata"].get("abawkit") or {}
    if "config" not in meta:
        return None
    module, _, name = meta["config"].partition(":")
    return getattr(importlib.import_module(module), name), meta.get("preset"), set(meta.get("notebook_parameters", ()))


def _cell_values(notebook: Path) -> dict:
    from abawkit.pipeline import notebook_parameters

    return {name: p.default for name, p in notebook_parameters(notebook).items()}


STAGED = [nb for nb in NOTEBOOKS if _stage(nb)]


def test_every_notebook_names_its_stages_config():
    assert STAGED == NOTEBOOKS and len(NOTEBOOKS) == 9


@pytest.mark.parametrize("notebook", STAGED, ids=lambda p: p.stem)
def test_notebook_parameters_are_the_configs_fields_with_the_presets_values(notebook):
    cls, preset, own = _stage(notebook)
    values = _cell_values(notebook)
    fields = set(settings.flat_fields(cls)) | set(settings.selectors(cls))
    assert set(values) - own <= fields, f"{notebook.name}: not settings of {cls.__name__}: {set(values) - own - fields}"
    expected = settings.flat_values(settings.preset(cls, preset))
    for name, value in values.items():
        if name in expected:
            assert settings.build(cls, {name: value}) == settings.build(cls, {name: expected[name]}), (
                f"{notebook.name}: {name} = {value!r}, preset {preset!r} says {expected[name]!r}")
    # every setting the preset changes is in the cell, so "run all" in JupyterLab is exactly the preset
    changed = {k for k, v in settings.flat_values(settings.preset(cls, preset)).items()
               if v != settings.flat_values(cls())[k]}
    assert changed <= set(values), f"{notebook.name}: the preset sets {changed - set(values)}, the cell does not"
    namespace = {k: v for k, v in values.items() if k not in own}
    assert settings.from_namespace(cls, namespace) == settings.preset(cls, preset)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_the_command_line_and_the_presets_are_the_same_config(cls):
    assert settings.cli(cls, [], prog="x") == cls()
    for name in settings.presets(cls):
        assert settings.cli(cls, ["--preset", name], prog="x") == settings.preset(cls, name)


@pytest.mark.parametrize("pipeline", sorted((REPO / "pipelines").glob("*.yaml")), ids=lambda p: p.stem)
def test_pipeline_files_name_only_real_settings(pipeline):
    data = yaml.safe_load(pipeline.read_text())
    for stage in data["stages"]:
        found = _stage(REPO / stage["notebook"])
        if not found:
            continue
        cls, _, own = found
        names = set(stage.get("parameters") or {}) | {k for k in data.get("defaults") or {}
                                                      if k in _cell_values(REPO / stage["notebook"])}
        allowed = set(settings.flat_fields(cls)) | set(settings.selectors(cls)) | own | {settings.PRESET_KEY}
        assert names <= allowed, f"{pipeline.name} stage {stage['name']}: {names - allowed}"


def test_unknown_and_mistyped_settings_are_errors_naming_them():
    with pytest.raises(settings.ConfigError, match=r"'widht' \(did you mean 'width'\?\)"):
        settings.build(TemporalTrainConfig, {"widht": 64})
    with pytest.raises(settings.ConfigError, match="epochs: expected int, got str 'ten'"):
        settings.build(TemporalTrainConfig, {"epochs": "ten"})
    with pytest.raises(settings.ConfigError, match="progress: expected bool, got int"):
        settings.build(TemporalTrainConfig, {"progress": 1})
    with pytest.raises(settings.ConfigError, match="width 60 must be a multiple of heads 8"):
        settings.build(TemporalTrainConfig, {"width": 60, "heads": 8})
    with pytest.raises(settings.ConfigError, match="preset 'huge'"):
        settings.build(TrainConfig, {"preset": "huge"})
    with pytest.raises(settings.ConfigError, match="algorithm 'mixmatch'"):
        settings.build(TrainConfig, {"algorithm": "mixmatch"})


def test_nested_settings_are_flat_and_values_are_coerced():
    cfg = settings.build(TrainConfig, {"tau": 1, "unlabeled_dirs": ["a"]})
    assert cfg.semisup.tau == 1.0 and isinstance(cfg.semisup.tau, float) and cfg.unlabeled_dirs == ("a",)
    assert settings.from_dict(TrainConfig, cfg.to_dict()) == cfg
    assert settings.flat_values(cfg)["tau"] == 1.0 and "semisup" not in settings.flat_values(cfg)
    assert set(settings.flat_fields(SemiSupConfig)) <= set(settings.flat_fields(TrainConfig))


def test_derived_intervals_follow_the_steps():
    cfg = settings.build(TrainConfig, {"steps": 300})
    assert (cfg.lr_warmup_steps, cfg.eval_interval, cfg.ckpt_interval) == (30, 50, 50)
    cfg = settings.build(TrainConfig, {"steps": 300, "warmup_steps": 0, "eval_every": 7})
    assert (cfg.lr_warmup_steps, cfg.eval_interval, cfg.ckpt_interval) == (0, 7, 50)


def test_a_repeatable_option_on_the_command_line_replaces_the_presets_list():
    cfg = settings.cli(TrainConfig, ["--preset", "demo", "--unlabeled-dir", "a", "--unlabeled-dir", "b"], prog="x")
    assert cfg.unlabeled_dirs == ("a", "b")
    assert settings.cli(TrainConfig, ["--preset", "demo"], prog="x").unlabeled_dirs == ("data/faces/demo_unlabeled/cropped_aligned",)


def _resolved(sets, name="temporal_encoder", pipeline="demo.yaml"):
    from abawkit.pipeline import apply_overrides, load_pipeline, resolve

    stages = resolve(apply_overrides(load_pipeline(REPO / "pipelines" / pipeline), sets), REPO)
    return {s.name: s for s in stages}[name].parameters


def test_the_pipeline_checks_a_stage_by_building_its_config():
    from abawkit.pipeline import PipelineError

    with pytest.raises(PipelineError, match=r"stage 'temporal_encoder': TemporalTrainConfig: width 60 must be a "
                                            r"multiple of heads 8"):
        _resolved(["temporal_encoder.width=60", "temporal_encoder.heads=8"])
    with pytest.raises(PipelineError, match=r"stage 'semisup_pretrain': TrainConfig: threshold: expected"):
        _resolved(["semisup_pretrain.threshold=sometimes"], "semisup_pretrain")
    # a setting the cell does not show is still a setting of the config
    assert _resolved(["temporal_encoder.frame_drop=0.3"])["frame_drop"] == 0.3


def test_a_preset_in_a_pipeline_is_spelled_out_and_the_stages_values_win():
    from abawkit.pipeline import PipelineError

    params = _resolved(["temporal_encoder.preset=gpu", "temporal_encoder.epochs=7"])
    gpu = settings.preset(TemporalTrainConfig, "gpu")
    assert (params["window"], params["depth"], params["width"], params["heads"]) == (128, 4, 256, 8)
    assert params["epochs"] == 7 and "preset" not in params
    assert params["dropout"] == gpu.model.dropout == 0.1  # the cell's demo value (0.5) does not leak through
    assert params["out_dir"].endswith("/temporal")
    with pytest.raises(PipelineError, match=r"stage 'temporal_encoder':.*preset 'huge'"):
        _resolved(["temporal_encoder.preset=huge"])
    real = _resolved(["affwild2_root=/data"], "semisup_pretrain", "affwild2.yaml")
    # stage 2 of the MAE recipe: the architecture comes from stage 1's checkpoint, the preset's other values stay
    assert (real["backbone"], real["image_size"], real["input_norm"], real["uratio"]) == (None, None, None, 2)
    assert real["weights"].endswith("frame_model_stage1/best.pt") and real["steps"] == 30000


def test_a_preset_passed_into_a_notebook_is_an_error_not_silently_overridden():
    with pytest.raises(settings.ConfigError, match="abawkit run"):
        settings.from_namespace(TemporalTrainConfig, {"preset": "gpu", "depth": 1})
