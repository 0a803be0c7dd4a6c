"""The ``localmap`` command line.

Each subcommand lives next to the code it drives and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to a callable taking the parsed namespace and returning an exit
status. Modules are imported lazily so that ``localmap --help`` stays fast. Every
:class:`~localmap.errors.LocalmapError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from localmap.errors import LocalmapError

# (module, one-line help); the module provides register(subparsers).
COMMANDS: list[str] = [
    "localmap.analysis.replay_cmd",
    "localmap.lab.cli",
    "localmap.report.evaluate",
    "localmap.analysis.overhead_cmd",
    "localmap.check.check_cmd",
    "localmap.perf.sites_cmd",
    "localmap.perf.predict_cmd",
]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``localmap: replay: argument --show: ...``), exit 2;
    sub-command parsers inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sub = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        print(f"localmap: {sub}{message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="localmap",
        description="Percpu local mappings through per-CPU kernel page tables: model, replay, "
        "check and measure.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command whose module is missing is simply absent
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LocalmapError as exc:
        print(f"localmap: {exc.one_line()}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("localmap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
