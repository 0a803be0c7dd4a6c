"""Progress of long steps, as calls a model makes, free of any display.

A long-running API (the replay, the site analysis, a lab capture, the main job) takes a
``progress`` argument and reports through the three methods of :class:`Progress`. This base
class shows nothing; the command line passes a reporter that draws one bar on stderr
(``localmap.cli.progress``), so the model packages never import a display library.
"""

from __future__ import annotations


class Progress:
    """Reports nothing; subclasses display. ``start`` begins a step (ending the previous one),
    ``update`` moves it, ``advance`` adds to it. Usable as a context manager around the work
    (a display is closed on exit)."""

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def start(self, description: str, total: float | None = None) -> None:
        """Begin a step of ``total`` units (None: unknown length)."""

    def update(self, completed: float | None = None, *, description: str | None = None) -> None:
        """Set how much of the current step is done, and/or rename it."""

    def advance(self, amount: float = 1) -> None:
        """Add ``amount`` to the current step."""


SILENT = Progress()


def as_progress(progress: Progress | None | bool) -> Progress:
    """The reporter to use: ``None`` or ``False`` report nothing. ``True`` is refused: a model
    cannot pick a display; pass the command line's reporter."""
    if progress is None or progress is False:
        return SILENT
    if isinstance(progress, Progress):
        return progress
    raise TypeError(f"progress must be a localmap.progress.Progress or None, not {progress!r}")
