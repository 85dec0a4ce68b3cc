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

    Each either defines ``NAME``, ``HELP`` and ``main(argv) -> int``, parsing its options from its stage's
    config (:func:`abawkit.config.cli`), or ``register(subparsers)``, adding an argparse parser whose default
    ``func(args) -> int`` runs it. Heavy imports (torch, mediapipe) stay inside the function that runs, so that
    ``--help`` stays fast.
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
        module = importlib.import_module(f"abawkit.commands.{name}")
        if hasattr(module, "main"):  # options generated from its config: listed here, parsed by the command
            sub.add_parser(module.NAME, help=module.HELP, add_help=False)
        else:
            module.register(sub)
    return parser


def config_commands() -> dict[str, object]:
    """``{command name: module}`` of the commands whose options come from their stage's config."""
    modules = (importlib.import_module(f"abawkit.commands.{name}") for name in command_modules())
    return {m.NAME: m for m in modules if hasattr(m, "main")}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own = config_commands()
    if argv and argv[0] in own:
        command, run = argv[0], (lambda: own[argv[0]].main(argv[1:]))
    else:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        command, run = args.command, (lambda: args.func(args))
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept and a re-run resumes", file=sys.stderr)
        return 130
    except UserError as exc:
        print(f"abawkit {command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
