"""The design machine driven by the percpu allocator model (listener protocol): random
alloc/free/balance/vmalloc/vfree/hotplug sequences with every invariant checked after every step,
and this_cpu operations on the allocator's own pointers."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localmap.design.replay_driver import ReplayDriver
from localmap.arch.arm64.pgtable import Geometry
from localmap.mm.percpu import Percpu, PcpuAllocError, first_chunk_alloc_info

MASK64 = (1 << 64) - 1


def _design_ptr(p: Percpu, d: ReplayDriver, ptr: int) -> int:
    """The design machine's pointer for an allocator pointer (same chunk, same offset)."""
    m = d.machine
    addr = p.ptr_to_addr(ptr)
    chunk = p.chunk_of(addr)
    if chunk.is_first or chunk.is_reserved:
        return m.ptr_of(m.first_chunk, addr - p.base_addr)
    return m.ptr_of(d.map[id(chunk)][1], addr - chunk.base_addr)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([Geometry(4096, 48), Geometry(4096, 52), Geometry(16384, 47), Geometry(65536, 42)]),
       st.integers(1, 5), st.integers(0, 10**9))
def test_allocator_driven_sequences(g, cpus, seed):
    rng = random.Random(seed)
    ai = first_chunk_alloc_info("page", 3 * g.page_size + 100, cpus, g.page_size)
    d = ReplayDriver(g, cpus, checked=True, kpti=True, unit_size=ai.unit_size)
    p = Percpu(ai, mode="page", listener=d)
    m = d.machine
    live: list[tuple[int, int]] = []
    vms: list[int] = []
    for _ in range(120):
        op = rng.choices(["alloc", "free", "balance", "vmalloc", "vfree", "online", "offline", "op"],
                         [30, 20, 5, 5, 4, 3, 3, 20])[0]
        if op == "alloc":
            size = rng.choice([4, 8, 16, 64, 256, 1024, 4096, 16384])
            try:
                ptr = p.alloc(size, rng.choice([4, 8, 64]))
            except PcpuAllocError:
                continue
            live.append((ptr, size))
            dp = _design_ptr(p, d, ptr)
            # I1 on the allocation: the this_cpu address is the local twin of the global address
            laddr = (dp + m.this_cpu_delta()) & MASK64
            assert m.layout.in_local_window(laddr)
            assert laddr - (m.pcpu_base_addr + m.layout.delta) == m.per_cpu_ptr(dp, 0) - m.pcpu_base_addr
        elif op == "free" and live:
            ptr, _ = live.pop(rng.randrange(len(live)))
            p.free(ptr)
        elif op == "balance":
            p.balance()
        elif op == "vmalloc":
            vms.append(m.vmalloc(g.page_size * rng.randint(1, 3)))
        elif op == "vfree" and vms:
            m.vfree(vms.pop())
        elif op == "online":
            off = [c for c in range(cpus) if c not in m.online]
            if off:
                m.cpu_online(rng.choice(off))
        elif op == "offline":
            on = [c for c in m.online if c]
            if on:
                m.cpu_offline(rng.choice(on))
        elif op == "op" and live:
            ptr, _ = rng.choice(live)
            dp = _design_ptr(p, d, ptr)
            cpu = rng.choice(sorted(m.online))
            before = m.read_via(0, m.per_cpu_ptr(dp, cpu))
            assert m.this_cpu_add_return(cpu, dp, 5) == (before + 5) & MASK64
            assert m.read_via(0, m.per_cpu_ptr(dp, cpu)) == (before + 5) & MASK64
    m.check_all()


def test_granule_scaling_of_a_4k_history():
    """A 4K allocation history evaluated with 16K pages: a 16K page stays populated while any of
    its four 4K pages is."""

    class C:
        def __init__(self, n):
            self.nr_pages, self.is_first, self.is_reserved = n, False, False

    d = ReplayDriver(Geometry(16384, 48), 2, src_page_size=4096, checked=True, unit_size=10 * 4096)
    m = d.machine
    assert m.unit_size == 3 * 16384  # 40K rounded up to the granule
    c = C(10)
    d.chunk_created(c)
    mc = d.map[id(c)][1]
    d.pages_populated(c, 1, 6)  # 4K pages 1..5 -> 16K pages 0, 1
    assert mc.populated == [True, True, False]
    d.pages_depopulated(c, 4, 6)  # 16K page 1 now empty
    assert mc.populated == [True, False, False]
    d.pages_depopulated(c, 1, 3)  # page 3 still holds 16K page 0
    assert mc.populated == [True, False, False]
    d.pages_depopulated(c, 3, 4)
    assert mc.populated == [False, False, False]
    d.chunk_destroyed(c)
    assert len(m.chunks) == 1
