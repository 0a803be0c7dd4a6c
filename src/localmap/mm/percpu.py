"""Linux 6.12's percpu allocator (mm/percpu.c, mm/percpu-vm.c), re-implemented in Python.

What is modelled, with the kernel's names:

- first-chunk geometry: :func:`pcpu_build_alloc_info` (size_sum, min unit, units per
  allocation, groups) and :meth:`Percpu.__init__` doing what ``pcpu_setup_first_chunk`` does
  (reserved chunk and dynamic first chunk carved out of unit 0 with ``start_offset`` and
  ``end_offset`` hidden), in embed and page modes, for 4K/16K/64K pages;
- chunks: alloc and bound bitmaps of 4-byte bits, per-block metadata (``contig_hint``,
  ``scan_hint``, ``left_free``, ``right_free``, ``first_free``) and the chunk's own metadata, with
  the same update rules on allocation and free, so the kernel's heuristic hints (which can lag
  the bitmap) are reproduced rather than recomputed exactly;
- slot lists with the kernel's ordering (front on growth, tail on shrink, moves to slot 0 on
  a failed fit below ``PCPU_SLOT_FAIL_THRESHOLD``), the sidelined/free/to_depopulate slots and
  chunk isolation;
- the populated bitmap, ``nr_empty_pop_pages`` bookkeeping, population on non-atomic
  allocation, atomic allocations limited to populated pages;
- ``free_percpu`` (with the isolation / balance-scheduling decisions) and the balance work
  (``pcpu_balance_free``, ``pcpu_reclaim_populated``, ``pcpu_balance_populated``) as an explicit
  operation :meth:`Percpu.balance`, since in the kernel it runs asynchronously.

Deliberate differences from the kernel:

- bitmaps are Python integers and ``populated`` is a list of bools; there is no locking and no
  memory is touched (``pcpu_populate_chunk`` never fails);
- chunk virtual addresses come from a pluggable ``vm_areas`` callable (default: top-down
  placement below ``vmalloc_end``, the shape of ``pcpu_get_vm_areas``) so a replay can impose
  the kernel's own addresses;
- allocation is split into a *search* (:meth:`Percpu.pcpu_alloc_search`, with the search's own
  side effects on hints and slot order) and a *commit* (:meth:`Percpu.commit_alloc`), so a
  replay can compare the model's choice with the kernel's before applying the kernel's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from localmap.arch.arm64.pgtable import GRANULES
from localmap.errors import LocalmapError
from localmap.units import MASK64

PCPU_MIN_ALLOC_SHIFT = 2
PCPU_MIN_ALLOC_SIZE = 1 << PCPU_MIN_ALLOC_SHIFT
PCPU_SLOT_BASE_SHIFT = 5
PCPU_SLOT_FAIL_THRESHOLD = 3
PCPU_EMPTY_POP_PAGES_LOW = 2
PCPU_EMPTY_POP_PAGES_HIGH = 4
PAGE_SIZES = tuple(GRANULES.values())
# include/linux/percpu.h on 64-bit with the default size shift (ingest.kconfig derives a
# kernel's own values from its .config)
PERCPU_MODULE_RESERVE = 8 << 10
PERCPU_DYNAMIC_RESERVE = 28 << 10
PERCPU_DYNAMIC_EARLY_SIZE = 20 << 10


def _check_page_size(page_size: int) -> int:
    if page_size not in PAGE_SIZES:
        raise LocalmapError(f"unknown page size {page_size} (expected one of 4K, 16K, 64K)")
    return page_size


def pfn_align(x: int, page_size: int) -> int:
    return (x + page_size - 1) // page_size * page_size


def pcpu_min_unit_size(page_size: int) -> int:
    """PCPU_MIN_UNIT_SIZE: 32K rounded up to a page; also the largest allocation."""
    return pfn_align(32 << 10, page_size)


def fls(x: int) -> int:
    return x.bit_length()


def _size_to_slot_raw(size: int) -> int:
    return max(fls(size) - PCPU_SLOT_BASE_SHIFT + 2, 1)


# ---------------------------------------------------------------------------------------------
# bitmaps on Python ints
# ---------------------------------------------------------------------------------------------

def find_next_bit(m: int, size: int, start: int) -> int:
    if start >= size:
        return size
    x = m >> start
    if not x:
        return size
    r = start + (x & -x).bit_length() - 1
    return r if r < size else size


def find_next_zero_bit(m: int, size: int, start: int) -> int:
    if start >= size:
        return size
    x = ~m >> start
    r = start + (x & -x).bit_length() - 1
    return r if r < size else size


def find_last_bit(m: int, size: int) -> int:
    x = m & ((1 << size) - 1)
    return x.bit_length() - 1 if x else size


def bitmap_set(m: int, start: int, n: int) -> int:
    return m | (((1 << n) - 1) << start)


def bitmap_clear(m: int, start: int, n: int) -> int:
    return m & ~(((1 << n) - 1) << start)


# ---------------------------------------------------------------------------------------------
# first-chunk geometry
# ---------------------------------------------------------------------------------------------

@dataclass
class PcpuGroupInfo:
    base_offset: int
    nr_units: int
    cpu_map: list[int | None]  # None marks an unused unit (NR_CPUS in the kernel)


@dataclass
class PcpuAllocInfo:
    """``struct pcpu_alloc_info``."""

    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int
    atom_size: int
    alloc_size: int
    page_size: int
    groups: list[PcpuGroupInfo] = field(default_factory=list)

    @property
    def nr_groups(self) -> int:
        return len(self.groups)

    @property
    def nr_units(self) -> int:
        return sum(g.nr_units for g in self.groups)

    @property
    def unit_pages(self) -> int:
        return self.unit_size // self.page_size

    @property
    def group_offsets(self) -> list[int]:
        return [g.base_offset for g in self.groups]

    @property
    def group_sizes(self) -> list[int]:
        return [g.nr_units * self.unit_size for g in self.groups]

    @property
    def unit_offsets(self) -> dict[int, int]:
        """cpu -> offset of its unit from the chunk base (``pcpu_unit_offsets``)."""
        out = {}
        for g in self.groups:
            for i, cpu in enumerate(g.cpu_map):
                if cpu is not None:
                    out[cpu] = g.base_offset + i * self.unit_size
        return out

    @property
    def unit_map(self) -> dict[int, int]:
        out, unit = {}, 0
        for g in self.groups:
            for i, cpu in enumerate(g.cpu_map):
                if cpu is not None:
                    out[cpu] = unit + i
            unit += g.nr_units
        return out

    @property
    def chunk_span(self) -> int:
        """Bytes from the lowest to the highest unit end of a chunk."""
        return max(g.base_offset + g.nr_units * self.unit_size for g in self.groups) - \
            min(g.base_offset for g in self.groups)


def pcpu_build_alloc_info(static_size: int, reserved_size: int, dyn_size: int, atom_size: int,
                          possible_cpus: int | Iterable[int], page_size: int = 4096,
                          cpu_to_node: Callable[[int], int] | None = None,
                          dynamic_early_size: int = PERCPU_DYNAMIC_EARLY_SIZE) -> PcpuAllocInfo:
    """The kernel's ``pcpu_build_alloc_info``: unit size, units per allocation and groups.

    ``cpu_to_node`` groups CPUs like ``pcpu_cpu_distance`` (same node = LOCAL_DISTANCE);
    ``None`` puts every CPU in one group.
    """
    _check_page_size(page_size)
    cpus = list(range(possible_cpus)) if isinstance(possible_cpus, int) else sorted(possible_cpus)
    if not cpus:
        raise LocalmapError("a machine needs at least one possible CPU")
    size_sum = pfn_align(static_size + reserved_size + max(dyn_size, dynamic_early_size),
                         page_size)
    dyn_size = size_sum - static_size - reserved_size
    min_unit_size = max(size_sum, pcpu_min_unit_size(page_size))
    alloc_size = -(-min_unit_size // atom_size) * atom_size
    upa = alloc_size // min_unit_size
    while alloc_size % upa or (alloc_size // upa) % page_size:
        upa -= 1
    max_upa = upa

    # group CPUs by proximity, first CPU of the remaining mask starts a group
    remaining = list(cpus)
    group_members: list[list[int]] = []
    while remaining:
        first = remaining.pop(0)
        members = [first]
        if cpu_to_node is None:
            members += remaining
            remaining = []
        else:
            node = cpu_to_node(first)
            keep = []
            for t in remaining:
                (members if cpu_to_node(t) == node else keep).append(t)
            remaining = keep
        group_members.append(members)
    group_cnt = [len(m) for m in group_members]

    last_allocs = None
    best_upa = 0
    for upa in range(max_upa, 0, -1):
        if alloc_size % upa or (alloc_size // upa) % page_size:
            continue
        allocs = wasted = 0
        for cnt in group_cnt:
            this = -(-cnt // upa)
            allocs += this
            wasted += this * upa - cnt
        if wasted > len(cpus) // 3:
            continue
        if last_allocs is not None and allocs > last_allocs:
            break
        last_allocs = allocs
        best_upa = upa
    assert best_upa
    upa = best_upa
    unit_size = alloc_size // upa
    groups = []
    unit = 0
    for members in group_members:
        nr = -(-len(members) // upa) * upa
        cpu_map: list[int | None] = list(members) + [None] * (nr - len(members))
        groups.append(PcpuGroupInfo(unit * unit_size, nr, cpu_map))
        unit += nr
    return PcpuAllocInfo(static_size, reserved_size, dyn_size, unit_size, atom_size, alloc_size,
                         page_size, groups)


def first_chunk_alloc_info(mode: str, static_size: int, possible_cpus: int | Iterable[int],
                           page_size: int = 4096, *, module_reserve: int = PERCPU_MODULE_RESERVE,
                           dynamic_reserve: int = PERCPU_DYNAMIC_RESERVE,
                           dynamic_early_size: int = PERCPU_DYNAMIC_EARLY_SIZE,
                           atom_size: int | None = None,
                           cpu_to_node: Callable[[int], int] | None = None) -> PcpuAllocInfo:
    """Geometry of the first chunk as arm64's ``setup_per_cpu_areas`` builds it.

    ``embed``: ``pcpu_embed_first_chunk(PERCPU_MODULE_RESERVE, PERCPU_DYNAMIC_RESERVE,
    PAGE_SIZE, ...)``; ``page``: ``pcpu_page_first_chunk(PERCPU_MODULE_RESERVE, ...)``, which
    asks for no dynamic reserve beyond the early minimum and one group.
    """
    if mode == "embed":
        return pcpu_build_alloc_info(static_size, module_reserve, dynamic_reserve,
                                     atom_size or page_size, possible_cpus, page_size,
                                     cpu_to_node, dynamic_early_size)
    if mode == "page":
        return pcpu_build_alloc_info(static_size, module_reserve, 0, page_size, possible_cpus,
                                     page_size, None, dynamic_early_size)
    raise LocalmapError(f"unknown first-chunk mode {mode!r} (expected embed or page)")


# ---------------------------------------------------------------------------------------------
# chunks and metadata blocks
# ---------------------------------------------------------------------------------------------

class PcpuBlockMd:
    """``struct pcpu_block_md``: hints about one page-sized block (or the whole chunk)."""

    __slots__ = ("scan_hint", "scan_hint_start", "contig_hint", "contig_hint_start",
                 "left_free", "right_free", "first_free", "nr_bits")

    def __init__(self, nr_bits: int):
        self.scan_hint = 0
        self.scan_hint_start = 0
        self.contig_hint = nr_bits
        self.contig_hint_start = 0
        self.left_free = nr_bits
        self.right_free = nr_bits
        self.first_free = 0
        self.nr_bits = nr_bits

    def state(self) -> tuple:
        return (self.scan_hint, self.scan_hint_start, self.contig_hint, self.contig_hint_start,
                self.left_free, self.right_free, self.first_free)

    def copy(self) -> "PcpuBlockMd":
        b = PcpuBlockMd.__new__(PcpuBlockMd)
        (b.scan_hint, b.scan_hint_start, b.contig_hint, b.contig_hint_start, b.left_free,
         b.right_free, b.first_free, b.nr_bits) = (
            self.scan_hint, self.scan_hint_start, self.contig_hint, self.contig_hint_start,
            self.left_free, self.right_free, self.first_free, self.nr_bits)
        return b


class PcpuChunk:
    """``struct pcpu_chunk``."""

    __slots__ = ("base_addr", "nr_pages", "start_offset", "end_offset", "alloc_map",
                 "bound_map", "md_blocks", "chunk_md", "free_bytes", "populated",
                 "nr_populated", "nr_empty_pop_pages", "isolated", "immutable", "is_first",
                 "is_reserved", "map_bits", "slot", "seq", "__weakref__")

    def __init__(self, nr_pages: int, block_bits: int):
        self.base_addr = 0
        self.nr_pages = nr_pages
        self.start_offset = 0
        self.end_offset = 0
        self.map_bits = nr_pages * block_bits
        self.alloc_map = 0
        self.bound_map = 0
        self.md_blocks = [PcpuBlockMd(block_bits) for _ in range(nr_pages)]
        self.chunk_md = PcpuBlockMd(self.map_bits)
        self.free_bytes = 0
        self.populated = [False] * nr_pages
        self.nr_populated = 0
        self.nr_empty_pop_pages = 0
        self.isolated = False
        self.immutable = False
        self.is_first = False
        self.is_reserved = False
        self.slot = -1
        self.seq = 0

    def __repr__(self) -> str:
        kind = "reserved" if self.is_reserved else ("first" if self.is_first else "dynamic")
        return f"<PcpuChunk {kind} base={self.base_addr:#x} free={self.free_bytes}>"

    @property
    def used_bytes(self) -> int:
        """Bytes allocated in the served region (hidden start/end excluded)."""
        return self.map_bits * PCPU_MIN_ALLOC_SIZE - self.free_bytes - self.start_offset - \
            self.end_offset

    def copy(self) -> "PcpuChunk":
        c = PcpuChunk.__new__(PcpuChunk)
        for name in PcpuChunk.__slots__:
            if name == "__weakref__":
                continue
            setattr(c, name, getattr(self, name))
        c.md_blocks = [b.copy() for b in self.md_blocks]
        c.chunk_md = self.chunk_md.copy()
        c.populated = list(self.populated)
        return c

    def load_state(self, other: "PcpuChunk") -> None:
        """Take every field of ``other`` (a copy made by :meth:`copy`)."""
        for name in PcpuChunk.__slots__:
            if name != "__weakref__":
                setattr(self, name, getattr(other, name))

    def areas(self) -> list[tuple[int, int]]:
        """Allocated areas as (bit_off, bits), hidden start/end regions included."""
        out = []
        bits = self.map_bits
        i = find_next_bit(self.alloc_map, bits, 0)
        while i < bits:
            j = find_next_bit(self.bound_map, bits + 1, i + 1)
            out.append((i, j - i))
            i = find_next_bit(self.alloc_map, bits, j)
        return out


class PcpuListener(Protocol):
    def chunk_created(self, chunk: PcpuChunk) -> None: ...
    def chunk_destroyed(self, chunk: PcpuChunk) -> None: ...
    def pages_populated(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None: ...
    def pages_depopulated(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None: ...
    def tlb_flushed(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None: ...


def _notify(listener, name: str, *args) -> None:
    if listener is not None:
        fn = getattr(listener, name, None)
        if fn is not None:
            fn(*args)


class PcpuAllocError(LocalmapError):
    """An allocation the model refuses as the kernel would (bad size/alignment, no space)."""



def _restart_contig_hint(md: "PcpuBlockMd", use_scan_hint: bool) -> int:
    """The start of a hint refresh (both chunk and block refreshes begin so): the scan hint
    becomes the contiguous hint and the scan continues after it, or, without one (or when a full
    scan is asked for), the contiguous hint is cleared and the scan starts at first_free."""
    if use_scan_hint and md.scan_hint:
        md.contig_hint_start = md.scan_hint_start
        md.contig_hint = md.scan_hint
        md.scan_hint = 0
        return md.contig_hint_start + md.contig_hint
    md.contig_hint = 0
    return md.first_free


class Percpu:
    """One machine's percpu allocator state.

    ``base_addr`` is ``pcpu_base_addr`` (unit 0 of the first chunk); ``per_cpu_start`` is
    ``__per_cpu_start`` (the link address of the static percpu section), which makes pointers
    look like the kernel's: ``ptr = addr - pcpu_base_addr + __per_cpu_start``.
    """

    def __init__(self, ai: PcpuAllocInfo, *, mode: str = "embed",
                 base_addr: int = 0xFFFF000000000000, per_cpu_start: int | None = None,
                 vm_areas: Callable[["Percpu"], int] | None = None,
                 vmalloc_end: int = 0xFFFFC1FFBF800000,
                 listener: PcpuListener | None = None):
        self.ai = ai
        self.mode = mode
        self.page_size = _check_page_size(ai.page_size)
        self.page_shift = self.page_size.bit_length() - 1
        self.block_bits = self.page_size >> PCPU_MIN_ALLOC_SHIFT
        self.unit_pages = ai.unit_size >> self.page_shift
        self.unit_size = self.unit_pages << self.page_shift
        self.min_unit_size = pcpu_min_unit_size(self.page_size)
        self.listener = listener
        self.vm_areas = vm_areas
        self._vm_next_top = vmalloc_end
        self.unit_offsets = ai.unit_offsets
        self.possible_cpus = sorted(self.unit_offsets)
        self.base_addr = base_addr
        self.per_cpu_start = per_cpu_start if per_cpu_start is not None else base_addr
        self.sidelined_slot = _size_to_slot_raw(self.unit_size) + 1
        self.free_slot = self.sidelined_slot + 1
        self.to_depopulate_slot = self.free_slot + 1
        self.nr_slots = self.to_depopulate_slot + 1
        self.slots: list[list[PcpuChunk]] = [[] for _ in range(self.nr_slots)]
        self.nr_empty_pop_pages = 0
        self.nr_populated = 0
        self.balance_pending = False
        self.atomic_alloc_failed = False
        # dynamic chunks by base_addr; the first and reserved chunks are kept apart because
        # with 16K/64K pages they share one base_addr (both start in the same page)
        self.chunks_by_base: dict[int, PcpuChunk] = {}
        self._seq = 0
        self.nr_created = 0
        self.nr_destroyed = 0

        static_size = (ai.static_size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
        dyn_size = ai.dyn_size - (static_size - ai.static_size)
        self.reserved_chunk: PcpuChunk | None = None
        if ai.reserved_size:
            self.reserved_chunk = self._alloc_first_chunk(base_addr + static_size,
                                                          ai.reserved_size)
            self.reserved_chunk.is_reserved = True
        self.first_chunk = self._alloc_first_chunk(
            base_addr + static_size + ai.reserved_size, dyn_size)
        self.first_chunk.is_first = True
        self.nr_empty_pop_pages = self.first_chunk.nr_empty_pop_pages
        self.chunk_relocate(self.first_chunk, -1)
        self.nr_populated = (static_size + ai.reserved_size + dyn_size) >> self.page_shift

    # ----- geometry helpers ------------------------------------------------------------------
    def size_to_slot(self, size: int) -> int:
        if size == self.unit_size:
            return self.free_slot
        return _size_to_slot_raw(size)

    def chunk_slot(self, chunk: PcpuChunk) -> int:
        if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE or chunk.chunk_md.contig_hint == 0:
            return 0
        return self.size_to_slot(chunk.chunk_md.contig_hint * PCPU_MIN_ALLOC_SIZE)

    @property
    def chunks(self) -> list[PcpuChunk]:
        """Live chunks: reserved, first, then dynamic ones by creation order."""
        head = [c for c in (self.reserved_chunk, self.first_chunk) if c is not None]
        return head + sorted(self.chunks_by_base.values(), key=lambda c: c.seq)

    @property
    def nr_chunks(self) -> int:
        return len(self.chunks_by_base) + 1 + (self.reserved_chunk is not None)

    def _served(self, c: PcpuChunk, off: int) -> bool:
        return c.start_offset <= off < c.nr_pages * self.page_size - c.end_offset

    def find_chunk(self, base_addr: int, off: int | None = None,
                   reserved: bool | None = None) -> PcpuChunk | None:
        """The live chunk a tracepoint's ``base_addr`` (and ``off``) designate."""
        c = self.chunks_by_base.get(base_addr)
        if c is not None:
            return c
        for c in (self.first_chunk, self.reserved_chunk):
            if c is None or c.base_addr != base_addr:
                continue
            if reserved is not None and c.is_reserved != reserved:
                continue
            if off is None or self._served(c, off):
                return c
        return None

    def chunk_addr(self, chunk: PcpuChunk, cpu: int, page: int) -> int:
        return chunk.base_addr + self.unit_offsets[cpu] + (page << self.page_shift)

    def addr_to_ptr(self, addr: int) -> int:
        return (addr - self.base_addr + self.per_cpu_start) & MASK64

    def ptr_to_addr(self, ptr: int) -> int:
        return (ptr - self.per_cpu_start + self.base_addr) & MASK64

    def per_cpu_offset(self, cpu: int) -> int:
        """``__per_cpu_offset[cpu]`` (unsigned, wraps like the kernel's unsigned long)."""
        return (self.base_addr - self.per_cpu_start + self.unit_offsets[cpu]) & MASK64

    def per_cpu_ptr(self, ptr: int, cpu: int) -> int:
        if cpu not in self.unit_offsets:
            raise LocalmapError(f"CPU {cpu} is not possible on this machine "
                                f"({len(self.possible_cpus)} CPUs)")
        return (ptr + self.per_cpu_offset(cpu)) & MASK64

    # ----- slot lists ------------------------------------------------------------------------
    def _list_move(self, chunk: PcpuChunk, slot: int, front: bool) -> None:
        if chunk.slot >= 0:
            self.slots[chunk.slot].remove(chunk)
        lst = self.slots[slot]
        if front:
            lst.insert(0, chunk)
        else:
            lst.append(chunk)
        chunk.slot = slot

    def _list_del(self, chunk: PcpuChunk) -> None:
        if chunk.slot >= 0:
            self.slots[chunk.slot].remove(chunk)
            chunk.slot = -1

    def chunk_move(self, chunk: PcpuChunk, slot: int, front: bool = True) -> None:
        if chunk is not self.reserved_chunk:
            self._list_move(chunk, slot, front)

    def chunk_relocate(self, chunk: PcpuChunk, oslot: int) -> None:
        nslot = self.chunk_slot(chunk)
        if chunk.isolated:
            return
        if oslot != nslot:
            self.chunk_move(chunk, nslot, oslot < nslot)

    def isolate_chunk(self, chunk: PcpuChunk) -> None:
        if not chunk.isolated:
            chunk.isolated = True
            self.nr_empty_pop_pages -= chunk.nr_empty_pop_pages
        self._list_move(chunk, self.to_depopulate_slot, True)

    def reintegrate_chunk(self, chunk: PcpuChunk) -> None:
        if chunk.isolated:
            chunk.isolated = False
            self.nr_empty_pop_pages += chunk.nr_empty_pop_pages
            self.chunk_relocate(chunk, -1)

    def update_empty_pages(self, chunk: PcpuChunk, nr: int) -> None:
        chunk.nr_empty_pop_pages += nr
        if chunk is not self.reserved_chunk and not chunk.isolated:
            self.nr_empty_pop_pages += nr

    # ----- hint machinery --------------------------------------------------------------------
    @staticmethod
    def block_update(block: PcpuBlockMd, start: int, end: int) -> None:
        contig = end - start
        if start < block.first_free:
            block.first_free = start
        if start == 0:
            block.left_free = contig
        if end == block.nr_bits:
            block.right_free = contig
        if contig > block.contig_hint:
            if start > block.contig_hint_start:
                if block.contig_hint > block.scan_hint:
                    block.scan_hint_start = block.contig_hint_start
                    block.scan_hint = block.contig_hint
                elif start < block.scan_hint_start:
                    block.scan_hint = 0
            else:
                block.scan_hint = 0
            block.contig_hint_start = start
            block.contig_hint = contig
        elif contig == block.contig_hint:
            chs = block.contig_hint_start
            if chs and (not start or (start & -start) > (chs & -chs)):
                block.contig_hint_start = start
                if start < block.scan_hint_start and block.contig_hint > block.scan_hint:
                    block.scan_hint = 0
            elif start > block.scan_hint_start or block.contig_hint > block.scan_hint:
                block.scan_hint_start = start
                block.scan_hint = contig
        else:
            if start < block.contig_hint_start and (
                    contig > block.scan_hint or
                    (contig == block.scan_hint and start > block.scan_hint_start)):
                block.scan_hint_start = start
                block.scan_hint = contig

    def _block_map(self, chunk: PcpuChunk, index: int) -> int:
        bb = self.block_bits
        return (chunk.alloc_map >> (index * bb)) & ((1 << bb) - 1)

    def block_update_scan(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        s_off = bit_off & (bb - 1)
        e_off = s_off + bits
        if e_off > bb:
            return
        s_index = bit_off // bb
        block = chunk.md_blocks[s_index]
        l_bit = find_last_bit(self._block_map(chunk, s_index), s_off)
        s_off = 0 if s_off == l_bit else l_bit + 1
        self.block_update(block, s_off, e_off)

    def _scan_start(self, chunk: PcpuChunk, bit_off: int):
        """The state a region scan of the metadata blocks starts in at ``bit_off``: block bits,
        block index, offset within that block, free bits carried over (none yet), the blocks
        and their number."""
        bb = self.block_bits
        return bb, bit_off // bb, bit_off & (bb - 1), 0, chunk.md_blocks, chunk.nr_pages

    def next_md_free_region(self, chunk: PcpuChunk, bit_off: int) -> tuple[int, int]:
        bb, i, block_off, bits, blocks, nr_blocks = self._scan_start(chunk, bit_off)
        while i < nr_blocks:
            block = blocks[i]
            if bits:
                bits += block.left_free
                if block.left_free == bb:
                    i += 1
                    continue
                return bit_off, bits
            bits = block.contig_hint
            if bits and block.contig_hint_start >= block_off and \
                    bits + block.contig_hint_start < bb:
                return i * bb + block.contig_hint_start, bits
            block_off = 0
            bits = block.right_free
            bit_off = (i + 1) * bb - block.right_free
            i += 1
        return bit_off, bits

    def chunk_refresh_hint(self, chunk: PcpuChunk, full_scan: bool) -> None:
        md = chunk.chunk_md
        bit_off = _restart_contig_hint(md, use_scan_hint=not full_scan)
        map_bits = chunk.map_bits
        bit_off, bits = self.next_md_free_region(chunk, bit_off)
        while bit_off < map_bits:
            self.block_update(md, bit_off, bit_off + bits)
            bit_off, bits = self.next_md_free_region(chunk, bit_off + bits + 1)

    def block_refresh_hint(self, chunk: PcpuChunk, index: int) -> None:
        block = chunk.md_blocks[index]
        bb = self.block_bits
        m = self._block_map(chunk, index)
        start = _restart_contig_hint(block, use_scan_hint=True)
        block.right_free = 0
        s = find_next_zero_bit(m, bb, start)
        while s < bb:
            e = find_next_bit(m, bb, s + 1)
            self.block_update(block, s, e)
            s = find_next_zero_bit(m, bb, e + 1)

    def _block_span(self, chunk: PcpuChunk, bit_off: int, bits: int):
        """The blocks an area ``[bit_off, bit_off + bits)`` touches: first and last block index,
        the area's start in the first and its end in the last (1..block_bits), both blocks."""
        bb = self.block_bits
        s_index = bit_off // bb
        e_index = (bit_off + bits - 1) // bb
        s_off = bit_off & (bb - 1)
        e_off = ((bit_off + bits - 1) & (bb - 1)) + 1
        return s_index, e_index, s_off, e_off, chunk.md_blocks[s_index], chunk.md_blocks[e_index]

    def block_update_hint_alloc(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        md = chunk.chunk_md
        nr_empty_pages = 0
        s_index, e_index, s_off, e_off, s_block, e_block = self._block_span(chunk, bit_off, bits)
        blocks = chunk.md_blocks

        if s_block.contig_hint == bb:
            nr_empty_pages += 1
        if s_off == s_block.first_free:
            s_block.first_free = find_next_zero_bit(self._block_map(chunk, s_index), bb,
                                                    s_off + bits)
        if s_block.scan_hint_start < s_off + bits and \
                s_off < s_block.scan_hint_start + s_block.scan_hint:
            s_block.scan_hint = 0
        if s_block.contig_hint_start < s_off + bits and \
                s_off < s_block.contig_hint_start + s_block.contig_hint:
            if not s_off:
                s_block.left_free = 0
            self.block_refresh_hint(chunk, s_index)
        else:
            s_block.left_free = min(s_block.left_free, s_off)
            if s_index == e_index:
                s_block.right_free = min(s_block.right_free, bb - e_off)
            else:
                s_block.right_free = 0

        if s_index != e_index:
            if e_block.contig_hint == bb:
                nr_empty_pages += 1
            e_block.first_free = find_next_zero_bit(self._block_map(chunk, e_index), bb, e_off)
            end_index = e_index
            if e_off == bb:
                end_index = e_index + 1
            else:
                if e_off > e_block.scan_hint_start:
                    e_block.scan_hint = 0
                e_block.left_free = 0
                if e_off > e_block.contig_hint_start:
                    self.block_refresh_hint(chunk, e_index)
                else:
                    e_block.right_free = min(e_block.right_free, bb - e_off)
            nr_empty_pages += e_index - s_index - 1
            for k in range(s_index + 1, end_index):
                b = blocks[k]
                b.scan_hint = 0
                b.contig_hint = 0
                b.left_free = 0
                b.right_free = 0

        if nr_empty_pages:
            self.update_empty_pages(chunk, -nr_empty_pages)
        if md.scan_hint_start < bit_off + bits and bit_off < md.scan_hint_start + md.scan_hint:
            md.scan_hint = 0
        if md.contig_hint_start < bit_off + bits and \
                bit_off < md.contig_hint_start + md.contig_hint:
            self.chunk_refresh_hint(chunk, False)

    def block_update_hint_free(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        nr_empty_pages = 0
        s_index, e_index, s_off, e_off, s_block, e_block = self._block_span(chunk, bit_off, bits)
        blocks = chunk.md_blocks

        start = s_off
        if s_off == s_block.contig_hint + s_block.contig_hint_start:
            start = s_block.contig_hint_start
        else:
            l_bit = find_last_bit(self._block_map(chunk, s_index), start)
            start = 0 if start == l_bit else l_bit + 1
        if e_off == e_block.contig_hint_start:
            end = e_block.contig_hint_start + e_block.contig_hint
        else:
            end = find_next_bit(self._block_map(chunk, e_index), bb, e_off)

        e_off2 = end if s_index == e_index else bb
        if not start and e_off2 == bb:
            nr_empty_pages += 1
        self.block_update(s_block, start, e_off2)

        if s_index != e_index:
            if end == bb:
                nr_empty_pages += 1
            self.block_update(e_block, 0, end)
            nr_empty_pages += e_index - s_index - 1
            for k in range(s_index + 1, e_index):
                b = blocks[k]
                b.first_free = 0
                b.scan_hint = 0
                b.contig_hint_start = 0
                b.contig_hint = bb
                b.left_free = bb
                b.right_free = bb

        if nr_empty_pages:
            self.update_empty_pages(chunk, nr_empty_pages)
        if (end - start) >= bb or s_index != e_index:
            self.chunk_refresh_hint(chunk, True)
        else:
            # As in 6.12: the start is made chunk-relative but ``end`` is passed block-relative,
            # so outside block 0 the chunk hint only learns first_free from this free (the
            # negative "contig" changes nothing else). The model keeps that quirk: it decides
            # which chunks stay on slot 0 (see docs/replay.md, "A kernel quirk the model keeps").
            self.block_update(chunk.chunk_md, s_index * bb + start, end)

    # ----- search ----------------------------------------------------------------------------
    @staticmethod
    def _check_block_hint(block: PcpuBlockMd, bits: int, align: int) -> bool:
        chs = block.contig_hint_start
        bit_off = ((chs + align - 1) & -align) - chs
        return bit_off + bits <= block.contig_hint

    @staticmethod
    def _next_hint(block: PcpuBlockMd, alloc_bits: int) -> int:
        if block.scan_hint and block.contig_hint_start > block.scan_hint_start and \
                alloc_bits > block.scan_hint:
            return block.scan_hint_start + block.scan_hint
        return block.first_free

    def next_fit_region(self, chunk: PcpuChunk, alloc_bits: int, align: int,
                        bit_off: int) -> tuple[int, int]:
        bb, i, block_off, bits, blocks, nr_blocks = self._scan_start(chunk, bit_off)
        while i < nr_blocks:
            block = blocks[i]
            if bits:
                bits += block.left_free
                if bits >= alloc_bits:
                    return bit_off, bits
                if block.left_free == bb:
                    i += 1
                    continue
            chs = block.contig_hint_start
            bits = ((chs + align - 1) & -align) - chs
            if block.contig_hint and chs >= block_off and \
                    block.contig_hint >= bits + alloc_bits:
                start = self._next_hint(block, alloc_bits)
                bits += alloc_bits + chs - start
                return i * bb + start, bits
            block_off = 0
            off = (bb - block.right_free + align - 1) & -align
            bits = bb - off
            bit_off = i * bb + off
            if bits >= alloc_bits:
                return bit_off, bits
            i += 1
        return chunk.map_bits, bits

    def _is_populated(self, chunk: PcpuChunk, bit_off: int, bits: int) -> tuple[bool, int]:
        ps = self.page_size
        start = (bit_off * PCPU_MIN_ALLOC_SIZE) // ps
        end = -(-((bit_off + bits) * PCPU_MIN_ALLOC_SIZE) // ps)
        pop = chunk.populated
        i = start
        while i < end and pop[i]:
            i += 1
        if i >= end:
            return True, 0
        j = i + 1
        while j < end and not pop[j]:
            j += 1
        return False, j * ps // PCPU_MIN_ALLOC_SIZE

    def find_block_fit(self, chunk: PcpuChunk, alloc_bits: int, align: int,
                       pop_only: bool) -> int:
        md = chunk.chunk_md
        if not self._check_block_hint(md, alloc_bits, align):
            return -1
        bit_off = self._next_hint(md, alloc_bits)
        map_bits = chunk.map_bits
        bit_off, bits = self.next_fit_region(chunk, alloc_bits, align, bit_off)
        while bit_off < map_bits:
            if not pop_only:
                break
            ok, next_off = self._is_populated(chunk, bit_off, bits)
            if ok:
                break
            bit_off, bits = self.next_fit_region(chunk, alloc_bits, align, next_off)
        if bit_off >= map_bits:
            return -1
        return bit_off

    def find_zero_area(self, chunk: PcpuChunk, size: int, start: int, nr: int,
                       align_mask: int) -> tuple[int, int, int]:
        m = chunk.alloc_map
        largest_off = largest_bits = 0
        while True:
            index = find_next_zero_bit(m, size, start)
            index = (index + align_mask) & ~align_mask
            area_off = index
            end = index + nr
            if end > size:
                return end, largest_off, largest_bits
            i = find_next_bit(m, end, index)
            if i < end:
                area_bits = i - area_off
                if area_bits > largest_bits or (
                        area_bits == largest_bits and largest_off and
                        (not area_off or (area_off & -area_off) > (largest_off & -largest_off))):
                    largest_off = area_off
                    largest_bits = area_bits
                start = i + 1
                continue
            return index, largest_off, largest_bits

    def alloc_area_search(self, chunk: PcpuChunk, alloc_bits: int, align: int,
                          start: int) -> int:
        """The search half of ``pcpu_alloc_area``; returns bit_off or -1."""
        align_mask = align - 1 if align else 0
        end = min(start + alloc_bits + self.block_bits, chunk.map_bits)
        bit_off, area_off, area_bits = self.find_zero_area(chunk, end, start, alloc_bits,
                                                           align_mask)
        if bit_off >= end:
            return -1
        if area_bits:
            self.block_update_scan(chunk, area_off, area_bits)
        return bit_off

    def alloc_area_commit(self, chunk: PcpuChunk, bit_off: int, alloc_bits: int) -> int:
        """The commit half of ``pcpu_alloc_area``; returns the byte offset."""
        oslot = self.chunk_slot(chunk)
        chunk.alloc_map = bitmap_set(chunk.alloc_map, bit_off, alloc_bits)
        bm = chunk.bound_map | (1 << bit_off)
        bm = bitmap_clear(bm, bit_off + 1, alloc_bits - 1)
        chunk.bound_map = bm | (1 << (bit_off + alloc_bits))
        chunk.free_bytes -= alloc_bits * PCPU_MIN_ALLOC_SIZE
        md = chunk.chunk_md
        if bit_off == md.first_free:
            md.first_free = find_next_zero_bit(chunk.alloc_map, chunk.map_bits,
                                               bit_off + alloc_bits)
        self.block_update_hint_alloc(chunk, bit_off, alloc_bits)
        self.chunk_relocate(chunk, oslot)
        return bit_off * PCPU_MIN_ALLOC_SIZE

    def free_area(self, chunk: PcpuChunk, off: int) -> int:
        """``pcpu_free_area``: frees the area starting at byte ``off``; returns bytes freed."""
        oslot = self.chunk_slot(chunk)
        bit_off = off // PCPU_MIN_ALLOC_SIZE
        end = find_next_bit(chunk.bound_map, chunk.map_bits, bit_off + 1)
        bits = end - bit_off
        chunk.alloc_map = bitmap_clear(chunk.alloc_map, bit_off, bits)
        freed = bits * PCPU_MIN_ALLOC_SIZE
        chunk.free_bytes += freed
        md = chunk.chunk_md
        if bit_off < md.first_free:
            md.first_free = bit_off
        self.block_update_hint_free(chunk, bit_off, bits)
        self.chunk_relocate(chunk, oslot)
        return freed

    # ----- chunk lifecycle -------------------------------------------------------------------
    def _alloc_first_chunk(self, tmp_addr: int, map_size: int) -> PcpuChunk:
        ps = self.page_size
        aligned = tmp_addr & ~(ps - 1)
        start_offset = tmp_addr - aligned
        region_size = pfn_align(start_offset + map_size, ps)
        chunk = PcpuChunk(region_size // ps, self.block_bits)
        chunk.base_addr = aligned
        chunk.start_offset = start_offset
        chunk.end_offset = region_size - start_offset - map_size
        self._seq += 1
        chunk.seq = self._seq
        chunk.immutable = True
        chunk.populated = [True] * chunk.nr_pages
        chunk.nr_populated = chunk.nr_pages
        chunk.nr_empty_pop_pages = chunk.nr_pages
        chunk.free_bytes = map_size
        region_bits = chunk.map_bits
        if chunk.start_offset:
            offset_bits = start_offset // PCPU_MIN_ALLOC_SIZE
            chunk.alloc_map = bitmap_set(chunk.alloc_map, 0, offset_bits)
            chunk.bound_map |= 1 | (1 << offset_bits)
            chunk.chunk_md.first_free = offset_bits
            self.block_update_hint_alloc(chunk, 0, offset_bits)
        if chunk.end_offset:
            offset_bits = chunk.end_offset // PCPU_MIN_ALLOC_SIZE
            chunk.alloc_map = bitmap_set(chunk.alloc_map, region_bits - offset_bits, offset_bits)
            chunk.bound_map |= (1 << ((start_offset + map_size) // PCPU_MIN_ALLOC_SIZE)) | \
                (1 << region_bits)
            self.block_update_hint_alloc(chunk, region_bits - offset_bits, offset_bits)
        return chunk

    def _default_vm_areas(self) -> int:
        """Top-down placement of one chunk's groups (``pcpu_get_vm_areas`` without rivals)."""
        ai = self.ai
        atom = max(ai.atom_size, self.page_size)
        last_end = max(o + s for o, s in zip(ai.group_offsets, ai.group_sizes))
        top = self._vm_next_top & ~(atom - 1)
        base = (top - last_end) & ~(atom - 1)
        self._vm_next_top = base
        return base

    def create_chunk(self, base_addr: int | None = None) -> PcpuChunk:
        """``pcpu_create_chunk`` + ``pcpu_chunk_relocate(chunk, -1)``."""
        if base_addr is None:
            base_addr = self.vm_areas(self) if self.vm_areas else self._default_vm_areas()
        if base_addr in self.chunks_by_base:
            raise LocalmapError(f"chunk at {base_addr:#x} exists already")
        chunk = PcpuChunk(self.unit_pages, self.block_bits)
        chunk.base_addr = base_addr
        chunk.free_bytes = self.unit_pages * self.page_size
        self._seq += 1
        chunk.seq = self._seq
        self.chunks_by_base[base_addr] = chunk
        self.nr_created += 1
        self.chunk_relocate(chunk, -1)
        _notify(self.listener, "chunk_created", chunk)
        return chunk

    def destroy_chunk(self, chunk: PcpuChunk) -> None:
        """Depopulate what is left and destroy (``pcpu_balance_free``'s per-chunk work)."""
        for rs, re in _ranges(chunk.populated, True):
            self.depopulate(chunk, rs, re)
        self._list_del(chunk)
        del self.chunks_by_base[chunk.base_addr]
        self.nr_destroyed += 1
        _notify(self.listener, "chunk_destroyed", chunk)

    def populate(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None:
        """``pcpu_populate_chunk`` + ``pcpu_chunk_populated``."""
        self._set_populated(chunk, page_start, page_end, True)

    def depopulate(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None:
        """``pcpu_depopulate_chunk`` + ``pcpu_chunk_depopulated``."""
        self._set_populated(chunk, page_start, page_end, False)

    def _set_populated(self, chunk: PcpuChunk, page_start: int, page_end: int,
                       populated: bool) -> None:
        nr = page_end - page_start
        if nr <= 0:
            return
        for i in range(page_start, page_end):
            chunk.populated[i] = populated
        delta = nr if populated else -nr
        chunk.nr_populated += delta
        self.nr_populated += delta
        self.update_empty_pages(chunk, delta)
        _notify(self.listener, "pages_populated" if populated else "pages_depopulated",
                chunk, page_start, page_end)

    # ----- pcpu_alloc / free_percpu -----------------------------------------------------------
    def check_request(self, size: int, align: int) -> tuple[int, int, int, int]:
        """Normalise like ``pcpu_alloc``: returns (size, align, bits, bit_align)."""
        if align < PCPU_MIN_ALLOC_SIZE:
            align = PCPU_MIN_ALLOC_SIZE
        size = (size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
        if not size or size > self.min_unit_size or align > self.page_size or \
                align & (align - 1):
            raise PcpuAllocError(f"illegal size ({size}) or align ({align}) for percpu "
                                 f"allocation")
        return size, align, size >> PCPU_MIN_ALLOC_SHIFT, align >> PCPU_MIN_ALLOC_SHIFT

    def pcpu_alloc_search(self, size: int, align: int, reserved: bool = False,
                          atomic: bool = False) -> tuple[PcpuChunk, int] | None:
        """Where ``pcpu_alloc`` would put the area, without committing it.

        Returns (chunk, bit_off), or None when no existing chunk can take it (the kernel
        would then create a chunk if the request may sleep, or fail if it is atomic).
        """
        size, align, bits, bit_align = self.check_request(size, align)
        if reserved and self.reserved_chunk is not None:
            chunk = self.reserved_chunk
            off = self.find_block_fit(chunk, bits, bit_align, atomic)
            if off < 0:
                return None
            off = self.alloc_area_search(chunk, bits, bit_align, off)
            return (chunk, off) if off >= 0 else None
        for slot in range(self.size_to_slot(size), self.free_slot + 1):
            for chunk in list(self.slots[slot]):
                if chunk.slot != slot:
                    continue
                off = self.find_block_fit(chunk, bits, bit_align, atomic)
                if off < 0:
                    if slot < PCPU_SLOT_FAIL_THRESHOLD:
                        self.chunk_move(chunk, 0)
                    continue
                off = self.alloc_area_search(chunk, bits, bit_align, off)
                if off >= 0:
                    return chunk, off
        return None

    def commit_alloc(self, chunk: PcpuChunk, bit_off: int, size: int, atomic: bool) -> int:
        """Commit an area (``pcpu_alloc_area``'s second half, reintegration, population).

        Returns the byte offset in the chunk. Schedules the balance work as the kernel does.
        """
        size = (size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
        bits = size >> PCPU_MIN_ALLOC_SHIFT
        off = self.alloc_area_commit(chunk, bit_off, bits)
        if chunk is not self.reserved_chunk:
            self.reintegrate_chunk(chunk)
        if not atomic:
            ps = self.page_size
            rs = off // ps
            page_end = -(-(off + size) // ps)
            for a, b in _ranges(chunk.populated, False, rs, page_end):
                self.populate(chunk, a, b)
        if self.nr_empty_pop_pages < PCPU_EMPTY_POP_PAGES_LOW:
            self.balance_pending = True
        return off

    def area_is_free(self, chunk: PcpuChunk, off: int, size: int) -> bool:
        bit_off = off // PCPU_MIN_ALLOC_SIZE
        bits = -(-size // PCPU_MIN_ALLOC_SIZE)
        if off % PCPU_MIN_ALLOC_SIZE or bit_off + bits > chunk.map_bits:
            return False
        return not ((chunk.alloc_map >> bit_off) & ((1 << bits) - 1))

    def alloc(self, size: int, align: int, reserved: bool = False,
              atomic: bool = False) -> int:
        """``pcpu_alloc``: returns the percpu pointer, or raises :class:`PcpuAllocError`."""
        found = self.pcpu_alloc_search(size, align, reserved, atomic)
        if found is None and not atomic and not (reserved and self.reserved_chunk):
            if not self.slots[self.free_slot]:
                self.create_chunk()
            found = self.pcpu_alloc_search(size, align, reserved, atomic)
        if found is None:
            if atomic:
                self.atomic_alloc_failed = True
                self.balance_pending = True
            raise PcpuAllocError(f"percpu allocation of {size} bytes (align {align}"
                                 f"{', atomic' if atomic else ''}{', reserved' if reserved else ''})"
                                 " failed: no space left")
        chunk, bit_off = found
        off = self.commit_alloc(chunk, bit_off, size, atomic)
        return self.addr_to_ptr(chunk.base_addr + off)

    def chunk_of(self, addr: int) -> PcpuChunk:
        """``pcpu_chunk_addr_search`` for a unit-0 address."""
        for c in self.chunks:
            if self._served(c, addr - c.base_addr):
                return c
        raise LocalmapError(f"address {addr:#x} is in no percpu chunk")

    def should_reclaim_chunk(self, chunk: PcpuChunk) -> bool:
        if chunk is self.first_chunk or chunk is self.reserved_chunk:
            return False
        return (chunk.isolated and chunk.nr_empty_pop_pages > 0) or (
            self.nr_empty_pop_pages > PCPU_EMPTY_POP_PAGES_HIGH + chunk.nr_empty_pop_pages and
            chunk.nr_empty_pop_pages >= chunk.nr_pages // 4)

    def free_in_chunk(self, chunk: PcpuChunk, off: int) -> int:
        """``free_percpu`` once the chunk is known; returns the bytes freed."""
        if not (chunk.bound_map >> (off // PCPU_MIN_ALLOC_SIZE)) & 1 or \
                not (chunk.alloc_map >> (off // PCPU_MIN_ALLOC_SIZE)) & 1:
            raise LocalmapError(f"free of off={off} in chunk {chunk.base_addr:#x}: no area "
                                "starts there")
        size = self.free_area(chunk, off)
        if not chunk.isolated and chunk.free_bytes == self.unit_size:
            for pos in self.slots[self.free_slot]:
                if pos is not chunk:
                    self.balance_pending = True
                    break
        elif self.should_reclaim_chunk(chunk):
            self.isolate_chunk(chunk)
            self.balance_pending = True
        return size

    def free(self, ptr: int) -> int:
        addr = self.ptr_to_addr(ptr)
        chunk = self.chunk_of(addr)
        return self.free_in_chunk(chunk, addr - chunk.base_addr)

    # ----- balance work ----------------------------------------------------------------------
    def balance_free(self, empty_only: bool, destroy: Callable[[PcpuChunk], bool] | None = None
                     ) -> list[PcpuChunk]:
        """``pcpu_balance_free``; ``destroy`` may veto a destruction (replay uses the trace)."""
        free_head = self.slots[self.free_slot]
        to_free = []
        for chunk in list(free_head):
            if chunk is free_head[0]:
                continue
            if not empty_only or chunk.nr_empty_pop_pages == 0:
                to_free.append(chunk)
        out = []
        for chunk in to_free:
            if destroy is not None and not destroy(chunk):
                continue
            self.destroy_chunk(chunk)
            out.append(chunk)
        return out

    def reclaim_populated(self) -> None:
        bb = self.block_bits
        while self.slots[self.to_depopulate_slot]:
            chunk = self.slots[self.to_depopulate_slot][0]
            reintegrate = False
            freed_start, freed_end = chunk.nr_pages, 0
            end = -1
            i = chunk.nr_pages - 1
            while i >= 0:
                if chunk.nr_empty_pop_pages == 0:
                    break
                if self.nr_empty_pop_pages < PCPU_EMPTY_POP_PAGES_HIGH:
                    reintegrate = True
                    break
                block = chunk.md_blocks[i]
                if block.contig_hint == bb and chunk.populated[i]:
                    if end == -1:
                        end = i
                    if i > 0:
                        i -= 1
                        continue
                    i -= 1
                if end == -1:
                    i -= 1
                    continue
                self.depopulate(chunk, i + 1, end + 1)
                freed_start, freed_end = min(freed_start, i + 1), max(freed_end, end + 1)
                end = -1
                i -= 1
            if freed_start < freed_end:   # one batched flush per chunk
                _notify(self.listener, "tlb_flushed", chunk, freed_start, freed_end)
            if reintegrate or chunk.free_bytes == self.unit_size:
                self.reintegrate_chunk(chunk)
            else:
                self._list_move(chunk, self.sidelined_slot, False)

    def balance_populated(self, create: Callable[[], PcpuChunk | None] | None = None) -> None:
        while True:
            if self.atomic_alloc_failed:
                nr_to_pop = PCPU_EMPTY_POP_PAGES_HIGH
                self.atomic_alloc_failed = False
            else:
                nr_to_pop = min(max(PCPU_EMPTY_POP_PAGES_HIGH - self.nr_empty_pop_pages, 0),
                                PCPU_EMPTY_POP_PAGES_HIGH)
            for slot in range(self.size_to_slot(self.page_size), self.free_slot + 1):
                if not nr_to_pop:
                    break
                target = None
                for chunk in self.slots[slot]:
                    if chunk.nr_pages - chunk.nr_populated:
                        target = chunk
                        break
                if target is None:
                    continue
                for rs, re in _ranges(target.populated, False):
                    nr = min(re - rs, nr_to_pop)
                    self.populate(target, rs, rs + nr)
                    nr_to_pop -= nr
                    if not nr_to_pop:
                        break
            if not nr_to_pop:
                return
            chunk = create() if create is not None else self.create_chunk()
            if chunk is None:
                return

    def balance(self, create: Callable[[], PcpuChunk | None] | None = None,
                destroy: Callable[[PcpuChunk], bool] | None = None) -> None:
        """``pcpu_balance_workfn``: free spare chunks, reclaim, populate, free empty ones."""
        self.balance_pending = False
        self.balance_free(False, destroy)
        self.reclaim_populated()
        self.balance_populated(create)
        self.balance_free(True, destroy)

    # ----- state -----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The allocator's state, for :meth:`restore` (a replay's trial of an event order)."""
        return {
            "chunks": {id(c): (c, c.copy()) for c in self.chunks},
            "slots": [[id(c) for c in lst] for lst in self.slots],
            "scalars": (self.nr_empty_pop_pages, self.nr_populated, self.balance_pending,
                        self.atomic_alloc_failed, self._seq, self.nr_created,
                        self.nr_destroyed),
        }

    def restore(self, snap: dict) -> None:
        """Back to ``snap``. Chunk objects keep their identity (listeners key on them)."""
        objs = {}
        for key, (obj, saved) in snap["chunks"].items():
            obj.load_state(saved.copy())
            objs[key] = obj
        self.chunks_by_base = {c.base_addr: c for c in objs.values()
                               if not c.is_first and not c.is_reserved}
        self.slots = [[objs[k] for k in lst] for lst in snap["slots"]]
        (self.nr_empty_pop_pages, self.nr_populated, self.balance_pending,
         self.atomic_alloc_failed, self._seq, self.nr_created, self.nr_destroyed) = \
            snap["scalars"]

    @property
    def populated_bytes(self) -> int:
        """What /proc/meminfo reports as Percpu: populated pages times units (+ static area)."""
        return self.nr_populated * self.page_size * self.ai.nr_units


def _ranges(bits: list[bool], value: bool, lo: int = 0, hi: int | None = None):
    """Maximal runs [a, b) within [lo, hi) where bits[i] == value."""
    hi = len(bits) if hi is None else hi
    out = []
    i = lo
    while i < hi:
        if bits[i] == value:
            j = i + 1
            while j < hi and bits[j] == value:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out
