"""The ``abawkit`` command: one subcommand per pipeline stage, each defined in ``abawkit.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``, adding a parser whose default ``func(args) -> int`` runs it.
# Heavy imports (torch, mediapipe) happen inside ``func`` so that ``--help`` stays fast.
COMMAND_MODULES = (
    "demo_data",
    "manifest",
    "evaluate",
    "submission",
)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="abawkit",
        description="Video facial expression recognition for the ABAW EXPR challenge (Aff-Wild2, 8 classes, macro F1).",
        epilog="Run 'abawkit COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"abawkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"abawkit.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept and a re-run resumes", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"abawkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


class UserError(Exception):
    """A problem with the user's input: the message names the file, line or value, and what to do."""


if __name__ == "__main__":
    sys.exit(main())
