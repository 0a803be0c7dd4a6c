"""What the design costs: local VA, window, extra page tables and page-table work.

Two sources of figures, which the tests hold equal:
* :func:`closed_form` -- an independent derivation from DESIGN.md's accounting rules: chunks
  placed top-down in the global window, each chunk's local slice at ``base + DELTA``, per level
  below the split the number of distinct parent-entry regions that contain a mapped local page,
  ``(cpus - 1) * (root copy + copied levels) + cpus * private tables``;
* the model: a :class:`~localmap.design.machine.DesignMachine` actually built (every CPU's tables
  materialised, or -- for large CPU counts -- CPU 0 and CPU 1 materialised and the others
  derived from that shared structure, which the tests prove equal to full materialisation).

:func:`overhead_synthetic` (K live chunks, every page populated, one group, all CPUs online) and
:func:`overhead_bundle` (a capture's allocation history replayed through the allocator
model, driving a design machine of N CPUs through the listener protocol) return dicts with the
same keys; :func:`overhead_bundles` feeds several machines from one replay, and
:func:`replay_overhead` returns that replay's own result beside them (a fleet's task);
:func:`overhead_table` gives the grid across granules and CPU counts.

Differences from the kernel/talk: the talk counts a whole 4K page per PGD copy; the model charges
``PGD_SIZE`` when the root is smaller than a page (DESIGN.md item 5) and reports the KPTI block
pages (``{tramp, reserved}`` per CPU, plus the rest of the root's page) separately as
``kpti_block_bytes``.
"""

from __future__ import annotations

from typing import Any, Iterable

from localmap.arch.arm64.pgtable import GRANULES, Geometry, granule_name, parse_granule
from localmap.design.layout import design_layout
from localmap.design.machine import BaselineMachine, DesignMachine
from localmap.design.replay_driver import ReplayDriver, Tee
from localmap.errors import LocalmapError
from localmap.progress import Progress
from localmap.units import MAX_CPUS, KiB, fmt_bytes, parse_size

FULL_MATERIALISE_LIMIT = 400_000  # cpus * chunks * unit_pages above which CPUs 2.. are derived
MAX_PAGES_PER_CPU = 1 << 18       # chunks * unit_pages of a synthetic machine (1 GiB of 4K pages)
TALK_CPUS = 160                   # the talk's machine (AmpereOne)
TALK = {"local_va_bytes": 960 * KiB,
        "pgtable_note": f"a couple of MB (4K pages, {TALK_CPUS} CPUs, Fedora config)"}


def _validate(geom: Geometry, cpus: int, unit_size: int, chunks: int) -> None:
    if cpus < 1:
        raise LocalmapError(f"--cpus must be at least 1 (got {cpus})")
    if cpus > MAX_CPUS:
        raise LocalmapError(f"--cpus {cpus} is more than a machine may have here ({MAX_CPUS})")
    if chunks < 1:
        raise LocalmapError(f"--chunks must be at least 1: the first chunk always exists (got {chunks})")
    if unit_size <= 0 or unit_size % geom.page_size:
        raise LocalmapError(f"unit size {unit_size} is not a positive multiple of the page size {geom.page_size}")
    pages = chunks * (unit_size // geom.page_size)
    if pages > MAX_PAGES_PER_CPU:
        raise LocalmapError(f"--chunks {chunks} x --unit-size {fmt_bytes(unit_size)} is {pages:,} "
                            f"pages per CPU; the model builds at most {MAX_PAGES_PER_CPU:,}")


def closed_form(
    geom: Geometry,
    cpus: int,
    unit_size: int,
    chunks: int,
    *,
    vabits_actual: int | None = None,
    window_bytes: int | None = None,
) -> dict[str, Any]:
    """DESIGN.md's accounting, by arithmetic (no tables built)."""
    _validate(geom, cpus, unit_size, chunks)
    lay = design_layout(geom, vabits_actual, window_bytes)
    g = lay.geom
    s = lay.split_level
    span = cpus * unit_size
    top = lay.global_window[1]
    if top - chunks * span < lay.global_window[0]:
        raise LocalmapError(
            f"percpu window too small: {chunks} chunks of {span} bytes ({cpus} CPUs x {unit_size}) need "
            f"{chunks * span} bytes, the window has {lay.window_bytes}"
        )
    bases = [top - (j + 1) * span for j in range(chunks)]
    private: dict[int, int] = {}
    for level in range(s + 1, 4):
        region = g.entry_size(level - 1)
        seen: set[int] = set()
        for b in bases:
            lo = b + lay.delta
            hi = lo + unit_size - 1
            seen.update(range(lo // region, hi // region + 1))
        private[level] = len(seen)
    root_copy = g.root_alloc_bytes
    copied = (s - g.root_level) * g.page_size
    per_cpu_private = sum(private.values()) * g.page_size
    total = (cpus - 1) * (root_copy + copied) + cpus * per_cpu_private
    return {
        "levels": g.levels,
        "root_level": g.root_level,
        "split_level": s,
        "root_copy_bytes": root_copy,
        "copied_level_bytes_per_cpu": copied,
        "window_bytes": lay.window_bytes,
        "local_va_bytes": chunks * unit_size,
        "private_tables_per_cpu": private,
        "private_bytes_per_cpu": per_cpu_private,
        "pgtable_extra_bytes": total,
    }


def _result(m: DesignMachine, derived_cpus: int | None = None) -> dict[str, Any]:
    """The JSON-able figures of a design machine (optionally extrapolated to ``derived_cpus``
    online CPUs from CPU 0 and CPU 1, whose structure every other CPU shares)."""
    g = m.geom
    lay = m.layout
    ex = m.extra_pgtable()
    per_cpu = ex["private_tables_per_cpu"]
    shapes = {tuple(sorted(v.items())) for v in per_cpu.values()}
    online = len(m.online)
    if derived_cpus is not None:
        if len(shapes) > 1:
            raise AssertionError(f"CPUs differ in private-table shape: {shapes}")
        one = per_cpu[0]
        n = derived_cpus
        root_copy_total = (n - 1) * g.root_alloc_bytes
        copied_total = (n - 1) * (lay.split_level - g.root_level) * g.page_size
        private_total = n * sum(one.values()) * g.page_size
        kpti = (n - 1) * (3 * g.page_size - g.root_alloc_bytes) if m.kpti else 0
        total = root_copy_total + copied_total + private_total
        online = n
        peak = None
    else:
        root_copy_total = ex["root_copy_bytes"]
        copied_total = ex["copied_level_bytes"]
        private_total = ex["private_bytes"]
        kpti = ex["kpti_block_bytes"]
        total = ex["total"]
        peak = m.acct.extra_peak
    # private tables per CPU: the maximum over CPUs (they are equal when every CPU is online)
    levels = sorted({lvl for v in per_cpu.values() for lvl in v})
    private_per_cpu = {str(lvl): max(v.get(lvl, 0) for v in per_cpu.values()) for lvl in levels}
    return {
        "granule": granule_name(g.page_size),
        "va_bits": lay.config_geom.va_bits,
        "vabits_actual": g.va_bits,
        "cpus": m.nr_cpus,
        "online_cpus": online,
        "unit_size": m.unit_size,
        "levels": g.levels,
        "root_level": g.root_level,
        "split_level": lay.split_level,
        "split_entry_bytes": lay.split_entry_size,
        "root_copy_bytes": g.root_alloc_bytes,
        "window_bytes": lay.window_bytes,
        "global_window": [hex(lay.global_window[0]), hex(lay.global_window[1])],
        "local_window": [hex(lay.local_window[0]), hex(lay.local_window[1])],
        "delta": lay.delta,
        "live_chunks": len(m.chunks),
        "local_va_bytes": m.local_va_bytes(),
        "local_va_peak_bytes": m.acct.local_va_peak,
        "private_tables_per_cpu": private_per_cpu,
        "pgtable_extra_bytes": total,
        "pgtable_extra_peak_bytes": peak,
        "pgtable_extra_breakdown": {
            "root_copies": root_copy_total,
            "copied_levels": copied_total,
            "private_tables": private_total,
        },
        "kpti_block_bytes": kpti,
        "ops": m.acct.as_dict(),
        "method": "derived from CPUs 0-1 (shared structure)" if derived_cpus is not None else "materialised",
    }


def build_synthetic(
    geom: Geometry,
    cpus: int,
    unit_size: int,
    chunks: int,
    *,
    online: Iterable[int] | None = None,
    vabits_actual: int | None = None,
    window_bytes: int | None = None,
    map_global: bool = False,
    checked: bool = False,
    kpti: bool = False,
) -> DesignMachine:
    """A design machine with ``chunks`` live chunks, every page populated."""
    _validate(geom, cpus, unit_size, chunks)
    m = DesignMachine(geom, cpus, unit_size, online=online, vabits_actual=vabits_actual,
                      window_bytes=window_bytes, map_global=map_global, checked=checked, kpti=kpti)
    for k in range(chunks):
        c = m.create_chunk(first=(k == 0))
        m.populate(c, 0, c.nr_pages)
    return m


def overhead_synthetic(
    granule: int | str,
    va_bits: int,
    cpus: int,
    unit_size: int | str,
    chunks: int,
    *,
    vabits_actual: int | None = None,
    window_bytes: int | None = None,
    materialise: str = "auto",
) -> dict[str, Any]:
    """K live chunks, every page populated, one group, all CPUs online (DESIGN.md accounting).

    ``materialise``: "all" builds every CPU's tables, "shared" builds CPUs 0 and 1 and derives
    the rest, "auto" picks "all" when it is cheap. The result is checked against
    :func:`closed_form` and carries ``closed_form_agrees``."""
    geom = Geometry(parse_granule(granule), int(va_bits))
    unit = parse_size(unit_size)
    _validate(geom, cpus, unit, chunks)
    cf = closed_form(geom, cpus, unit, chunks, vabits_actual=vabits_actual, window_bytes=window_bytes)
    if materialise == "auto":
        materialise = "all" if cpus * chunks * (unit // geom.page_size) <= FULL_MATERIALISE_LIMIT else "shared"
    if materialise == "all" or cpus <= 2:
        m = build_synthetic(geom, cpus, unit, chunks, vabits_actual=vabits_actual, window_bytes=window_bytes)
        res = _result(m)
    elif materialise == "shared":
        m = build_synthetic(geom, cpus, unit, chunks, online=[0, 1], vabits_actual=vabits_actual,
                            window_bytes=window_bytes)
        res = _result(m, derived_cpus=cpus)
    else:
        raise LocalmapError(f"materialise must be auto, all or shared (got {materialise!r})")
    res["chunks"] = chunks
    agree = (
        res["pgtable_extra_bytes"] == cf["pgtable_extra_bytes"]
        and res["private_tables_per_cpu"] == {str(k): v for k, v in cf["private_tables_per_cpu"].items() if v}
        and res["local_va_bytes"] == cf["local_va_bytes"]
        and res["split_level"] == cf["split_level"]
    )
    res["closed_form_agrees"] = agree
    if not agree:
        raise AssertionError(f"model and closed form disagree: model {res} closed form {cf}")
    return res


# --- replayed bundles ---------------------------------------------------------------------

def _bundle_geometry(bundle: Any, granule: int | str | None, va_bits: int | None) -> Geometry:
    cfg = getattr(bundle, "config", None)
    page = parse_granule(granule) if granule is not None else getattr(cfg, "page_size", None)
    vab = int(va_bits) if va_bits is not None else getattr(cfg, "va_bits", None)
    if page is None or vab is None:
        raise LocalmapError("the bundle has no kernel .config (config.gz) giving the page size and VA bits; "
                            "pass --granule and --va-bits", getattr(bundle, "path", None))
    from localmap.arch.arm64.pgtable import VA_BITS_CHOICES

    if vab not in VA_BITS_CHOICES.get(page, {}):
        raise LocalmapError(f"the bundle's {vab}-bit VA does not exist with {granule_name(page)} pages; pass --va-bits")
    return Geometry(page, vab)


def overhead_bundles(
    bundle: Any,
    specs: Iterable[tuple[int, int | str | None, int | None, bool]],
    *,
    checked: bool = False,
    progress: Progress | None = None,
    map_global: bool = True,
) -> list[dict[str, Any] | LocalmapError]:
    """The bundle's allocation history on several machines at once, from ONE allocator replay.

    ``specs``: ``(cpus, granule, va_bits, baseline)`` each (granule/va_bits ``None`` = the
    bundle's own). Returns one result per spec (as :func:`overhead_bundle`), or the
    :class:`LocalmapError` that rules that spec out (e.g. a 16K history at 4K pages)."""
    return _overhead_bundles(bundle, specs, checked=checked, progress=progress,
                             map_global=map_global, always_replay=False)[1]


def replay_overhead(
    bundle: Any,
    specs: Iterable[tuple[int, int | str | None, int | None, bool]],
    *,
    checked: bool = False,
    progress: Progress | None = None,
    map_global: bool = True,
) -> tuple[Any, list[dict[str, Any] | LocalmapError]]:
    """:func:`overhead_bundles` that also returns the allocator replay's own result: ``(the
    :class:`~localmap.analysis.replay.ReplayResult`, one result or error per spec)``, from the
    one replay (run even when every spec is ruled out)."""
    return _overhead_bundles(bundle, specs, checked=checked, progress=progress,
                             map_global=map_global, always_replay=True)


def _overhead_bundles(bundle: Any, specs, *, checked: bool, progress: Progress | None,
                      map_global: bool, always_replay: bool):
    from localmap.analysis import replay as replay_mod  # the allocator replay
    from localmap.ingest.bundle import load_bundle

    if isinstance(bundle, (str, bytes)) or hasattr(bundle, "__fspath__"):
        bundle = load_bundle(bundle)
    src_page = getattr(getattr(bundle, "config", None), "page_size", None) or 4096
    machines: list[tuple[ReplayDriver, ReplayDriver | None] | LocalmapError] = []
    listeners: list[ReplayDriver] = []
    for cpus, granule, va_bits, baseline in specs:
        try:
            if cpus < 1:
                raise LocalmapError(f"--cpus must be at least 1 (got {cpus})")
            geom = _bundle_geometry(bundle, granule, va_bits)
            kw = dict(src_page_size=src_page, checked=checked, map_global=map_global)
            driver = ReplayDriver(geom, cpus, **kw)
            base = ReplayDriver(geom, cpus, machine_cls=BaselineMachine, **kw) if baseline else None
        except LocalmapError as exc:
            machines.append(exc)
            continue
        machines.append((driver, base))
        listeners += [driver] + ([base] if base else [])
    replayed = None
    if listeners or always_replay:
        replayed = replay_mod.replay(bundle, listener=Tee(*listeners) if listeners else None,
                                     progress=progress)
    out: list[dict[str, Any] | LocalmapError] = []
    for entry in machines:
        if isinstance(entry, LocalmapError):
            out.append(entry)
            continue
        driver, base = entry
        m = driver.machine
        if m is None:
            out.append(LocalmapError("the replay produced no percpu chunk events",
                                     getattr(bundle, "path", None)))
            continue
        if checked:
            m.check_all()
        res = _result(m)
        res["bundle"] = str(getattr(bundle, "path", ""))
        res["events"] = driver.events
        res["chunks_created"] = m.acct.ops.get("chunk_create", 0)
        res["chunks_destroyed"] = m.acct.ops.get("chunk_destroy", 0)
        if base is not None and base.machine is not None:
            if checked:
                base.machine.check_all()
            res["baseline_ops"] = base.machine.acct.as_dict()
        out.append(res)
    return replayed, out


def overhead_bundle(
    bundle: Any,
    cpus: int,
    granule: int | str | None = None,
    va_bits: int | None = None,
    *,
    checked: bool = False,
    progress: Progress | None = None,
    map_global: bool = True,
    baseline: bool = True,
) -> dict[str, Any]:
    """The bundle's allocation history replayed on a design machine of ``cpus`` CPUs (and, with
    ``baseline``, on today's machine too: ``baseline_ops`` holds its page-table work)."""
    if cpus < 1:
        raise LocalmapError(f"--cpus must be at least 1 (got {cpus})")
    (res,) = overhead_bundles(bundle, [(cpus, granule, va_bits, baseline)], checked=checked,
                              progress=progress, map_global=map_global)
    if isinstance(res, LocalmapError):
        raise res
    return res


# --- the grid for the report ---------------------------------------------------------------

DEFAULT_GRID = tuple((page, 48) for page in GRANULES.values())
DEFAULT_CPUS = (1, 4, 64, TALK_CPUS, 1024, 4096)


def overhead_table(
    cpus_list: Iterable[int] = DEFAULT_CPUS,
    unit_size: int | str = 192 * 1024,
    chunks: int = 5,
    pairs: Iterable[tuple[int, int]] = DEFAULT_GRID,
) -> list[dict[str, Any]]:
    """Rows of synthetic results across granule/VA pairs and CPU counts (closed form, checked
    against the model for CPU counts the model builds quickly). Each row carries the talk's
    figures where the talk gives them (4K, 160 CPUs)."""
    rows = []
    unit = parse_size(unit_size)
    for page, vab in pairs:
        page = parse_granule(page)         # 4096 or "4K", as overhead_synthetic takes
        for n in cpus_list:
            u = -(-unit // page) * page
            try:
                r = overhead_synthetic(page, vab, n, u, chunks, materialise="shared" if n > 2 else "all")
            except LocalmapError as exc:
                rows.append({"granule": granule_name(page), "va_bits": vab, "cpus": n, "error": exc.message})
                continue
            row = {k: r[k] for k in ("granule", "va_bits", "cpus", "unit_size", "split_level", "root_copy_bytes",
                                     "window_bytes", "local_va_bytes", "private_tables_per_cpu",
                                     "pgtable_extra_bytes")}
            row["chunks"] = chunks
            if page == 4096 and n == TALK_CPUS:
                row["talk_local_va_bytes"] = TALK["local_va_bytes"]
                row["talk_pgtable"] = TALK["pgtable_note"]
            rows.append(row)
    return rows


# --- the sync, and the preallocation alternative ---------------------------------------------

ALL_PAIRS = tuple((g.page_size, g.va_bits) for g in Geometry.all_pairs())


def _copied_path(lay) -> list[tuple[int, int, int]]:
    """The tables every CPU copies (DESIGN.md item 5): for each level from the root to the split
    level, ``(level, lo, hi)``, the VA range the copied table at that level covers."""
    g = lay.geom
    lo, hi = g.ttbr1_base, 1 << 64
    out = []
    for lvl in range(g.root_level, lay.split_level + 1):
        out.append((lvl, lo, hi))
        e = g.entry_size(lvl)
        lo = lay.local_window[0] - (lay.local_window[0] - g.ttbr1_base) % e
        hi = lo + e
    return out


def growable_regions(lay) -> dict[str, tuple[int, int]]:
    """Kernel VA ranges that can receive new mappings after boot, where a new entry in a copied
    table may appear: modules + vmalloc (ioremap, vmap, percpu chunks), vmemmap and the linear
    map (memory hot-add)."""
    k = lay.kernel
    return {"vmalloc": (k.modules_vaddr, k.vmalloc_end),
            "vmemmap": (k.vmemmap_start, k.vmemmap_end),
            "linear map": ((-(1 << k.vabits_actual)) & ((1 << 64) - 1), k.page_end)}


def preallocation_cost(granule: int | str, va_bits: int, *,
                       vabits_actual: int | None = None) -> dict[str, Any]:
    """The x86-style alternative to the sync: at boot, give every entry of the copied tables
    (root .. split level) that covers a growable region a table below it, so no entry of a
    copied table ever appears later and nothing needs syncing. Returns, per region, the entries
    and the bytes of tables to preallocate (shared by all CPUs: a one-time cost, not per CPU);
    the windows' entries and the copied path itself are excluded (they exist at boot). Entries
    the boot mappings already populate (kernel image, fixmap) are counted: an upper bound by at
    most a few tables."""
    geom = Geometry(parse_granule(granule), int(va_bits))
    lay = design_layout(geom, vabits_actual)
    g = lay.geom
    path = _copied_path(lay)
    windows = (min(lay.local_window[0], lay.global_window[0]),
               max(lay.local_window[1], lay.global_window[1]))
    regions = {}
    for name, (start, end) in growable_regions(lay).items():
        per_level: dict[int, int] = {}
        for lvl, lo, hi in path:
            e = g.entry_size(lvl)
            a, b = max(start, lo), min(end, hi)
            if a >= b:
                continue
            first, last = (a - g.ttbr1_base) // e, (b - 1 - g.ttbr1_base) // e
            n = 0
            for idx in range(first, last + 1):
                base = g.ttbr1_base + idx * e
                if lvl < lay.split_level and base <= lay.local_window[0] < base + e:
                    continue  # the copied path's own entry exists at boot
                if lvl == lay.split_level and base < windows[1] and windows[0] < base + e:
                    continue  # the windows: the global one populated at boot, the local one private
                n += 1
            if n:
                per_level[lvl] = n
        entries = sum(per_level.values())
        regions[name] = {"range": [hex(start), hex(end)], "entries": entries,
                         "entries_per_level": {str(k): v for k, v in per_level.items()},
                         "bytes": entries * g.page_size}
    return {"granule": granule_name(geom.page_size), "va_bits": geom.va_bits,
            "vabits_actual": g.va_bits, "split_level": lay.split_level,
            "split_entry_bytes": lay.split_entry_size, "regions": regions,
            "vmalloc_bytes": regions["vmalloc"]["bytes"],
            "all_bytes": sum(r["bytes"] for r in regions.values())}


def preallocation_table(pairs: Iterable[tuple[int, int]] = ALL_PAIRS) -> list[dict[str, Any]]:
    return [preallocation_cost(p, v) for p, v in pairs]


def sync_entries(cpus: int, new_entries: int = 1) -> dict[str, int]:
    """Page-table work of DESIGN.md item 6 for ``new_entries`` entries appearing in a copied
    table, on ``cpus`` online CPUs, beside today's kernel: adding writes the entry into every
    copy (no TLBI: invalid entries are never cached, a ``dsb ishst`` orders the writes); removing
    one (memory hot-remove's ``free_empty_tables``) clears it in every copy before one
    all-levels ``tlbi vaae1is``."""
    n = max(cpus, 1)
    return {"cpus": cpus, "add_entries": new_entries * n, "add_entries_today": new_entries,
            "add_tlbi": 0, "add_tlbi_today": 0,
            "remove_entries": new_entries * n, "remove_entries_today": new_entries,
            "remove_tlbi": new_entries, "remove_tlbi_today": new_entries}


def measured_sync(geom: Geometry, cpus: int, sizes: Iterable[int]) -> dict[str, int]:
    """Run ``vmalloc`` of each size on a :class:`DesignMachine` of ``cpus`` CPUs and count the
    sync work the model does (entries written into copies, TLBIs, syncs)."""
    m = DesignMachine(geom, cpus, geom.page_size, checked=False)
    m.create_chunk(first=True)
    before_e = m.acct.entries[("sync_total", "sync")]
    before_s = m.acct.ops["sync_total"]
    tl = sum(m.acct.tlbi.values())
    n = 0
    for size in sizes:
        m.vmalloc(size)
        n += 1
    return {"cpus": cpus, "vmallocs": n,
            "syncs": m.acct.ops["sync_total"] - before_s,
            "sync_entries": m.acct.entries[("sync_total", "sync")] - before_e,
            "tlbi": sum(m.acct.tlbi.values()) - tl}


def vmalloc_sync_profile(areas, granule: int | str, va_bits: int, *,
                         vabits_actual: int | None = None) -> dict[str, Any]:
    """From a capture's ``/proc/vmallocinfo``: how many entries of the copied tables its vmalloc
    areas needed beyond those the boot mappings (``paging_init``'s areas: the kernel image)
    populate -- each one a sync -- and how many areas there are."""
    geom = Geometry(parse_granule(granule), int(va_bits))
    lay = design_layout(geom, vabits_actual)
    g = lay.geom
    path = _copied_path(lay)

    def entries_of(a):
        out = set()
        for lvl, lo, hi in path:
            e = g.entry_size(lvl)
            s, t = max(a.start, lo), min(a.end, hi)
            if s < t:
                for idx in range((s - g.ttbr1_base) // e, (t - 1 - g.ttbr1_base) // e + 1):
                    base = g.ttbr1_base + idx * e
                    if not (lvl < lay.split_level and base <= lay.local_window[0] < base + e):
                        out.add((lvl, idx))
        return out

    boot = set().union(*(entries_of(a) for a in areas if a.caller.startswith("paging_init")))
    later = set().union(*(entries_of(a) for a in areas if not a.caller.startswith("paging_init")))
    n = sum(1 for a in areas if not a.caller.startswith("paging_init"))
    return {"areas": n, "boot_entries": len(boot), "synced_entries": len(later - boot),
            "syncs_per_vmalloc": (len(later - boot) / n) if n else 0.0}


def sync_cost(cpus_list: Iterable[int], granule: int | str = 4096, va_bits: int = 48, *,
              bundle: Any = None, vabits_actual: int | None = None) -> dict[str, Any]:
    """The per-vmalloc cost of the sync against the CPU count: per sync (one new entry in a
    copied table) and, with ``bundle``, amortised over that capture's vmalloc areas."""
    prof = None
    if bundle is not None:
        from localmap.ingest.bundle import load_bundle

        b = load_bundle(bundle) if not hasattr(bundle, "vmallocinfo") else bundle
        if not b.vmallocinfo:
            raise LocalmapError("the bundle has no vmallocinfo", b.folder if hasattr(b, "folder") else None)
        prof = vmalloc_sync_profile(b.vmallocinfo, granule, va_bits, vabits_actual=vabits_actual)
    rows = []
    for n in cpus_list:
        r = sync_entries(n)
        r["extra_entries_per_sync"] = r["add_entries"] - r["add_entries_today"]
        if prof is not None:
            r["extra_entries_per_vmalloc"] = prof["syncs_per_vmalloc"] * r["extra_entries_per_sync"]
        rows.append(r)
    return {"granule": granule_name(parse_granule(granule)), "va_bits": int(va_bits),
            "profile": prof, "rows": rows}
