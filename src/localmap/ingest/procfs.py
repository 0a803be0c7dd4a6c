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

from localmap.errors import LocalmapError
from localmap.ingest.textfile import read_text

_EMBED_RE = re.compile(
    r"percpu: Embedded (\d+) pages/cpu (?:@\S+ )?s(\d+) r(\d+) d(\d+) u(\d+)", re.IGNORECASE)
_PAGE_RE = re.compile(r"percpu: (\d+) (\d+)K pages/cpu (?:@\S+ )?s(\d+) r(\d+) d(\d+)",
                      re.IGNORECASE)


@dataclass(frozen=True)
class FirstChunkLine:
    """What ``pcpu_{embed,page}_first_chunk`` printed at boot."""

    mode: str              # "embed" or "page"
    pages_per_cpu: int
    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int         # printed for embed; for page mode pages * page size
    page_size: int | None  # printed for page mode only
    line: int
    text: str


def parse_first_chunk_line(text: str, path: str = "<dmesg>") -> FirstChunkLine:
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _EMBED_RE.search(line)
        if m:
            n, s, r, d, u = map(int, m.groups())
            return FirstChunkLine("embed", n, s, r, d, u, None, lineno, line.strip())
        m = _PAGE_RE.search(line)
        if m:
            n, k, s, r, d = map(int, m.groups())
            psz = k * 1024
            return FirstChunkLine("page", n, s, r, d, n * psz, psz, lineno, line.strip())
    raise LocalmapError("no percpu first-chunk line (expected 'percpu: Embedded N pages/cpu "
                        "sS rR dD uU' or 'percpu: N 4K pages/cpu sS rR dD'); was the log "
                        "captured from boot (dmesg buffer large enough)?", path)


# printed by clocksource_done_booting(), an fs_initcall: every subsys_initcall ran before it
_CLOCKSOURCE_DONE_RE = re.compile(r"^\[\s*(\d+\.\d+)\] clocksource: Switched to clocksource ",
                                  re.MULTILINE)


def subsys_initcalls_done_ts(text: str) -> float | None:
    """Timestamp (boot clock, as the trace's) of the first boot-log line printed after all
    ``subsys_initcall``s: ``clocksource: Switched to clocksource ...`` from the
    ``fs_initcall`` ``clocksource_done_booting``. ``None`` if the log does not have it."""
    m = _CLOCKSOURCE_DONE_RE.search(text)
    return float(m.group(1)) if m else None


def read_first_chunk_line(path: Path) -> FirstChunkLine:
    return parse_first_chunk_line(read_text(path), str(path))


def parse_meminfo_percpu(text: str, path: str = "<meminfo>") -> int:
    """``Percpu:`` of /proc/meminfo, in bytes."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("Percpu:"):
            parts = line.split()
            if len(parts) != 3 or parts[2] != "kB" or not parts[1].isdigit():
                raise LocalmapError(f"malformed Percpu line {line!r} (expected 'Percpu: N kB')",
                                    path, lineno)
            return int(parts[1]) * 1024
    raise LocalmapError("no 'Percpu:' line (expected /proc/meminfo of Linux >= 4.16)", path)


@dataclass(frozen=True)
class VmArea:
    start: int
    end: int
    size: int
    caller: str


def parse_vmallocinfo(text: str, path: str = "<vmallocinfo>") -> list[VmArea]:
    """All areas of /proc/vmallocinfo, sorted by address."""
    areas = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rng = parts[0]
        if "-" not in rng or len(parts) < 2:
            raise LocalmapError(f"not a vmallocinfo line: {line[:60]!r} (expected "
                                "'0xSTART-0xEND SIZE caller ...')", path, lineno)
        a, b = rng.split("-", 1)
        try:
            start, end, size = int(a, 16), int(b, 16), int(parts[1])
        except ValueError:
            raise LocalmapError(f"not a vmallocinfo line: {line[:60]!r}", path, lineno) from None
        if start >> 32 == 0 and start:
            raise LocalmapError("vmallocinfo addresses are hidden or hashed (read it as root, "
                                "kptr_restrict=0)", path, lineno)
        caller = parts[2] if len(parts) > 2 else ""
        areas.append(VmArea(start, end, size, caller))
    areas.sort(key=lambda v: v.start)
    return areas


def percpu_vm_areas(areas: list[VmArea]) -> list[VmArea]:
    return [a for a in areas if a.caller.startswith("pcpu_get_vm_areas")]


def parse_cpulist(text: str, path: str = "<cpus>", line: int | None = None) -> list[int]:
    """Kernel CPU list syntax: ``0-3,8,10-11``."""
    cpus: list[int] = []
    text = text.strip()
    if not text:
        return cpus
    for part in text.split(","):
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                cpus.extend(range(int(a), int(b) + 1))
            else:
                cpus.append(int(part))
        except ValueError:
            raise LocalmapError(f"bad CPU list {text!r} (expected e.g. 0-3,8)", path,
                                line) from None
    return cpus


def parse_cpus_file(text: str, path: str = "<cpus>") -> dict[str, list[int]]:
    """A bundle's ``cpus`` file: lines ``possible LIST`` and ``online LIST``."""
    out: dict[str, list[int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) != 2:
            raise LocalmapError(f"expected 'possible 0-3' or 'online 0-3', got {line!r}", path,
                                lineno)
        out[parts[0]] = parse_cpulist(parts[1], path, lineno)
    if "possible" not in out:
        raise LocalmapError("no 'possible' CPU list", path)
    return out
