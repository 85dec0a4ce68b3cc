"""``abawkit report``: the figures and tables of notebook 08 without a notebook (options from
:class:`abawkit.report.ReportConfig`)."""

from __future__ import annotations

ORDER = 75  # place in ``abawkit --help`` (pipeline order)
NAME = "report"
HELP = "draw and save the report of a run: per-class F1, confusion, timelines, stage comparison, leaderboard"


def main(argv: list[str]) -> int:
    from ..config import cli
    from ..report import ReportConfig, build_report

    cfg = cli(ReportConfig, argv, prog=f"abawkit {NAME}",
              epilog="example: abawkit report --temporal runs/demo/temporal --predictions runs/demo/predictions "
                     "--out runs/demo/report")
    report = build_report(cfg.manifest_dir, cfg.temporal_dir, cfg.predictions_dir, cfg.runs_root,
                          out_dir=cfg.report_dir, max_timelines=cfg.max_timelines)
    print(f"validation macro F1 {report.validation.report.macro_f1:.4f}; {len(report.files)} files in {cfg.report_dir}")
    return 0
