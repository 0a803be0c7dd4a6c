"""The one progress display of the command line: a transient bar on stderr, drawn with rich.

:class:`TerminalProgress` implements :class:`localmap.progress.Progress`, the protocol the model
packages report through; every command obtains it from :func:`localmap.cli.common.progress`, so
all commands share one policy (shown only when stderr is a terminal and neither
``--no-progress`` nor ``--quiet`` is given) and one look (description, bar, done/total, time).
"""

from __future__ import annotations

from localmap.cli.console import _safe_console_class

from localmap.progress import Progress


class TerminalProgress(Progress):
    """One rich bar at a time; ``start`` replaces it. Disabled: every call does nothing.
    Re-entering (a model opening the reporter the command already opened) is harmless."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None
        self._depth = 0

    def __enter__(self) -> TerminalProgress:
        self._depth += 1
        if self.enabled and self._depth == 1:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                                       TextColumn, TimeElapsedColumn)

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=_safe_console_class()(stderr=True), transient=True)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._depth -= 1
        if self._bar is not None and self._depth == 0:
            self._bar.__exit__(*exc)
            self._bar = self._task = None

    def start(self, description: str, total: float | None = None) -> None:
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def update(self, completed: float | None = None, *, description: str | None = None) -> None:
        if self._bar is None or self._task is None:
            return
        kw = {} if description is None else {"description": description}
        if completed is not None:
            kw["completed"] = completed
        self._bar.update(self._task, **kw)

    def advance(self, amount: float = 1) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)
