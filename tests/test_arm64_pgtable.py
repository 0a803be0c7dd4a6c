"""arm64 geometry, kernel layout, walker, TLB: against FACTS.md §4, memory.h and the captures."""

import gzip

import pytest

from localmap.arch.arm64.memory import KernelLayout
from localmap.arch.arm64.mmu import Mmu, MmuFault
from localmap.arch.arm64.pgtable import (
    Geometry, PageTable, TableRegistry, iter_leaves, parse_granule, walk,
)
from localmap.errors import LocalmapError
from localmap.mm.page_alloc import FrameAllocator
from localmap.mm.vmalloc import VmapAllocator, clear_pte, set_pte

K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40

# FACTS.md §4: levels per pair, and root-entry span / count
LEVELS = {(4096, 39): 3, (4096, 48): 4, (4096, 52): 5, (16384, 36): 2, (16384, 47): 3,
          (16384, 48): 4, (16384, 52): 4, (65536, 42): 2, (65536, 48): 3, (65536, 52): 3}
ROOT = {(4096, 48): (512 * G, 512), (4096, 52): (256 * T, 16), (16384, 48): (128 * T, 2),
        (16384, 47): (64 * G, 2048), (65536, 48): (4 * T, 64), (65536, 52): (4 * T, 1024)}


@pytest.mark.parametrize("pair", sorted(LEVELS))
def test_levels_and_root(pair):
    g = Geometry(*pair)
    assert g.levels == LEVELS[pair]
    assert g.root_level == 4 - LEVELS[pair]
    # the root resolves exactly the VA bits above it
    assert g.entry_size(g.root_level) * g.ptrs_per_pgd == 1 << g.va_bits
    if pair in ROOT:
        assert (g.entry_size(g.root_level), g.ptrs_per_pgd) == ROOT[pair]
    # a root smaller than a page is a PGD_SIZE object
    assert g.root_alloc_bytes == min(g.ptrs_per_pgd * 8, g.page_size)


def test_fallback_widths():
    assert Geometry(4096, 52).fallback() == Geometry(4096, 48)
    assert Geometry(16384, 52).fallback() == Geometry(16384, 47)
    assert Geometry(65536, 52).fallback() == Geometry(65536, 48)
    assert Geometry(4096, 52).fallback().levels == 4
    assert Geometry(16384, 52).fallback().levels == 3


@pytest.mark.parametrize("bad", [(4096, 47), (16384, 39), (65536, 36), (8192, 48)])
def test_nonexistent_pairs_are_one_error(bad):
    with pytest.raises(LocalmapError, match="does not exist|unknown granule"):
        Geometry(*bad)


def test_parse_granule():
    assert parse_granule("16k") == 16384 and parse_granule(65536) == 65536
    with pytest.raises(LocalmapError):
        parse_granule("8K")


def test_vmalloc_end_matches_capture(s1):
    """s1 (4K, VA_BITS=52, LPA2 under QEMU -cpu max): the first dynamic chunk is the top-most
    pcpu_get_vm_areas area, so its end is VMALLOC_END (rounded down to the chunk alignment)."""
    trace = s1 / "trace.gz"
    with gzip.open(trace, "rt") as f:
        first = next(l for l in f if "percpu_create_chunk" in l)
    base = int(first.split("base_addr=")[1].split()[0], 16)
    span = 4 * 139264  # 4 units of u139264 (dmesg), one 557056-byte area (vmallocinfo)
    lay = KernelLayout.for_geometry(Geometry(4096, 52))
    assert base + span == lay.vmalloc_end == 0xFFFFC1FFBF800000
    # the fallback moves VMALLOC_END up by the unused vmemmap
    fb = KernelLayout.for_geometry(Geometry(4096, 52), vabits_actual=48)
    assert fb.vmalloc_end > lay.vmalloc_end
    assert fb.vmalloc_end - lay.vmalloc_end == ((1 << 52) - (1 << 48)) // 4096 * 64
    with pytest.raises(LocalmapError):
        KernelLayout.for_geometry(Geometry(4096, 48), vabits_actual=52)


@pytest.mark.parametrize("pair", sorted(LEVELS))
def test_layout_ordering(pair):
    lay = KernelLayout.for_geometry(Geometry(*pair))
    assert lay.page_offset < lay.page_end == lay.modules_vaddr < lay.modules_end == lay.vmalloc_start
    assert lay.vmalloc_start < lay.vmalloc_end < lay.vmemmap_start < lay.vmemmap_end < lay.pci_io_start
    assert lay.fixaddr_top == (1 << 64) - 8 * M


@pytest.mark.parametrize("pair", sorted(LEVELS))
def test_map_walk_unmap(pair):
    g = Geometry(*pair)
    fr = FrameAllocator(g.page_size)
    reg = TableRegistry()
    root = reg.add(PageTable(g.root_level, fr.alloc("pt"), g.root_alloc_bytes))

    def alloc(level):
        return reg.add(PageTable(level, fr.alloc("pt"), g.page_size))

    lay = KernelLayout.for_geometry(g)
    vas = [lay.vmalloc_start, lay.vmalloc_end - g.page_size, lay.vmalloc_start + 12345 * g.page_size]
    pas = {va: fr.alloc() for va in vas}
    written = []
    for va, pa in pas.items():
        set_pte(g, reg, root, va, pa, alloc, written)
    for va, pa in pas.items():
        assert walk(g, reg, root.pa, va + 8) == pa + 8
    assert dict(iter_leaves(g, reg, root)) == pas
    assert walk(g, reg, root.pa, lay.vmalloc_start + g.page_size) is None
    # levels written: one entry per level per new path, at least
    assert len(written) >= g.levels
    w = []
    assert clear_pte(g, reg, root, vas[0], w) == pas[vas[0]]
    assert walk(g, reg, root.pa, vas[0]) is None and len(w) == 1


def test_tlb_fill_invalidate_and_cnp_sharing():
    g = Geometry(4096, 48)
    fr = FrameAllocator(g.page_size)
    reg = TableRegistry()

    def alloc(level):
        return reg.add(PageTable(level, fr.alloc("pt"), g.page_size))

    roots = [reg.add(PageTable(0, fr.alloc("pt"), 4096)) for _ in range(2)]
    va = KernelLayout.for_geometry(g).vmalloc_start
    pa0, pa1 = fr.alloc(), fr.alloc()
    set_pte(g, reg, roots[0], va, pa0, alloc, [])
    set_pte(g, reg, roots[1], va, pa1, alloc, [])
    mmu = Mmu(g, reg, fr, 2, threads_per_core=1)  # two cores, no SMT
    # CnP off: each PE fills its own entry
    mmu.set_ttbr1(0, roots[0].pa)
    mmu.set_ttbr1(1, roots[1].pa)
    assert mmu.translate(0, va) == pa0 and mmu.translate(1, va) == pa1
    # CnP on for both PEs of the Inner Shareable domain (no SMT needed): CPU 1 may hit the
    # entry CPU 0 filled (the shared-TLB hazard of differing tables)
    mmu.set_ttbr1(0, roots[0].pa, cnp=True)
    mmu.set_ttbr1(1, roots[1].pa, cnp=True)
    assert mmu.translate(0, va) == pa0
    assert mmu.translate(1, va) == pa0
    # a local invalidation on CPU 1 drops its view; broadcast drops everyone's
    mmu.tlb.invalidate_va(va)
    assert mmu.peek(1, va) == pa1
    mmu.tlb.fill(0, va, pa0)
    mmu.tlb.invalidate_va(va, cpu=1)
    assert mmu.tlb.lookup(0, va) is None  # the common (CnP) store lost it too
    assert mmu.peek(0, va) == pa0
    with pytest.raises(MmuFault):
        mmu.translate(0, va + (1 << 30))
    # a PE with CnP=0 never sees the common store, whoever filled it
    mmu.set_ttbr1(1, roots[1].pa, cnp=False)
    mmu.tlb.fill(0, va, pa0)
    assert mmu.translate(1, va) == pa1


def test_pcpu_get_vm_areas_top_down_congruent():
    v = VmapAllocator(0x1000_0000, 0x2000_0000, 4096)
    a = v.pcpu_get_vm_areas([0, 0x10_0000], [0x8000, 0x8000], 0x1000)
    # the top-most base: the last group ends exactly at the end of the range
    assert (a[0].start, a[1].start, a[1].end) == (0x1FEF_8000, 0x1FFF_8000, 0x2000_0000)
    # the next chunk: the highest base at which *both* groups fit, which interleaves with a
    b = v.pcpu_get_vm_areas([0, 0x10_0000], [0x8000, 0x8000], 0x1000)
    assert (b[0].start, b[1].start) == (0x1FEF_0000, 0x1FFF_0000)
    areas = sorted(v.areas, key=lambda x: x.start)
    assert all(x.end <= y.start for x, y in zip(areas, areas[1:]))
    # ordinary vmalloc is lowest-fit
    assert v.alloc(0x3000).start == 0x1000_0000
    with pytest.raises(LocalmapError, match="too small"):
        v.pcpu_get_vm_areas([0], [0x2000_0000], 0x1000)
