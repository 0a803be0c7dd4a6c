"""Build a gzip-compressed ``newc`` cpio initramfs in pure Python.

Models the kernel's initramfs unpacker input (init/initramfs.c reads "070701" newc records).
Deliberate difference from ``cpio -o -H newc``: nothing is read from the host file system but
the given payloads, every entry is owned by root with mtime 0, and device nodes (``/dev/console``,
which the kernel needs to give ``/init`` its stdin/stdout before devtmpfs is mounted) are written
without needing root, so the same inputs always give the same bytes.
"""

from __future__ import annotations

import gzip
import stat
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str  # path inside the archive, without a leading "/"
    mode: int  # full st_mode (type and permission bits)
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _align4(n: int) -> int:
    return (4 - n % 4) % 4


def newc(entries: list[Entry]) -> bytes:
    """Serialise ``entries`` (and the trailer) as a newc cpio archive."""
    out = bytearray()
    for ino, e in enumerate([*entries, Entry("TRAILER!!!", 0)], 1):
        name = e.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(e.mode) else 1
        fields = (
            ino if e.name != "TRAILER!!!" else 0,
            e.mode, 0, 0, nlink if e.name != "TRAILER!!!" else 1, 0, len(e.data),
            0, 0, e.rdev[0], e.rdev[1], len(name), 0,
        )
        out += b"070701" + b"".join(b"%08X" % f for f in fields)
        out += name + b"\0" * _align4(110 + len(name))
        out += e.data + b"\0" * _align4(len(e.data))
    return bytes(out)


def busybox_initramfs(busybox: bytes, init: bytes, extra: list[Entry] | None = None) -> bytes:
    """An initramfs whose ``/init`` is the ``init`` script run by a static busybox ``/bin/sh``."""
    d = stat.S_IFDIR | 0o755
    entries = [
        Entry("bin", d), Entry("sbin", d), Entry("usr", d), Entry("usr/bin", d),
        Entry("usr/sbin", d), Entry("dev", d), Entry("proc", d), Entry("sys", d),
        Entry("tmp", stat.S_IFDIR | 0o1777), Entry("root", d),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3)),
        Entry("bin/busybox", stat.S_IFREG | 0o755, busybox),
        Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        Entry("init", stat.S_IFREG | 0o755, init),
        *(extra or []),
    ]
    return gzip.compress(newc(entries), compresslevel=6, mtime=0)
