"""The console every command prints its results to: rich on stdout.

Width: ``COLUMNS`` when set, else the terminal's width; output to a file or a pipe without
``COLUMNS`` is laid out for :data:`PIPE_WIDTH` columns (rich's 80 would wrap most tables).
"""

from __future__ import annotations

import os
import sys

PIPE_WIDTH = 140


def stdout_console(**kw):
    """A ``rich.console.Console`` on stdout (rich is imported here, lazily) that shows control
    characters as escapes."""
    if not os.environ.get("COLUMNS", "").isdigit() and not sys.stdout.isatty():
        kw.setdefault("width", PIPE_WIDTH)
    return _safe_console_class()(**kw)


def _safe_console_class():
    """A rich Console that shows control characters of any string it renders as escapes (an
    ESC from a bundle moves no cursor), and prints text whose markup does not parse as plain
    text instead of failing. Input-derived strings inside markup still need :func:`safe`."""
    from rich.console import Console
    from rich.errors import MarkupError

    class SafeConsole(Console):
        def render_str(self, text, **kw):
            text = plain(text)
            try:
                return super().render_str(text, **kw)
            except MarkupError:
                return super().render_str(text, **{**kw, "markup": False})

    return SafeConsole


# --- terminal safety: text from inputs is shown as text -------------------------------------

_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0, 9), 11, 12, *range(14, 32), 127)}
_CONTROL.update({c: f"\\x{c:02x}" for c in range(0x80, 0xa0)})
_CONTROL[13] = "\\r"


def plain(text: object) -> str:
    """``text`` with every control character (ESC, BEL, CR, C1 codes; not newline or tab)
    shown as an escape: it can move no cursor and open no hyperlink."""
    return str(text).translate(_CONTROL)


def safe(text: object) -> str:
    """``text`` (from an input: a path, a uname, a call site) escaped for rich markup and
    stripped of control characters, for a string that is printed as markup."""
    from rich.markup import escape

    return escape(plain(text))


def safe_row(table, *cells) -> None:
    """``table.add_row`` with every text cell made :func:`safe` (rich reads cells as markup)."""
    table.add_row(*(safe(c) if isinstance(c, str) else c for c in cells))
