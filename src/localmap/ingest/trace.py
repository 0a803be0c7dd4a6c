"""Reader for the percpu tracepoints (include/trace/events/percpu.h) as users capture them.

Accepted, plain or compressed (``.gz``/``.xz``):

- the tracefs ``trace`` file (``/sys/kernel/tracing/trace``), with or without the irq/preempt
  latency columns;
- ``trace-cmd report`` output (``cpus=N`` header, ``CPU:N [LOST k EVENTS]`` markers);
- ``perf script`` output (``comm pid [cpu] ts: percpu:percpu_alloc_percpu: ...``);
- the older line format without ``call_site``, ``bytes_alloc`` and ``gfp_flags`` (before 5.x).

Lines of other tracepoints are skipped and counted; a ``percpu_*`` event the model does not know,
a line cut short, or hashed pointers (``%p`` printed without ``no_hash_pointers``) are refused
with the file and line. Lost events (ring-buffer overruns) are reported, not hidden: a replay of a
trace with lost events is flagged partial.

The model differs from the kernel's own printing only in what it keeps: addresses become ints,
``call_site`` keeps its symbolic text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from localmap.errors import LocalmapError
from localmap.ingest.textfile import open_text

ALLOC, FREE, ALLOC_FAIL, CREATE, DESTROY = range(5)
KIND_NAMES = {
    "percpu_alloc_percpu": ALLOC,
    "percpu_free_percpu": FREE,
    "percpu_alloc_percpu_fail": ALLOC_FAIL,
    "percpu_create_chunk": CREATE,
    "percpu_destroy_chunk": DESTROY,
}
_REQUIRED = {
    ALLOC: ("reserved", "is_atomic", "size", "align", "base_addr", "off", "ptr"),
    FREE: ("base_addr", "off", "ptr"),
    ALLOC_FAIL: ("reserved", "is_atomic", "size", "align"),
    CREATE: ("base_addr",),
    DESTROY: ("base_addr",),
}
_POINTER_FIELDS = ("base_addr", "ptr")

_EVENT_RE = re.compile(r"(?:^|[\s:])(?:percpu:)?(percpu_[a-z_]+):(?:\s+|$)")
_FIELD_RE = re.compile(r"(\w+)=(\S*)")
_CPU_RE = re.compile(r"\[(\d+)\]")
_TS_RE = re.compile(r"(\d+\.\d+):?\s*$")
_TASK_RE = re.compile(r"^\s*(.*?)[-\s](\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]")
_LOST_TRACECMD_RE = re.compile(r"CPU:\s*(\d+)\s*\[LOST\s+(\d+)\s+EVENTS\]")
_ENTRIES_RE = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)")
_HASHED_TOKENS = ("(____ptrval____)", "(ptrval)")
# an event line of any tracepoint: "[cpu] ... 12.345678: name:" (tracefs, trace-cmd, perf)
_OTHER_EVENT_RE = re.compile(r"\[\d+\].*\d+\.\d+:\s+\S+:")


def s_trim(line: str) -> str:
    line = line.strip()
    return line if len(line) <= 70 else line[:67] + "..."


class PcpuEvent:
    """One percpu tracepoint hit. ``kind`` is one of ALLOC, FREE, ALLOC_FAIL, CREATE, DESTROY."""

    __slots__ = (
        "kind", "line", "cpu", "ts", "task", "pid", "call_site", "reserved", "is_atomic",
        "size", "align", "base_addr", "off", "ptr", "bytes_alloc", "gfp_flags",
    )

    def __init__(self, kind: int, line: int):
        self.kind = kind
        self.line = line
        self.cpu = -1
        self.ts = 0.0
        self.task = ""
        self.pid = -1
        self.call_site = ""
        self.reserved = False
        self.is_atomic = False
        self.size = 0
        self.align = 0
        self.base_addr = 0
        self.off = 0
        self.ptr = 0
        self.bytes_alloc = -1
        self.gfp_flags = ""

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        name = [k for k, v in KIND_NAMES.items() if v == self.kind][0]
        return (f"PcpuEvent({name} line={self.line} size={self.size} align={self.align} "
                f"base={self.base_addr:#x} off={self.off})")


@dataclass
class Trace:
    """A parsed trace: the percpu events in file order plus what the file said about itself."""

    path: str
    events: list[PcpuEvent]
    format: str = "tracefs"
    old_format: bool = False
    lost_events: int = 0
    lost_detail: list[str] = field(default_factory=list)
    skipped_lines: int = 0
    nr_cpus_header: int | None = None

    @property
    def nr_allocs(self) -> int:
        return sum(1 for e in self.events if e.kind == ALLOC)


def _int(value: str, name: str, path: str, lineno: int) -> int:
    try:
        return int(value, 0) if value.startswith("0x") else int(value)
    except ValueError:
        raise LocalmapError(f"field {name}={value!r} is not a number", path, lineno) from None


def _hex(value: str, name: str, path: str, lineno: int) -> int:
    if value in _HASHED_TOKENS or value.startswith("("):
        raise LocalmapError(
            f"{name}={value}: pointers are hidden (%p printed before the hashing key was ready); "
            "boot the kernel with no_hash_pointers to capture real addresses", path, lineno)
    try:
        return int(value, 16)
    except ValueError:
        raise LocalmapError(f"field {name}={value!r} is not a hex address", path, lineno) from None


def parse_line(line: str, path: str = "<trace>", lineno: int = 0) -> PcpuEvent | None:
    """Parse one line; ``None`` for lines that hold no percpu event."""
    m = _EVENT_RE.search(line)
    if m is None:
        return None
    name = m.group(1)
    kind = KIND_NAMES.get(name)
    if kind is None:
        raise LocalmapError(
            f"unknown percpu event {name!r} (known: {', '.join(KIND_NAMES)})", path, lineno)
    ev = PcpuEvent(kind, lineno)
    prefix = line[: m.start()]         # (perf script puts "percpu:" before the name)
    cm = _CPU_RE.search(prefix)
    if cm:
        ev.cpu = int(cm.group(1))
    tm = _TS_RE.search(prefix.rstrip().rstrip(":") + ":")
    if tm:
        ev.ts = float(tm.group(1))
    km = _TASK_RE.match(prefix)
    if km:
        ev.task = km.group(1).strip()
        ev.pid = int(km.group(2))
    rest = line[m.end():]
    fields = dict(_FIELD_RE.findall(rest))
    missing = [f for f in _REQUIRED[kind] if f not in fields or fields[f] == ""]
    if missing:
        raise LocalmapError(
            f"{name} line is truncated or malformed: missing {', '.join(missing)} "
            f"(expected {' '.join(f + '=' for f in _REQUIRED[kind])})", path, lineno)
    if kind == ALLOC or kind == ALLOC_FAIL:
        ev.reserved = fields["reserved"] == "1"
        ev.is_atomic = fields["is_atomic"] == "1"
        ev.size = _int(fields["size"], "size", path, lineno)
        ev.align = _int(fields["align"], "align", path, lineno)
        ev.call_site = fields.get("call_site", "")
        if "bytes_alloc" in fields:
            ev.bytes_alloc = _int(fields["bytes_alloc"], "bytes_alloc", path, lineno)
        ev.gfp_flags = fields.get("gfp_flags", "")
    if kind != ALLOC_FAIL:
        ev.base_addr = _hex(fields["base_addr"], "base_addr", path, lineno)
    if kind == ALLOC or kind == FREE:
        ev.off = _int(fields["off"], "off", path, lineno)
        ev.ptr = _hex(fields["ptr"], "ptr", path, lineno)
    return ev


def _check_pointers(ev: PcpuEvent, path: str) -> None:
    """Refuse hashed pointers: %p hashes to 32 bits printed with the top half zero."""
    vals = [ev.base_addr] + ([ev.ptr] if ev.kind in (ALLOC, FREE) else [])
    if all(v >> 32 == 0 for v in vals) and any(vals):
        raise LocalmapError(
            f"pointers are hashed (base_addr={ev.base_addr:016x} has its top 32 bits clear, as "
            "%p prints without no_hash_pointers); boot with no_hash_pointers (or capture with "
            "`localmap capture`, which checks it) to get real addresses", path, ev.line)


def iter_events(path: Path | str, stats: dict | None = None,
                progress: Callable[[int], None] | None = None) -> Iterator[PcpuEvent]:
    """Yield the percpu events of a trace file in file order."""
    spath = str(path)
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    stats.setdefault("lost", 0)
    stats.setdefault("lost_detail", [])
    stats.setdefault("format", "tracefs")
    stats.setdefault("old_format", False)
    checked = False
    nbytes = 0
    with open_text(Path(path)) as fh:
        lineno = 0
        try:
            for line in fh:
                lineno += 1
                if progress is not None:
                    nbytes += len(line)
                    if lineno & 0x3FFF == 0:
                        progress(nbytes)
                if "percpu_" not in line:
                    s = line.strip()
                    if not s:
                        continue
                    if s.startswith("#"):
                        em = _ENTRIES_RE.search(s)
                        if em and em.group(1) != em.group(2):
                            lost = int(em.group(2)) - int(em.group(1))
                            stats["lost"] += lost
                            stats["lost_detail"].append(
                                f"ring buffer overwritten: {lost} events lost (line {lineno})")
                        continue
                    lm = _LOST_TRACECMD_RE.search(s)
                    if lm:
                        stats["lost"] += int(lm.group(2))
                        stats["lost_detail"].append(f"CPU {lm.group(1)}: {lm.group(2)} events lost "
                                                    f"(line {lineno})")
                        stats["format"] = "trace-cmd"
                        continue
                    if s.startswith("cpus=") or s.startswith("version ="):
                        stats["format"] = "trace-cmd"
                        if s.startswith("cpus="):
                            try:
                                stats["nr_cpus_header"] = int(s[5:])
                            except ValueError:
                                pass
                        continue
                    if s.startswith("CPU ") and s.endswith("is empty"):
                        stats["format"] = "trace-cmd"
                        continue
                    if not _OTHER_EVENT_RE.search(s):
                        raise LocalmapError(
                            f"not a trace line (truncated or not ftrace/trace-cmd/perf output): "
                            f"{s[:60]!r}", spath, lineno)
                    stats["skipped"] += 1          # another tracepoint's event
                    continue
                ev = parse_line(line, spath, lineno)
                if ev is None:
                    raise LocalmapError(f"percpu line truncated or malformed: {s_trim(line)!r} "
                                        "(expected 'percpu_<event>: field=value ...')",
                                        spath, lineno)
                if "percpu:percpu_" in line:
                    stats["format"] = "perf-script"
                if ev.kind == ALLOC and not ev.call_site and ev.bytes_alloc < 0:
                    stats["old_format"] = True
                if not checked and ev.kind in (ALLOC, FREE, CREATE, DESTROY):
                    _check_pointers(ev, spath)
                    checked = True
                yield ev
        except (EOFError, OSError) as exc:
            raise LocalmapError(f"truncated compressed trace after line {lineno} ({exc})",
                                spath, lineno) from None


def read_trace(path: Path | str, progress: Callable[[int], None] | None = None) -> Trace:
    """Parse a whole trace file (see the module docstring for the accepted formats)."""
    stats: dict = {}
    events = list(iter_events(path, stats, progress))
    if not events:
        raise LocalmapError("no percpu events found (expected percpu_alloc_percpu, "
                            "percpu_free_percpu, ... lines; was the percpu:* event enabled?)",
                            str(path))
    return Trace(path=str(path), events=events, format=stats["format"],
                 old_format=stats["old_format"], lost_events=stats["lost"],
                 lost_detail=stats["lost_detail"], skipped_lines=stats["skipped"],
                 nr_cpus_header=stats.get("nr_cpus_header"))
