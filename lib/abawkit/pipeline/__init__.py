"""Run the notebook chain: a YAML pipeline of stages (notebook + parameters + outputs) executed with papermill.

Every stage's parameters are checked against its notebook's ``parameters`` cell before anything runs; each
executed copy and a run record (``run.json``: parameters, commit, versions, device, status, and the key metrics
and tables each notebook reported) go to the run folder; a stage whose outputs exist and whose notebook code and
parameters did not change is skipped. The package knows no stage: a notebook reports its own figures.

``file`` reads the pipeline YAML, ``parameters`` a notebook's parameters cell, ``plan`` decides what runs,
``run`` runs it and keeps the record.
"""

from .file import DEFAULT_KERNEL, Pipeline, PipelineError, Stage, apply_overrides, load_pipeline, parse_set
from .parameters import (NotebookParameter, check_stage_parameters, check_value, notebook_parameters,
                         parameters_cell_source)
from .plan import (RUN_RECORD, PlanItem, ResolvedStage, last_producer, notebook_code_sha256, plan_stages, read_history,
                   read_run_record, resolve)
from .run import StageFailed, check_kernel, read_metrics, read_tables, run_pipeline, summary_table, tables_text

__all__ = [
    "DEFAULT_KERNEL", "RUN_RECORD", "NotebookParameter", "Pipeline", "PipelineError", "PlanItem", "ResolvedStage",
    "Stage", "StageFailed", "apply_overrides", "check_kernel", "check_stage_parameters", "check_value",
    "last_producer", "load_pipeline", "notebook_code_sha256", "notebook_parameters", "parameters_cell_source",
    "parse_set", "plan_stages", "read_history", "read_metrics", "read_run_record", "read_tables", "resolve",
    "run_pipeline", "summary_table", "tables_text",
]
