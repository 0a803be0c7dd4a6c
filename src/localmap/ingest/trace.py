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

Streaming: :func:`iter_records` reads the file a block of whole lines at a time and yields one
compact *record* (a tuple, fields at the ``R_*`` indices) per event, holding nothing else; the
replay consumes them as they come. The two lines that make up almost every trace
(``percpu_alloc_percpu`` and ``percpu_free_percpu`` in the tracefs/trace-cmd layout) are found in
the block by one regular expression anchored at line starts, whose groups are exactly the
fields (numbers and addresses are checked by the expression itself; a field check of its own
belongs in the block of :func:`iter_records` that builds those records); every line between two
of them takes the general path (:func:`parse_line`), one by one, as before. The line
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
from localmap.units import MAX_CPUS, parse_count
from localmap.fileio import printable
from localmap.ingest.textfile import (BLOCK_CHARS, DECOMPRESS_ERRORS, MAX_LINE_CHARS,
                                      corrupt, open_text_stream)

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

_A = re.ASCII
_EVENT_RE = re.compile(r"(?:^|[\s:])(?:percpu:)?(percpu_[a-z_]+):(?:\s+|$)", _A)
_FIELD_RE = re.compile(r"(\w+)=(\S*)", _A)
_CPU_RE = re.compile(r"\[([0-9]{1,5})\]", _A)
_TS_RE = re.compile(r"(?:^|\s)([0-9]{1,12}\.[0-9]{1,9}):?\s*$", _A)
_TASK_RE = re.compile(r"^\s*(.*?)[-\s]([0-9]{1,10})\s+(?:\(\s*[-0-9]+\)\s+)?\[[0-9]+\]", _A)
_LOST_TRACECMD_RE = re.compile(r"CPU:\s*([0-9]{1,5})\s*\[LOST\s+([0-9]{1,12})\s+EVENTS\]", _A)
_ENTRIES_RE = re.compile(
    r"entries-in-buffer/entries-written:\s*([0-9]{1,15})/([0-9]{1,15})(?:\s+#P:([0-9]{1,5}))?", _A)
_HASHED_TOKENS = ("(____ptrval____)", "(ptrval)")
# an event line of any tracepoint: "[cpu] ... 12.345678: name:" (tracefs, trace-cmd, perf)
_OTHER_EVENT_RE = re.compile(r"\[[0-9]+\].*[0-9]\.[0-9]+:\s+\S+:", _A)
_DEC_RE = re.compile(r"[0-9]{1,19}", _A)      # the kernel prints these fields with %d / %zu
_HEX_RE = re.compile(r"(?:0[xX])?[0-9a-fA-F]{1,16}", _A)

# what a percpu allocation can be (mm/percpu.c refuses anything else before it traces):
# 0 < size <= PCPU_MIN_UNIT_SIZE (32 KiB, or one page when pages are larger), align a power of
# two no larger than a page
MAX_ALLOC_SIZE = 64 << 10
MAX_ALLOC_ALIGN = 64 << 10
_CPU_SLOTS = 100_000       # CPU numbers the reader accepts ([0-9]{1,5}); the replay checks more

# -- the fast path: tracefs / trace-cmd lines of the two hot events ----------------------------
# prefix: "TASK-PID [(TGID)] [CPU] [FLAGS] SECS.USECS" (task names may hold '-' and spaces)
_HEAD = (r" *(.*?-[0-9]{1,10} +(?:\( *[-0-9]+\) +)?\[([0-9]{1,5})\] +(?:\S+ +)?"
         r"([0-9]{1,12}\.[0-9]{1,9}))")
_ALLOC_FIELDS = (r"percpu_alloc_percpu: call_site=(\S*) reserved=([01]) is_atomic=([01]) "
                 r"size=([0-9]{1,9}) align=([0-9]{1,9}) base_addr=([0-9a-f]{1,16}) "
                 r"off=([0-9]{1,9}) ptr=([0-9a-f]{1,16})"
                 r"(?: bytes_alloc=([0-9]{1,19}) gfp_flags=(\S*))?")
_FREE_FIELDS = (r"percpu_free_percpu: base_addr=([0-9a-f]{1,16}) off=([0-9]{1,9}) "
                r"ptr=([0-9a-f]{1,16})")
# both hot lines, found in a block of whole lines at once (one match per line, at its start)
_FAST_LINES = re.compile(r"^" + _HEAD + r": (?:" + _ALLOC_FIELDS + "|" + _FREE_FIELDS + ")$",
                         _A | re.M).finditer
_HEAD_FIELDS = re.compile(
    r" *(.*?)-([0-9]+) +(?:\( *[-0-9]+\) +)?\[([0-9]+)\] +(?:\S+ +)?([0-9]+\.[0-9]+)$", _A).match


def record_head(rec: tuple) -> tuple[str, int, int, float]:
    """(task, pid, cpu, timestamp) of a record."""
    h = rec[R_HEAD]
    if isinstance(h, tuple):
        return h
    return parse_head(h)


def parse_head(h: str) -> tuple[str, int, int, float]:
    """(task, pid, cpu, timestamp) of a hot line's prefix, kept as text in its record."""
    task, pid, cpu, ts = _HEAD_FIELDS(h).groups()
    return task, int(pid), int(cpu), float(ts)


def record_ts(rec: tuple) -> float:
    h = rec[R_HEAD]
    if isinstance(h, tuple):
        return h[3]
    return float(h[h.rindex(" ") + 1:])


def s_trim(line: str) -> str:
    line = printable(line.strip(), 200)
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
    """A field's number: plain ASCII decimal, as the kernel prints it."""
    if not _DEC_RE.fullmatch(value):
        raise LocalmapError(f"field {name}={printable(value, 40)!r} is not a plain decimal "
                            "number", path, lineno)
    return int(value)


def _hex(value: str, name: str, path: str, lineno: int) -> int:
    if value in _HASHED_TOKENS or value.startswith("("):
        raise LocalmapError(
            f"{name}={value}: pointers are hidden (%p printed before the hashing key was ready); "
            "boot the kernel with no_hash_pointers to capture real addresses", path, lineno)
    if not _HEX_RE.fullmatch(value):
        raise LocalmapError(f"field {name}={printable(value, 40)!r} is not a 64-bit hex address",
                            path, lineno)
    return int(value, 16)


def _flag(value: str, name: str, path: str, lineno: int) -> bool:
    if value not in ("0", "1"):
        raise LocalmapError(f"field {name}={printable(value, 40)!r} is not 0 or 1", path, lineno)
    return value == "1"


def bad_request(size: int, align: int, path: str, lineno: int) -> LocalmapError:
    """The error for an allocation no kernel traces (see :data:`MAX_ALLOC_SIZE`)."""
    if not 0 < size <= MAX_ALLOC_SIZE:
        why = f"size={size}: a percpu allocation is 1 to {MAX_ALLOC_SIZE} bytes"
    else:
        why = f"align={align}: a percpu alignment is a power of two up to {MAX_ALLOC_ALIGN}"
    return LocalmapError(why + " (the kernel refuses anything else before tracing it)",
                         path, lineno)


def parse_line(line: str, path: str = "<trace>", lineno: int = 0) -> PcpuEvent | None:
    """Parse one line of any accepted layout; ``None`` for lines that hold no percpu event.
    Every field is checked: numbers in plain ASCII decimal (or ``0x`` hex), flags 0 or 1,
    addresses 64-bit hex, a size and an alignment the kernel can trace, a CPU and a
    timestamp before the event's name."""
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
    tm = _TS_RE.search(prefix.rstrip().rstrip(":") + ":")
    if cm is None or tm is None:
        raise LocalmapError(f"{name} line has no {'[CPU]' if cm is None else 'timestamp'} "
                            "before the event name", path, lineno)
    ev.cpu = int(cm.group(1))
    ev.ts = float(tm.group(1))
    km = _TASK_RE.match(prefix)
    if km:
        ev.task = km.group(1).strip()
        ev.pid = int(km.group(2))
    rest = line[m.end():]
    pairs = _FIELD_RE.findall(rest)
    fields = dict(pairs)
    if len(fields) != len(pairs):
        twice = sorted({k for k, _ in pairs if sum(1 for kk, _ in pairs if kk == k) > 1})
        raise LocalmapError(f"{name} line gives {', '.join(twice)} twice", path, lineno)
    missing = [f for f in _REQUIRED[kind] if f not in fields or fields[f] == ""]
    if missing:
        raise LocalmapError(
            f"{name} line is truncated or malformed: missing {', '.join(missing)} "
            f"(expected {' '.join(f + '=' for f in _REQUIRED[kind])})", path, lineno)
    if kind == ALLOC or kind == ALLOC_FAIL:
        ev.reserved = _flag(fields["reserved"], "reserved", path, lineno)
        ev.is_atomic = _flag(fields["is_atomic"], "is_atomic", path, lineno)
        ev.size = size = _int(fields["size"], "size", path, lineno)
        ev.align = align = _int(fields["align"], "align", path, lineno)
        if not 0 < size <= MAX_ALLOC_SIZE or align & (align - 1) or \
                not 0 < align <= MAX_ALLOC_ALIGN:
            raise bad_request(size, align, path, lineno)
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
        stats["other_lines"] += 1
        return
    if s.startswith("#"):
        stats["other_lines"] += 1
        em = _ENTRIES_RE.search(s)
        if em:
            if "entries" in stats:
                raise LocalmapError(
                    f"a second ftrace header (the first is line {stats['entries_line']}): two "
                    "captures in one file?", spath, lineno)
            stats["entries"] = int(em.group(1))
            stats["entries_line"] = lineno
            if em.group(3):
                stats["header_cpus"] = int(em.group(3))
            if em.group(1) != em.group(2):
                lost = int(em.group(2)) - int(em.group(1))
                stats["lost"] += lost
                stats["header_lost"] = lost
                stats["lost_detail"].append(
                    f"ring buffer overwritten: {lost} events lost (header "
                    f"entries-in-buffer/entries-written, line {lineno})")
        return
    lm = _LOST_TRACECMD_RE.search(s)
    if lm:
        stats["other_lines"] += 1
        stats["lost"] += int(lm.group(2))
        stats["lost_detail"].append(f"CPU {lm.group(1)}: {lm.group(2)} events lost "
                                    f"(line {lineno})")
        stats["format"] = "trace-cmd"
        return
    if s.startswith("cpus=") or s.startswith("version ="):
        stats["other_lines"] += 1
        stats["format"] = "trace-cmd"
        if s.startswith("cpus="):
            stats["nr_cpus_header"] = parse_count(s[5:], spath, minimum=1, maximum=MAX_CPUS)
        return
    if s.startswith("CPU ") and s.endswith("is empty"):
        stats["other_lines"] += 1
        stats["format"] = "trace-cmd"
        return
    if not _OTHER_EVENT_RE.search(s):
        raise LocalmapError(
            f"not a trace line (truncated or not ftrace/trace-cmd/perf output): "
            f"{printable(s, 60)!r}", spath, lineno)
    stats["skipped"] += 1          # another tracepoint's event


def _out_of_order(cpu: int, ts: float, before: float, spath: str, lineno: int) -> LocalmapError:
    return LocalmapError(
        f"events out of order: CPU {cpu} at {ts:.6f} s after an event of that CPU at "
        f"{before:.6f} s (each CPU's events come in time order: lines moved, or two traces "
        "mixed?)", spath, lineno)


def _impossible_cpu(cpu: int, nr: int, cpus: tuple[int, str] | None, spath: str,
                    lineno: int) -> LocalmapError:
    return LocalmapError(f"an event of CPU {cpu}, which is not a possible CPU (CPUs 0-{nr - 1}, "
                         f"from {cpus[1] if cpus else 'the reader'})", spath, lineno)


def iter_records(path: Path | str, stats: dict | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 cpus: tuple[int, str] | None = None) -> Iterator[tuple]:
    """Yield the percpu events of a trace file in file order, as records (see ``R_*``).

    Every line is checked (see :func:`parse_line`; the hot lines by their expression plus the
    size/alignment check), and so is each CPU's time order. ``stats`` receives what the file
    says about itself: ``format``, ``lost`` events and their ``lost_detail``, ``skipped`` lines of
    other tracepoints, the ftrace header's ``entries`` (entries-in-buffer) and ``header_cpus``
    (``#P:``), ``event_lines`` (event lines read), ``cpus_seen``, and ``cut`` = (line, text)
    when the file ends mid-line (that line is not used). ``progress(done, total)`` is called
    after each block of text with the bytes of the file (compressed, if it is) consumed so far.
    The two hot lines (allocation and free, tracefs/trace-cmd layout) are found a block at a
    time by one expression; every other line goes through the general path, one by one.
    ``cpus`` = (nr_cpu_ids, where that comes from): an event of a CPU beyond it is refused.
    """
    spath = str(path)
    stats = stats if stats is not None else {}
    stats.setdefault("skipped", 0)
    stats.setdefault("lost", 0)
    stats.setdefault("lost_detail", [])
    stats.setdefault("format", "tracefs")
    stats.setdefault("old_format", False)
    stats.setdefault("other_lines", 0)
    fh, raw, total = open_text_stream(Path(path))
    fast_lines = _FAST_LINES
    same = {}.setdefault        # one string per call site and per gfp text (records stay small)
    last = [-1.0] * (cpus[0] if cpus else _CPU_SLOTS)    # each CPU's latest timestamp
    lineno = 0
    checked = False

    def other(line: str) -> tuple | None:
        """A line the fast expression does not take: another layout, another percpu event, a
        malformed line, another tracepoint's event, a header line."""
        nonlocal checked
        if "percpu_" not in line:
            _other_line(line, stats, spath, lineno)
            return None
        ev = parse_line(line, spath, lineno)
        if ev is None:
            raise LocalmapError(f"percpu line truncated or malformed: {s_trim(line)!r} "
                                "(expected 'percpu_<event>: field=value ...')", spath, lineno)
        try:
            if ev.ts < last[ev.cpu]:
                raise _out_of_order(ev.cpu, ev.ts, last[ev.cpu], spath, lineno)
        except IndexError:
            raise _impossible_cpu(ev.cpu, len(last), cpus, spath, lineno) from None
        last[ev.cpu] = ev.ts
        if "percpu:percpu_" in line:
            stats["format"] = "perf-script"
        if ev.kind == ALLOC and not ev.call_site and ev.bytes_alloc < 0:
            stats["old_format"] = True
        rec = ev.record()
        if not checked and ev.kind != ALLOC_FAIL:
            _check_pointers(rec, spath)
            checked = True
        return rec

    rest = ""
    try:
        while True:
            try:
                block = fh.read(BLOCK_CHARS)
            except DECOMPRESS_ERRORS as exc:
                raise corrupt(spath, exc, f" after line {lineno}") from None
            if not block:
                break
            text = rest + block if rest else block
            cut = text.rfind("\n") + 1                # the block's whole lines: text[:cut]
            rest = text[cut:]
            if len(rest) > MAX_LINE_CHARS:
                raise LocalmapError(
                    f"line longer than {MAX_LINE_CHARS >> 10} KiB (not a text capture of this "
                    "kind?)", spath, lineno + text.count("\n", 0, cut) + 1)
            pos = 0
            for m in fast_lines(text, 0, cut):
                start = m.start()
                if start != pos:                       # lines between two hot lines
                    for line in text[pos:start - 1].split("\n"):
                        lineno += 1
                        rec = other(line)
                        if rec is not None:
                            yield rec
                lineno += 1
                pos = m.end() + 1
                head, cpu, ts, cs, res, atom, size, align, base, off, ptr, ba, gfp, \
                    fbase, foff, fptr = m.groups()
                cpu, ts = int(cpu), float(ts)
                try:
                    if ts < last[cpu]:
                        raise _out_of_order(cpu, ts, last[cpu], spath, lineno)
                except IndexError:
                    raise _impossible_cpu(cpu, len(last), cpus, spath, lineno) from None
                last[cpu] = ts
                if cs is not None:
                    # the record of an allocation (the replay's hottest line)
                    size, align = int(size), int(align)
                    if not 0 < size <= MAX_ALLOC_SIZE or align & (align - 1) or \
                            not 0 < align <= MAX_ALLOC_ALIGN:
                        raise bad_request(size, align, spath, lineno)
                    rec = (ALLOC, lineno, int(base, 16), int(off), size, align,
                           res == "1", atom == "1", int(ptr, 16), head, same(cs, cs),
                           -1 if ba is None else int(ba), same(gfp, gfp) if gfp else "")
                else:
                    rec = (FREE, lineno, int(fbase, 16), int(foff), 0, 0, False, False,
                           int(fptr, 16), head, "", -1, "")
                if not checked:
                    _check_pointers(rec, spath)
                    checked = True
                yield rec
            if pos < cut:
                for line in text[pos:cut - 1].split("\n"):
                    lineno += 1
                    rec = other(line)
                    if rec is not None:
                        yield rec
            if progress is not None:
                progress(raw.tell(), total)
        if progress is not None:
            progress(total, total)
    finally:
        fh.close()
        raw.close()
    if rest:
        stats["cut"] = (lineno + 1, s_trim(printable(rest, 200)))
    stats["event_lines"] = lineno - stats["other_lines"]
    stats["cpus_seen"] = [c for c, t in enumerate(last) if t >= 0]


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
