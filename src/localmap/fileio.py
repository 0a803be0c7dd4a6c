"""Reading and writing files safely: what a hostile or broken input cannot make localmap do.

Models nothing of the kernel. Every file localmap reads on a user's behalf is opened by
:func:`open_input`, which refuses what is not a regular file (a FIFO would block forever, a
device never ends) before reading a byte; every file it writes for the user (the HTML report,
``--decisions``, a saved profile, a bundle's files) goes through :func:`write_atomic`: the
bytes go to a new temporary file in the same folder, which is then renamed over the name, so a
symbolic link or another file at that name is replaced, never followed or half-written.
:func:`safe_name` turns a name that came from elsewhere (a guest's console) into one that can
only name a file inside the folder it is meant for.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import zlib
import lzma
from pathlib import Path

from localmap.errors import LocalmapError

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def open_input(path: Path | str, what: str = "file"):
    """Open ``path`` for reading bytes, refusing anything but a regular file (without ever
    blocking on a FIFO: it is opened non-blocking and checked before it is read)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LocalmapError(f"no such {what}", path) from None
    except IsADirectoryError:
        raise LocalmapError(f"is a folder, expected a {what}", path) from None
    except OSError as exc:
        raise LocalmapError(f"cannot read: {exc.strerror}", path) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise LocalmapError(f"is {kind}, expected a regular {what}", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input_bytes(path: Path | str, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked before reading)."""
    with open_input(path, what) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise LocalmapError(f"is {size} bytes, more than the {_mib(limit)} a {what} may be",
                                path)
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise LocalmapError(f"cannot read: {exc.strerror}", path) from None
    if len(data) > limit:
        raise LocalmapError(f"is more than the {_mib(limit)} a {what} may be", path)
    return data


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's bytes, read a MiB at a time (packages and tarballs are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _mib(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def write_atomic(path: Path | str, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder renamed over it:
    a symbolic link at ``path`` is replaced, not followed; readers never see half a file."""
    path = Path(path)
    blob = data.encode("utf-8") if isinstance(data, str) else data
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name[:40]}.", suffix=".tmp")
    except OSError as exc:
        raise LocalmapError(f"cannot write: {exc.strerror}", path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.chmod(tmp, mode & ~_umask())
        if path.is_dir() and not path.is_symlink():
            raise LocalmapError("is a folder, cannot write a file there", path)
        os.replace(tmp, path)
    except OSError as exc:
        raise LocalmapError(f"cannot write: {exc.strerror}", path) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(name: str, limit: int = 64) -> str | None:
    """``name`` if it can only name a plain file inside a folder (letters, digits, ``._+-``,
    not starting with a dot, at most ``limit`` characters), else None."""
    if not name or len(name) > limit or name.startswith(".") or _UNSAFE.search(name):
        return None
    return name


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters shown as ``\\xNN`` escapes, cut to ``limit``
    characters: safe to put into a message."""
    out = "".join(c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" if ord(c) < 256
                  else f"\\u{ord(c):04x}" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


MAX_IMAGE_BYTES = 512 << 20     # a kernel image or vmlinux, decompressed (arm64's is ~50 MiB)


class InflateTooBig(OSError):
    """:func:`inflate` stopped at its output bound."""


def inflate(blob: bytes, kind: str = "gzip", limit: int = MAX_IMAGE_BYTES,
            first_stream: bool = False) -> bytes:
    """``blob`` decompressed (``gzip``, possibly several members, or ``xz``), refusing more than
    ``limit`` bytes of output as it goes: a small file cannot inflate past the bound before it
    is noticed. ``first_stream``: only the stream ``blob`` starts with; what follows it is not
    read (a payload inside other bytes, as in a kernel image). Raises ``OSError`` (too big:
    :class:`InflateTooBig`, or corrupt) or ``EOFError`` (cut short)."""
    out = bytearray()
    data = blob
    while data:
        if kind == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        else:
            d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            while not d.eof:
                if kind == "gzip":
                    chunk = d.decompress(data, 1 << 20)
                    data = d.unconsumed_tail
                else:
                    chunk = d.decompress(data, 1 << 20)
                    data = b""
                out += chunk
                if len(out) > limit:
                    raise InflateTooBig(f"inflates to more than {_mib(limit)}")
                if not chunk and not data and (kind == "gzip" or d.needs_input):
                    break
        except (zlib.error, lzma.LZMAError) as exc:
            raise OSError(f"corrupt {kind} data ({exc})") from None
        if not d.eof:
            raise EOFError(f"the {kind} stream ends early")
        if first_stream:
            break
        data = d.unused_data
        if kind == "gzip" and data and data[:2] != b"\x1f\x8b":
            break               # trailing bytes after the last member (padding)
    return bytes(out)
