"""One builder per report section, each calling the owning part's Python API.

Models nothing itself; each builder turns the real results of another part of localmap into
facts, tables and figures. The APIs are imported directly: a missing one is an error. A builder
raises :class:`Unavailable` only when the bundle lacks the input it needs (no ``.config``, no CPU
list); the report then says so instead of showing invented numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from localmap.analysis.overhead import TALK, TALK_CPUS, overhead_bundles, overhead_table
from localmap.analysis.replay import CAUSES, replay
from localmap.arch.arm64.pgtable import GRANULES, Geometry, granule_name
from localmap.check import run_checks
from localmap.design.layout import design_layout
from localmap.errors import LocalmapError
from localmap.ingest.procfs import percpu_vm_areas
from localmap.design.text_replication import text_replication_table
from localmap.perf.compare import CHUNKS, UNIT, comparison, load_arches_summary, pgtable_curves, talk_claims
from localmap.perf.designs import three_way
from localmap.perf.summary import performance_summary
from localmap.perf.talk import NOT_COMPARABLE
from localmap.report.diagrams import tables_figure, va_layout_figure
from localmap.report.model import Figure, Section, Table
from localmap.report.svg import bar_chart, line_chart
from localmap.units import fmt_bytes, fmt_count, fmt_percent, fmt_seconds


class Unavailable(Exception):
    """A section cannot be built: the bundle lacks the input it needs."""


@dataclass
class Context:
    bundle: Any
    cache: dict[str, Any] = field(default_factory=dict)


# --- capture --------------------------------------------------------------------------------------

def build_capture(ctx: Context, title: str) -> Section:
    b = ctx.bundle
    s = Section("capture", title)
    s.facts.append(("bundle", str(b.path)))
    if b.uname:
        s.facts.append(("kernel", b.uname))
    if b.cpus:
        s.facts.append(("CPUs", f"{len(b.cpus['possible'])} possible, {len(b.cpus['online'])} online"))
    fc = b.first_chunk
    if fc is not None:
        s.facts.append(("first chunk", fc.text.split("] ", 1)[-1]))
    cfg = b.config
    if cfg is not None:
        s.facts.append(("granule / VA bits", f"{granule_name(cfg.page_size)} / {cfg.va_bits}"))
        s.facts.append(("preemption", f"{cfg.preempt_model}"
                                      f"{' with' if cfg.preempt_count else ' without'} PREEMPT_COUNT"))
    if b.cmdline:
        s.facts.append(("command line", b.cmdline))
    if b.meminfo:
        rows = []
        prev = None
        for phase, val in b.meminfo:
            rows.append([phase, fmt_bytes(val), "" if prev is None else ("+" if val >= prev else "") + fmt_bytes(val - prev)])
            prev = val
        s.tables.append(Table("/proc/meminfo Percpu after each phase", ["phase", "Percpu", "change"], rows))
    if b.vmallocinfo is not None:
        areas = percpu_vm_areas(b.vmallocinfo)
        s.facts.append(("pcpu_get_vm_areas areas at the end", f"{len(areas)}"))
    return s


# --- layout and tables ----------------------------------------------------------------------------

def _geometry(ctx: Context):
    cfg = ctx.bundle.config
    if cfg is None:
        raise Unavailable("the bundle has no .config (granule and VA size unknown)")
    return Geometry(cfg.page_size, cfg.va_bits)


def _design(ctx: Context):
    if "design" not in ctx.cache:
        ctx.cache["design"] = design_layout(_geometry(ctx))
    return ctx.cache["design"]


def build_layout(ctx: Context, title: str) -> Section:
    d = _design(ctx)
    s = Section("layout", title)
    g_lo, g_hi = d.global_window
    l_lo, l_hi = d.local_window
    s.facts += [
        ("geometry", f"{granule_name(d.geom.page_size)} pages, {d.geom.va_bits}-bit VA, "
                     f"{d.geom.levels} levels (root level {d.geom.root_level})"),
        ("vmalloc", f"{d.kernel.vmalloc_start:#x} - {d.kernel.vmalloc_end:#x}"),
        ("split level", f"{d.split_level} ({fmt_bytes(d.split_entry_size)} entries)"),
        ("global window", f"{g_lo:#x} - {g_hi:#x} ({fmt_bytes(g_hi - g_lo)})"),
        ("local window", f"{l_lo:#x} - {l_hi:#x} ({fmt_bytes(l_hi - l_lo)})"),
        ("DELTA", f"{d.delta:#x}"),
    ]
    rep = ctx.cache.get("replay")
    live = span = unit = None
    if rep is not None:
        live, span, unit = rep.get("live_chunks"), rep.get("chunk_span"), rep.get("unit_size")
    fc = ctx.bundle.first_chunk
    s.figures.append(Figure(
        "va-layout", "Kernel VA layout, before and after",
        va_layout_figure(d, fc.mode if fc else None, live, unit, span),
        "Computed from the arm64 memory layout of the bundle's kernel configuration and the "
        "design's window placement (DESIGN.md items 1-3); not to scale, exact bounds in each box."))
    return s


def build_tables(ctx: Context, title: str) -> Section:
    d = _design(ctx)
    b = ctx.bundle
    online = len(b.cpus["online"]) if b.cpus else None
    if not online:
        raise Unavailable("the bundle has no CPU list")
    ov = ctx.cache.get("overhead_state")
    private = ov.get("private_tables") if ov else None
    root_copy = ov.get("root_copy_bytes") if ov else None
    s = Section("tables", title)
    s.facts.append(("online CPUs", str(online)))
    s.facts.append(("split level", str(d.split_level)))
    s.figures.append(Figure(
        "percpu-tables", "TTBR1 and translation tables per CPU, before and after",
        tables_figure(d, online, private, root_copy),
        "Before: all CPUs share swapper's tables. After: CPU 0 keeps swapper_pg_dir; every other "
        "CPU has a root copy; only the entries covering the local window lead to private tables "
        "(DESIGN.md items 4-5)."))
    return s


# --- allocator replay -----------------------------------------------------------------------------

def replay_scores(rr) -> dict[str, float]:
    """The figures by which two replays are compared (fractions of allocations predicted)."""
    return {"agreement": rr.agreement, "agreement_nonatomic": rr.agreement_nonatomic}


def build_replay(ctx: Context, title: str) -> Section:
    rr = replay(ctx.bundle, progress=False)
    ctx.cache["replay_result"] = rr
    d = rr.as_dict()
    fs = d["final_state"]
    ctx.cache["replay"] = {"live_chunks": fs["nr_chunks"], "unit_size": fs["unit_size"],
                           "chunk_span": fs["unit_size"] * fs["nr_units"]}
    s = Section("replay", title)
    ev = d["events"]
    g = d["geometry"]
    ag = d["agreement"]
    s.facts += [
        ("events", f"{fmt_count(ev['total'])} ({fmt_count(ev['alloc'])} alloc, {fmt_count(ev['free'])} free, "
                   f"{ev['create_chunk']} chunk create, {ev['destroy_chunk']} destroy, "
                   f"{ev['alloc_fail']} failed)"),
        ("first chunk", f"{g['mode']}: s{g['static_size']} r{g['reserved_size']} d{g['dyn_size']} "
                        f"u{g['unit_size']}; derivation "
                        + {True: "matches dmesg", False: "differs from dmesg (dmesg used)",
                           None: "not checked (no dmesg)"}[g["matches_dmesg"]]),
        ("allocations predicted", f"{fmt_percent(ag['overall'])} ({fmt_count(ag['agree'])} of "
                                   f"{fmt_count(ag['total'])})"),
        ("  non-atomic / atomic", f"{fmt_percent(ag['nonatomic'])} of {fmt_count(ag['nonatomic_total'])} / "
                                  f"{fmt_percent(ag['atomic'])} of {fmt_count(ag['atomic_total'])}"),
        ("allocations replayed in the allocator's order", str(ag["race_swaps"])),
        ("final state", f"{fs['nr_chunks']} chunks of {fs['nr_units']} x {fmt_bytes(fs['unit_size'])}, "
                        f"{fs['populated_pages']} pages populated per unit "
                        f"({fmt_bytes(fs['populated_bytes'])} over all units)"),
    ]
    if d["partial"]:
        s.notes.append("partial replay: " + "; ".join(d["partial_reasons"]))
    causes = d.get("disagreement_causes") or {}
    if causes:
        s.tables.append(Table("Why predictions missed", ["cause", "allocations", "meaning"],
                              [[k, fmt_count(v), CAUSES.get(k, "")] for k, v in
                               sorted(causes.items(), key=lambda kv: -kv[1])]))
    mc = d.get("meminfo_check") or []
    if mc:
        s.tables.append(Table("Model against /proc/meminfo Percpu", ["phase", "meminfo", "model", "how", "ok"],
                              [[m["phase"], fmt_bytes(m["meminfo_bytes"]),
                                "-" if m["model_bytes"] is None else fmt_bytes(m["model_bytes"]),
                                m["kind"], "yes" if m["ok"] else "NO"] for m in mc]))
    if rr.timeline:
        page = g["page_size"]
        used = [(t[0], t[2]) for t in rr.timeline]
        pop = [(t[0], t[4] * page) for t in rr.timeline]
        s.figures.append(Figure(
            "percpu-usage", "Percpu usage over the trace (per CPU copy)",
            line_chart("percpu-usage", [("allocated bytes", used), ("populated pages", pop)],
                       xlabel="trace time (s)", ylabel="bytes per unit", step=True),
            f"Replayed allocator state after each traced event ({len(rr.timeline)} samples); "
            f"populated = pages backed by memory in every unit. Multiply by {g['nr_cpus']} "
            f"units for the whole machine.",
            data={"allocated bytes": used, "populated pages": pop}))
    return s


# --- local-mapping overhead -----------------------------------------------------------------------

CPU_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 160, 256, 512, 1024, 4096)   # the figures' x axis


def build_overhead(ctx: Context, title: str) -> Section:
    b = ctx.bundle
    online = len(b.cpus["online"]) if b.cpus else None
    if not online:
        raise Unavailable("the bundle has no CPU list")
    # the bundle's own CPU count (with today's kernel beside it), then a machine of the talk's size per
    # granule: all from one replay of the allocation history
    grans = tuple(GRANULES)
    results = overhead_bundles(b, [(online, None, None, True)] +
                               [(TALK_CPUS, g, 48, False) for g in grans])
    o = results[0]
    if isinstance(o, LocalmapError):
        raise Unavailable(o.one_line())
    ctx.cache["overhead_state"] = {"private_tables": {int(k): v for k, v in o["private_tables_per_cpu"].items()},
                                   "root_copy_bytes": o["root_copy_bytes"]}
    ctx.cache["replay"] = {"live_chunks": o["live_chunks"], "unit_size": o["unit_size"],
                           "chunk_span": o["unit_size"] * online}
    s = Section("overhead", title)
    br = o["pgtable_extra_breakdown"]
    s.facts += [
        ("machine", f"{o['granule']} pages, {o['va_bits']}-bit VA, {o['online_cpus']} CPUs online, "
                    f"split level {o['split_level']} ({fmt_bytes(o['split_entry_bytes'])} entries)"),
        ("live chunks at the end", f"{o['live_chunks']} (created {o['chunks_created']}, destroyed "
                                   f"{o['chunks_destroyed']})"),
        ("local VA in use", f"{fmt_bytes(o['local_va_bytes'])} final, {fmt_bytes(o['local_va_peak_bytes'])} peak; "
                            f"window reserved {fmt_bytes(o['window_bytes'])}"),
        ("extra page-table memory", f"{fmt_bytes(o['pgtable_extra_bytes'])} final"
                                    + (f", {fmt_bytes(o['pgtable_extra_peak_bytes'])} peak"
                                       if o.get("pgtable_extra_peak_bytes") is not None else "")),
        ("  breakdown", f"root copies {fmt_bytes(br['root_copies'])}, copied levels "
                        f"{fmt_bytes(br['copied_levels'])}, private tables {fmt_bytes(br['private_tables'])}"),
        ("private tables per CPU", ", ".join(f"L{k}: {v}" for k, v in o["private_tables_per_cpu"].items())),
    ]
    if o.get("kpti_block_bytes"):
        s.facts.append(("KPTI blocks", fmt_bytes(o["kpti_block_bytes"])))
    ops = o.get("ops") or {}
    rows = []
    for op, counts in sorted(ops.items()):
        if isinstance(counts, dict):
            rows.append([op] + [", ".join(f"{k} {fmt_count(v)}" for k, v in counts.items())])
    if rows:
        s.tables.append(Table("Page-table work during the replay", ["operation", "counts"], rows))

    # the grid: how it scales with CPUs, per granule, for this bundle's chunks and unit size
    grid = overhead_table(cpus_list=CPU_GRID, unit_size=o["unit_size"], chunks=o["live_chunks"])
    by_gran: dict[str, list[dict]] = {}
    for r in grid:
        if "error" not in r:
            by_gran.setdefault(f"{r['granule']}/{r['va_bits']}", []).append(r)
    errors = [f"{r['granule']}/{r['va_bits']} x {r['cpus']}: {r['error']}" for r in grid if "error" in r]
    pt = [(g, [(r["cpus"], r["pgtable_extra_bytes"]) for r in rs]) for g, rs in by_gran.items()]
    va = [(g + " local VA", [(r["cpus"], r["local_va_bytes"]) for r in rs]) for g, rs in by_gran.items()]
    va += [(g + " window", [(r["cpus"], r["window_bytes"]) for r in rs]) for g, rs in by_gran.items()]
    s.figures.append(Figure(
        "pgtable-vs-cpus", "Extra page-table memory against CPU count, per granule",
        line_chart("pgtable-vs-cpus", pt, xlabel="online CPUs", ylabel="extra page tables",
                   xlog=True, ylog=True),
        f"{o['live_chunks']} live chunks of {fmt_bytes(o['unit_size'])} units (this bundle's final "
        f"state), every page populated; root copies + copied levels + private tables.",
        data=dict(pt)))
    s.figures.append(Figure(
        "va-vs-cpus", "Virtual address space against CPU count, per granule",
        line_chart("va-vs-cpus", va, xlabel="online CPUs", ylabel="bytes of VA", xlog=True, ylog=True),
        "Local VA in use (one unit per live chunk) and the reserved local window; neither grows "
        "with the CPU count, which is the design's point.",
        data=dict(va)))
    # this bundle's real history replayed on the talk's machine size, per granule (48-bit VA)
    real = []
    for gran, r160 in zip(grans, results[1:]):
        if isinstance(r160, LocalmapError):
            s.notes.append(f"{gran}/48 on {TALK_CPUS} CPUs: {r160.one_line()}")
            continue
        real.append([f"{gran}/48", str(TALK_CPUS), fmt_bytes(r160["local_va_peak_bytes"]),
                     fmt_bytes(r160["local_va_bytes"]), fmt_bytes(r160["pgtable_extra_bytes"]),
                     " ".join(f"L{k}:{v}" for k, v in r160["private_tables_per_cpu"].items()),
                     f"{fmt_bytes(TALK['local_va_bytes'])} VA, {TALK['pgtable_note']}" if gran == "4K" else "more than 4K (no figure)"])
    if real:
        s.tables.append(Table(
            f"This bundle's history replayed on a {TALK_CPUS}-CPU machine",
            ["granule/VA", "CPUs", "local VA peak", "local VA final", "extra page tables",
             "private tables/CPU", "talk (Fedora, AmpereOne)"], real))
    talk_rows = [r for r in grid if r.get("talk_local_va_bytes") and "error" not in r]
    tab = []
    for r in grid:
        if "error" in r or r["cpus"] not in (online, 4, 64, TALK_CPUS, 1024):
            continue
        tab.append([f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), fmt_bytes(r["local_va_bytes"]),
                    fmt_bytes(r["pgtable_extra_bytes"]),
                    " ".join(f"L{k}:{v}" for k, v in r["private_tables_per_cpu"].items())])
    s.tables.append(Table("Scaling (synthetic: this bundle's chunks, all pages populated)",
                          ["granule/VA", "CPUs", "local VA", "extra page tables", "private tables/CPU"], tab))
    if talk_rows:
        r = talk_rows[0]
        s.notes.append(f"Talk: {fmt_bytes(r['talk_local_va_bytes'])} local VA, page tables "
                       f"{r['talk_pgtable']}. Model with this bundle's chunks: "
                       f"{fmt_bytes(r['local_va_bytes'])} VA, {fmt_bytes(r['pgtable_extra_bytes'])} page tables.")
    s.notes.extend(errors)
    return s


# --- checker verdicts -----------------------------------------------------------------------------

def build_check(ctx: Context, title: str) -> Section:
    res = run_checks()
    s = Section("check", title)
    safe = sum(1 for r in res if r["verdict"] == "safe")
    s.facts.append(("scenarios", f"{len(res)} explored exhaustively: {safe} safe, {len(res) - safe} unsafe"))
    s.facts.append(("states", f"{fmt_count(sum(r['states'] for r in res))} in "
                              f"{fmt_seconds(sum(r['seconds'] for r in res))}"))
    s.tables.append(Table("Verdicts", ["scenario", "verdict", "states", "violated property", "why"],
                          [[r["scenario"], r["verdict"], fmt_count(r['states']), r.get("property") or "",
                            (r.get("violation") or "")] for r in res]))
    s.notes.append("Each unsafe verdict comes with a shortest counterexample: "
                   "`localmap check SCENARIO` prints it step by step.")
    return s


# --- performance ----------------------------------------------------------------------------------

def build_perf(ctx: Context, title: str) -> Section:
    sm = performance_summary()
    s = Section("perf", title)
    s.facts.append(("source", sm["source"]))
    rows = []
    for fl in sm["flavours"]:
        t = fl["totals"]
        label = "" if fl["preempt_count"] else f" ({NOT_COMPARABLE})"
        rows.append([fl["flavour"] + label, fl["preempt_model"], fmt_bytes(fl['text_bytes']), fmt_count(fl['sites']),
                     fmt_count(t['replaceable']), fmt_count(t['protection'].get('preempt', 0)),
                     fmt_count(t['removed_instructions']), fmt_count(t['removed_fast_path'])])
    s.tables.append(Table("this_cpu sites in the kernel image and what the local mapping removes",
                          ["flavour", "preemption", "text", "sites", "replaceable", "preempt-protected",
                           "removed instructions", "removed on fast path"], rows))
    crow = [[c["core"], c["form"], f"{c['before_low_ns']:.2f}..{c['before_high_ns']:.2f}", f"{c['after_ns']:.2f}",
             f"{c['saved_low_cycles']:.1f}..{c['saved_high_cycles']:.1f}", ", ".join(c["assumed"]) or "-"]
            for c in sm["costs"] if c["preempt_count"]]
    if crow:
        s.tables.append(Table("Cost of one this_cpu RMW with PREEMPT_COUNT (ns): before -> after",
                              ["core", "op", "before", "after", "saved (cycles)", "assumed"], crow))
    for pred in sm["predictions"]:
        for sec, tot in pred["sections"].items():
            talk = "-" if tot["talk"] is None else f"{tot['talk']:+.2f}"
            nc = "" if pred["preempt_model"] not in ("PREEMPT_VOLUNTARY", "PREEMPT_NONE") else \
                f" ({NOT_COMPARABLE})"
            s.facts.append((f"{pred['image']} ({pred['preempt_model']}): {sec or 'profile'}",
                            f"model {tot['model']:+.3f} points, talk {talk} points{nc}"))
    s.notes.append("Without PREEMPT_COUNT (Debian's arm64 PREEMPT_VOLUNTARY) the preemption "
                   "steps are already gone, so the local mapping removes nothing there.")
    for prof in sm.get("measured", []):
        _measured(s, prof)
    return s


def _measured(s: Section, prof: dict) -> None:
    """A shipped dynamic profile (``localmap lab profile``): figures per workload operation."""
    k = prof["kernel"]
    var = prof["headline_variant"]
    cores = prof["cores"]
    label = f" -- {prof['label']}" if prof.get("label") else ""
    s.facts.append((f"measured: {k['label']}", f"{k['preempt_model']}, {fmt_count(k['sites'])} sites, "
                    f"{fmt_count(k['removable_sites'])} with a removable preempt bracket; "
                    f"{prof['cpus']} vCPUs{label}"))
    rows = []
    for w in prof["workloads"]:
        rows.append([w["workload"] + (" (not comparable)" if prof.get("label") else ""), fmt_count(w["ops"]),
                     fmt_count(round(w["kernel_instructions"])), f"{w['this_cpu_executions']:.1f}",
                     f"{w['static_executions']:.1f} / {w['dynamic_executions']:.1f}",
                     f"{w['removed_instructions']:.1f}", fmt_percent(w["removed_share"]),
                     *[f"{w['saved_cycles'][c][var][0]:.0f}..{w['saved_cycles'][c][var][1]:.0f}" for c in cores],
                     "{:+.2f}..{:+.2f} %".format(*sorted(w["kernel_time_change"]["ampere1" if "ampere1" in cores
                                                                              else cores[0]]))])
    s.tables.append(Table(f"Measured per operation: {k['label']} ({k['preempt_model']}){label}",
                          ["workload", "ops", "kernel instructions", "this_cpu executions",
                           "static / dynamic", "removed instructions", "share of kernel"]
                          + [f"cycles saved {c}" for c in cores] + ["kernel time"], rows))
    if prof.get("comparable_to_talk"):
        trows = [[r["workload"], r["talk"], "{:+.2f}..{:+.2f} %".format(*r["model_kernel_time"]), r["verdict"],
                  "; ".join(r["reasons"][:-1]) or "-"] for r in prof["talk"]]
        s.tables.append(Table(f"Prediction against the talk ({k['label']}, AmpereOne model, DELTA {var})",
                              ["workload", "talk measured", "model: kernel time", "verdict", "why"], trows))
        frows = [[r["workload"], f["function"], f"{f['talk_overhead']:.2f} % / {f['talk_change']:+.2f}",
                  "-" if f["model_share"] is None else f"{f['model_share']:.2f} % / {f['model_change']:+.2f}",
                  f["why"]] for r in prof["talk"] for f in r["functions"]]
        if frows:
            s.tables.append(Table("The talk's backup-slide profile rows against the measured profile",
                                  ["workload", "function", "talk: overhead / change (points)",
                                   "model: share / change (points)", "why"], frows))
    s.notes.append(f"Measured figures: executed counts under QEMU ({k['label']}), cycles from llvm-mca "
                   f"({', '.join(cores)}), 'low..high' = overlapped..serial; assumptions "
                   + "; ".join(a.split(" ", 1)[0] for a in prof["assumptions"]) + " (see `localmap lab profile`).")


# --- other architectures, the alternative design, text replication ---------------------------

def build_arches(ctx: Context, title: str) -> Section:
    data = load_arches_summary()
    summ = data["arches"]
    rows = comparison(summ, cpus=TALK_CPUS)
    s = Section("arches", title)
    s.facts.append(("source", data["generated_by"] + "; arm64 from the shipped arm64 summary"))
    s.facts.append(("design cost", f"{TALK_CPUS} CPUs, {CHUNKS} chunks of {fmt_bytes(UNIT)} units, "
                                   "each architecture's own kernel page tables"))
    tab, cost = [], []
    for r in rows:
        tab.append([r["flavour"], f"{r['kernel']} {r['preempt_model']}", r["before"], r["after"], f"{r['sites']:,}",
                    f"{r['own_bracket_sites']:,} {r['own_bracket']}", f"{r['removed_per_op']:g}",
                    f"{r['removed_per_image']:,}"])
        note = f"NR_CPUS = {r['nr_cpus']}" if r["beyond_nr_cpus"] else ""
        if r["cost_error"]:
            cost.append([r["flavour"], "does not fit", "-", "-", "-", "; ".join(x for x in (r["cost_error"], note) if x)])
        else:
            cost.append([r["flavour"], fmt_bytes(r["pgtable_extra_bytes"]), str(r["split_level"]),
                         fmt_bytes(r["window_bytes"]), fmt_bytes(r["local_va_bytes"]), note])
    s.tables.append(Table("this_cpu_add on every Debian architecture: today and with a local mapping",
                          ["arch", "kernel", "this_cpu_add today", "with a local mapping", "sites",
                           "own protection brackets", "removed per op", "removed per image"], tab))
    s.tables.append(Table(f"The design on each architecture's kernel page tables, {TALK_CPUS} CPUs",
                          ["arch", "extra page tables", "split level", "window (each of two)", "local VA", "note"],
                          cost))
    s.tables.append(Table("The talk's claims about other architectures, checked against the images",
                          ["claim", "verdict", "evidence"],
                          [[c["claim"], c["verdict"], c["evidence"]] for c in talk_claims(summ)]))
    cats = [r["flavour"] for r in rows]
    series = [("sites", [r["sites"] for r in rows]),
              ("in an own bracket", [r["own_bracket_sites"] for r in rows]),
              ("instructions removed", [r["removed_per_image"] for r in rows])]
    s.figures.append(Figure(
        "arch-sites", "this_cpu sites, protected sites and removable instructions per architecture",
        bar_chart("arch-sites", cats, series, ylabel="count (log)", ylog=True),
        "One Debian kernel image per architecture (amd64, arm64 and armhf/riscv64: 6.12.117; ppc64el and "
        "s390x: 6.1.176). A site is one read of the per-CPU offset (one %gs: operand on amd64).",
        data={n: dict(zip(cats, v)) for n, v in series}))
    curves = pgtable_curves()
    s.figures.append(Figure(
        "arch-pgtables", "Extra page-table memory of the design against CPU count, per architecture",
        line_chart("arch-pgtables", list(curves.items()), xlabel="online CPUs", ylabel="extra page tables",
                   xlog=True, ylog=True),
        f"{CHUNKS} chunks of {fmt_bytes(UNIT)} units on each architecture's kernel tables (arm64 4K/48, "
        "x86-64 4-level, ppc64 radix 64K, s390x region-second, riscv64 Sv48, armhf 2-level); armhf stops "
        "where two windows no longer fit its vmalloc area.", data=curves))
    for r in summ:
        if r.get("params"):
            s.notes.append(f"{r['arch']}: derived from the image: " + ", ".join(
                f"{k} = {v}" for k, v in r["params"].items() if not isinstance(v, dict)))
    return s


def build_designs(ctx: Context, title: str) -> Section:
    d = three_way()
    s = Section("designs", title)
    s.facts.append(("images", f"{d['images']['rt-arm64']} (PREEMPT_RT) and {d['images']['arm64']} "
                              "(PREEMPT_VOLUNTARY); the talk's backup-slide profile"))
    rows = []
    for r in d["rows"]:
        prof = ", ".join(f"{k} {v:+.3f}" for k, v in r["profile_delta_rt_arm64"].items())
        rows.append([r["name"], f"{r['insns_per_op_pc']} / {r['insns_per_op_nopc']}", f"{r['removed_rt_arm64']:,}",
                     f"{r['removed_arm64']:,}", str(r["per_exception"]), fmt_bytes(r["local_va_bytes"]),
                     fmt_bytes(r["pgtable_extra_bytes"]), prof,
                     f"{len(r['checker'])} safe / {len(r['unsafe_without'])} unsafe twins"])
    s.tables.append(Table(
        "arm64 this_cpu ops: today, the local mapping and the register fix-up",
        ["design", "this_cpu_add instructions (PREEMPT_COUNT / none)", "removed, rt-arm64", "removed, arm64",
         "added per EL1 exception", "extra VA", f"extra page tables, {d['cpus']} CPUs",
         "talk profile, rt-arm64 (points)", "checker"], rows))
    for r in d["rows"]:
        s.notes.append(f"{r['name']}: safe as checked in {', '.join(r['checker'])}; unsafe without its "
                       f"mechanism in {', '.join(r['unsafe_without'])}.")
    s.notes.extend(d["assumptions"])
    return s


def build_text_replication(ctx: Context, title: str) -> Section:
    rows = text_replication_table()
    s = Section("text_replication", title)
    r0 = rows[0]
    s.facts.append(("image", f"[_stext, __end_rodata) of Debian 6.12.117 arm64: {fmt_bytes(r0['image_bytes'])} "
                             f"({r0['image_range'][0]} - {r0['image_range'][1]}), {r0['cpus']} CPUs, 4K/48"))
    s.tables.append(Table("Kernel text and rodata replicated on the per-CPU tables",
                          ["copies per", "nodes", "extra copies", "memory", "page tables", "tables per copy",
                           "copies written per patch"],
                          [[r["per"], str(r["nodes"]), str(r["replicas"]), fmt_bytes(r["memory_bytes"]),
                            fmt_bytes(r["pgtable_bytes"]),
                            " ".join(f"{k}:{v}" for k, v in r["private_tables_per_replica"].items()),
                            str(r["per_patch"]["copies_written"])] for r in rows]))
    s.notes.append("Code patching (alternatives, static keys, ftrace, kprobes) must write every copy "
                   "through its own alias, clean and invalidate the caches per copy, invalidate the alias' "
                   "TLB entry and synchronise every CPU: the checker's ktr-patch-one-copy (unsafe) and "
                   "ktr-patch-all-copies (safe) and their twins show each step.")
    return s


__all__ = ["Context", "Unavailable", "replay_scores"]
