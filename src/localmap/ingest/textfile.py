"""Opening the text files users bring: plain, ``.gz`` or ``.xz``, chosen by magic bytes.

Nothing kernel-specific here; every reader in :mod:`localmap.ingest` goes through this module,
so compressed and plain captures behave the same and every failure is one
:class:`~localmap.errors.LocalmapError` naming the file:

* only regular files are read (:func:`localmap.fileio.open_input`: a FIFO or a device is
  refused before a byte is read);
* a damaged compressed file (bad header, bad data, bad checksum, cut short) is refused;
* gzip is decompressed by ISA-L (``isal.igzip``, the same format as the standard library's
  ``gzip``, three to four times faster: a kallsyms is most of a replay's fixed cost);
* what a file may ask for is bounded, checked as it is decompressed, never after: a whole-file
  read (:func:`read_text`) stops at :data:`MAX_TEXT_BYTES`, a streamed line
  (:func:`iter_lines`) at :data:`MAX_LINE_CHARS`.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import zlib
from pathlib import Path
from typing import Iterator

from isal import igzip, isal_zlib

from localmap.errors import LocalmapError
from localmap.fileio import open_input

_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"

MAX_TEXT_BYTES = 32 << 20   # a file read whole (dmesg, config, meminfo, ...), decompressed
MAX_LINE_CHARS = 1 << 20    # one line of a streamed file (trace, kallsyms)
BLOCK_CHARS = 1 << 16       # what a streamed reader decodes at a time

# what the decompressors raise on damaged input (gzip.BadGzipFile is an OSError)
DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error, isal_zlib.error, lzma.LZMAError,
                     UnicodeError)


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


def corrupt(path: Path | str, exc: BaseException, after: str = "") -> LocalmapError:
    """The one error for a file that cannot be decompressed or decoded."""
    if isinstance(exc, LocalmapError):
        return exc
    if isinstance(exc, EOFError):
        why = "truncated: the compressed stream ends early"
    elif isinstance(exc, lzma.LZMAError):
        why = f"corrupt xz data ({exc})"
    elif isinstance(exc, (zlib.error, isal_zlib.error, gzip.BadGzipFile)):
        why = f"corrupt gzip data ({exc})"
    elif isinstance(exc, OSError) and exc.strerror:
        why = f"cannot read: {exc.strerror}"
    else:
        why = f"corrupt or unreadable ({exc})"
    return LocalmapError(why + after, path)


def _decompressor(raw, path: Path):
    """The byte stream of ``raw`` (an open regular file), decompressed by its magic."""
    try:
        magic = raw.read(6)
        raw.seek(0)
    except OSError as exc:
        raise corrupt(path, exc) from None
    if magic.startswith(_GZIP):
        return igzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(_XZ):
        return lzma.LZMAFile(raw, "rb")
    return raw


def open_text(path: Path) -> io.TextIOBase:
    """Open ``path`` for reading text, decompressing gzip or xz transparently (errors while
    reading are the caller's: see :data:`DECOMPRESS_ERRORS` and :func:`corrupt`)."""
    text, _, _ = open_text_stream(path)
    return text


def open_text_stream(path: Path) -> tuple[io.TextIOBase, "io.BufferedReader", int]:
    """Like :func:`open_text`, plus the underlying (possibly compressed) file and its size, so
    a reader can report progress as the share of the file's bytes consumed."""
    path = Path(path)
    raw = open_input(path)
    try:
        size = os.fstat(raw.fileno()).st_size
        dec = _decompressor(raw, path)
        text = io.TextIOWrapper(dec, encoding="utf-8", errors="replace", newline=None)
    except BaseException:
        raw.close()
        raise
    return text, raw, size


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """Whole file as text (compressed input is detected as in :func:`open_text`), refused when
    it decompresses to more than ``limit`` bytes."""
    path = Path(path)
    with open_input(path) as raw:
        try:
            dec = _decompressor(raw, path)
            data = dec.read(limit + 1)
        except DECOMPRESS_ERRORS as exc:
            raise corrupt(path, exc) from None
    if len(data) > limit:
        raise LocalmapError(f"holds more than {limit >> 20} MiB of text (decompressed); "
                            "not a capture file of this kind?", path)
    return data.decode("utf-8", "replace")


class LineReader:
    """The lines of a text stream without their ends, read a block at a time, each at most
    :data:`MAX_LINE_CHARS` long. A last line without an end (the file was cut mid-line) is
    kept in ``cut_text`` and yielded only with ``keep_cut``; ``lines`` counts the lines read,
    that one included."""

    def __init__(self, fh: io.TextIOBase, path: Path | str, max_line: int = MAX_LINE_CHARS,
                 keep_cut: bool = True):
        self.fh = fh
        self.path = path
        self.max_line = max_line
        self.keep_cut = keep_cut
        self.cut_text: str | None = None
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        read, max_line = self.fh.read, self.max_line
        rest = ""
        try:
            while True:
                block = read(BLOCK_CHARS)
                if not block:
                    break
                parts = (rest + block).split("\n") if rest else block.split("\n")
                rest = parts.pop()
                if len(rest) > max_line:
                    raise LocalmapError(
                        f"line longer than {max_line >> 10} KiB (not a text capture of this "
                        "kind?)", self.path, self.lines + len(parts) + 1)
                self.lines += len(parts)
                yield from parts
        except DECOMPRESS_ERRORS as exc:
            raise corrupt(self.path, exc, f" after line {self.lines}") from None
        if rest:
            self.cut_text = rest
            self.lines += 1
            if self.keep_cut:
                yield rest


def lines_ending_with(path: Path | str, suffixes: tuple[str, ...],
                      max_line: int = MAX_LINE_CHARS,
                      numbered: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line of a (possibly compressed) text file that ends with one
    of ``suffixes``, found a block at a time by substring search (one search for the suffixes'
    common beginning), without splitting the file into lines: the fast way to pick a few lines
    out of a large file (a kallsyms). With ``numbered=False`` lines are not counted and the
    number is 0 (ask again with numbers to name a line in an error). Same bounds and errors as
    :class:`LineReader`."""
    common = os.path.commonprefix(list(suffixes))
    fh, raw, _ = open_text_stream(Path(path))
    lines, rest = 0, ""
    try:
        while True:
            block = fh.read(BLOCK_CHARS)
            text = rest + block
            if block:
                cut = text.rfind("\n") + 1
                text, rest = text[:cut], text[cut:]
                if len(rest) > max_line:
                    raise LocalmapError(
                        f"line longer than {max_line >> 10} KiB (not a text capture of this "
                        "kind?)", path, lines + text.count("\n") + 1)
            else:
                text += "\n" if text else ""           # a last line without its end
            hits = []
            if common:
                i = text.find(common)
                while i >= 0:
                    e = text.find("\n", i)
                    for suffix in suffixes:
                        if e - i == len(suffix) and text.startswith(suffix, i):
                            hits.append((text.rfind("\n", 0, i) + 1, e))
                    i = text.find(common, i + 1)
            else:
                for suffix in suffixes:
                    needle = suffix + "\n"
                    i = text.find(needle)
                    while i >= 0:
                        end = i + len(suffix)
                        hits.append((text.rfind("\n", 0, i) + 1, end))
                        i = text.find(needle, end)
                hits.sort()
            for start, end in hits:
                yield (lines + text.count("\n", 0, start) + 1 if numbered else 0), \
                    text[start:end]
            if numbered:
                lines += text.count("\n")
            if not block:
                break
    except DECOMPRESS_ERRORS as exc:
        raise corrupt(path, exc, f" after line {lines}" if numbered else "") from None
    finally:
        fh.close()
        raw.close()


def iter_lines(path: Path | str, max_line: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of a (possibly compressed) text file, without their ends (see
    :class:`LineReader`)."""
    fh, raw, _ = open_text_stream(Path(path))
    try:
        yield from LineReader(fh, path, max_line)
    finally:
        fh.close()
        raw.close()
