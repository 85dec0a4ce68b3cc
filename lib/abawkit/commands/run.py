"""``abawkit run``: execute a pipeline of notebooks (papermill) with checked parameters and a run record."""

from __future__ import annotations

import argparse
import textwrap

ORDER = 5  # place in ``abawkit --help``: the command most users start with


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline of notebooks (e.g. pipelines/demo.yaml) with papermill, skipping finished stages",
        description=textwrap.fill(
            "Run the stages of a pipeline file in order, each notebook through papermill with the 'abawkit' "
            "kernel and the project root as working directory. Before anything runs, every stage's parameters "
            "are checked against the notebook's parameters cell (unknown name, missing required value, wrong "
            "type). Executed copies go to RUN_DIR/NN_stage.ipynb and the run record (parameters, git commit, "
            "package versions, device, times, status, key metrics and tables per stage) to RUN_DIR/run.json; "
            "the tables the notebooks reported are printed at the end. A stage whose declared outputs exist "
            "and whose notebook code and parameters did not change since the run that wrote them is skipped; "
            "once a stage runs, the later stages run too.", width=88),
        epilog="examples:\n"
               "  abawkit run pipelines/demo.yaml\n"
               "  abawkit run pipelines/demo.yaml --set temporal_encoder.window=128 --run-dir runs/window128\n"
               "  abawkit run pipelines/demo.yaml --from temporal_encoder  # resume after a failure\n"
               "  abawkit run pipelines/affwild2.yaml --set affwild2_root=/data/affwild2 --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pipeline", help="pipeline YAML file (stages: name, notebook, parameters, outputs)")
    p.add_argument("--run-dir", help="folder for the executed notebooks and run.json (default runs/<pipeline name>)")
    p.add_argument("--from", dest="from_stage", metavar="STAGE",
                   help="start at this stage (it always runs, and so does every later stage); earlier stages are not touched")
    p.add_argument("--only", metavar="STAGE", help="run this one stage only (always runs)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="STAGE.PARAM=VALUE",
                   help="override a parameter (VALUE is a YAML literal: 128, 0.5, true, null, [a, b], 'text'); "
                        "PARAM=VALUE without a stage sets it in every stage whose notebook declares it; repeatable")
    p.add_argument("--force", action="store_true", help="run every selected stage even when its outputs are up to date")
    p.add_argument("--dry-run", action="store_true", help="check the parameters and print what would run or be skipped, and why; run nothing")
    p.add_argument("--kernel", help="Jupyter kernel name (default: the pipeline's 'kernel', else 'abawkit')")
    p.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ..notebook import project_root
    from ..pipeline import StageFailed, apply_overrides, load_pipeline, run_pipeline, summary_table, tables_text

    pipeline = apply_overrides(load_pipeline(args.pipeline), args.sets)
    root = project_root()
    run_dir = args.run_dir or f"runs/{pipeline.name}"
    resume = "abawkit run " + " ".join(shlex.quote(a) for a in [args.pipeline, "--run-dir", run_dir]
                                       + [x for s in args.sets for x in ("--set", s)])
    try:
        record = run_pipeline(pipeline, run_dir, root=root, from_stage=args.from_stage, only=args.only,
                              force=args.force, dry_run=args.dry_run, kernel=args.kernel,
                              progress=not args.no_progress and sys.stderr.isatty(), command=resume)
    except StageFailed as exc:
        from ..pipeline import read_run_record

        record = read_run_record(root / run_dir if not run_dir.startswith("/") else run_dir)
        if record:
            print("\n" + summary_table(record))
        print(f"\nabawkit run: error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    print("\n" + summary_table(record))
    tables = tables_text(record)
    if tables:
        print("\n" + tables)
    print(f"\nrun record: {run_dir}/run.json")
    return 0
