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

Streaming: :func:`iter_records` reads the file line by line and yields one compact *record* (a
tuple, fields at the ``R_*`` indices) per event, holding nothing else; the replay consumes them
as they come. The two lines that make up almost every trace (``percpu_alloc_percpu`` and
``percpu_free_percpu`` in the tracefs/trace-cmd layout) go through one anchored regular
expression each, whose groups are exactly the fields (numbers and addresses are checked by the
expression itself; a field check of its own belongs in the two blocks of :func:`iter_records`
that build those records); every other line takes the general path (:func:`parse_line`). The line
prefix (task, pid, CPU, timestamp) of a fast-path record is kept as text and parsed on demand by
:func:`record_head` (its shape was checked by the expression). :func:`read_trace` and
:class:`PcpuEvent` are the whole-file, object-per-event view of the same records.

The model differs from the kernel's own printing only in what it keeps: addresses become ints,
``call_site`` keeps its symbolic text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from localmap.errors import LocalmapError
from localmap.ingest.textfile import open_text_stream

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

# record fields (a record is a plain tuple: cheap to make, to keep and to unpack)
R_KIND, R_LINE, R_BASE, R_OFF, R_SIZE, R_ALIGN, R_RESERVED, R_ATOMIC, R_PTR, R_HEAD, \
    R_CALL_SITE, R_BYTES_ALLOC, R_GFP = range(13)

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

# -- the fast path: tracefs / trace-cmd lines of the two hot events ----------------------------
# prefix: "TASK-PID [(TGID)] [CPU] [FLAGS] SECS.USECS" (task names may hold '-' and spaces)
_HEAD = r" *(.*?-\d+ +(?:\( *[-\d]+\) +)?\[\d+\] +(?:\S+ +)?\d+\.\d+)"
_FAST_ALLOC = re.compile(
    _HEAD + r": percpu_alloc_percpu: call_site=(\S*) reserved=([01]) is_atomic=([01]) "
    r"size=(\d+) align=(\d+) base_addr=([0-9a-f]+) off=(\d+) ptr=([0-9a-f]+)"
    r"(?: bytes_alloc=(\d+) gfp_flags=(\S*))?$").match
_FAST_FREE = re.compile(
    _HEAD + r": percpu_free_percpu: base_addr=([0-9a-f]+) off=(\d+) ptr=([0-9a-f]+)$").match
_HEAD_FIELDS = re.compile(
    r" *(.*?)-(\d+) +(?:\( *[-\d]+\) +)?\[(\d+)\] +(?:\S+ +)?(\d+\.\d+)$").match


def record_head(rec: tuple) -> tuple[str, int, int, float]:
    """(task, pid, cpu, timestamp) of a record."""
    h = rec[R_HEAD]
    if isinstance(h, tuple):
        return h
    task, pid, cpu, ts = _HEAD_FIELDS(h).groups()
    return task, int(pid), int(cpu), float(ts)


def record_ts(rec: tuple) -> float:
    h = rec[R_HEAD]
    if isinstance(h, tuple):
        return h[3]
    return float(h[h.rindex(" ") + 1:])


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

    @classmethod
    def from_record(cls, rec: tuple) -> "PcpuEvent":
        ev = cls(rec[R_KIND], rec[R_LINE])
        (ev.base_addr, ev.off, ev.size, ev.align, ev.reserved, ev.is_atomic, ev.ptr) = \
            rec[R_BASE:R_PTR + 1]
        ev.task, ev.pid, ev.cpu, ev.ts = record_head(rec)
        ev.call_site, ev.bytes_alloc, ev.gfp_flags = rec[R_CALL_SITE:]
        return ev

    def record(self) -> tuple:
        return (self.kind, self.line, self.base_addr, self.off, self.size, self.align,
                self.reserved, self.is_atomic, self.ptr, (self.task, self.pid, self.cpu, self.ts),
                self.call_site, self.bytes_alloc, self.gfp_flags)

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
    """Parse one line of any accepted layout; ``None`` for lines that hold no percpu event."""
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


def _check_pointers(rec: tuple, path: str) -> None:
    """Refuse hashed pointers: %p hashes to 32 bits printed with the top half zero."""
    vals = [rec[R_BASE]] + ([rec[R_PTR]] if rec[R_KIND] in (ALLOC, FREE) else [])
    if all(v >> 32 == 0 for v in vals) and any(vals):
        raise LocalmapError(
            f"pointers are hashed (base_addr={rec[R_BASE]:016x} has its top 32 bits clear, as "
            "%p prints without no_hash_pointers); boot with no_hash_pointers (or capture with "
            "`localmap capture`, which checks it) to get real addresses", path, rec[R_LINE])


def _other_line(line: str, stats: dict, spath: str, lineno: int) -> None:
    """A line without a percpu event: header, lost-events marker, another tracepoint, or junk."""
    s = line.strip()
    if not s:
        return
    if s.startswith("#"):
        em = _ENTRIES_RE.search(s)
        if em and em.group(1) != em.group(2):
            lost = int(em.group(2)) - int(em.group(1))
            stats["lost"] += lost
            stats["lost_detail"].append(
                f"ring buffer overwritten: {lost} events lost (line {lineno})")
        return
    lm = _LOST_TRACECMD_RE.search(s)
    if lm:
        stats["lost"] += int(lm.group(2))
        stats["lost_detail"].append(f"CPU {lm.group(1)}: {lm.group(2)} events lost "
                                    f"(line {lineno})")
        stats["format"] = "trace-cmd"
        return
    if s.startswith("cpus=") or s.startswith("version ="):
        stats["format"] = "trace-cmd"
        if s.startswith("cpus="):
            try:
                stats["nr_cpus_header"] = int(s[5:])
            except ValueError:
                pass
        return
    if s.startswith("CPU ") and s.endswith("is empty"):
        stats["format"] = "trace-cmd"
        return
    if not _OTHER_EVENT_RE.search(s):
        raise LocalmapError(
            f"not a trace line (truncated or not ftrace/trace-cmd/perf output): "
            f"{s[:60]!r}", spath, lineno)
    stats["skipped"] += 1          # another tracepoint's event


def iter_records(path: Path | str, stats: dict | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Iterator[tuple]:
    """Yield the percpu events of a trace file in file order, as records (see ``R_*``).

    ``stats`` receives what the file says about itself (format, lost events, skipped lines);
    ``progress(done, total)`` is called every few thousand lines with the bytes of the file
    (compressed, if it is) consumed so far.
    """
    spath = str(path)
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    stats.setdefault("lost", 0)
    stats.setdefault("lost_detail", [])
    stats.setdefault("format", "tracefs")
    stats.setdefault("old_format", False)
    fh, raw, total = open_text_stream(Path(path))
    fast_alloc, fast_free = _FAST_ALLOC, _FAST_FREE
    lineno = 0
    checked = False
    try:
        for line in fh:
            lineno += 1
            if not lineno & 0x3FFF and progress is not None:
                progress(raw.tell(), total)
            if "percpu_alloc_percpu: " in line:
                m = fast_alloc(line)
                if m is not None:
                    # the record of an allocation (the replay's hottest line)
                    head, cs, res, atom, size, align, base, off, ptr, ba, gfp = m.groups()
                    rec = (ALLOC, lineno, int(base, 16), int(off), int(size), int(align),
                           res == "1", atom == "1", int(ptr, 16), head, cs,
                           -1 if ba is None else int(ba), gfp or "")
                    if not checked:
                        _check_pointers(rec, spath)
                        checked = True
                    yield rec
                    continue
            elif "percpu_free_percpu: " in line:
                m = fast_free(line)
                if m is not None:
                    head, base, off, ptr = m.groups()
                    rec = (FREE, lineno, int(base, 16), int(off), 0, 0, False, False,
                           int(ptr, 16), head, "", -1, "")
                    if not checked:
                        _check_pointers(rec, spath)
                        checked = True
                    yield rec
                    continue
            elif "percpu_" not in line:
                _other_line(line, stats, spath, lineno)
                continue
            # the general path: other layouts, other percpu events, malformed lines
            ev = parse_line(line, spath, lineno)
            if ev is None:
                raise LocalmapError(f"percpu line truncated or malformed: {s_trim(line)!r} "
                                    "(expected 'percpu_<event>: field=value ...')",
                                    spath, lineno)
            if "percpu:percpu_" in line:
                stats["format"] = "perf-script"
            if ev.kind == ALLOC and not ev.call_site and ev.bytes_alloc < 0:
                stats["old_format"] = True
            rec = ev.record()
            if not checked and ev.kind != ALLOC_FAIL:
                _check_pointers(rec, spath)
                checked = True
            yield rec
        if progress is not None:
            progress(total, total)
    except (EOFError, OSError) as exc:
        raise LocalmapError(f"truncated compressed trace after line {lineno} ({exc})",
                            spath, lineno) from None
    finally:
        fh.close()
        raw.close()


def iter_events(path: Path | str, stats: dict | None = None,
                progress: Callable[[int, int], None] | None = None) -> Iterator[PcpuEvent]:
    """Yield the percpu events of a trace file in file order, as :class:`PcpuEvent`."""
    for rec in iter_records(path, stats, progress):
        yield PcpuEvent.from_record(rec)


def read_trace(path: Path | str, progress: Callable[[int, int], None] | None = None) -> Trace:
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
