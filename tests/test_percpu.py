"""The percpu allocator model against independent derivations and a brute-force reference."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localmap.errors import LocalmapError
from localmap.mm.percpu import (PCPU_MIN_ALLOC_SIZE, Percpu, PcpuAllocError,
                                first_chunk_alloc_info, pcpu_build_alloc_info)

S = 101464          # static size of Debian 6.12.117 arm64 (dmesg s101464, kallsyms 0x18c58)


# --------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("mode,cpus,page,expect", [
    # the two real boots (dmesg lines in shared/data/bundles)
    ("embed", 4, 4096, (8192, 29608, 139264)),
    ("page", 2, 4096, (8192, 21416, 131072)),
    # hand derivations: size_sum = PFN_ALIGN(s + r + max(d, 20K)), d = size_sum - s - r
    ("embed", 4, 16384, (8192, 147456 - S - 8192, 147456)),    # align(138328, 16K) = 9 pages
    ("embed", 4, 65536, (8192, 196608 - S - 8192, 196608)),    # align(138328, 64K) = 3 pages
    ("page", 160, 4096, (8192, 131072 - S - 8192, 131072)),    # d = 20K early minimum, page
    ("embed", 512, 4096, (8192, 29608, 139264)),               # CPU count does not change u
])
def test_first_chunk_split_matches_derivation(mode, cpus, page, expect):
    ai = first_chunk_alloc_info(mode, S, cpus, page)
    assert (ai.reserved_size, ai.dyn_size, ai.unit_size) == expect
    assert ai.static_size + ai.reserved_size + ai.dyn_size == ai.unit_size
    assert ai.nr_units == cpus
    assert sorted(ai.unit_offsets.values()) == [i * ai.unit_size for i in range(cpus)]


def test_units_per_allocation_with_a_large_atom():
    # x86-like 2 MiB atom: alloc_size 2M; max_upa 8 (2M/8 = 256K page aligned); for 4 CPUs
    # upa 8 wastes 4 > 4/3, upa 4 wastes 0 -> unit 512K; upa 2 needs 2 allocations -> stop.
    ai = pcpu_build_alloc_info(S, 8192, 28672, 2 << 20, 4, 4096)
    assert ai.alloc_size == 2 << 20
    assert ai.unit_size == 512 << 10
    assert ai.nr_units == 4
    # 3 CPUs: upa 4 wastes 1 <= 3/3 -> one unused unit in the group
    ai = pcpu_build_alloc_info(S, 8192, 28672, 2 << 20, 3, 4096)
    assert ai.unit_size == 512 << 10
    assert ai.groups[0].cpu_map == [0, 1, 2, None]


def test_numa_groups():
    ai = pcpu_build_alloc_info(S, 8192, 28672, 4096, 4, 4096, cpu_to_node=lambda c: c // 2)
    assert [g.cpu_map for g in ai.groups] == [[0, 1], [2, 3]]
    assert ai.group_offsets == [0, 2 * ai.unit_size]
    assert ai.unit_offsets == {0: 0, 1: ai.unit_size, 2: 2 * ai.unit_size,
                               3: 3 * ai.unit_size}


def test_bad_geometry_is_refused():
    with pytest.raises(LocalmapError, match="page size"):
        first_chunk_alloc_info("embed", S, 4, 8192)
    with pytest.raises(LocalmapError, match="at least one"):
        pcpu_build_alloc_info(S, 0, 0, 4096, 0, 4096)
    with pytest.raises(LocalmapError, match="mode"):
        first_chunk_alloc_info("lpage", S, 4, 4096)


def test_first_chunk_hides_static_and_reserved():
    ai = first_chunk_alloc_info("embed", S, 4, 4096)
    p = Percpu(ai, base_addr=0xFFF00000FF56B000, per_cpu_start=0xFFFF800081F52000)
    fc, rc = p.first_chunk, p.reserved_chunk
    # s1: first chunk base_addr fff00000ff585000 (trace), start offset (s + r) % 4K
    assert fc.base_addr == 0xFFF00000FF585000
    assert fc.start_offset == (S + 8192) % 4096 == 3160
    assert fc.end_offset == 0 and fc.nr_pages == 8 and fc.free_bytes == 29608
    assert rc.base_addr == 0xFFF00000FF56B000 + (S // 4096) * 4096
    assert rc.free_bytes == 8192
    assert fc.areas() == [(0, 3160 // 4)]
    # pointers as the kernel prints them (trace line 13 of s1: off 5512 -> ptr ...d588)
    assert p.addr_to_ptr(fc.base_addr + 5512) == 0xFFFF800081F6D588


# --------------------------------------------------------------------------- allocation rules

def small_machine(page=4096, cpus=2, reserved=4096, mode="embed"):
    ai = pcpu_build_alloc_info(8192, reserved, 20480, page, cpus, page, dynamic_early_size=0)
    return Percpu(ai, mode=mode, base_addr=0xFFFF000010000000, per_cpu_start=0xFFFF800080000000,
                  vmalloc_end=0xFFFF800090000000)


def test_illegal_requests_are_refused_like_the_kernel():
    p = small_machine()
    for size, align in ((0, 4), (32 * 1024 + 4, 4), (8, 12), (8, 8192)):
        with pytest.raises(PcpuAllocError, match="illegal"):
            p.alloc(size, align)
    # size is rounded to 4 and align raised to 4
    ptr = p.alloc(5, 1)
    ptr2 = p.alloc(1, 1)
    assert ptr2 - ptr == 8


def test_reserved_requests_use_the_reserved_chunk_only():
    p = small_machine()
    ptr = p.alloc(64, 8, reserved=True)
    assert p.chunk_of(p.ptr_to_addr(ptr)) is p.reserved_chunk
    with pytest.raises(PcpuAllocError):
        for _ in range(100):
            p.alloc(1024, 8, reserved=True)
    assert p.nr_created == 0        # reserved exhaustion never creates chunks


def test_atomic_allocations_only_use_populated_pages():
    p = small_machine()
    c = p.create_chunk()
    assert c.nr_populated == 0
    # fill the first chunk so that only the new, unpopulated chunk has room
    while True:
        try:
            p.alloc(4096, 4096, atomic=True)
        except PcpuAllocError:
            break
    with pytest.raises(PcpuAllocError):
        p.alloc(4096, 4096, atomic=True)
    assert p.atomic_alloc_failed and p.balance_pending
    p.balance()                      # populates HIGH (4) pages for atomic use
    assert sum(c2.nr_populated for c2 in p.chunks if not c2.is_first and not c2.is_reserved) >= 4
    p.alloc(4096, 4096, atomic=True)


def test_nonatomic_allocation_populates_what_it_touches_and_per_cpu_ptr():
    p = small_machine(cpus=3)
    p.create_chunk()
    for _ in range(8):
        p.alloc(4096, 4096)         # first chunk too small; the new chunk takes them
    c = [c for c in p.chunks if not c.is_first and not c.is_reserved][0]
    assert c.populated[:2] == [True, True]
    ptr = p.alloc(100, 8)
    addr = p.ptr_to_addr(ptr)
    for cpu in range(3):
        assert p.per_cpu_ptr(ptr, cpu) == addr + p.unit_offsets[cpu] - 0 + \
            (p.per_cpu_start - p.per_cpu_start)
    with pytest.raises(LocalmapError):
        p.per_cpu_ptr(ptr, 3)


def test_quirk_free_outside_block0_keeps_the_chunk_hint():
    """6.12 passes a block-relative end to the chunk hint update on a small free: a free in
    block >= 1 of a full chunk leaves chunk contig_hint at 0, so the chunk stays on slot 0.
    This is what s1's trace shows (line 433 frees 8 bytes at off 22192 of the full first chunk;
    the kernel never reuses them), and what the model reproduces."""
    p = small_machine(reserved=0)
    fc = p.first_chunk
    ptrs = []
    while True:
        try:
            found = p.pcpu_alloc_search(8, 8)
        except PcpuAllocError:
            break
        if found is None or found[0] is not fc:
            break
        ptrs.append(p.alloc(8, 8))
    assert fc.free_bytes < 8
    victim = [x for x in ptrs if (p.ptr_to_addr(x) - fc.base_addr) // 4096 >= 1][3]
    p.free(victim)
    assert fc.free_bytes >= 8
    assert fc.chunk_md.contig_hint == 0          # the quirk
    assert p.chunk_slot(fc) == 0 and fc in p.slots[0]
    # a later small request goes elsewhere although 8 bytes are free in the first chunk
    p.create_chunk()
    ptr = p.alloc(4, 4)
    assert p.chunk_of(p.ptr_to_addr(ptr)) is not fc


def test_area_search_records_the_hole_it_skipped_as_scan_hint():
    """pcpu_alloc_area passes the largest area pcpu_find_zero_area skipped to
    pcpu_block_update_scan. Derived by hand (mm/percpu.c 6.12), bits of the first chunk's
    block 0: 4 bytes at bit 0; 32 bytes at 1-8; 8 bytes aligned 16 at 12-13 (9-11 skipped
    by alignment); freeing bits 1-8 makes hole 1-11 the scan hint (11 bits at 1); 8 bytes
    aligned 8 take 2-3, which clears the scan hint (it overlaps) without touching the contig
    hint at 14, so no refresh. Then 8 bytes aligned 4: the search starts at first_free 1,
    skips the 1-bit hole at 1 (bit 2 is used) and takes 4-5; the skipped hole becomes the
    scan hint (1 bit at 1), and the commit neither overlaps it nor the contig hint."""
    p = small_machine(reserved=0)
    fc = p.first_chunk
    a = p.alloc(4, 8)
    b = p.alloc(32, 4)
    p.alloc(8, 16)
    p.free(b)
    p.alloc(8, 8)
    ptr = p.alloc(8, 4)
    assert [p.ptr_to_addr(x) - fc.base_addr for x in (a, b, ptr)] == [0, 4, 16]
    md = fc.md_blocks[0]
    assert (md.scan_hint, md.scan_hint_start) == (1, 1)
    assert (md.contig_hint, md.contig_hint_start) == (1024 - 14, 14)


def test_free_of_unknown_area_is_an_error():
    p = small_machine()
    ptr = p.alloc(16, 8)
    with pytest.raises(LocalmapError, match="no area starts there"):
        p.free(ptr + 4)
    p.free(ptr)
    with pytest.raises(LocalmapError, match="no area starts there"):
        p.free(ptr)


# --------------------------------------------------------------------------- properties

def brute_runs(m: int, lo: int, hi: int) -> tuple[int, int | None, int, int]:
    """(largest free run, first free bit, left free, right free) of bits [lo, hi)."""
    best = cur = 0
    first = None
    for i in range(lo, hi):
        if not (m >> i) & 1:
            cur += 1
            best = max(best, cur)
            if first is None:
                first = i - lo
        else:
            cur = 0
    left = 0
    while lo + left < hi and not (m >> (lo + left)) & 1:
        left += 1
    right = 0
    while hi - 1 - right >= lo and not (m >> (hi - 1 - right)) & 1:
        right += 1
    return best, first, left, right


def check_invariants(p: Percpu, live: dict[int, tuple[int, int]]) -> None:
    """Everything the kernel keeps exactly, recomputed by brute force."""
    bb = p.block_bits
    by_chunk: dict[int, list[tuple[int, int]]] = {}   # id(chunk): reserved and first chunk
    #                                                   share base_addr with 16K/64K pages
    for ptr, (size, align) in live.items():
        addr = p.ptr_to_addr(ptr)
        c = p.chunk_of(addr)
        off = addr - c.base_addr
        assert off % align == 0, "alignment honoured"
        assert c.start_offset <= off and off + size <= c.nr_pages * p.page_size - c.end_offset
        by_chunk.setdefault(id(c), []).append((off, -(-size // 4) * 4))
    global_empty = 0
    for c in p.chunks:
        areas = sorted(by_chunk.get(id(c), []))
        for (a, n), (b, _) in zip(areas, areas[1:]):
            assert a + n <= b, "no overlap"
        ref = 0
        if c.start_offset:
            ref |= (1 << (c.start_offset // 4)) - 1
        if c.end_offset:
            ref |= ((1 << (c.end_offset // 4)) - 1) << (c.map_bits - c.end_offset // 4)
        for off, n in areas:
            ref |= ((1 << (n // 4)) - 1) << (off // 4)
            assert (c.bound_map >> (off // 4)) & 1 and (c.bound_map >> ((off + n) // 4)) & 1
        assert c.alloc_map == ref, "alloc map is exactly the live areas"
        nfree = c.map_bits - bin(ref).count("1")
        assert c.free_bytes == nfree * PCPU_MIN_ALLOC_SIZE
        empty = 0
        for i, blk in enumerate(c.md_blocks):
            best, first, left, right = brute_runs(c.alloc_map, i * bb, (i + 1) * bb)
            assert blk.contig_hint == best
            assert blk.left_free == left and blk.right_free == right
            if first is not None:
                assert blk.first_free == first
            if best == bb and c.populated[i]:
                empty += 1
            if blk.scan_hint:
                s = blk.scan_hint_start
                assert not (c.alloc_map >> (i * bb + s)) & ((1 << blk.scan_hint) - 1)
        assert c.nr_empty_pop_pages == empty
        best, first, _, _ = brute_runs(c.alloc_map, 0, c.map_bits)
        if first is not None:
            assert c.chunk_md.first_free == first
        # the chunk hint may lag below the truth (see the quirk test), never above
        assert c.chunk_md.contig_hint <= best
        for off, n in areas:        # non-atomic areas are backed
            for pg in range(off // p.page_size, -(-(off + n) // p.page_size)):
                assert c.populated[pg]
        assert c.nr_populated == sum(c.populated)
        if c is not p.reserved_chunk and not c.isolated:
            global_empty += c.nr_empty_pop_pages
        if c is not p.reserved_chunk:
            assert sum(c in lst for lst in p.slots) == 1
    assert p.nr_empty_pop_pages == global_empty


ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.sampled_from([4, 8, 12, 16, 24, 32, 56, 96, 144, 304, 496,
                                                 1088, 2464, 4096, 9000]),
              st.sampled_from([4, 8, 16, 64, 256, 4096]), st.booleans()),
    st.tuples(st.just("free"), st.integers(0, 10 ** 6)),
    st.tuples(st.just("balance"),)), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, page=st.sampled_from([4096, 16384]))
def test_properties_against_brute_force(ops, page):
    p = small_machine(page=page)
    live: dict[int, tuple[int, int]] = {}
    for op in ops:
        if op[0] == "alloc":
            _, size, align, reserved = op
            align = min(align, page)
            try:
                ptr = p.alloc(size, align, reserved=reserved)
            except PcpuAllocError:
                continue
            assert ptr not in live
            live[ptr] = (size, align)
        elif op[0] == "free" and live:
            ptr = sorted(live)[op[1] % len(live)]
            size = live.pop(ptr)[0]
            assert p.free(ptr) == -(-size // 4) * 4, "frees give back what was allocated"
        elif op[0] == "balance":
            p.balance()
        check_invariants(p, live)
    for ptr in list(live):
        p.free(ptr)
    p.balance()
    check_invariants(p, {})
    for c in p.chunks:
        served = c.map_bits * 4 - c.start_offset - c.end_offset
        assert c.free_bytes == served, "all space comes back"


def test_early_dynamic_size_follows_the_kernel_version():
    """Linux 6.1 page mode prints `27 4K pages/cpu s87272 r8192 d15128` (lab capture): only a
    12K PERCPU_DYNAMIC_EARLY_SIZE explains it (align(87272 + 8192 + 12288, 4K) = 110592);
    6.2 raised it to 20K, which 6.12's page-mode line d21416 shows."""
    from localmap.ingest.kconfig import parse_config
    old = parse_config("#\n# Linux/arm64 6.1.192 Kernel Configuration\n#\n"
                       "CONFIG_ARM64_4K_PAGES=y\nCONFIG_MODULES=y\n")
    new = parse_config("# Linux/arm64 6.12.117 Kernel Configuration\n"
                       "CONFIG_ARM64_4K_PAGES=y\nCONFIG_MODULES=y\n")
    assert old.version == (6, 1, 192) and new.version == (6, 12, 117)
    ai = first_chunk_alloc_info("page", 87272, 8, 4096,
                                dynamic_early_size=old.percpu_dynamic_early_size)
    assert (ai.reserved_size, ai.dyn_size, ai.unit_size) == (8192, 15128, 27 * 4096)
    ai = first_chunk_alloc_info("page", S, 2, 4096,
                                dynamic_early_size=new.percpu_dynamic_early_size)
    assert (ai.dyn_size, ai.unit_size) == (21416, 32 * 4096)


def test_snapshot_restore_keeps_chunk_identity_and_state():
    """A replay tries event orders on a snapshot; listeners key on chunk objects, so restore
    must bring the old state back into the same objects."""
    p = small_machine()
    p.create_chunk()
    ptrs = [p.alloc(s, 8) for s in (8, 96, 4000, 16, 2000)]
    before = {id(c): (c.alloc_map, c.bound_map, c.free_bytes, [b.state() for b in c.md_blocks],
                      c.chunk_md.state(), list(c.populated), c.slot) for c in p.chunks}
    ids = [id(c) for c in p.chunks]
    snap = p.snapshot()
    for x in ptrs[1:3]:
        p.free(x)
    p.alloc(9000, 64)
    p.balance()
    p.restore(snap)
    assert [id(c) for c in p.chunks] == ids
    after = {id(c): (c.alloc_map, c.bound_map, c.free_bytes, [b.state() for b in c.md_blocks],
                     c.chunk_md.state(), list(c.populated), c.slot) for c in p.chunks}
    assert after == before
    check_invariants(p, {x: (s, 8) for x, s in zip(ptrs, (8, 96, 4000, 16, 2000))})


def test_balance_work_scheduling_as_the_kernel():
    """pcpu_schedule_balance_work does nothing before percpu_enable_async; a failed atomic
    allocation sets pcpu_atomic_alloc_failed even then, and the next run of the work then
    populates PCPU_EMPTY_POP_PAGES_HIGH pages although enough empty pages are populated (it
    would populate none without the flag)."""
    from localmap.mm.percpu import PCPU_EMPTY_POP_PAGES_HIGH
    p = small_machine()
    p.async_enabled = False
    c = p.create_chunk()                        # a dynamic chunk, nothing populated
    assert p.nr_empty_pop_pages >= PCPU_EMPTY_POP_PAGES_HIGH   # the first chunk's free pages
    with pytest.raises(PcpuAllocError):
        p.alloc(32 * 1024, 4096, atomic=True)   # no populated run that long
    assert p.atomic_alloc_failed and not p.balance_pending
    p.free(p.alloc(16, 8))                      # nothing schedules before enable
    assert not p.balance_pending
    p.async_enabled = True
    with pytest.raises(PcpuAllocError):
        p.alloc(32 * 1024, 4096, atomic=True)
    assert p.balance_pending
    before = c.nr_populated
    run = p.balance()
    assert run.populated == PCPU_EMPTY_POP_PAGES_HIGH and c.nr_populated == before + 4
    assert not p.atomic_alloc_failed and not p.balance_pending
    assert p.balance().populated == 0           # without the flag: enough empty pages
