"""The ``abawkit`` command: one subcommand per pipeline stage, each defined in ``abawkit.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands
from .errors import UserError

__all__ = ["UserError", "build_parser", "command_modules", "main"]


def command_modules() -> list[str]:
    """The modules of ``abawkit.commands``, in pipeline order (each module's ``ORDER``, then its name).

    Each defines ``register(subparsers)``, adding a parser whose default ``func(args) -> int`` runs it, and
    keeps its heavy imports (torch, mediapipe) inside ``func`` so that ``--help`` stays fast.
    """
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    modules = [importlib.import_module(f"abawkit.commands.{name}") for name in names]
    return [m.__name__.rsplit(".", 1)[1] for m in sorted(modules, key=lambda m: (getattr(m, "ORDER", 99), m.__name__))]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="abawkit",
        description="Video facial expression recognition for the ABAW EXPR challenge (Aff-Wild2, 8 classes, macro F1).",
        epilog="Run 'abawkit COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"abawkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
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


if __name__ == "__main__":
    sys.exit(main())
