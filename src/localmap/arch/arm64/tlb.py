"""Per-CPU TLBs of the kernel half, filled by table walks and invalidated by VA.

Models: one TLB view per PE; ``tlbi vaale1is`` (broadcast) removes a VA from every TLB of the
Inner Shareable domain whatever it mapped to, ``tlbi vaale1`` (local) only from the issuing
PE's view; a TTBR1 switch or CPU offline flushes the PE's private entries.

CnP (Arm ARM, TTBR1_EL1.CnP): with CnP=1 a PE declares its TTBR1 tables the same as those of
every other PE of the Inner Shareable domain that also has CnP=1, so the implementation may
share TLB entries between all of them -- not only between SMT siblings of one core. If their
tables differ, translation is CONSTRAINED UNPREDICTABLE. The model takes the permitted worst
case: entries filled by any PE with CnP=1 go into one store that every PE with CnP=1 may hit.
``threads_per_core`` is kept as topology only; it does not limit the sharing.

Differences from hardware: unlimited capacity and no eviction (a stale entry stays until it is
invalidated, which is the worst case and what the checks need); no ASIDs (kernel mappings are
global); one Inner Shareable domain; entries are per page, no block entries. Walk caches are
modelled by the checker (``localmap.check``), where intermediate tables are freed.
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
        self.common: dict[int, int] = {}      # entries shared by every PE with CnP=1
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
        if not any(self.cnp):
            self.common.clear()  # no PE may use the common store any more

    def lookup(self, cpu: int, va: int) -> int | None:
        page = va & self.page_mask
        pa = self.private[cpu].get(page)
        if pa is None and self.cnp[cpu]:
            pa = self.common.get(page)
        return pa

    def fill(self, cpu: int, va: int, pa_page: int) -> None:
        page = va & self.page_mask
        self.stats["fill"] += 1
        if self.cnp[cpu]:
            self.common[page] = pa_page
        else:
            self.private[cpu][page] = pa_page

    def invalidate_va(self, va: int, cpu: int | None = None) -> None:
        """Broadcast (cpu None) or local invalidation of one page."""
        page = va & self.page_mask
        if cpu is None:
            self.stats["tlbi_va_broadcast"] += 1
            for tlb in self.private:
                tlb.pop(page, None)
            self.common.pop(page, None)
        else:
            self.stats["tlbi_va_local"] += 1
            self.private[cpu].pop(page, None)
            if self.cnp[cpu]:
                self.common.pop(page, None)

    def flush_cpu(self, cpu: int) -> None:
        self.stats["flush_all_local"] += 1
        self.private[cpu].clear()

    def entries(self, cpu: int) -> dict[int, int]:
        """Every page this CPU could hit: its own entries and, with CnP, the common ones."""
        out = {}
        if self.cnp[cpu]:
            out.update(self.common)
        out.update(self.private[cpu])
        return out
