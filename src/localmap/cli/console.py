"""The console every command prints its results to: rich on stdout.

Width: ``COLUMNS`` when set, else the terminal's width; output to a file or a pipe without
``COLUMNS`` is laid out for :data:`PIPE_WIDTH` columns (rich's 80 would wrap most tables).
"""

from __future__ import annotations

import os
import sys

PIPE_WIDTH = 140


def stdout_console(**kw):
    """A ``rich.console.Console`` on stdout (rich is imported here, lazily)."""
    from rich.console import Console

    if not os.environ.get("COLUMNS", "").isdigit() and not sys.stdout.isatty():
        kw.setdefault("width", PIPE_WIDTH)
    return Console(**kw)
