"""The kernel-half MMU of each CPU: TTBR1 (a root table), TLB lookup, table walk, data access.

Models: ``translate(cpu, va)`` looks in the CPU's TLB view, else walks from the CPU's TTBR1 root
and fills the TLB; loads and stores go through ``translate`` to physical memory, any
:class:`Frames` (``localmap.mm.page_alloc.FrameAllocator`` in the models: ``mm`` builds on
``arch``, not the reverse). A missing translation raises :class:`MmuFault` (a kernel oops in the
real system). ``peek`` translates without touching the TLB, for the invariant checks.

Differences from hardware: no permissions, attributes or TTBR0; one VA translation regime.
"""

from __future__ import annotations

from typing import Protocol

from localmap.arch.arm64.pgtable import Geometry, TableRegistry, walk
from localmap.arch.arm64.tlb import TlbSystem


class Frames(Protocol):
    """Physical memory as the MMU sees it: loads and stores of ``size`` bytes at a PA."""

    def load(self, pa: int, size: int) -> int: ...

    def store(self, pa: int, size: int, value: int) -> None: ...


class MmuFault(Exception):
    def __init__(self, cpu: int, va: int):
        super().__init__(f"CPU {cpu}: translation fault at VA {va:#x}")
        self.cpu = cpu
        self.va = va


class Mmu:
    def __init__(
        self,
        geom: Geometry,
        registry: TableRegistry,
        frames: Frames,
        nr_cpus: int,
        threads_per_core: int = 1,
    ):
        self.geom = geom
        self.registry = registry
        self.frames = frames
        self.nr_cpus = nr_cpus
        self.ttbr1: list[int | None] = [None] * nr_cpus
        self.tlb = TlbSystem(nr_cpus, geom.page_size, threads_per_core)
        self.page_mask = geom.page_size - 1

    def set_ttbr1(self, cpu: int, root_pa: int | None, cnp: bool = False) -> None:
        self.ttbr1[cpu] = root_pa
        self.tlb.set_cnp(cpu, cnp and root_pa is not None)
        self.tlb.flush_cpu(cpu)

    def walk(self, cpu: int, va: int) -> int | None:
        root = self.ttbr1[cpu]
        if root is None:
            return None
        return walk(self.geom, self.registry, root, va)

    def peek(self, cpu: int, va: int) -> int | None:
        """What an access by ``cpu`` would reach now (TLB first), without filling the TLB."""
        hit = self.tlb.lookup(cpu, va)
        if hit is not None:
            return hit | (va & self.page_mask)
        return self.walk(cpu, va)

    def translate(self, cpu: int, va: int) -> int:
        hit = self.tlb.lookup(cpu, va)
        if hit is not None:
            self.tlb.stats["hit"] += 1
            return hit | (va & self.page_mask)
        pa = self.walk(cpu, va)
        if pa is None:
            raise MmuFault(cpu, va)
        self.tlb.fill(cpu, va, pa & ~self.page_mask)
        return pa

    def load(self, cpu: int, va: int, size: int = 8) -> int:
        return self.frames.load(self.translate(cpu, va), size)

    def store(self, cpu: int, va: int, value: int, size: int = 8) -> None:
        self.frames.store(self.translate(cpu, va), size, value)
