"""The design's extra VA and page-table memory on any architecture's page-table shape.

What it models: DESIGN.md's accounting ("What is accounted", items 2-9) applied to the kernel
page tables of :mod:`localmap.arch.percpu` instead of arm64's: K live chunks of ``cpus`` units
placed top-down in a global window, each chunk's local slice ``unit_size`` bytes at
``base + DELTA`` in a local window just below it; every CPU but the first gets a copy of the root
and of the tables down to the split level, and every CPU private tables below it for the local
slices (one table per distinct region of the parent entry's span that holds a mapped page).

The split level is the level closest to the root at which both windows -- each a whole number of
entries, at least one, large enough for every chunk's span -- take at most half of the vmalloc
area (the arm64 rule of :mod:`localmap.design.layout` in vmalloc terms: 16K/48's 128 TiB root
entries or s390's 4 TiB ones are too large for a dedicated window).

Deliberate simplifications: one group per chunk (no NUMA gaps), every page populated, all CPUs
online; tables are charged at the size the kernel allocates for them (``Level.table_bytes``:
fragments of a page on ppc64 radix and s390, 16 KiB roots on armhf and s390, PGD_SIZE objects
on arm64). The arm64 result equals :func:`localmap.analysis.overhead.closed_form` (tested).
"""

from __future__ import annotations

from localmap.arch.percpu import PgtableGeometry, pgtable_geometry
from localmap.errors import LocalmapError


def _roundup(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def split_index(geom: PgtableGeometry, need: int) -> int:
    """Index (0 = root) of the split level for windows that must hold ``need`` bytes."""
    for i, lvl in enumerate(geom.levels[:-1]):
        window = max(lvl.entry_span, _roundup(need, lvl.entry_span))
        if 2 * window <= geom.vmalloc_bytes // 2:
            return i
    raise LocalmapError(f"the two windows ({need} bytes of chunks each) do not fit in "
                        f"{geom.vmalloc_bytes} bytes of vmalloc at any level")


def design_cost(geom: PgtableGeometry, cpus: int, unit_size: int, chunks: int) -> dict:
    """Local VA, windows and extra page-table bytes of the design on ``geom`` (plain data)."""
    if cpus < 1 or chunks < 1:
        raise LocalmapError("cpus and chunks must be at least 1")
    if unit_size <= 0 or unit_size % geom.page_size:
        raise LocalmapError(f"unit size {unit_size} is not a positive multiple of the page size "
                            f"{geom.page_size}")
    span = cpus * unit_size
    need = chunks * span
    s = split_index(geom, need)
    entry = geom.levels[s].entry_span
    window = max(entry, _roundup(need, entry))
    top = 0  # the global window's top is entry-aligned; only alignment matters below
    delta = -window
    bases = [top - (j + 1) * span for j in range(chunks)]
    private: dict[str, int] = {}
    private_bytes = 0
    for i in range(s + 1, len(geom.levels)):
        region = geom.levels[i - 1].entry_span
        seen: set[int] = set()
        for b in bases:
            lo = b + delta
            hi = lo + unit_size - 1
            seen.update(range(lo // region, hi // region + 1))
        private[geom.levels[i].name] = len(seen)
        private_bytes += len(seen) * geom.levels[i].table_bytes
    root = geom.levels[0].table_bytes
    copied = sum(geom.levels[i].table_bytes for i in range(1, s + 1))
    total = (cpus - 1) * (root + copied) + cpus * private_bytes
    return {"cpus": cpus, "unit_size": unit_size, "chunks": chunks, "page_size": geom.page_size,
            "split_level": geom.levels[s].name, "split_index": s, "split_entry_bytes": entry,
            "window_bytes": window, "local_va_bytes": chunks * unit_size,
            "root_copy_bytes": root, "copied_level_bytes_per_cpu": copied,
            "private_tables_per_cpu": private, "private_bytes_per_cpu": private_bytes,
            "pgtable_extra_bytes": total,
            "breakdown": {"root_copies": (cpus - 1) * root, "copied_levels": (cpus - 1) * copied,
                          "private_tables": cpus * private_bytes}}


def arch_cost(arch: str, cpus: int, unit_size: int, chunks: int) -> dict:
    """:func:`design_cost` on Debian architecture ``arch``'s kernel page tables; a configuration
    that does not fit is returned as ``{"error": ...}`` (it is a finding, not a failure)."""
    geom = pgtable_geometry(arch)
    try:
        d = design_cost(geom, cpus, unit_size, chunks)
    except LocalmapError as exc:
        return {"arch": arch, "cpus": cpus, "error": exc.message}
    d["arch"] = arch
    d["geometry"] = geom.note
    return d


__all__ = ["arch_cost", "design_cost", "split_index"]
