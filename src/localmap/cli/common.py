"""What every command shares: the parser class, the global options, the progress policy, the
output console and informational lines.

Conventions (one meaning per option name across commands):

- ``--no-progress`` / ``--quiet`` are global and may stand before or after the command name.
  Progress is drawn on stderr only when stderr is a terminal and neither is given; ``--quiet``
  also drops informational lines, leaving results and errors.
- ``--json`` prints the command's result as JSON on stdout instead of tables.
- ``--cpus N`` is always the number of CPUs of the machine the command models, explores or
  boots; ``--config FILE`` always a kernel ``.config``; ``-o/--output DIR`` a bundle to create.
- Output is as wide as the terminal, or ``COLUMNS`` when set (see :mod:`.console`).
"""

from __future__ import annotations

import argparse
import sys

from localmap.cli.console import stdout_console
from localmap.cli.progress import TerminalProgress


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``localmap: replay: argument --show: ...``), exit 2;
    sub-command parsers inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sub = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        print(f"localmap: {sub}{message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(2)


def global_options(top: bool = False) -> argparse.ArgumentParser:
    """The options every command takes. On sub-commands their default is "not given", so an
    option before the command name is not reset by the command's parser."""
    p = argparse.ArgumentParser(add_help=False)
    default = False if top else argparse.SUPPRESS
    p.add_argument("--no-progress", action="store_true", default=default,
                   help="draw no progress display on stderr")
    p.add_argument("-q", "--quiet", action="store_true", default=default,
                   help="print only results and errors (no progress, no informational lines)")
    return p


def add_command(sub, name: str, *, help: str, description: str | None = None,
                raw: bool = False) -> argparse.ArgumentParser:
    """A command's parser, with the global options. ``raw`` keeps the description's line breaks
    (for examples)."""
    kw = {"formatter_class": argparse.RawDescriptionHelpFormatter} if raw else {}
    return sub.add_parser(name, help=help, description=description or help,
                          parents=[global_options()], **kw)


def progress(args: argparse.Namespace) -> TerminalProgress:
    """The progress reporter for this invocation (use it as a context manager)."""
    show = (not getattr(args, "no_progress", False) and not getattr(args, "quiet", False)
            and sys.stderr.isatty())
    return TerminalProgress(enabled=show)


def info(args: argparse.Namespace, message: str) -> None:
    """An informational line on stdout, dropped by ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message)


def count(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a count >= 0, not {text}")
    return n


def positive(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    n = count(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, not {text}")
    return n


__all__ = ["Parser", "global_options", "add_command", "progress", "info", "count", "positive",
           "stdout_console"]
