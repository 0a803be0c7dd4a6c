"""arm64 stage-1 translation tables for the kernel half (TTBR1).

Models the geometry of every granule / VA-bits pair arm64 Linux can be built with (levels, root
level, entries per table, the span of one entry at each level, the root's size), the boot-time
fallback of 52-bit kernels to 48 bits (4K, 64K) or 47 bits (16K) on CPUs without LPA2/LVA,
page-table pages as real objects holding 64-bit descriptors, and a walker that translates a VA
from a given root.

Level numbering follows arm64: the leaf level is 3, the root is ``4 - levels`` (-1 with 5 levels).

Deliberate differences from the kernel: only table and page descriptors exist (no block or
contiguous mappings, no attribute bits beyond valid/type); a table's entries are kept sparsely
(a dict from index to descriptor) so that thousands of mostly-empty tables cost little host
memory; physical memory is a registry of page-sized frames (see ``localmap.mm.page_alloc``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from localmap.errors import LocalmapError

GRANULES = {"4K": 4096, "16K": 16384, "64K": 65536}
# CONFIG_ARM64_VA_BITS choices per granule (arch/arm64/Kconfig) -> CONFIG_PGTABLE_LEVELS
VA_BITS_CHOICES: dict[int, dict[int, int]] = {
    4096: {39: 3, 48: 4, 52: 5},
    16384: {36: 2, 47: 3, 48: 4, 52: 4},
    65536: {42: 2, 48: 3, 52: 3},
}

DESC_VALID = 1 << 0
DESC_TABLE = 1 << 1  # at levels < 3 "table"; at level 3 the same bit means "page"
DESC_TYPE_MASK = DESC_VALID | DESC_TABLE
ADDR_MASK = ((1 << 52) - 1) & ~0xFFF  # output address bits kept by the model (PA up to 52 bits)


def parse_granule(value: int | str) -> int:
    """'4K' / '16k' / 4096 -> page size in bytes; anything else is a LocalmapError."""
    if isinstance(value, int):
        if value in VA_BITS_CHOICES:
            return value
    else:
        text = str(value).strip().upper()
        if text in GRANULES:
            return GRANULES[text]
        if text.isdigit() and int(text) in VA_BITS_CHOICES:
            return int(text)
    raise LocalmapError(f"unknown granule {value!r}: choose one of 4K, 16K, 64K")


def granule_name(page_size: int) -> str:
    return {v: k for k, v in GRANULES.items()}[page_size]


@dataclass(frozen=True)
class Geometry:
    """Translation-table geometry of one arm64 kernel configuration."""

    page_size: int
    va_bits: int

    def __post_init__(self) -> None:
        if self.page_size not in VA_BITS_CHOICES:
            raise LocalmapError(f"unknown granule {self.page_size}: choose one of 4K, 16K, 64K")
        choices = VA_BITS_CHOICES[self.page_size]
        if self.va_bits not in choices:
            raise LocalmapError(
                f"{granule_name(self.page_size)} pages with {self.va_bits}-bit VA does not exist on "
                f"arm64; choose one of {', '.join(str(v) for v in sorted(choices))}"
            )

    # --- derived constants -------------------------------------------------------------
    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def bits_per_level(self) -> int:
        return self.page_shift - 3

    @property
    def levels(self) -> int:
        levels = (self.va_bits - 4) // self.bits_per_level
        assert levels == VA_BITS_CHOICES[self.page_size][self.va_bits]
        return levels

    @property
    def root_level(self) -> int:
        return 4 - self.levels

    @property
    def leaf_level(self) -> int:
        return 3

    def level_shift(self, level: int) -> int:
        """Bit position of the lowest VA bit a descriptor at ``level`` resolves."""
        return self.bits_per_level * (4 - level) + 3

    def entry_size(self, level: int) -> int:
        """Bytes of VA one entry at ``level`` covers."""
        return 1 << self.level_shift(level)

    def ptrs_per_table(self, level: int) -> int:
        if level == self.root_level:
            return 1 << (self.va_bits - self.level_shift(level))
        return 1 << self.bits_per_level

    @property
    def ptrs_per_pgd(self) -> int:
        return self.ptrs_per_table(self.root_level)

    @property
    def pgd_size(self) -> int:
        return self.ptrs_per_pgd * 8

    @property
    def root_alloc_bytes(self) -> int:
        """What pgd_alloc takes for one root: a PGD_SIZE kmem_cache object if smaller than a page."""
        return self.pgd_size if self.pgd_size < self.page_size else self.page_size

    @property
    def va_bits_min(self) -> int:
        if self.va_bits > 48:
            return 47 if self.page_size == 16384 else 48
        return self.va_bits

    def fallback(self) -> "Geometry":
        """The geometry a 52-bit kernel runs with on a CPU without LPA2/LVA."""
        return Geometry(self.page_size, self.va_bits_min)

    @property
    def ttbr1_base(self) -> int:
        """Lowest VA translated through TTBR1."""
        return (1 << 64) - (1 << self.va_bits)

    def index(self, va: int, level: int) -> int:
        return (va >> self.level_shift(level)) & (self.ptrs_per_table(level) - 1)

    def in_range(self, va: int) -> bool:
        return self.ttbr1_base <= va < (1 << 64)

    def describe(self) -> str:
        return f"{granule_name(self.page_size)}/{self.va_bits}"

    def all_pairs() -> list["Geometry"]:  # type: ignore[misc]
        return [Geometry(p, v) for p in sorted(VA_BITS_CHOICES) for v in sorted(VA_BITS_CHOICES[p])]

    all_pairs = staticmethod(all_pairs)  # type: ignore[assignment]


def make_desc(pa: int) -> int:
    """A valid table (levels < 3) or page (level 3) descriptor pointing at ``pa``."""
    return (pa & ADDR_MASK) | DESC_VALID | DESC_TABLE


def desc_valid(desc: int) -> bool:
    return (desc & DESC_TYPE_MASK) == DESC_TYPE_MASK


def desc_addr(desc: int) -> int:
    return desc & ADDR_MASK


@dataclass(eq=False)
class PageTable:
    """One page-table page (or a PGD_SIZE root object) at ``level``, physically at ``pa``."""

    level: int
    pa: int
    nbytes: int
    owner: str = "swapper"  # "swapper", "cpuN" (root copy / private) - for accounting and checks
    entries: dict[int, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"PageTable(L{self.level} pa={self.pa:#x} {self.owner} n={len(self.entries)})"


class TableRegistry:
    """Physical address -> PageTable; what the walker dereferences a table descriptor through."""

    def __init__(self) -> None:
        self.tables: dict[int, PageTable] = {}

    def add(self, table: PageTable) -> PageTable:
        self.tables[table.pa] = table
        return table

    def remove(self, table: PageTable) -> None:
        del self.tables[table.pa]

    def get(self, pa: int) -> PageTable | None:
        return self.tables.get(pa)


class TranslationFault(Exception):
    """A walk found no valid descriptor (not a user error: the MMU model reports it)."""

    def __init__(self, va: int, level: int):
        super().__init__(f"translation fault at level {level} for VA {va:#x}")
        self.va = va
        self.level = level


def walk(geom: Geometry, registry: TableRegistry, root_pa: int, va: int) -> int | None:
    """Translate ``va`` from the root at ``root_pa``; the physical address, or None if unmapped."""
    if not geom.in_range(va):
        return None
    table = registry.tables.get(root_pa)
    level = geom.root_level
    shift_mask = geom.page_size - 1
    while table is not None:
        desc = table.entries.get(geom.index(va, level))
        if desc is None or not desc_valid(desc):
            return None
        if level == 3:
            return desc_addr(desc) | (va & shift_mask)
        table = registry.tables.get(desc_addr(desc))
        level += 1
    return None


def walk_path(geom: Geometry, registry: TableRegistry, root_pa: int, va: int) -> list[PageTable]:
    """The tables a walk of ``va`` visits (root first), stopping at the first invalid entry."""
    path: list[PageTable] = []
    table = registry.tables.get(root_pa)
    level = geom.root_level
    while table is not None:
        path.append(table)
        desc = table.entries.get(geom.index(va, level))
        if desc is None or not desc_valid(desc) or level == 3:
            break
        table = registry.tables.get(desc_addr(desc))
        level += 1
    return path


def iter_leaves(
    geom: Geometry, registry: TableRegistry, table: PageTable, va_base: int | None = None
) -> Iterator[tuple[int, int]]:
    """Every (VA, PA) page mapping reachable from ``table`` (a root if va_base is None)."""
    if va_base is None:
        va_base = geom.ttbr1_base
    level = table.level
    shift = geom.level_shift(level)
    for idx, desc in table.entries.items():
        if not desc_valid(desc):
            continue
        va = va_base + (idx << shift)
        if level == 3:
            yield va, desc_addr(desc)
        else:
            child = registry.tables.get(desc_addr(desc))
            if child is not None:
                yield from iter_leaves(geom, registry, child, va)


def iter_tables(registry: TableRegistry, table: PageTable) -> Iterator[PageTable]:
    """``table`` and every table below it."""
    yield table
    if table.level == 3:
        return
    for desc in table.entries.values():
        if desc_valid(desc):
            child = registry.tables.get(desc_addr(desc))
            if child is not None:
                yield from iter_tables(registry, child)


TableAlloc = Callable[[int], PageTable]  # level -> new empty table
