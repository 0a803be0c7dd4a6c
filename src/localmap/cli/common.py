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
from pathlib import Path

from localmap.cli.console import stdout_console
from localmap.cli.progress import TerminalProgress
from localmap.errors import LocalmapError
from localmap.units import MAX_CPUS, parse_count


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
    p.add_argument("--debug", action="store_true", default=default,
                   help="on an error, also print the traceback")
    return p


def add_command(sub, name: str, *, help: str, description: str | None = None,
                raw: bool = False) -> argparse.ArgumentParser:
    """A command's parser, with the global options. ``raw`` keeps the description's line breaks
    (for examples)."""
    kw = {"formatter_class": argparse.RawDescriptionHelpFormatter} if raw else {}
    return sub.add_parser(name, help=help, description=description or help,
                          parents=[global_options()], **kw)


def html_folder(path: str) -> Path:
    """Create the folder an ``--html`` report goes to, or fail in one line before any work."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalmapError(f"cannot create the HTML folder: {exc.strerror}", path) from None
    return Path(path)


def progress(args: argparse.Namespace) -> TerminalProgress:
    """The progress reporter for this invocation (use it as a context manager)."""
    show = (not getattr(args, "no_progress", False) and not getattr(args, "quiet", False)
            and sys.stderr.isatty())
    return TerminalProgress(enabled=show)


def info(args: argparse.Namespace, message: str) -> None:
    """An informational line on stdout, dropped by ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message)


def whole(minimum: int = 0, maximum: int = 1 << 62):
    """An argparse type: a whole number in plain ASCII digits, ``minimum <= n <= maximum``."""
    def parse(text: str) -> int:
        try:
            return parse_count(text, minimum=minimum, maximum=maximum)
        except LocalmapError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    parse.__name__ = "whole number"
    return parse


count = whole(0)                     # a whole number >= 0
positive = whole(1)                  # a whole number >= 1
cpu_count = whole(1, MAX_CPUS)       # a number of CPUs
QEMU_VIRT_MAX_CPUS = 512             # what QEMU's virt machine boots at most
guest_cpus = whole(1, QEMU_VIRT_MAX_CPUS)


def seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (at most a day)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from None
    if not 0 < v <= 86400:
        raise argparse.ArgumentTypeError(f"expected 0 < seconds <= 86400, not {text}")
    return v


def option(name: str, fn, *args, **kw):
    """``fn(*args, **kw)``, with a :class:`LocalmapError` that names no file naming the option
    ``name`` instead."""
    try:
        return fn(*args, **kw)
    except LocalmapError as exc:
        if exc.path is None:
            raise LocalmapError(exc.message, name) from None
        raise


__all__ = ["Parser", "global_options", "add_command", "progress", "info", "count", "positive",
           "whole", "cpu_count", "guest_cpus", "seconds", "option", "stdout_console"]
