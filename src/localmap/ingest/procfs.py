"""Readers for what the kernel prints about percpu memory outside the tracepoints.

- the dmesg first-chunk line of ``pcpu_embed_first_chunk`` (``percpu: Embedded N pages/cpu
  sS rR dD uU``, older kernels with ``@addr``) and of ``pcpu_page_first_chunk``
  (``percpu: N 4K pages/cpu sS rR dD``);
- ``/proc/meminfo``'s ``Percpu:`` line (populated pages of all chunks times units, in kB);
- ``/proc/vmallocinfo`` areas made by ``pcpu_get_vm_areas`` (dynamic chunks' groups);
- the ``cpus`` file of a bundle (``possible 0-3`` / ``online 0-3``) and CPU list syntax;
- the boot-log time by which every ``subsys_initcall`` (``percpu_enable_async`` among them) has
  run: :func:`subsys_initcalls_done_ts`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from localmap.errors import LocalmapError
from localmap.fileio import printable
from localmap.ingest.textfile import read_text
from localmap.units import MAX_CPUS

_N = r"([0-9]{1,20})"    # (a longer number than any kernel prints is refused by size)
_EMBED_RE = re.compile(
    rf"percpu: Embedded {_N} pages/cpu (?:@\S+ )?s{_N} r{_N} d{_N} u{_N}", re.I | re.A)
_PAGE_RE = re.compile(rf"percpu: {_N} ([0-9]{{1,3}})K pages/cpu (?:@\S+ )?s{_N} r{_N} d{_N}",
                      re.I | re.A)
# pcpu_dump_alloc_info: "pcpu-alloc: s.. r.. d.. u.. alloc=N*SIZE", then lines of
# "[group] cpu cpu ..." per allocation (an unused unit is printed as dashes)
_ALLOC_INFO_RE = re.compile(r"pcpu-alloc: s[0-9]+ r[0-9]+ d[0-9]+ u[0-9]+ alloc=", re.A)
_UNIT_MAP_RE = re.compile(r"pcpu-alloc: ((?:\[[0-9]+\] (?:(?:[0-9]+|-+) )*)+)\s*$", re.A)

# the largest first-chunk figure the model accepts (a unit of 64 MiB is far beyond any kernel's
# static + reserved + dynamic percpu area; it bounds what a damaged log can make the model build)
MAX_UNIT_BYTES = 64 << 20


@dataclass(frozen=True)
class FirstChunkLine:
    """What ``pcpu_{embed,page}_first_chunk`` printed at boot (and ``pcpu_dump_alloc_info``'s
    map of CPUs to units, when the log has it)."""

    mode: str              # "embed" or "page"
    pages_per_cpu: int
    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int         # printed for embed; for page mode pages * page size
    page_size: int | None  # printed for page mode only
    line: int
    text: str
    unit_cpus: tuple[int, ...] | None = None   # CPUs mapped to units, from "pcpu-alloc: [g] ..."
    unit_map_line: int | None = None

    def values(self) -> tuple:
        return (self.mode, self.pages_per_cpu, self.static_size, self.reserved_size,
                self.dyn_size, self.unit_size, self.page_size)


def parse_first_chunk_line(text: str, path: str = "<dmesg>") -> FirstChunkLine:
    """The first-chunk line of a kernel log. Two lines that disagree (two boots in one log) are
    refused with both named; a value beyond :data:`MAX_UNIT_BYTES` is refused."""
    found: FirstChunkLine | None = None
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        if "ercpu: " not in line and "ERCPU: " not in line.upper():
            continue
        fc = _first_chunk_of(line, lineno, path)
        if fc is None:
            continue
        if found is not None and fc.values() != found.values():
            raise LocalmapError(
                f"two first-chunk lines disagree: line {found.line} {printable(found.text, 90)!r} "
                f"and line {lineno} {printable(fc.text, 90)!r} (two boots in one log?)",
                path, lineno)
        found = found or fc
    if found is None:
        raise LocalmapError("no percpu first-chunk line (expected 'percpu: Embedded N pages/cpu "
                            "sS rR dD uU' or 'percpu: N 4K pages/cpu sS rR dD'); was the log "
                            "captured from boot (dmesg buffer large enough)?", path)
    cpus, map_line = _unit_map(lines, path)
    if cpus is not None:
        found = FirstChunkLine(*found.values()[:7], found.line, found.text, cpus, map_line)
    return found


def _first_chunk_of(line: str, lineno: int, path: str) -> FirstChunkLine | None:
    m = _EMBED_RE.search(line)
    if m:
        n, s, r, d, u = map(int, m.groups())
        fc = FirstChunkLine("embed", n, s, r, d, u, None, lineno, line.strip())
    else:
        m = _PAGE_RE.search(line)
        if not m:
            return None
        n, k, s, r, d = map(int, m.groups())
        if k not in (4, 16, 64):
            raise LocalmapError(f"first-chunk line has {k}K pages; arm64 has 4K, 16K and 64K",
                                path, lineno)
        psz = k * 1024
        fc = FirstChunkLine("page", n, s, r, d, n * psz, psz, lineno, line.strip())
    if max(fc.static_size, fc.reserved_size, fc.dyn_size, fc.unit_size) > MAX_UNIT_BYTES:
        raise LocalmapError(f"first-chunk line gives a size above {MAX_UNIT_BYTES >> 20} MiB "
                            f"({printable(fc.text, 90)!r}): not a kernel's percpu first chunk",
                            path, lineno)
    return fc


def _unit_map(lines: list[str], path: str) -> tuple[tuple[int, ...] | None, int | None]:
    """The CPUs ``pcpu_dump_alloc_info`` maps to units (None when the log does not have it)."""
    start = next((i for i, ln in enumerate(lines) if _ALLOC_INFO_RE.search(ln)), None)
    if start is None:
        return None, None
    cpus: list[int] = []
    for ln in lines[start + 1:]:
        m = _UNIT_MAP_RE.search(ln)
        if m is None:
            break
        for tok in m.group(1).split():
            if tok[0] != "[" and tok[0] != "-":
                cpus.append(int(tok))
                if len(cpus) > MAX_CPUS:
                    raise LocalmapError(f"maps more than {MAX_CPUS} CPUs to percpu units",
                                        path, start + 1)
    if not cpus:
        return None, None
    return tuple(cpus), start + 2


# printed by clocksource_done_booting(), an fs_initcall: every subsys_initcall ran before it
_CLOCKSOURCE_DONE_RE = re.compile(r"^\[\s*(\d+\.\d+)\] clocksource: Switched to clocksource ",
                                  re.MULTILINE)


def subsys_initcalls_done_ts(text: str) -> float | None:
    """Timestamp (boot clock, as the trace's) of the first boot-log line printed after all
    ``subsys_initcall``s: ``clocksource: Switched to clocksource ...`` from the
    ``fs_initcall`` ``clocksource_done_booting``. ``None`` if the log does not have it."""
    m = _CLOCKSOURCE_DONE_RE.search(text)
    return float(m.group(1)) if m else None


_INIT_RE = re.compile(r"^\[\s*([0-9]{1,12}\.[0-9]{1,9})\] Run \S+ as init process", re.M | re.A)
_CMDLINE_RE = re.compile(r"Kernel command line: (.*)$", re.M)


def init_started(text: str) -> tuple[float, int] | None:
    """(time, line) of the boot log's ``Run /init as init process``: user space starts."""
    m = _INIT_RE.search(text)
    return (float(m.group(1)), text.count("\n", 0, m.start()) + 1) if m else None


def kernel_cmdline(text: str) -> tuple[str, int] | None:
    """(command line, line) from the boot log's ``Kernel command line:``."""
    m = _CMDLINE_RE.search(text)
    return (m.group(1).strip(), text.count("\n", 0, m.start()) + 1) if m else None


def read_first_chunk_line(path: Path) -> FirstChunkLine:
    return parse_first_chunk_line(read_text(path), str(path))


def parse_meminfo_percpu(text: str, path: str = "<meminfo>") -> int:
    """``Percpu:`` of /proc/meminfo, in bytes."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("Percpu:"):
            parts = line.split()
            if len(parts) != 3 or parts[2] != "kB" or not _DIGITS.fullmatch(parts[1]):
                raise LocalmapError(f"malformed Percpu line {printable(line, 60)!r} (expected "
                                    "'Percpu: N kB')", path, lineno)
            return int(parts[1]) * 1024
    raise LocalmapError("no 'Percpu:' line (expected /proc/meminfo of Linux >= 4.16)", path)


_DIGITS = re.compile(r"[0-9]{1,15}", re.A)


_VM_LINE = re.compile(r"\s*0x([0-9a-f]{1,16})-0x([0-9a-f]{1,16})\s+([0-9]{1,15})(?:\s+(\S+))?"
                      r"(?:\s.*)?", re.A | re.I | re.S)


class VmArea(NamedTuple):
    start: int
    end: int
    size: int
    caller: str


def parse_vmallocinfo(text: str, path: str = "<vmallocinfo>") -> list[VmArea]:
    """All areas of /proc/vmallocinfo, sorted by address."""
    areas = []
    add = areas.append
    match = _VM_LINE.fullmatch
    for lineno, line in enumerate(text.splitlines(), 1):
        m = match(line)
        if m is None:
            if not line or line.isspace():
                continue
            raise LocalmapError(f"not a vmallocinfo line: {printable(line, 60)!r} (expected "
                                "'0xSTART-0xEND SIZE caller ...')", path, lineno)
        start, end, size, caller = m.groups()
        start, end = int(start, 16), int(end, 16)
        if start >> 32 == 0 and start:
            raise LocalmapError("vmallocinfo addresses are hidden or hashed (read it as root, "
                                "kptr_restrict=0)", path, lineno)
        if end < start:
            raise LocalmapError(f"area ends before it starts: {printable(line.split()[0], 60)}",
                                path, lineno)
        add(VmArea(start, end, int(size), caller or ""))
    areas.sort(key=lambda v: v.start)
    return areas


def percpu_vm_areas(areas: list[VmArea]) -> list[VmArea]:
    return [a for a in areas if a.caller.startswith("pcpu_get_vm_areas")]


_CPU_RANGE = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?", re.A)


def parse_cpulist(text: str, path: str = "<cpus>", line: int | None = None) -> list[int]:
    """Kernel CPU list syntax: ``0-3,8,10-11``: CPU numbers below :data:`MAX_CPUS`, ranges
    ascending, each CPU once (checked before any list is built)."""
    text = text.strip()
    if not text:
        return []
    ranges = []
    for part in text.split(","):
        m = _CPU_RANGE.fullmatch(part.strip())
        if m is None:
            raise LocalmapError(f"bad CPU list {printable(text, 40)!r} (expected e.g. 0-3,8)",
                                path, line)
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise LocalmapError(f"bad CPU list {printable(text, 40)!r}: range {a}-{b} goes "
                                "down", path, line)
        if b >= MAX_CPUS:
            raise LocalmapError(f"CPU {b} in {printable(text, 40)!r}: CPU numbers are below "
                                f"{MAX_CPUS}", path, line)
        ranges.append((a, b))
    cpus: list[int] = []
    for a, b in ranges:
        cpus.extend(range(a, b + 1))
    if len(set(cpus)) != len(cpus):
        raise LocalmapError(f"CPU list {printable(text, 40)!r} names a CPU twice", path, line)
    return cpus


def parse_cpus_file(text: str, path: str = "<cpus>") -> dict[str, list[int]]:
    """A bundle's ``cpus`` file: lines ``possible LIST`` and ``online LIST`` (online CPUs are
    possible ones)."""
    out: dict[str, list[int]] = {}
    lines: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) != 2:
            raise LocalmapError(f"expected 'possible 0-3' or 'online 0-3', got "
                                f"{printable(line, 60)!r}", path, lineno)
        if parts[0] in out:
            raise LocalmapError(f"a second '{printable(parts[0], 20)}' line (the first is line "
                                f"{lines[parts[0]]})", path, lineno)
        out[parts[0]] = parse_cpulist(parts[1], path, lineno)
        lines[parts[0]] = lineno
    if not out.get("possible"):
        raise LocalmapError("no 'possible' CPU list (expected a line 'possible 0-3')", path)
    stray = sorted(set(out.get("online", ())) - set(out["possible"]))
    if stray:
        raise LocalmapError(f"online CPU {stray[0]} is not a possible CPU", path,
                            lines.get("online"))
    return out
