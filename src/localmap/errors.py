"""One error type for everything a user can get wrong.

Every problem with input (a file, a line, an option) is raised as :class:`LocalmapError` and the
CLI prints it as one line ``localmap: FILE:LINE: message`` with exit status 2, never a traceback.
"""

from __future__ import annotations


class LocalmapError(Exception):
    """A user-facing error: bad input, impossible configuration, missing data."""

    def __init__(self, message: str, path: object | None = None, line: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.message
