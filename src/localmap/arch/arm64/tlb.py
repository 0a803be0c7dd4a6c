"""Per-CPU TLBs of the kernel half, filled by table walks and invalidated by VA.

Models: one TLB per hardware thread; with CnP (TTBR1.CnP) set on SMT siblings of one core, the
entries they fill go into a store those siblings share, so one thread may hit an entry another
filled (the hazard per-CPU tables create); ``tlbi vaale1is`` (broadcast) removes a VA from every
TLB of the inner-shareable domain whatever it mapped to, ``tlbi vaale1`` (local) only from the
issuing thread's view; a TTBR1 switch or CPU offline flushes the thread's private entries.

Differences from hardware: unlimited capacity and no eviction (a stale entry stays until it is
invalidated, which is the worst case and what the checks need); no ASIDs (kernel mappings are
global); entries are per page, no walk caches or block entries.
"""

from __future__ import annotations

from collections import Counter


class TlbSystem:
    def __init__(self, nr_cpus: int, page_size: int, threads_per_core: int = 1):
        if threads_per_core < 1:
            threads_per_core = 1
        self.nr_cpus = nr_cpus
        self.page_mask = ~(page_size - 1)
        self.threads_per_core = threads_per_core
        self.private: list[dict[int, int]] = [dict() for _ in range(nr_cpus)]
        self.shared: dict[int, dict[int, int]] = {}
        self.cnp = [False] * nr_cpus
        self.stats: Counter[str] = Counter()

    def core_of(self, cpu: int) -> int:
        return cpu // self.threads_per_core

    def siblings(self, cpu: int) -> list[int]:
        core = self.core_of(cpu)
        first = core * self.threads_per_core
        return [c for c in range(first, min(first + self.threads_per_core, self.nr_cpus))]

    def set_cnp(self, cpu: int, on: bool) -> None:
        self.cnp[cpu] = on

    def lookup(self, cpu: int, va: int) -> int | None:
        page = va & self.page_mask
        pa = self.private[cpu].get(page)
        if pa is None and self.cnp[cpu]:
            store = self.shared.get(self.core_of(cpu))
            if store is not None:
                pa = store.get(page)
        return pa

    def fill(self, cpu: int, va: int, pa_page: int) -> None:
        page = va & self.page_mask
        self.stats["fill"] += 1
        if self.cnp[cpu]:
            self.shared.setdefault(self.core_of(cpu), {})[page] = pa_page
        else:
            self.private[cpu][page] = pa_page

    def invalidate_va(self, va: int, cpu: int | None = None) -> None:
        """Broadcast (cpu None) or local invalidation of one page."""
        page = va & self.page_mask
        if cpu is None:
            self.stats["tlbi_va_broadcast"] += 1
            for tlb in self.private:
                tlb.pop(page, None)
            for store in self.shared.values():
                store.pop(page, None)
        else:
            self.stats["tlbi_va_local"] += 1
            self.private[cpu].pop(page, None)
            store = self.shared.get(self.core_of(cpu))
            if store is not None:
                store.pop(page, None)

    def flush_cpu(self, cpu: int) -> None:
        self.stats["flush_all_local"] += 1
        self.private[cpu].clear()
        if self.threads_per_core == 1:
            self.shared.pop(self.core_of(cpu), None)  # the core's TLB is this thread's alone

    def entries(self, cpu: int) -> dict[int, int]:
        """Every page this CPU could hit: its own entries and, with CnP, its core's shared ones."""
        out = {}
        if self.cnp[cpu]:
            out.update(self.shared.get(self.core_of(cpu), {}))
        out.update(self.private[cpu])
        return out
