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

- bitmaps are lists of Python integers, one per page-sized block, and the block metadata is
  kept as one list per field (cheap to copy: a replay snapshots the whole allocator to try
  another event order); ``populated`` is a list of bools; there is no locking and no memory is
  touched (``pcpu_populate_chunk`` never fails);
- the balance work does not run by itself: scheduling it (as the kernel does, including the
  ``percpu_enable_async`` gate and ``pcpu_atomic_alloc_failed``) sets ``balance_pending``, and
  the caller runs :meth:`Percpu.balance` at the point it chooses;
- chunk virtual addresses come from a pluggable ``vm_areas`` callable (default: top-down
  placement below ``vmalloc_end``, the shape of ``pcpu_get_vm_areas``) so a replay can impose
  the kernel's own addresses;
- allocation is split into a *search* (:meth:`Percpu.pcpu_alloc_search`, with the search's own
  side effects on hints and slot order) and a *commit* (:meth:`Percpu.commit_alloc`), so a
  replay can compare the model's choice with the kernel's before applying the kernel's.
"""

from __future__ import annotations

import functools
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

def find_next_zero_bit(m: int, size: int, start: int) -> int:
    """First clear bit of the int bitmap ``m`` in [start, size), else ``size``."""
    if start >= size:
        return size
    x = ~m >> start
    r = start + (x & -x).bit_length() - 1
    return r if r < size else size


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
# bitmaps of a chunk: one Python int per page-sized block
# ---------------------------------------------------------------------------------------------
# A chunk's alloc and bound maps are lists of ints, block i holding bits [i*bb, (i+1)*bb), so
# an operation costs what the block(s) it touches cost (the kernel's word-level view), a
# block's map is a plain read, and a copy of the chunk is a list copy.

def _next_bit(blocks: list[int], shift: int, start: int, size: int, flip: int) -> int:
    """First bit in [start, size) of a block-list bitmap that is set once XORed with ``flip``
    (0: the first set bit; a block of ones: the first clear bit), else ``size``."""
    if start >= size:
        return size
    i = start >> shift
    x = (blocks[i] ^ flip) >> (start & ((1 << shift) - 1))
    if x:
        r = start + (x & -x).bit_length() - 1
        return r if r < size else size
    last = (size - 1) >> shift
    i += 1
    while i <= last:
        x = blocks[i] ^ flip
        if x:
            r = (i << shift) + (x & -x).bit_length() - 1
            return r if r < size else size
        i += 1
    return size


def _next_set(blocks: list[int], shift: int, start: int, size: int) -> int:
    """First set bit in [start, size) of a block-list bitmap, else ``size``."""
    return _next_bit(blocks, shift, start, size, 0)


def _next_zero(blocks: list[int], shift: int, start: int, size: int) -> int:
    """First clear bit in [start, size) of a block-list bitmap, else ``size``."""
    return _next_bit(blocks, shift, start, size, (1 << (1 << shift)) - 1)


def _assign_bits(blocks: list[int], shift: int, start: int, n: int, value: bool) -> None:
    """Set (``value``) or clear bits [start, start + n) of a block-list bitmap."""
    bm = (1 << shift) - 1
    end = start + n
    last = (end - 1) >> shift
    for k in range(start >> shift, last + 1):
        lo = start & bm if k == start >> shift else 0
        hi = ((end - 1) & bm) + 1 if k == last else bm + 1
        m = ((1 << (hi - lo)) - 1) << lo
        blocks[k] = blocks[k] | m if value else blocks[k] & ~m


def _set_bits(blocks: list[int], shift: int, start: int, n: int) -> None:
    _assign_bits(blocks, shift, start, n, True)


def _clear_bits(blocks: list[int], shift: int, start: int, n: int) -> None:
    _assign_bits(blocks, shift, start, n, False)


@functools.lru_cache(maxsize=8)
def _slot_table(map_bits: int, unit_size: int, free_slot: int) -> list[int]:
    """``pcpu_chunk_slot`` by contig hint (in 4-byte units), 0..map_bits (shared, read-only)."""
    out = [0]
    for hint in range(1, map_bits + 1):
        size = hint << PCPU_MIN_ALLOC_SHIFT
        if size == unit_size:
            out.append(free_slot)
        else:
            out.append(max(size.bit_length() - PCPU_SLOT_BASE_SHIFT + 2, 1))
    return out


def _join(blocks: list[int], shift: int) -> int:
    out = 0
    for i in range(len(blocks) - 1, -1, -1):
        out = (out << (1 << shift)) | blocks[i]
    return out


# ---------------------------------------------------------------------------------------------
# chunks and metadata blocks
# ---------------------------------------------------------------------------------------------

_MD_FIELDS = ("sh", "shs", "ch", "chs", "lf", "rf", "ff")
_MD_NAMES = ("scan_hint", "scan_hint_start", "contig_hint", "contig_hint_start", "left_free",
             "right_free", "first_free")


class PcpuBlockMd:
    """``struct pcpu_block_md`` of one block, or of the whole chunk (``chunk_md``): a view on
    the chunk's metadata arrays, where the model keeps it (see :class:`PcpuChunk`)."""

    __slots__ = ("_chunk", "_index", "nr_bits")

    def __init__(self, chunk: "PcpuChunk", index: int, nr_bits: int):
        self._chunk = chunk
        self._index = index
        self.nr_bits = nr_bits

    def state(self) -> tuple:
        c, i = self._chunk, self._index
        return tuple(getattr(c, f)[i] for f in _MD_FIELDS)


def _md_property(attr: str):
    def get(self):
        return getattr(self._chunk, attr)[self._index]

    def put(self, value):
        getattr(self._chunk, attr)[self._index] = value
    return property(get, put)


for _f, _n in zip(_MD_FIELDS, _MD_NAMES):
    setattr(PcpuBlockMd, _n, _md_property(_f))


class PcpuChunk:
    """``struct pcpu_chunk``.

    The per-block metadata (``struct pcpu_block_md``) is kept as seven lists indexed by block,
    one per field (``sh`` scan_hint, ``shs`` scan_hint_start, ``ch`` contig_hint, ``chs``
    contig_hint_start, ``lf`` left_free, ``rf`` right_free, ``ff`` first_free); index
    ``nr_pages`` holds the chunk's own ``chunk_md``. ``amap``/``bmap`` are the alloc and bound
    maps, one int per block (``bmap`` has one more block for the bound bit at ``map_bits``).
    ``md_blocks``, ``chunk_md``, ``alloc_map`` and ``bound_map`` present them the kernel's way.
    """

    __slots__ = ("base_addr", "nr_pages", "start_offset", "end_offset", "block_bits",
                 "block_shift", "map_bits", "amap", "bmap", "sh", "shs", "ch", "chs", "lf",
                 "rf", "ff", "free_bytes", "populated", "nr_populated", "nr_empty_pop_pages",
                 "isolated", "immutable", "is_first", "is_reserved", "slot", "seq",
                 "__weakref__")
    _LISTS = ("amap", "bmap", "sh", "shs", "ch", "chs", "lf", "rf", "ff", "populated")

    def __init__(self, nr_pages: int, block_bits: int):
        self.base_addr = 0
        self.nr_pages = nr_pages
        self.start_offset = 0
        self.end_offset = 0
        self.block_bits = block_bits
        self.block_shift = block_bits.bit_length() - 1
        self.map_bits = mb = nr_pages * block_bits
        self.amap = [0] * nr_pages
        self.bmap = [0] * (nr_pages + 1)
        self.sh = [0] * (nr_pages + 1)
        self.shs = [0] * (nr_pages + 1)
        self.ch = [block_bits] * nr_pages + [mb]
        self.chs = [0] * (nr_pages + 1)
        self.lf = [block_bits] * nr_pages + [mb]
        self.rf = [block_bits] * nr_pages + [mb]
        self.ff = [0] * (nr_pages + 1)
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

    @property
    def alloc_map(self) -> int:
        """The alloc bitmap as one int (bit i = 4-byte unit i is allocated)."""
        return _join(self.amap, self.block_shift)

    @property
    def bound_map(self) -> int:
        """The bound bitmap as one int (``map_bits + 1`` bits)."""
        return _join(self.bmap, self.block_shift)

    @property
    def md_blocks(self) -> list[PcpuBlockMd]:
        return [PcpuBlockMd(self, i, self.block_bits) for i in range(self.nr_pages)]

    @property
    def chunk_md(self) -> PcpuBlockMd:
        return PcpuBlockMd(self, self.nr_pages, self.map_bits)

    def test_bit(self, bit: int) -> bool:
        return bool((self.amap[bit >> self.block_shift] >> (bit & (self.block_bits - 1))) & 1)

    def is_area_start(self, bit: int) -> bool:
        """Whether an allocated area starts at ``bit`` (alloc and bound bits set)."""
        s = self.block_shift
        m = self.block_bits - 1
        return bool((self.amap[bit >> s] >> (bit & m)) & (self.bmap[bit >> s] >> (bit & m)) & 1)

    def next_allocated(self, start: int, size: int | None = None) -> int:
        return _next_set(self.amap, self.block_shift, start,
                         self.map_bits if size is None else size)

    def next_free(self, start: int, size: int | None = None) -> int:
        return _next_zero(self.amap, self.block_shift, start,
                          self.map_bits if size is None else size)

    def next_bound(self, start: int) -> int:
        return _next_set(self.bmap, self.block_shift, start, self.map_bits + 1)

    def range_is_free(self, bit_off: int, bits: int) -> bool:
        return _next_set(self.amap, self.block_shift, bit_off, bit_off + bits) >= bit_off + bits

    def save(self) -> tuple:
        """The chunk's mutable state (lists copied), for :meth:`load`."""
        return (self.amap[:], self.bmap[:], self.sh[:], self.shs[:], self.ch[:], self.chs[:],
                self.lf[:], self.rf[:], self.ff[:], self.populated[:], self.free_bytes,
                self.nr_populated, self.nr_empty_pop_pages, self.isolated, self.slot,
                self.base_addr, self.seq)

    def load(self, state: tuple, keep: bool = True) -> None:
        """Back to a state from :meth:`save` (which stays usable unless ``keep`` is false)."""
        (amap, bmap, sh, shs, ch, chs, lf, rf, ff, pop, self.free_bytes, self.nr_populated,
         self.nr_empty_pop_pages, self.isolated, self.slot, self.base_addr, self.seq) = state
        if keep:
            self.amap, self.bmap, self.sh, self.shs, self.ch, self.chs = \
                amap[:], bmap[:], sh[:], shs[:], ch[:], chs[:]
            self.lf, self.rf, self.ff, self.populated = lf[:], rf[:], ff[:], pop[:]
        else:
            self.amap, self.bmap, self.sh, self.shs, self.ch, self.chs = \
                amap, bmap, sh, shs, ch, chs
            self.lf, self.rf, self.ff, self.populated = lf, rf, ff, pop

    def copy(self) -> "PcpuChunk":
        c = PcpuChunk.__new__(PcpuChunk)
        for name in PcpuChunk.__slots__:
            if name != "__weakref__":
                setattr(c, name, getattr(self, name))
        c.load(self.save(), keep=False)
        return c

    def areas(self) -> list[tuple[int, int]]:
        """Allocated areas as (bit_off, bits), hidden start/end regions included."""
        out = []
        bits = self.map_bits
        i = self.next_allocated(0)
        while i < bits:
            j = self.next_bound(i + 1)
            out.append((i, j - i))
            i = self.next_allocated(j)
        return out

    def free_runs(self) -> list[int]:
        """Lengths (in 4-byte units) of the maximal free runs."""
        runs = []
        bits = self.map_bits
        i = self.next_free(0)
        while i < bits:
            j = self.next_allocated(i)
            runs.append(j - i)
            i = self.next_free(j)
        return runs


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


@dataclass
class BalanceRun:
    """What one run of the balance work did (chunks it destroyed and created, pages)."""

    destroyed: list = field(default_factory=list)
    created: list = field(default_factory=list)
    populated: int = 0
    depopulated: int = 0


class Percpu:
    """One machine's percpu allocator state.

    ``base_addr`` is ``pcpu_base_addr`` (unit 0 of the first chunk); ``per_cpu_start`` is
    ``__per_cpu_start`` (the link address of the static percpu section), which makes pointers
    look like the kernel's: ``ptr = addr - pcpu_base_addr + __per_cpu_start``.

    The balance work: the kernel schedules it (``pcpu_schedule_balance_work``) from
    ``pcpu_alloc`` when fewer than ``PCPU_EMPTY_POP_PAGES_LOW`` empty populated pages remain,
    from ``free_percpu`` (a second fully free chunk, or a chunk to isolate) and after an atomic
    allocation failed (which also sets ``pcpu_atomic_alloc_failed``); scheduling does nothing
    before ``percpu_enable_async`` (``async_enabled``). Here scheduling sets
    ``balance_pending`` (coalesced, like ``schedule_work`` of a pending work), and
    :meth:`balance` runs it: the caller decides when, as the kernel's worker decides when it
    gets ``pcpu_alloc_mutex``.
    """

    def __init__(self, ai: PcpuAllocInfo, *, mode: str = "embed",
                 base_addr: int = 0xFFFF000000000000, per_cpu_start: int | None = None,
                 vm_areas: Callable[["Percpu"], int] | None = None,
                 vmalloc_end: int = 0xFFFFC1FFBF800000,
                 listener: PcpuListener | None = None, async_enabled: bool = True):
        self.ai = ai
        self.mode = mode
        self.page_size = _check_page_size(ai.page_size)
        self.page_shift = self.page_size.bit_length() - 1
        self.block_bits = self.page_size >> PCPU_MIN_ALLOC_SHIFT
        self.block_shift = self.block_bits.bit_length() - 1
        self.block_full = (1 << self.block_bits) - 1        # a block's map, all bits set
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
        self.page_slot = self.size_to_slot(self.page_size)
        self.slot_of_hint = self._slot_table(max(self.unit_pages, pfn_align(
            ai.static_size + ai.reserved_size + ai.dyn_size + self.page_size, self.page_size)
            >> self.page_shift) * self.block_bits)
        self.slots: list[list[PcpuChunk]] = [[] for _ in range(self.nr_slots)]
        self.slot_mask = 0          # bit s set when slots[s] is not empty (for the search)
        self._requests: dict[tuple[int, int], tuple[int, int, int]] = {}   # see _request
        self.nr_empty_pop_pages = 0
        self.nr_populated = 0
        self.balance_pending = False
        self.atomic_alloc_failed = False
        self.async_enabled = async_enabled
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
        """``pcpu_chunk_slot`` (from a table of slot by contig hint)."""
        if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE:
            return 0
        return self.slot_of_hint[chunk.ch[chunk.nr_pages]]

    def _slot_table(self, map_bits: int) -> list[int]:
        return _slot_table(map_bits, self.unit_size, self.free_slot)

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
        self._list_del(chunk)
        lst = self.slots[slot]
        if front:
            lst.insert(0, chunk)
        else:
            lst.append(chunk)
        chunk.slot = slot
        self.slot_mask |= 1 << slot

    def _list_del(self, chunk: PcpuChunk) -> None:
        old = chunk.slot
        if old >= 0:
            lst = self.slots[old]
            lst.remove(chunk)
            if not lst:
                self.slot_mask &= ~(1 << old)
            chunk.slot = -1

    def chunk_move(self, chunk: PcpuChunk, slot: int, front: bool = True) -> None:
        if chunk is not self.reserved_chunk:
            self._list_move(chunk, slot, front)

    def chunk_relocate(self, chunk: PcpuChunk, oslot: int) -> None:
        if chunk.isolated:
            return
        nslot = 0 if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE else \
            self.slot_of_hint[chunk.ch[chunk.nr_pages]]
        if oslot != nslot and chunk is not self.reserved_chunk:
            self._list_move(chunk, nslot, oslot < nslot)

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

    # ----- hint machinery (on the chunk's metadata arrays; index i, nr_bits of that md) -------
    @staticmethod
    def block_update(c: PcpuChunk, i: int, start: int, end: int, nr_bits: int) -> None:
        """``pcpu_block_update`` of md ``i`` (a block, or ``nr_pages`` for the chunk)."""
        contig = end - start
        if start < c.ff[i]:
            c.ff[i] = start
        if start == 0:
            c.lf[i] = contig
        if end == nr_bits:
            c.rf[i] = contig
        ch = c.ch
        hint = ch[i]
        if contig > hint:
            chs = c.chs
            if start > chs[i]:
                sh = c.sh
                if hint > sh[i]:
                    c.shs[i] = chs[i]
                    sh[i] = hint
                elif start < c.shs[i]:
                    sh[i] = 0
            else:
                c.sh[i] = 0
            chs[i] = start
            ch[i] = contig
        elif contig == hint:
            chs = c.chs
            cs = chs[i]
            if cs and (not start or (start & -start) > (cs & -cs)):
                chs[i] = start
                if start < c.shs[i] and hint > c.sh[i]:
                    c.sh[i] = 0
            elif start > c.shs[i] or hint > c.sh[i]:
                c.shs[i] = start
                c.sh[i] = contig
        else:
            if start < c.chs[i]:
                sh = c.sh[i]
                if contig > sh or (contig == sh and start > c.shs[i]):
                    c.shs[i] = start
                    c.sh[i] = contig

    def block_update_scan(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        s_off = bit_off & (bb - 1)
        e_off = s_off + bits
        if e_off > bb:
            return
        s_index = bit_off >> self.block_shift
        x = chunk.amap[s_index] & ((1 << s_off) - 1)       # find_last_bit(map, s_off)
        s_off = x.bit_length() if x else 0
        self.block_update(chunk, s_index, s_off, e_off, bb)

    def chunk_refresh_hint(self, chunk: PcpuChunk, full_scan: bool) -> None:
        """``pcpu_chunk_refresh_hint``: the chunk md rebuilt from the blocks' hints (the
        free-region walk of ``pcpu_next_md_free_region`` is inlined)."""
        n = chunk.nr_pages
        ch, chs, sh, lf, rf = chunk.ch, chunk.chs, chunk.sh, chunk.lf, chunk.rf
        if not full_scan and sh[n]:
            bit_off = chunk.shs[n] + sh[n]
            chs[n] = chunk.shs[n]
            ch[n] = sh[n]
            sh[n] = 0
        else:
            bit_off = chunk.ff[n]
            ch[n] = 0
        bb = self.block_bits
        shift = self.block_shift
        map_bits = chunk.map_bits
        upd = self.block_update
        while True:
            # pcpu_next_md_free_region(chunk, &bit_off, &bits)
            i = bit_off >> shift
            block_off = bit_off & (bb - 1)
            bits = 0
            tail = False
            while i < n:
                if bits:
                    left = lf[i]
                    bits += left
                    if left == bb:
                        i += 1
                        if not tail:
                            # a run of empty blocks: when it reaches the chunk's end (the
                            # common case), take it whole instead of block by block
                            tail = True
                            if lf[i:n].count(bb) == n - i:
                                bits += (n - i) << shift
                                break
                        continue
                    break
                b = ch[i]
                start = chs[i]
                if b and start >= block_off and b + start < bb:
                    bit_off = (i << shift) + start
                    bits = b
                    break
                block_off = 0
                bits = rf[i]
                bit_off = ((i + 1) << shift) - bits
                i += 1
            if bit_off >= map_bits:
                return
            upd(chunk, n, bit_off, bit_off + bits, map_bits)
            bit_off += bits + 1

    def block_refresh_hint(self, chunk: PcpuChunk, index: int) -> None:
        bb = self.block_bits
        m = chunk.amap[index]
        sh = chunk.sh
        if sh[index]:
            start = chunk.shs[index] + sh[index]
            chunk.chs[index] = chunk.shs[index]
            chunk.ch[index] = sh[index]
            sh[index] = 0
        else:
            start = chunk.ff[index]
            chunk.ch[index] = 0
        chunk.rf[index] = 0
        free = ~m
        upd = self.block_update
        while start < bb:      # for_each_clear_bitrange_from
            x = free >> start
            s = start + (x & -x).bit_length() - 1
            if s >= bb:
                break
            x = m >> (s + 1)
            e = s + 1 + (x & -x).bit_length() - 1 if x else bb
            if e > bb:
                e = bb
            upd(chunk, index, s, e, bb)
            start = e + 1

    def block_update_hint_alloc(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        shift = self.block_shift
        n = chunk.nr_pages
        ch, chs, sh, shs, lf, rf, ff = (chunk.ch, chunk.chs, chunk.sh, chunk.shs, chunk.lf,
                                        chunk.rf, chunk.ff)
        nr_empty_pages = 0
        last = bit_off + bits - 1
        s_index = bit_off >> shift
        e_index = last >> shift
        s_off = bit_off & (bb - 1)
        e_off = (last & (bb - 1)) + 1

        if ch[s_index] == bb:
            nr_empty_pages += 1
        if s_off == ff[s_index]:
            st = s_off + bits               # find_next_zero_bit(map, bb, st)
            x = (chunk.amap[s_index] ^ self.block_full) >> st if st < bb else 0
            ff[s_index] = st + (x & -x).bit_length() - 1 if x else bb
        if shs[s_index] < s_off + bits and s_off < shs[s_index] + sh[s_index]:
            sh[s_index] = 0
        if chs[s_index] < s_off + bits and s_off < chs[s_index] + ch[s_index]:
            if not s_off:
                lf[s_index] = 0
            self.block_refresh_hint(chunk, s_index)
        else:
            if s_off < lf[s_index]:
                lf[s_index] = s_off
            if s_index == e_index:
                if bb - e_off < rf[s_index]:
                    rf[s_index] = bb - e_off
            else:
                rf[s_index] = 0

        if s_index != e_index:
            if ch[e_index] == bb:
                nr_empty_pages += 1
            ff[e_index] = find_next_zero_bit(chunk.amap[e_index], bb, e_off)
            end_index = e_index
            if e_off == bb:
                end_index = e_index + 1
            else:
                if e_off > shs[e_index]:
                    sh[e_index] = 0
                lf[e_index] = 0
                if e_off > chs[e_index]:
                    self.block_refresh_hint(chunk, e_index)
                elif bb - e_off < rf[e_index]:
                    rf[e_index] = bb - e_off
            nr_empty_pages += e_index - s_index - 1
            for k in range(s_index + 1, end_index):
                sh[k] = 0
                ch[k] = 0
                lf[k] = 0
                rf[k] = 0

        if nr_empty_pages:
            self.update_empty_pages(chunk, -nr_empty_pages)
        if shs[n] < bit_off + bits and bit_off < shs[n] + sh[n]:
            sh[n] = 0
        if chs[n] < bit_off + bits and bit_off < chs[n] + ch[n]:
            self.chunk_refresh_hint(chunk, False)

    def block_update_hint_free(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        bb = self.block_bits
        shift = self.block_shift
        ch, chs = chunk.ch, chunk.chs
        amap = chunk.amap
        nr_empty_pages = 0
        last = bit_off + bits - 1
        s_index = bit_off >> shift
        e_index = last >> shift
        s_off = bit_off & (bb - 1)
        e_off = (last & (bb - 1)) + 1

        if s_off == ch[s_index] + chs[s_index]:
            start = chs[s_index]
        else:
            x = amap[s_index] & ((1 << s_off) - 1)      # find_last_bit(map, s_off)
            start = x.bit_length() if x else 0
        if e_off == chs[e_index]:
            end = chs[e_index] + ch[e_index]
        else:
            x = amap[e_index] >> e_off      # find_next_bit(map, bb, e_off)
            end = e_off + (x & -x).bit_length() - 1 if x else bb

        e_off2 = end if s_index == e_index else bb
        if not start and e_off2 == bb:
            nr_empty_pages += 1
        upd = self.block_update
        upd(chunk, s_index, start, e_off2, bb)

        if s_index != e_index:
            if end == bb:
                nr_empty_pages += 1
            upd(chunk, e_index, 0, end, bb)
            nr_empty_pages += e_index - s_index - 1
            sh, lf, rf, ff = chunk.sh, chunk.lf, chunk.rf, chunk.ff
            for k in range(s_index + 1, e_index):
                ff[k] = 0
                sh[k] = 0
                chs[k] = 0
                ch[k] = bb
                lf[k] = bb
                rf[k] = bb

        if nr_empty_pages:
            self.update_empty_pages(chunk, nr_empty_pages)
        if (end - start) >= bb or s_index != e_index:
            self.chunk_refresh_hint(chunk, True)
        else:
            # As in 6.12: the start is made chunk-relative but ``end`` is passed block-relative,
            # so outside block 0 the chunk hint only learns first_free from this free (the
            # negative "contig" changes nothing else). The model keeps that quirk: it decides
            # which chunks stay on slot 0 (see docs/replay.md, "A kernel quirk the model keeps").
            upd(chunk, chunk.nr_pages, (s_index << shift) + start, end, chunk.map_bits)

    # ----- search ----------------------------------------------------------------------------
    def next_fit_region(self, chunk: PcpuChunk, alloc_bits: int, align: int,
                        bit_off: int) -> tuple[int, int]:
        bb = self.block_bits
        i = bit_off >> self.block_shift
        block_off = bit_off & (bb - 1)
        bits = 0
        ch, chs, lf, rf = chunk.ch, chunk.chs, chunk.lf, chunk.rf
        nr_blocks = chunk.nr_pages
        while i < nr_blocks:
            if bits:
                left = lf[i]
                bits += left
                if bits >= alloc_bits:
                    return bit_off, bits
                if left == bb:
                    i += 1
                    continue
            start = chs[i]
            hint = ch[i]
            bits = ((start + align - 1) & -align) - start
            if hint and start >= block_off and hint >= bits + alloc_bits:
                # pcpu_next_hint
                s = chunk.sh[i]
                if s and start > chunk.shs[i] and alloc_bits > s:
                    nh = chunk.shs[i] + s
                else:
                    nh = chunk.ff[i]
                bits += alloc_bits + start - nh
                return i * bb + nh, bits
            block_off = 0
            off = (bb - rf[i] + align - 1) & -align
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

    def alloc_area_commit(self, chunk: PcpuChunk, bit_off: int, alloc_bits: int) -> int:
        """The commit half of ``pcpu_alloc_area``; returns the byte offset."""
        n = chunk.nr_pages
        oslot = 0 if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE else self.slot_of_hint[chunk.ch[n]]
        shift = self.block_shift
        bm = self.block_bits - 1
        end = bit_off + alloc_bits
        amap, bmap = chunk.amap, chunk.bmap
        i = bit_off >> shift
        so = bit_off & bm
        if i == (end - 1) >> shift:
            mask = ((1 << alloc_bits) - 1) << so
            amap[i] |= mask
            b = bmap[i]
            stale = b & mask                # bound bits left inside by earlier frees
            bmap[i] = (b ^ stale if stale else b) | (1 << so)
        else:
            _set_bits(amap, shift, bit_off, alloc_bits)
            bmap[i] |= 1 << so
            _clear_bits(bmap, shift, bit_off + 1, alloc_bits - 1)
        bmap[end >> shift] |= 1 << (end & bm)
        chunk.free_bytes -= alloc_bits << PCPU_MIN_ALLOC_SHIFT
        if bit_off == chunk.ff[n]:
            e = end >> shift
            x = ((amap[e] ^ self.block_full) >> (end & bm)) if e < n else 0
            chunk.ff[n] = end + (x & -x).bit_length() - 1 if x else \
                _next_zero(amap, shift, end, chunk.map_bits)
        self.block_update_hint_alloc(chunk, bit_off, alloc_bits)
        if not chunk.isolated:                     # pcpu_chunk_relocate(chunk, oslot)
            nslot = 0 if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE else \
                self.slot_of_hint[chunk.ch[n]]
            if oslot != nslot and chunk is not self.reserved_chunk:
                self._list_move(chunk, nslot, oslot < nslot)
        return bit_off << PCPU_MIN_ALLOC_SHIFT

    def free_area(self, chunk: PcpuChunk, off: int) -> int:
        """``pcpu_free_area``: frees the area starting at byte ``off``; returns bytes freed."""
        n = chunk.nr_pages
        oslot = 0 if chunk.free_bytes < PCPU_MIN_ALLOC_SIZE else self.slot_of_hint[chunk.ch[n]]
        shift = self.block_shift
        bit_off = off >> PCPU_MIN_ALLOC_SHIFT
        st = bit_off + 1                    # the area's end: the next bound bit
        x = chunk.bmap[st >> shift] >> (st & (self.block_bits - 1))
        end = st + (x & -x).bit_length() - 1 if x else \
            _next_set(chunk.bmap, shift, st, chunk.map_bits)
        if end > chunk.map_bits:
            end = chunk.map_bits
        bits = end - bit_off
        amap = chunk.amap
        i = bit_off >> shift
        if i == (end - 1) >> shift:
            m = amap[i]
            amap[i] = m ^ (m & (((1 << bits) - 1) << (bit_off & (self.block_bits - 1))))
        else:
            _clear_bits(amap, shift, bit_off, bits)
        freed = bits << PCPU_MIN_ALLOC_SHIFT
        chunk.free_bytes += freed
        if bit_off < chunk.ff[n]:
            chunk.ff[n] = bit_off
        self.block_update_hint_free(chunk, bit_off, bits)
        if not chunk.isolated:                     # pcpu_chunk_relocate(chunk, oslot)
            nslot = self.slot_of_hint[chunk.ch[n]]
            if oslot != nslot and chunk is not self.reserved_chunk:
                self._list_move(chunk, nslot, oslot < nslot)
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
        shift = self.block_shift
        n = chunk.nr_pages
        if chunk.start_offset:
            offset_bits = start_offset // PCPU_MIN_ALLOC_SIZE
            _set_bits(chunk.amap, shift, 0, offset_bits)
            chunk.bmap[0] |= 1
            chunk.bmap[offset_bits >> shift] |= 1 << (offset_bits & (self.block_bits - 1))
            chunk.ff[n] = offset_bits
            self.block_update_hint_alloc(chunk, 0, offset_bits)
        if chunk.end_offset:
            offset_bits = chunk.end_offset // PCPU_MIN_ALLOC_SIZE
            _set_bits(chunk.amap, shift, region_bits - offset_bits, offset_bits)
            b = (start_offset + map_size) // PCPU_MIN_ALLOC_SIZE
            chunk.bmap[b >> shift] |= 1 << (b & (self.block_bits - 1))
            chunk.bmap[region_bits >> shift] |= 1 << (region_bits & (self.block_bits - 1))
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
        self._set_population(chunk, page_start, page_end, True)

    def depopulate(self, chunk: PcpuChunk, page_start: int, page_end: int) -> None:
        """``pcpu_depopulate_chunk`` + ``pcpu_chunk_depopulated``."""
        self._set_population(chunk, page_start, page_end, False)

    def _set_population(self, chunk: PcpuChunk, page_start: int, page_end: int,
                        populated: bool) -> None:
        nr = page_end - page_start
        if nr <= 0:
            return
        chunk.populated[page_start:page_end] = [populated] * nr
        if not populated:
            nr = -nr
        chunk.nr_populated += nr
        self.nr_populated += nr
        self.update_empty_pages(chunk, nr)
        if self.listener is not None:
            _notify(self.listener, "pages_populated" if populated else "pages_depopulated",
                    chunk, page_start, page_end)

    # ----- pcpu_alloc / free_percpu -----------------------------------------------------------
    def _request(self, size: int, align: int) -> tuple[int, int, int]:
        """``pcpu_alloc``'s checks and rounding of a request: (bits, bit_align, the slot its
        search starts at); remembered per (size, align), as a replay repeats few of them."""
        size0, align0 = size, align
        if align < PCPU_MIN_ALLOC_SIZE:
            align = PCPU_MIN_ALLOC_SIZE
        size = (size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
        if not size or size > self.min_unit_size or align > self.page_size or \
                align & (align - 1):
            raise PcpuAllocError(f"illegal size ({size}) or align ({align}) for percpu "
                                 f"allocation")
        slot = self.free_slot if size == self.unit_size else \
            max(size.bit_length() - PCPU_SLOT_BASE_SHIFT + 2, 1)      # pcpu_size_to_slot
        if len(self._requests) >= 4096:
            self._requests.clear()
        req = self._requests[(size0, align0)] = \
            (size >> PCPU_MIN_ALLOC_SHIFT, align >> PCPU_MIN_ALLOC_SHIFT, slot)
        return req

    def pcpu_alloc_search(self, size: int, align: int, reserved: bool = False,
                          atomic: bool = False) -> tuple[PcpuChunk, int] | None:
        """Where ``pcpu_alloc`` would put the area, without committing it.

        Returns (chunk, bit_off), or None when no existing chunk can take it (the kernel
        would then create a chunk if the request may sleep, or fail if it is atomic).
        """
        req = self._requests.get((size, align))
        if req is None:
            req = self._request(size, align)
        bits, bit_align, slot = req
        if reserved and self.reserved_chunk is not None:
            chunk = self.reserved_chunk
            off = self._search_chunk(chunk, bits, bit_align, atomic)
            return (chunk, off) if off >= 0 else None
        slots = self.slots
        free_slot = self.free_slot
        try_chunk = self._search_chunk
        while True:
            m = self.slot_mask >> slot          # (the next slot with chunks)
            if not m:
                return None
            slot += (m & -m).bit_length() - 1
            if slot > free_slot:
                return None
            for chunk in slots[slot][:] if slot < PCPU_SLOT_FAIL_THRESHOLD else slots[slot]:
                if chunk.slot != slot:
                    continue
                off = try_chunk(chunk, bits, bit_align, atomic)
                if off >= 0:
                    return chunk, off
                if off == -1 and slot < PCPU_SLOT_FAIL_THRESHOLD:
                    self.chunk_move(chunk, 0)
            slot += 1

    def _search_chunk(self, chunk: PcpuChunk, bits: int, align: int, atomic: bool) -> int:
        """``pcpu_find_block_fit`` then ``pcpu_alloc_area``'s search (``pcpu_find_zero_area``,
        inlined) in one chunk, as one function (the replay's hottest code): bit offset, -1 when
        the block fit fails, -2 when the area search does."""
        n = chunk.nr_pages
        start = chunk.chs[n]
        if ((start + align - 1) & -align) - start + bits > chunk.ch[n]:
            return -1                                       # pcpu_check_block_hint
        s = chunk.sh[n]
        if s and start > chunk.shs[n] and bits > s:         # pcpu_next_hint
            bit_off = chunk.shs[n] + s
        else:
            bit_off = chunk.ff[n]
        map_bits = chunk.map_bits
        bit_off, fit_bits = self.next_fit_region(chunk, bits, align, bit_off)
        if atomic:
            while bit_off < map_bits:
                ok, next_off = self._is_populated(chunk, bit_off, fit_bits)
                if ok:
                    break
                bit_off, fit_bits = self.next_fit_region(chunk, bits, align, next_off)
        if bit_off >= map_bits:
            return -1
        # pcpu_alloc_area's search: pcpu_find_zero_area(map, size, start=bit_off, nr=bits,
        # align_mask) with size = bit_off + bits + one block, keeping the largest area it
        # skipped for pcpu_block_update_scan
        amap = chunk.amap
        shift = self.block_shift
        full = self.block_full
        bm = full.bit_length() - 1
        size = bit_off + bits + bm + 1
        if size > map_bits:
            size = map_bits
        align_mask = align - 1
        start = bit_off
        largest_off = largest_bits = 0
        while True:
            # index = find_next_zero_bit(map, size, start), within the block when it can
            if start >= size:
                index = size
            else:
                x = (amap[start >> shift] ^ full) >> (start & bm)
                if x:
                    index = start + (x & -x).bit_length() - 1
                    if index > size:
                        index = size
                else:
                    index = _next_zero(amap, shift, ((start >> shift) + 1) << shift, size)
            index = (index + align_mask) & ~align_mask
            end = index + bits
            if end > size:
                return -2
            # i = find_next_bit(map, end, index)
            bi = index >> shift
            x = amap[bi] >> (index & bm)
            if x:
                i = index + (x & -x).bit_length() - 1
                if i > end:
                    i = end
            elif (end - 1) >> shift == bi:
                i = end
            else:
                i = _next_set(amap, shift, (bi + 1) << shift, end)
            if i < end:
                area_bits = i - index
                if area_bits > largest_bits or (
                        area_bits == largest_bits and largest_off and
                        (not index or (index & -index) > (largest_off & -largest_off))):
                    largest_off = index
                    largest_bits = area_bits
                start = i + 1
                continue
            if largest_bits:
                self.block_update_scan(chunk, largest_off, largest_bits)
            return index

    def commit_alloc(self, chunk: PcpuChunk, bit_off: int, size: int, atomic: bool,
                     reintegrate: bool = True) -> int:
        """Commit an area (``pcpu_alloc_area``'s second half, reintegration, population).

        Returns the byte offset in the chunk. Schedules the balance work as the kernel does.
        ``reintegrate=False`` leaves an isolated chunk isolated (a replay applying an answer
        the kernel cannot have taken from an isolated chunk).
        """
        size = (size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
        bits = size >> PCPU_MIN_ALLOC_SHIFT
        off = self.alloc_area_commit(chunk, bit_off, bits)
        if reintegrate and chunk.isolated and chunk is not self.reserved_chunk:
            self.reintegrate_chunk(chunk)
        if not atomic:
            shift = self.page_shift
            rs = off >> shift
            page_end = (off + size + self.page_size - 1) >> shift
            pop = chunk.populated
            i = rs
            while i < page_end:
                if pop[i]:
                    i += 1
                    continue
                j = i + 1
                while j < page_end and not pop[j]:
                    j += 1
                self.populate(chunk, i, j)
                i = j
        if self.nr_empty_pop_pages < PCPU_EMPTY_POP_PAGES_LOW:
            self.schedule_balance_work()
        return off

    def schedule_balance_work(self) -> None:
        """``pcpu_schedule_balance_work``: nothing before ``percpu_enable_async``; a work
        already pending absorbs the request."""
        if self.async_enabled:
            self.balance_pending = True

    def alloc_failed(self, atomic: bool) -> None:
        """The kernel's reaction to a failed allocation (the ``fail:`` path of
        ``pcpu_alloc``): an atomic failure sets ``pcpu_atomic_alloc_failed`` and schedules the
        balance work."""
        if atomic:
            self.atomic_alloc_failed = True
            self.schedule_balance_work()

    def area_is_free(self, chunk: PcpuChunk, off: int, size: int) -> bool:
        bit_off = off // PCPU_MIN_ALLOC_SIZE
        bits = -(-size // PCPU_MIN_ALLOC_SIZE)
        if off % PCPU_MIN_ALLOC_SIZE or bit_off < 0 or bit_off + bits > chunk.map_bits:
            return False
        return chunk.range_is_free(bit_off, bits)

    def alloc(self, size: int, align: int, reserved: bool = False,
              atomic: bool = False) -> int:
        """``pcpu_alloc``: returns the percpu pointer, or raises :class:`PcpuAllocError`."""
        found = self.pcpu_alloc_search(size, align, reserved, atomic)
        if found is None and not atomic and not (reserved and self.reserved_chunk):
            if not self.slots[self.free_slot]:
                self.create_chunk()
            found = self.pcpu_alloc_search(size, align, reserved, atomic)
        if found is None:
            self.alloc_failed(atomic)
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
        bit = off >> PCPU_MIN_ALLOC_SHIFT
        shift = self.block_shift
        if off & (PCPU_MIN_ALLOC_SIZE - 1) or not 0 <= bit < chunk.map_bits or \
                not (chunk.amap[bit >> shift] & chunk.bmap[bit >> shift]) >> \
                (bit & (self.block_bits - 1)) & 1:
            raise LocalmapError(f"free of off={off} in chunk {chunk.base_addr:#x}: no area "
                                "starts there")
        size = self.free_area(chunk, off)
        if not chunk.isolated and chunk.free_bytes == self.unit_size:
            for pos in self.slots[self.free_slot]:
                if pos is not chunk:
                    self.schedule_balance_work()
                    break
        elif ((chunk.isolated and chunk.nr_empty_pop_pages) or self.nr_empty_pop_pages >
                PCPU_EMPTY_POP_PAGES_HIGH + chunk.nr_empty_pop_pages) and \
                self.should_reclaim_chunk(chunk):
            self.isolate_chunk(chunk)
            self.schedule_balance_work()
        return size

    def free(self, ptr: int) -> int:
        addr = self.ptr_to_addr(ptr)
        chunk = self.chunk_of(addr)
        return self.free_in_chunk(chunk, addr - chunk.base_addr)

    # ----- balance work ----------------------------------------------------------------------
    def balance_free(self, empty_only: bool, destroy: Callable[[PcpuChunk], bool] | None = None,
                     run: BalanceRun | None = None) -> list[PcpuChunk]:
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
            if run is not None:
                run.depopulated += chunk.nr_populated
                run.destroyed.append(chunk)
            self.destroy_chunk(chunk)
            out.append(chunk)
        return out

    def reclaim_populated(self, run: BalanceRun | None = None) -> None:
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
                if chunk.ch[i] == bb and chunk.populated[i]:
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
                if run is not None:
                    run.depopulated += end - i
                freed_start, freed_end = min(freed_start, i + 1), max(freed_end, end + 1)
                end = -1
                i -= 1
            if freed_start < freed_end:   # one batched flush per chunk
                _notify(self.listener, "tlb_flushed", chunk, freed_start, freed_end)
            if reintegrate or chunk.free_bytes == self.unit_size:
                self.reintegrate_chunk(chunk)
            else:
                self._list_move(chunk, self.sidelined_slot, False)

    def _pop_target(self, slot: int) -> PcpuChunk | None:
        for chunk in self.slots[slot]:
            if chunk.nr_pages - chunk.nr_populated:
                return chunk
        return None

    def balance_populated(self, create: Callable[[], PcpuChunk | None] | None = None,
                          run: BalanceRun | None = None) -> None:
        while True:
            if self.atomic_alloc_failed:
                nr_to_pop = PCPU_EMPTY_POP_PAGES_HIGH
                self.atomic_alloc_failed = False
            else:
                nr_to_pop = min(max(PCPU_EMPTY_POP_PAGES_HIGH - self.nr_empty_pop_pages, 0),
                                PCPU_EMPTY_POP_PAGES_HIGH)
            for slot in range(self.page_slot, self.free_slot + 1):
                if not nr_to_pop:
                    break
                target = self._pop_target(slot)
                if target is None:
                    continue
                for rs, re in _ranges(target.populated, False):
                    nr = min(re - rs, nr_to_pop)
                    self.populate(target, rs, rs + nr)
                    if run is not None:
                        run.populated += nr
                    nr_to_pop -= nr
                    if not nr_to_pop:
                        break
            if not nr_to_pop:
                return
            chunk = create() if create is not None else self.create_chunk()
            if chunk is None:
                return
            if run is not None:
                run.created.append(chunk)

    def balance(self, create: Callable[[], PcpuChunk | None] | None = None,
                destroy: Callable[[PcpuChunk], bool] | None = None) -> BalanceRun:
        """``pcpu_balance_workfn``: free spare chunks, reclaim, populate, free empty ones.
        Returns what it did."""
        run = BalanceRun()
        self.balance_pending = False
        self.balance_free(False, destroy, run)
        self.reclaim_populated(run)
        self.balance_populated(create, run)
        self.balance_free(True, destroy, run)
        return run

    def balance_is_traced(self, keep: Callable[[PcpuChunk], bool] | None = None) -> bool:
        """Whether running the balance work now would create or destroy a chunk (events the
        trace shows), computed without running it. ``keep(chunk)`` true: the caller vetoes
        destroying that chunk (its destruction would not count)."""
        spare = self.slots[self.free_slot][1:]
        if any(keep is None or not keep(c) for c in spare):
            return True                       # pcpu_balance_free(false) destroys spare chunks
        if self.slots[self.to_depopulate_slot]:
            # reclaim may empty a chunk for the final pcpu_balance_free: try it on a snapshot
            wanted: list = []

            def create() -> None:
                wanted.append(None)

            def destroy(chunk: PcpuChunk) -> bool:
                if keep is None or not keep(chunk):
                    wanted.append(chunk)
                return False
            touched = set(self.slots[self.to_depopulate_slot]) | \
                set(self.slots[self.free_slot])
            for slot in range(self.page_slot, self.free_slot + 1):
                touched.update(c for c in self.slots[slot] if c.nr_populated < c.nr_pages)
            snap = self.snapshot(touched)
            listener, self.listener = self.listener, None
            try:
                self.balance(create=create, destroy=destroy)
            finally:
                self.restore(snap, keep=False)
                self.listener = listener
            return bool(wanted)
        nr_to_pop = self._nr_to_pop()
        for slot in range(self.page_slot, self.free_slot + 1):
            if not nr_to_pop:
                return False
            target = self._pop_target(slot)
            if target is not None:
                nr_to_pop -= min(target.nr_pages - target.nr_populated, nr_to_pop)
        return nr_to_pop > 0

    def _nr_to_pop(self) -> int:
        if self.atomic_alloc_failed:
            return PCPU_EMPTY_POP_PAGES_HIGH
        return min(max(PCPU_EMPTY_POP_PAGES_HIGH - self.nr_empty_pop_pages, 0),
                   PCPU_EMPTY_POP_PAGES_HIGH)

    # ----- state -----------------------------------------------------------------------------
    def snapshot(self, chunks: Iterable[PcpuChunk] | None = None) -> dict:
        """The allocator's state, for :meth:`restore` (a replay's trial of an event order).
        ``chunks`` limits the saved chunk states to those (the caller knows the others will
        not change before the restore); slot lists and counters are always saved."""
        return {
            "chunks": [(c, c.save()) for c in (self.chunks if chunks is None else chunks)],
            "all": chunks is None,
            "live": dict(self.chunks_by_base),
            "slots": [lst[:] for lst in self.slots],
            "scalars": (self.nr_empty_pop_pages, self.nr_populated, self.balance_pending,
                        self.atomic_alloc_failed, self.async_enabled, self._seq,
                        self.nr_created, self.nr_destroyed, self._vm_next_top),
        }

    def restore(self, snap: dict, keep: bool = True) -> None:
        """Back to ``snap`` (which stays usable unless ``keep`` is false). Chunk objects keep
        their identity (listeners key on them); chunks created since are dropped."""
        for obj, saved in snap["chunks"]:
            obj.load(saved, keep)
        self.chunks_by_base.clear()
        self.chunks_by_base.update(snap["live"])
        self.slots[:] = [lst[:] for lst in snap["slots"]] if keep else snap["slots"]
        self.slot_mask = sum(1 << s for s, lst in enumerate(self.slots) if lst)
        (self.nr_empty_pop_pages, self.nr_populated, self.balance_pending,
         self.atomic_alloc_failed, self.async_enabled, self._seq, self.nr_created,
         self.nr_destroyed, self._vm_next_top) = snap["scalars"]

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
