"""Every architecture's this_cpu path and kernel page-table shape, as plain data.

What it models: for each Debian architecture, read from Linux 6.12's ``arch/*/include/asm/
percpu.h``, ``include/asm-generic/percpu.h`` and the preempt/irqflags headers: where a CPU finds
its per-CPU offset, what a *site* (one acquisition of that offset, or one segment-prefixed
access) looks like in the instruction stream, what protects a ``this_cpu`` read-modify-write
today, and what it would become with a local mapping (DESIGN.md 12-13); plus the kernel page
tables the design would replicate per CPU (levels, table sizes, the vmalloc area that holds the
windows). The per-architecture modules (``localmap.arch.x86.percpu`` ...) fill these records;
:mod:`localmap.perf.arches` checks them against real images and :mod:`localmap.design.arches`
prices the design with them.

Deliberate simplifications: one geometry per architecture (the one Debian's kernel runs with on
a large machine, named in ``note``); sequences are written for ``this_cpu_add`` and
``this_cpu_read`` of a native-size variable, the two ops every architecture implements.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Level:
    """One translation level: the VA one entry maps and the bytes one table of it takes."""

    name: str
    entry_span: int
    table_bytes: int


@dataclass(frozen=True)
class PgtableGeometry:
    page_size: int
    levels: tuple[Level, ...]         # root first
    vmalloc_bytes: int                # the area the two windows are carved from
    va_bits: int
    note: str = ""
    source: str = ""

    @property
    def root(self) -> Level:
        return self.levels[0]


@dataclass(frozen=True)
class ThisCpuPath:
    arch: str                         # Debian architecture name
    kernel_arch: str                  # arch/<dir> in the kernel tree
    offset_source: str                # where the running CPU's per-CPU offset comes from
    site: str                         # what one counted site is
    objdump_regex: str                # the same pattern on binutils objdump's output line
    protection: str                   # what makes a this_cpu RMW safe today
    before: dict[str, str]            # op -> instruction sequence today
    after: dict[str, str]             # op -> with a local mapping
    single_rmw: str                   # the ISA's one-instruction RMW on memory, if any
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


MODULES = {"amd64": "localmap.arch.x86.percpu", "arm64": "localmap.arch.arm64.percpu",
           "armhf": "localmap.arch.arm.percpu", "ppc64el": "localmap.arch.powerpc.percpu",
           "riscv64": "localmap.arch.riscv.percpu", "s390x": "localmap.arch.s390.percpu"}


def this_cpu_path(arch: str) -> ThisCpuPath:
    return importlib.import_module(MODULES[arch]).THIS_CPU


def pgtable_geometry(arch: str) -> PgtableGeometry:
    return importlib.import_module(MODULES[arch]).PGTABLE


__all__ = ["Level", "PgtableGeometry", "ThisCpuPath", "MODULES", "this_cpu_path", "pgtable_geometry"]
