"""The terminal every command prints to: rich on stdout, as wide as the terminal, or 140
columns when the output goes to a file or a pipe (rich's 80 would cut the tables)."""

from __future__ import annotations

import sys

PIPE_WIDTH = 140


def stdout_console(**kw):
    """A ``rich.console.Console`` on stdout (rich is imported here, lazily)."""
    from rich.console import Console
    if not sys.stdout.isatty():
        kw.setdefault("width", PIPE_WIDTH)
    return Console(**kw)
