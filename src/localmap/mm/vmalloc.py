"""Kernel virtual-area allocation and kernel page-table updates (mm/vmalloc.c).

Models: the vmap-area allocator over ``[VMALLOC_START, VMALLOC_END)`` (lowest fit, as
``__alloc_vmap_area`` searches bottom-up), ``pcpu_get_vm_areas`` (the top-most base at which
every group of a percpu chunk fits, congruent offsets, aligned), ``vmalloc``/``vfree`` (areas
backed by order-0 frames and mapped page by page), and the page-table writes that map and unmap a
kernel page in a tree of tables, allocating intermediate tables on demand and reporting every
entry written so callers can count it and sync it.

Differences from the kernel: no guard pages, no lazy purge of freed areas (an area's VA is free
again as soon as it is freed, and its TLB entries are invalidated at that moment), no huge vmap
mappings, one flat sorted list instead of the augmented rb-tree.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

from localmap.arch.arm64.pgtable import (
    Geometry,
    PageTable,
    TableRegistry,
    desc_addr,
    desc_valid,
    make_desc,
)
from localmap.errors import LocalmapError


def round_down(x: int, a: int) -> int:
    return x - x % a


def round_up(x: int, a: int) -> int:
    return -(-x // a) * a


@dataclass
class VmapArea:
    start: int
    size: int
    caller: str

    @property
    def end(self) -> int:
        return self.start + self.size


class VmapAllocator:
    """Busy areas in ``[start, end)``, kept sorted by start address."""

    def __init__(self, start: int, end: int, page_size: int):
        if end <= start:
            raise LocalmapError(f"empty vmalloc range {start:#x}-{end:#x}")
        self.start = start
        self.end = end
        self.page_size = page_size
        self._starts: list[int] = []
        self._areas: list[VmapArea] = []

    @property
    def areas(self) -> list[VmapArea]:
        return list(self._areas)

    def find(self, addr: int) -> VmapArea | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and self._areas[i].start <= addr < self._areas[i].end:
            return self._areas[i]
        return None

    def _insert(self, area: VmapArea) -> VmapArea:
        i = bisect.bisect_left(self._starts, area.start)
        self._starts.insert(i, area.start)
        self._areas.insert(i, area)
        return area

    def _conflict(self, lo: int, hi: int) -> VmapArea | None:
        """A busy area overlapping [lo, hi), the highest one if several."""
        i = bisect.bisect_left(self._starts, hi) - 1
        if i >= 0 and self._areas[i].end > lo:
            return self._areas[i]
        return None

    def reserve(self, start: int, size: int, caller: str) -> VmapArea:
        if start < self.start or start + size > self.end:
            raise LocalmapError(f"{caller}: {start:#x}+{size:#x} is outside {self.start:#x}-{self.end:#x}")
        if self._conflict(start, start + size):
            raise LocalmapError(f"{caller}: {start:#x}+{size:#x} overlaps a busy area")
        return self._insert(VmapArea(start, size, caller))

    def alloc(self, size: int, align: int | None = None, caller: str = "vmalloc") -> VmapArea:
        """Lowest-address fit, like ``__alloc_vmap_area``."""
        align = align or self.page_size
        size = round_up(size, self.page_size)
        addr = round_up(self.start, align)
        i = 0
        while True:
            while i < len(self._areas) and self._areas[i].end <= addr:
                i += 1
            if addr + size > self.end:
                raise LocalmapError(f"vmalloc: no space for {size} bytes")
            if i < len(self._areas) and self._areas[i].start < addr + size:
                addr = round_up(self._areas[i].end, align)
                continue
            return self._insert(VmapArea(addr, size, caller))

    def free(self, addr: int) -> VmapArea:
        i = bisect.bisect_left(self._starts, addr)
        if i >= len(self._starts) or self._starts[i] != addr:
            raise LocalmapError(f"vfree: {addr:#x} is not the start of a vmap area")
        del self._starts[i]
        return self._areas.pop(i)

    def pcpu_get_vm_areas(
        self, offsets: list[int], sizes: list[int], align: int, caller: str = "pcpu_get_vm_areas"
    ) -> list[VmapArea]:
        """Congruent areas ``base + offsets[i]`` of ``sizes[i]`` at the highest fitting base."""
        if len(offsets) != len(sizes) or not offsets:
            raise LocalmapError("pcpu_get_vm_areas: bad group description")
        last_end = max(o + s for o, s in zip(offsets, sizes))
        first_off = min(offsets)
        base = round_down(self.end - last_end, align)
        while True:
            if base + first_off < self.start:
                raise LocalmapError(
                    f"percpu window too small: no room for a {last_end - first_off}-byte chunk in "
                    f"{self.start:#x}-{self.end:#x}"
                )
            for off, size in zip(offsets, sizes):
                hit = self._conflict(base + off, base + off + size)
                if hit is not None:
                    base = round_down(hit.start - (off + size), align)
                    break
            else:
                return [self._insert(VmapArea(base + o, s, caller)) for o, s in zip(offsets, sizes)]


# --- page-table writes ----------------------------------------------------------------------

Written = list[tuple[PageTable, int]]  # (table, index) of each entry written


def set_pte(
    geom: Geometry,
    registry: TableRegistry,
    root: PageTable,
    va: int,
    pa: int,
    alloc_table: Callable[[int], PageTable],
    written: Written,
    stop_level: int = 3,
) -> PageTable:
    """Map ``va`` -> ``pa`` below ``root``; returns the leaf table. Creates missing tables.

    ``stop_level`` < 3 installs ``pa`` as a *table* descriptor at that level (used to point a
    split-level entry at a private subtree)."""
    table = root
    for level in range(geom.root_level, stop_level):
        idx = geom.index(va, level)
        desc = table.entries.get(idx)
        if desc is None or not desc_valid(desc):
            child = alloc_table(level + 1)
            table.entries[idx] = make_desc(child.pa)
            written.append((table, idx))
            table = child
        else:
            nxt = registry.tables.get(desc_addr(desc))
            assert nxt is not None, f"dangling table descriptor at L{level} for {va:#x}"
            table = nxt
    idx = geom.index(va, stop_level)
    table.entries[idx] = make_desc(pa)
    written.append((table, idx))
    return table


def clear_pte(
    geom: Geometry, registry: TableRegistry, root: PageTable, va: int, written: Written
) -> int | None:
    """Unmap the page at ``va``; returns the physical page it mapped (None if it was unmapped).
    Intermediate tables are kept, as the kernel keeps vmalloc page tables."""
    table: PageTable | None = root
    for level in range(geom.root_level, 3):
        assert table is not None
        desc = table.entries.get(geom.index(va, level))
        if desc is None or not desc_valid(desc):
            return None
        table = registry.tables.get(desc_addr(desc))
    if table is None:
        return None
    idx = geom.index(va, 3)
    desc = table.entries.pop(idx, None)
    if desc is None:
        return None
    written.append((table, idx))
    return desc_addr(desc)
