"""Turn the capture script's output into a bundle directory, and check that bundle.

Models nothing in the kernel: this is the receiving end of ``guest/capture.sh``, shared by the
QEMU lab (the script's records arrive on the serial console, mixed with kernel messages) and by
``localmap capture`` on a live host (they arrive on a pipe). The bundle layout is the one of the
shared data README: ``trace.gz``, ``dmesg``, ``meminfo.<phase>``, ``vmallocinfo.gz``,
``kallsyms.gz``, ``config.gz``, ``cpus``, ``uname``, ``cmdline``, ``event_format``.

Validation reads the files as the capture produced them: the ftrace header's
``entries-in-buffer/entries-written`` (equal means no event was lost), the ``%p`` values of the
percpu events' ``base_addr`` (arm64 kernel addresses have the top bit set; hashed ones look like
``00000000xxxxxxxx``),
and the ``percpu:`` first-chunk line in ``dmesg``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import importlib.resources
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from localmap.errors import LocalmapError
from localmap.fileio import inflate, safe_name, write_atomic

MARK = "@@LOCALMAP"

# name in the script -> (file in the bundle, stored gzip-compressed?)
BUNDLE_FILES: dict[str, tuple[str, bool]] = {
    "trace": ("trace.gz", True),
    "event_format": ("event_format", False),
    "dmesg": ("dmesg", False),
    "vmallocinfo": ("vmallocinfo.gz", True),
    "kallsyms": ("kallsyms.gz", True),
    "config": ("config.gz", True),
    "cpus": ("cpus", False),
    "uname": ("uname", False),
    "cmdline": ("cmdline", False),
    # lab module phase: "NAME loaded|failed" per insmod, "IFACE up" (--net), then
    # "NAME unloaded|busy" per rmmod
    "modules": ("modules", False),
}
REQUIRED = ("trace.gz", "dmesg", "cpus", "config.gz")

_B64 = re.compile(r"^[A-Za-z0-9+/=]+$")
_FIRST_CHUNK = re.compile(r"percpu: (Embedded \d+ pages/cpu|\d+ \d+K pages/cpu) s\d+ r\d+ d\d+")
_ENTRIES = re.compile(r"entries-in-buffer/entries-written: (\d+)/(\d+)")
_PTR = re.compile(r"\b(base_addr)=([0-9a-fx()_A-Za-z]+)")


def guest_script() -> bytes:
    """The capture script shipped as package data (POSIX sh, runs under busybox)."""
    return (importlib.resources.files("localmap.lab") / "guest" / "capture.sh").read_bytes()


def bundle_filename(name: str) -> tuple[str, bool]:
    if name.startswith("meminfo."):
        if safe_name(name) is None:          # a name from the guest names no other file
            raise KeyError(name)
        return name, False
    if name not in BUNDLE_FILES:
        raise KeyError(name)
    return BUNDLE_FILES[name]


@dataclass
class SplitResult:
    files: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    phases: list[str] = field(default_factory=list)
    done: bool = False
    foreign_lines: int = 0  # console lines inside a record that were not base64 (kernel noise)


def split_console(
    lines: Iterable[str],
    out_dir: Path,
    on_event: Callable[[str, str], None] | None = None,
    source: str = "console",
) -> SplitResult:
    """Write the files carried by the capture records in ``lines`` into ``out_dir``.

    ``on_event(kind, name)`` is called for ``phase``, ``file`` and ``done`` records so that the
    caller can show progress while the lines arrive.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = SplitResult()
    current: str | None = None
    chunks: list[str] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n").replace("\r", "")
        pos = line.find(MARK + " ")
        if pos >= 0:
            words = line[pos + len(MARK) + 1 :].split(" ", 2)
            kind = words[0]
            name = words[1] if len(words) > 1 else ""
            if kind == "file":
                if current is not None:
                    raise LocalmapError(f"record {current!r} was not closed before {name!r}", source, lineno)
                current, chunks = name, []
            elif kind == "end":
                if current != name:
                    raise LocalmapError(f"unexpected end of record {name!r}", source, lineno)
                _write_record(out_dir, name, chunks, source, lineno)
                res.files.append(name)
                current = None
            elif kind == "phase":
                res.phases.append(name)
            elif kind == "missing":
                res.missing[name] = words[2] if len(words) > 2 else "not available"
            elif kind == "done":
                res.done = True
            if on_event is not None and kind in ("phase", "file", "done"):
                on_event(kind, name)
            continue
        if current is not None:
            s = line.strip()
            if not s:
                continue
            if _B64.match(s):
                chunks.append(s)
            else:
                res.foreign_lines += 1
    if current is not None:
        raise LocalmapError(f"output ended inside record {current!r} (capture cut short?)", source)
    return res


def _write_record(out_dir: Path, name: str, chunks: list[str], source: str, lineno: int) -> None:
    try:
        packed = base64.b64decode("".join(chunks), validate=True)
        data = inflate(packed, "gzip", MAX_RECORD_BYTES)
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise LocalmapError(f"record {name!r} is corrupt: {exc}", source, lineno) from None
    try:
        fname, compressed = bundle_filename(name)
    except KeyError:
        raise LocalmapError(f"unknown record {name!r}", source, lineno) from None
    path = out_dir / fname
    write_atomic(path, gzip.compress(data, compresslevel=6, mtime=0) if compressed else data)


@dataclass
class Validation:
    problems: list[str] = field(default_factory=list)  # the bundle is unusable or misleading
    notes: list[str] = field(default_factory=list)  # missing extras, said plainly
    first_chunk: str | None = None
    events: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_bundle(path: Path) -> Validation:
    """Check a bundle directory: all files present, no lost events, real pointers, first chunk."""
    path = Path(path)
    v = Validation()
    for f in REQUIRED:
        if not (path / f).is_file():
            v.problems.append(f"{f} is missing")
    for f in ("vmallocinfo.gz", "kallsyms.gz", "uname", "cmdline", "event_format", "meminfo.boot"):
        if not (path / f).is_file():
            v.notes.append(f"{f} is missing")
    if (path / "dmesg").is_file():
        m = _FIRST_CHUNK.search((path / "dmesg").read_text(errors="replace"))
        if m:
            v.first_chunk = m.group(0)
        else:
            v.problems.append(
                "dmesg has no 'percpu:' first-chunk line (the kernel log was overwritten; "
                "boot with a larger log_buf_len=)"
            )
    if (path / "trace.gz").is_file():
        _validate_trace(path / "trace.gz", v)
    if (path / "kallsyms.gz").is_file():
        with gzip.open(path / "kallsyms.gz", "rt", errors="replace") as fh:
            head = [fh.readline() for _ in range(50)]
        if head and all(line.startswith("0000000000000000 ") for line in head if line.strip()):
            v.notes.append("kallsyms addresses are zero (kptr_restrict): run as root with "
                           "kernel.kptr_restrict=0 to resolve call sites")
    return v


def _validate_trace(trace: Path, v: Validation) -> None:
    hashed = 0
    with gzip.open(trace, "rt", errors="replace") as fh:
        for line in fh:
            if line.startswith("#"):
                m = _ENTRIES.search(line)
                if m and m.group(1) != m.group(2):
                    lost = int(m.group(2)) - int(m.group(1))
                    v.problems.append(
                        f"the trace lost {lost} events (buffer too small: raise "
                        "trace_buf_size= or --buffer-kb)"
                    )
                continue
            if "percpu_" not in line:
                if "LOST" in line and "EVENTS" in line:
                    v.problems.append("the trace reports lost events")
                continue
            v.events += 1
            if hashed < 1:
                for _, val in _PTR.findall(line):
                    if not _is_kernel_pointer(val):
                        hashed += 1
                        break
    if v.events == 0:
        v.problems.append("the trace holds no percpu events (tracepoints not enabled?)")
    if hashed:
        v.problems.append(
            "the trace shows hashed pointers: boot with no_hash_pointers to get real addresses"
        )


def _is_kernel_pointer(val: str) -> bool:
    """A real arm64 kernel VA lies in the upper half; ``%p`` hashes print 32 significant bits."""
    try:
        return int(val, 16) >> 63 == 1
    except ValueError:  # "(____ptrval____)" and the like
        return False


MAX_RECORD_BYTES = 1 << 30      # one file of a guest's bundle, decompressed
