"""The design machine: worked example, closed form vs the tables actually built, this_cpu ops
through the MMU, invariants under random operation sequences, and broken variants caught."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localmap.analysis.overhead import build_synthetic, closed_form, overhead_synthetic
from localmap.arch.arm64 import thiscpu
from localmap.arch.arm64.pgtable import Geometry
from localmap.design.layout import design_layout, split_level
from localmap.design.machine import BaselineMachine, DesignMachine, InvariantViolation
from localmap.errors import LocalmapError

PAIRS = Geometry.all_pairs()
KB = 1024


def test_worked_example():
    """The worked example: 4K/48, 160 CPUs, 192 KiB units, 5 chunks."""
    r = overhead_synthetic("4K", 48, 160, "192K", 5, materialise="all")
    assert r["split_level"] == r["root_level"] == 0
    assert r["private_tables_per_cpu"] == {"1": 1, "2": 1, "3": 5}
    assert r["local_va_bytes"] == 983_040
    assert r["pgtable_extra_bytes"] == 5_238_784
    assert r["method"] == "materialised"
    # the same through the shared-structure derivation
    r2 = overhead_synthetic("4K", 48, 160, "192K", 5, materialise="shared")
    assert r2["pgtable_extra_bytes"] == 5_238_784


def test_split_levels_as_design_states():
    # DESIGN.md item 4
    assert split_level(Geometry(4096, 48)) == 0  # root, 512 GB entries
    g = Geometry(16384, 48)
    assert split_level(g) == 1 and g.entry_size(1) == 64 << 30
    g = Geometry(4096, 52)
    assert split_level(g) == 0 and g.entry_size(0) == 512 << 30 and g.root_level == -1
    assert split_level(Geometry(65536, 48)) == 1 == Geometry(65536, 48).root_level
    assert split_level(Geometry(65536, 52)) == 1 == Geometry(65536, 52).root_level
    for g in PAIRS:
        lay = design_layout(g)
        assert lay.delta % g.entry_size(lay.split_level) == 0
        assert lay.global_window[0] % lay.split_entry_size == 0
        assert lay.kernel.vmalloc_start <= lay.local_window[0] < lay.global_window[1] <= lay.kernel.vmalloc_end


def _brute(m: DesignMachine) -> int:
    """Count the page-table bytes that exist only because of the design, from the registry."""
    total = 0
    for t in m.registry.tables.values():
        if t.owner.startswith("cpu"):
            total += m.geom.root_alloc_bytes if t.level == m.geom.root_level else m.page
    return total


@pytest.mark.parametrize("g", PAIRS, ids=lambda g: g.describe())
def test_closed_form_equals_built_tables(g):
    rng = random.Random(g.page_size * 100 + g.va_bits)
    for cpus in [1, 2, 3, 5, 8, 13, 24]:
        unit = g.page_size * rng.choice([1, 2, 3, 8, 17])
        chunks = rng.choice([1, 2, 3, 7])
        try:
            cf = closed_form(g, cpus, unit, chunks)
        except LocalmapError as exc:
            assert "too small" in str(exc)
            with pytest.raises(LocalmapError, match="too small"):
                build_synthetic(g, cpus, unit, chunks)
            continue
        m = build_synthetic(g, cpus, unit, chunks, map_global=True)
        assert _brute(m) == cf["pgtable_extra_bytes"] == m.extra_bytes_now
        for cpu in range(cpus):
            assert m.private_tables(cpu) == {k: v for k, v in cf["private_tables_per_cpu"].items() if v}
        assert m.local_va_bytes() == cf["local_va_bytes"]
        # shared-structure derivation = full materialisation
        r_all = overhead_synthetic(g.page_size, g.va_bits, cpus, unit, chunks, materialise="all")
        r_sh = overhead_synthetic(g.page_size, g.va_bits, cpus, unit, chunks, materialise="shared")
        assert r_all["pgtable_extra_bytes"] == r_sh["pgtable_extra_bytes"] == cf["pgtable_extra_bytes"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PAIRS), st.integers(1, 4096), st.integers(1, 64), st.integers(1, 64))
def test_closed_form_large_cpu_counts(g, cpus, unit_pages, chunks):
    unit = unit_pages * g.page_size
    try:
        cf = closed_form(g, cpus, unit, chunks)
    except LocalmapError as exc:
        assert "too small" in str(exc)
        return
    r = overhead_synthetic(g.page_size, g.va_bits, cpus, unit, chunks, materialise="shared")
    assert r["pgtable_extra_bytes"] == cf["pgtable_extra_bytes"]
    assert r["closed_form_agrees"]


def test_shared_structure_equals_full_on_160():
    g = Geometry(16384, 48)
    full = build_synthetic(g, 160, 48 * KB, 3)
    shapes = {tuple(full.private_tables(c).items()) for c in range(160)}
    assert len(shapes) == 1
    r = overhead_synthetic(16384, 48, 160, 48 * KB, 3, materialise="shared")
    assert r["pgtable_extra_bytes"] == _brute(full)


@pytest.mark.parametrize("g", [Geometry(4096, 48), Geometry(4096, 52), Geometry(16384, 48), Geometry(65536, 52)],
                         ids=lambda g: g.describe())
@pytest.mark.parametrize("op", ["read", "write", "add", "inc", "dec", "and", "or", "xchg", "cmpxchg", "add_return"])
def test_this_cpu_ops_through_mmu(g, op):
    m = DesignMachine(g, 4, 4 * g.page_size, checked=True)
    c = m.create_chunk()
    m.populate(c, 0, 4)
    ptr = m.ptr_of(c, g.page_size + 24)
    rng = random.Random(op)
    for cpu in range(4):
        m.mmu.store(0, m.per_cpu_ptr(ptr, cpu), rng.getrandbits(64))
    for cpu in (3, 1):
        before = [m.read_via(0, m.per_cpu_ptr(ptr, k)) for k in range(4)]
        val, old = rng.getrandbits(64), before[cpu] if rng.random() < 0.5 else 7
        ret = m.this_cpu(cpu, op, ptr, val, old)
        new, exp_ret = thiscpu.expected_result(op, before[cpu], val, old)
        after = [m.read_via(0, m.per_cpu_ptr(ptr, k)) for k in range(4)]
        assert after[cpu] == new  # seen by CPU 0 through the global mapping
        assert [a for k, a in enumerate(after) if k != cpu] == [b for k, b in enumerate(before) if k != cpu]
        if op != "write":
            assert ret == exp_ret


def test_talk_example_add_on_cpu3_read_from_cpu0():
    for cls in (DesignMachine, BaselineMachine):
        m = cls(Geometry(4096, 48), 4, 192 * KB, checked=True)
        c = m.create_chunk()
        m.populate(c, 0, 2)
        ptr = m.ptr_of(c, 0x40)
        m.this_cpu_add(3, ptr, 42)
        m.this_cpu_inc(3, ptr)
        assert m.read_via(0, m.per_cpu_ptr(ptr, 3)) == 43
        assert m.this_cpu_read(3, ptr) == 43 and m.this_cpu_read(2, ptr) == 0
        assert m.this_cpu_add_return(2, ptr, 5) == 5


def test_local_address_is_the_same_on_every_cpu():
    m = DesignMachine(Geometry(4096, 48), 4, 8 * 4096, checked=True)
    c = m.create_chunk()
    m.populate(c, 0, 8)
    ptr = m.ptr_of(c, 0x1000)
    addr = (ptr + m.this_cpu_delta()) % (1 << 64)
    assert m.layout.in_local_window(addr)
    pas = {m.mmu.translate(cpu, addr) for cpu in range(4)}
    assert len(pas) == 4  # one VA, four physical pages
    assert pas == {m.mmu.translate(0, m.per_cpu_ptr(ptr, cpu)) for cpu in range(4)}


def _scenario(m, seed, steps=60):
    """Random alloc-like activity: chunks, populate, depopulate, vmalloc, vfree, hotplug."""
    rng = random.Random(seed)
    chunks = [m.create_chunk(first=True)]
    m.populate(chunks[0], 0, chunks[0].nr_pages)
    vms = []
    for _ in range(steps):
        op = rng.choice(["create", "destroy", "pop", "depop", "vmalloc", "vfree", "online", "offline", "op"])
        if op == "create" and len(chunks) < 6:
            chunks.append(m.create_chunk())
        elif op == "destroy" and len(chunks) > 1:
            m.destroy_chunk(chunks.pop(rng.randrange(1, len(chunks))))
        elif op in ("pop", "depop"):
            c = rng.choice(chunks[1:] or chunks)
            s = rng.randrange(c.nr_pages)
            e = rng.randrange(s + 1, c.nr_pages + 1)
            if op == "pop":
                m.populate(c, s, e)
            elif not c.is_first:
                # touch the pages first so TLBs hold entries that must be invalidated
                for cpu in sorted(m.online):
                    for i in range(s, e):
                        if c.populated[i]:
                            m.mmu.translate(cpu, m.local_va(c, i) if m.design else m.global_va(c, cpu, i))
                m.depopulate(c, s, e)
        elif op == "vmalloc":
            vms.append(m.vmalloc(rng.randrange(1, 5) * m.page))
            for cpu in sorted(m.online):
                m.mmu.translate(cpu, vms[-1])
        elif op == "vfree" and vms:
            m.vfree(vms.pop(rng.randrange(len(vms))))
        elif op == "online":
            off = [c for c in range(m.nr_cpus) if c not in m.online]
            if off:
                m.cpu_online(rng.choice(off))
        elif op == "offline":
            on = [c for c in m.online if c]
            if on:
                m.cpu_offline(rng.choice(on))
        elif op == "op":
            c = rng.choice(chunks)
            pages = [i for i, p in enumerate(c.populated) if p]
            if pages:
                ptr = m.ptr_of(c, rng.choice(pages) * m.page + 8 * rng.randrange(m.page // 8))
                cpu = rng.choice(sorted(m.online))
                before = m.read_via(0, m.per_cpu_ptr(ptr, cpu))
                m.this_cpu_add(cpu, ptr, 3)
                assert m.read_via(0, m.per_cpu_ptr(ptr, cpu)) == (before + 3) % (1 << 64)
    m.check_all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PAIRS), st.integers(1, 6), st.integers(1, 6), st.integers(0, 10**6),
       st.sampled_from([1, 2]))
def test_invariants_hold_over_random_sequences(g, cpus, unit_pages, seed, smt):
    m = DesignMachine(g, cpus, unit_pages * g.page_size, checked=True, kpti=True, threads_per_core=smt)
    _scenario(m, seed)
    b = BaselineMachine(g, cpus, unit_pages * g.page_size, checked=True)
    _scenario(b, seed)


@pytest.mark.parametrize("fault,inv,smt", [("skip_sync", "I3", 2), ("skip_tlbi", "I5", 2),
                                           ("forget_cpu", "I2", 2), ("keep_cnp", "I2", 2),
                                           ("keep_cnp", "I2", 1)])
def test_broken_variants_are_caught(fault, inv, smt):
    g = Geometry(4096, 52)  # split below the root: the sync covers two copied levels
    caught = []
    for seed in range(40):
        m = DesignMachine(g, 4, 4 * g.page_size, checked=True, faults=[fault], threads_per_core=smt)
        try:
            if fault != "keep_cnp":
                _scenario(m, seed)
            else:
                # CPUs 0 and 1 (siblings or not) share entries with CnP on: CPU 1 uses CPU 0's
                # local entry
                c = m.create_chunk()
                m.populate(c, 0, 1)
                m.mmu.translate(0, m.local_va(c, 0))
                m.check_pages(c, [0])
        except InvariantViolation as exc:
            caught.append(exc)
            break
    assert caught, f"{fault} not caught"
    exc = caught[0]
    assert exc.inv == inv
    if inv != "I4":
        assert exc.va is not None and "CPU" in str(exc) and "expected PA" in str(exc)


@pytest.mark.parametrize("smt", [1, 2])
def test_correct_machine_turns_cnp_off_with_or_without_smt(smt):
    m = DesignMachine(Geometry(4096, 48), 4, 4096 * 4, checked=True, threads_per_core=smt, cnp=True)
    c = m.create_chunk()
    m.populate(c, 0, 1)
    assert not any(m.mmu.tlb.cnp)
    m.mmu.translate(0, m.local_va(c, 0))
    assert m.mmu.translate(1, m.local_va(c, 0)) == c.frames[(1, 0)]
    # today's kernel (one shared table) may keep CnP on: every PE's tables are the same
    b = BaselineMachine(Geometry(4096, 48), 4, 4096 * 4, threads_per_core=smt, cnp=True)
    c = b.create_chunk()
    b.populate(c, 0, 1)
    assert all(b.mmu.tlb.cnp)


def test_kpti_blocks_keep_the_fixed_offset():
    m = DesignMachine(Geometry(4096, 48), 3, 4096 * 2, kpti=True, checked=True)
    for cpu in range(3):
        root = m.mmu.ttbr1[cpu]
        assert m.frames.owner[root - 2 * m.page].startswith("pgtable")  # tramp
        assert m.frames.owner[root - m.page].startswith("pgtable")  # reserved
    # run the trampoline's exit/entry sequence against CPU 2's TTBR1
    seq = thiscpu.kpti_exit_sequence(2 * m.page)

    class Env(thiscpu.ThisCpuEnv):
        ttbr = m.mmu.ttbr1[2]
        seen = []

        def read_ttbr1(self):
            return self.ttbr

        def write_ttbr1(self, v):
            self.seen.append(v)
            self.ttbr = v

    env = Env()
    thiscpu.run(seq, env, thiscpu.initial_regs())
    assert env.seen[0] == m.mmu.ttbr1[2] - 2 * m.page and m.frames.is_allocated(env.seen[0])
    assert env.seen[-1] == m.mmu.ttbr1[2]


def test_hotplug_frees_private_tables_and_rebuilds():
    m = DesignMachine(Geometry(4096, 48), 4, 4096 * 4, checked=True)
    c = m.create_chunk()
    m.populate(c, 0, 4)
    before = m.extra_bytes_now
    nframes = m.frames.nr_allocated
    m.cpu_offline(3)
    assert m.extra_bytes_now < before and m.frames.nr_allocated < nframes
    assert m.mmu.ttbr1[3] is None
    m.cpu_online(3)
    assert m.extra_bytes_now == before
    assert m.mmu.translate(3, m.local_va(c, 2)) == c.frames[(3, 2)]
    assert m.acct.entries[("cpu_online", "local")] > 0


def test_bad_inputs():
    with pytest.raises(LocalmapError, match="at least 1 CPU"):
        DesignMachine(Geometry(4096, 48), 0, 4096)
    with pytest.raises(LocalmapError, match="does not exist"):
        overhead_synthetic("4K", 47, 4, "16K", 1)
    with pytest.raises(LocalmapError, match="too small"):
        overhead_synthetic("16K", 36, 4096, "192K", 5)
    with pytest.raises(LocalmapError, match="multiple of the page size"):
        overhead_synthetic("64K", 48, 4, "100K", 1)
    with pytest.raises(LocalmapError, match="chunks"):
        overhead_synthetic("4K", 48, 4, "192K", 0)


@pytest.mark.parametrize("form", ["local-llsc", "local-lse"])
def test_llsc_and_lse_forms_agree(form):
    m = DesignMachine(Geometry(16384, 47), 3, 2 * 16384, checked=True)
    c = m.create_chunk()
    m.populate(c, 0, 2)
    ptr = m.ptr_of(c, 16384 + 8)
    for op, val in [("add", 5), ("or", 0x30), ("and", 0x3F), ("xchg", 9), ("add_return", 1)]:
        m.this_cpu(2, op, ptr, val, form=form)
    assert m.read_via(0, m.per_cpu_ptr(ptr, 2)) == 10
    assert m.read_via(1, m.per_cpu_ptr(ptr, 1)) == 0
    assert m.this_cpu(2, "cmpxchg", ptr, 77, 10, form=form) == 10 and m.this_cpu_read(2, ptr) == 77


def test_lpa2_fallback_machine():
    """A 52-bit 4K kernel on a CPU without LPA2 runs with 4 levels; the split stays at L0, which
    is then the root, and VMALLOC_END moves up."""
    g = Geometry(4096, 52)
    m52 = DesignMachine(g, 2, 4096, checked=True)
    m48 = DesignMachine(g, 2, 4096, vabits_actual=48, checked=True)
    assert (m52.geom.root_level, m48.geom.root_level) == (-1, 0)
    assert m52.layout.split_level == m48.layout.split_level == 0
    assert m48.layout.kernel.vmalloc_end > m52.layout.kernel.vmalloc_end
    for m in (m52, m48):
        c = m.create_chunk()
        m.populate(c, 0, 1)
        m.this_cpu_add(1, m.ptr_of(c, 0), 4)
        assert m.read_via(0, m.per_cpu_ptr(m.ptr_of(c, 0), 1)) == 4
    r = overhead_synthetic("4K", 52, 160, "192K", 5, vabits_actual=48)
    assert r["root_level"] == 0 and r["split_level"] == 0 and r["pgtable_extra_bytes"] == 5_238_784


def test_stray_mapping_in_local_window_is_caught():
    """I4: a kernel mapping planted in the local window (as a vmalloc ignoring the reservation
    would) is reported on every CPU's view, CPU 0's (swapper) included."""
    from localmap.mm.vmalloc import set_pte

    for cpu in (0, 1):
        m = DesignMachine(Geometry(4096, 48), 2, 4 * 4096, checked=True)
        c = m.create_chunk()
        m.populate(c, 0, 2)
        stray = m.layout.local_window[0] + 0x10_0000
        set_pte(m.geom, m.registry, m.cpu_roots[cpu], stray, m.frames.alloc("vmalloc"),
                m._private_alloc(cpu), [])
        with pytest.raises(InvariantViolation) as ei:
            m.check_all()
        assert ei.value.inv == "I4" and ei.value.cpu == cpu and ei.value.va == stray


def test_non_congruent_slice_is_caught():
    m = DesignMachine(Geometry(4096, 48), 2, 4 * 4096, checked=True)
    c = m.create_chunk()
    m.populate(c, 0, 1)
    c2 = m.create_chunk()
    c2.local_base += 4096  # a slice placed one page off its congruent address
    with pytest.raises(InvariantViolation) as ei:
        m.check_chunk(c2)
    assert ei.value.inv == "I1"
    m.check_chunk(c)
