"""Opening the text files users bring: plain, ``.gz`` or ``.xz``, chosen by magic bytes.

Nothing kernel-specific here; every reader in :mod:`localmap.ingest` goes through
:func:`open_text` so compressed and plain captures behave the same.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
from pathlib import Path

from localmap.errors import LocalmapError

_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"


def resolve(path: Path) -> Path:
    """``path`` itself, or ``path.gz``/``path.xz`` when only a compressed copy exists."""
    path = Path(path)
    if path.exists():
        return path
    for ext in (".gz", ".xz"):
        alt = path.with_name(path.name + ext)
        if alt.exists():
            return alt
    raise LocalmapError("no such file (also looked for .gz and .xz)", path)


def open_text(path: Path) -> io.TextIOBase:
    """Open ``path`` for reading text, decompressing gzip or xz transparently."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        raise LocalmapError("no such file", path) from None
    except IsADirectoryError:
        raise LocalmapError("is a directory, expected a file", path) from None
    except OSError as exc:
        raise LocalmapError(f"cannot read: {exc.strerror}", path) from None
    if magic.startswith(_GZIP):
        raw = gzip.open(path, "rb")
    elif magic.startswith(_XZ):
        raw = lzma.open(path, "rb")
    else:
        raw = open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)


def open_text_stream(path: Path) -> tuple[io.TextIOBase, "io.BufferedReader", int]:
    """Like :func:`open_text`, plus the underlying (possibly compressed) file and its size, so
    a reader can report progress as the share of the file's bytes consumed."""
    path = Path(path)
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise LocalmapError("no such file", path) from None
    except IsADirectoryError:
        raise LocalmapError("is a directory, expected a file", path) from None
    except OSError as exc:
        raise LocalmapError(f"cannot read: {exc.strerror}", path) from None
    magic = raw.read(6)
    raw.seek(0)
    size = os.fstat(raw.fileno()).st_size
    if magic.startswith(_GZIP):
        dec = gzip.GzipFile(fileobj=raw, mode="rb")
    elif magic.startswith(_XZ):
        dec = lzma.LZMAFile(raw, "rb")
    else:
        dec = raw
    text = io.TextIOWrapper(dec, encoding="utf-8", errors="replace", newline=None)
    return text, raw, size


def read_text(path: Path) -> str:
    """Whole file as text; compressed input is detected as in :func:`open_text`."""
    try:
        with open_text(path) as fh:
            return fh.read()
    except (EOFError, OSError, lzma.LZMAError) as exc:
        if isinstance(exc, LocalmapError):
            raise
        raise LocalmapError(f"truncated or corrupt compressed file ({exc})", path) from None
