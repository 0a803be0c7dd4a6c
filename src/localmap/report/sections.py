"""One builder per report section, each calling the owning part's Python API.

Models nothing itself; each builder turns the real results of another part of localmap into
facts, tables and figures. A builder raises :class:`Unavailable` when the part it needs is not
in the tree (or the bundle lacks the input it needs); the report then says so instead of
showing invented numbers.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from localmap.errors import LocalmapError
from localmap.report.model import Figure, Section, Table
from localmap.report.svg import human_bytes


class Unavailable(Exception):
    """A section cannot be built: its part is missing from the tree or its input from the bundle."""


@dataclass
class Context:
    bundle: Any
    progress: bool = True
    cache: dict[str, Any] = field(default_factory=dict)


def optional(module: str, attr: str):
    """The owner's API ``module.attr``, or :class:`Unavailable` when it is not in the tree."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise Unavailable(f"{module} is not in the tree yet") from None
        raise
    if not hasattr(mod, attr):
        raise Unavailable(f"{module}.{attr} is not in the tree yet")
    return getattr(mod, attr)


def _kb(n: int) -> str:
    return f"{n / 1024:,.0f} kB"


# --- capture ----------------------------------------------------------------------------------

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
        s.facts.append(("granule / VA bits", f"{cfg.page_size // 1024}K / {cfg.va_bits}"))
        s.facts.append(("preemption", f"{cfg.preempt_model}"
                                      f"{' with' if cfg.preempt_count else ' without'} PREEMPT_COUNT"))
    if b.cmdline:
        s.facts.append(("command line", b.cmdline))
    if b.meminfo:
        rows = []
        prev = None
        for phase, val in b.meminfo:
            rows.append([phase, _kb(val), "" if prev is None else f"{(val - prev) / 1024:+,.0f} kB"])
            prev = val
        s.tables.append(Table("/proc/meminfo Percpu after each phase", ["phase", "Percpu", "change"], rows))
    if b.vmallocinfo is not None:
        from localmap.ingest.procfs import percpu_vm_areas

        areas = percpu_vm_areas(b.vmallocinfo)
        s.facts.append(("pcpu_get_vm_areas areas at the end", f"{len(areas)}"))
    return s


# --- layout and tables ------------------------------------------------------------------------

def _geometry(ctx: Context):
    from localmap.arch.arm64.pgtable import Geometry

    cfg = ctx.bundle.config
    if cfg is None:
        raise Unavailable("the bundle has no .config (granule and VA size unknown)")
    return Geometry(cfg.page_size, cfg.va_bits)


def _design(ctx: Context):
    if "design" not in ctx.cache:
        from localmap.design.layout import design_layout

        ctx.cache["design"] = design_layout(_geometry(ctx))
    return ctx.cache["design"]


def build_layout(ctx: Context, title: str) -> Section:
    from localmap.report.diagrams import va_layout_figure

    d = _design(ctx)
    s = Section("layout", title)
    g_lo, g_hi = d.global_window
    l_lo, l_hi = d.local_window
    s.facts += [
        ("geometry", f"{d.geom.page_size // 1024}K pages, {d.geom.va_bits}-bit VA, "
                     f"{d.geom.levels} levels (root level {d.geom.root_level})"),
        ("vmalloc", f"{d.kernel.vmalloc_start:#x} - {d.kernel.vmalloc_end:#x}"),
        ("split level", f"{d.split_level} ({human_bytes(d.split_entry_size)} entries)"),
        ("global window", f"{g_lo:#x} - {g_hi:#x} ({human_bytes(g_hi - g_lo)})"),
        ("local window", f"{l_lo:#x} - {l_hi:#x} ({human_bytes(l_hi - l_lo)})"),
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
    from localmap.report.diagrams import tables_figure

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


# --- allocator replay (issue 2, lead) ------------------------------------------------------------

def replay_scores(rr) -> dict[str, float]:
    """The figures by which two replays are compared (fractions of allocations predicted)."""
    return {"agreement": rr.agreement, "agreement_nonatomic": rr.agreement_nonatomic}


def build_replay(ctx: Context, title: str) -> Section:
    replay = optional("localmap.analysis.replay", "replay")
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
        ("events", f"{ev['total']:,} ({ev['alloc']:,} alloc, {ev['free']:,} free, "
                   f"{ev['create_chunk']} chunk create, {ev['destroy_chunk']} destroy, "
                   f"{ev['alloc_fail']} failed)"),
        ("first chunk", f"{g['mode']}: s{g['static_size']} r{g['reserved_size']} d{g['dyn_size']} "
                        f"u{g['unit_size']}; derivation "
                        + {True: "matches dmesg", False: "differs from dmesg (dmesg used)",
                           None: "not checked (no dmesg)"}[g["matches_dmesg"]]),
        ("allocations predicted", f"{100 * ag['overall']:.2f} % ({ag['agree']:,} of {ag['total']:,})"),
        ("  non-atomic / atomic", f"{100 * ag['nonatomic']:.2f} % of {ag['nonatomic_total']:,} / "
                                  f"{100 * ag['atomic']:.2f} % of {ag['atomic_total']:,}"),
        ("racing pairs replayed swapped", str(ag["race_swaps"])),
        ("final state", f"{fs['nr_chunks']} chunks of {fs['nr_units']} x {human_bytes(fs['unit_size'])}, "
                        f"{fs['populated_pages']} pages populated per unit "
                        f"({human_bytes(fs['populated_bytes'])} over all units)"),
    ]
    if d["partial"]:
        s.notes.append("partial replay: " + "; ".join(d["partial_reasons"]))
    causes = d.get("disagreement_causes") or {}
    if causes:
        from localmap.analysis.replay import CAUSES

        s.tables.append(Table("Why predictions missed", ["cause", "allocations", "meaning"],
                              [[k, f"{v:,}", CAUSES.get(k, "")] for k, v in
                               sorted(causes.items(), key=lambda kv: -kv[1])]))
    mc = d.get("meminfo_check") or []
    if mc:
        s.tables.append(Table("Model against /proc/meminfo Percpu", ["phase", "meminfo", "model", "how", "ok"],
                              [[m["phase"], _kb(m["meminfo_bytes"]),
                                "-" if m["model_bytes"] is None else _kb(m["model_bytes"]),
                                m["kind"], "yes" if m["ok"] else "NO"] for m in mc]))
    if rr.timeline:
        from localmap.report.svg import line_chart

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


# --- local-mapping overhead (issue 3) ------------------------------------------------------------

CPU_GRID = (1, 2, 4, 8, 16, 32, 64, 128, 160, 256, 512, 1024, 4096)
BIG_MACHINE_CPUS = 160          # the talk's AmpereOne


def build_overhead(ctx: Context, title: str) -> Section:
    overhead_bundles = optional("localmap.analysis.overhead", "overhead_bundles")
    overhead_table = optional("localmap.analysis.overhead", "overhead_table")
    from localmap.analysis.overhead import human

    b = ctx.bundle
    online = len(b.cpus["online"]) if b.cpus else None
    if not online:
        raise Unavailable("the bundle has no CPU list")
    # the bundle's own CPU count (with today's kernel beside it), then a 160-CPU machine per
    # granule: all from one replay of the allocation history
    grans = ("4K", "16K", "64K")
    results = overhead_bundles(b, [(online, None, None, True)] +
                               [(BIG_MACHINE_CPUS, g, 48, False) for g in grans])
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
                    f"split level {o['split_level']} ({human(o['split_entry_bytes'])} entries)"),
        ("live chunks at the end", f"{o['live_chunks']} (created {o['chunks_created']}, destroyed "
                                   f"{o['chunks_destroyed']})"),
        ("local VA in use", f"{human(o['local_va_bytes'])} final, {human(o['local_va_peak_bytes'])} peak; "
                            f"window reserved {human(o['window_bytes'])}"),
        ("extra page-table memory", f"{human(o['pgtable_extra_bytes'])} final"
                                    + (f", {human(o['pgtable_extra_peak_bytes'])} peak"
                                       if o.get("pgtable_extra_peak_bytes") is not None else "")),
        ("  breakdown", f"root copies {human(br['root_copies'])}, copied levels "
                        f"{human(br['copied_levels'])}, private tables {human(br['private_tables'])}"),
        ("private tables per CPU", ", ".join(f"L{k}: {v}" for k, v in o["private_tables_per_cpu"].items())),
    ]
    if o.get("kpti_block_bytes"):
        s.facts.append(("KPTI blocks", human(o["kpti_block_bytes"])))
    ops = o.get("ops") or {}
    rows = []
    for op, counts in sorted(ops.items()):
        if isinstance(counts, dict):
            rows.append([op] + [", ".join(f"{k} {v:,}" for k, v in counts.items())])
    if rows:
        s.tables.append(Table("Page-table work during the replay", ["operation", "counts"], rows))

    # the grid: how it scales with CPUs, per granule, for this bundle's chunks and unit size
    from localmap.report.svg import line_chart

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
        f"{o['live_chunks']} live chunks of {human(o['unit_size'])} units (this bundle's final "
        f"state), every page populated; root copies + copied levels + private tables.",
        data=dict(pt)))
    s.figures.append(Figure(
        "va-vs-cpus", "Virtual address space against CPU count, per granule",
        line_chart("va-vs-cpus", va, xlabel="online CPUs", ylabel="bytes of VA", xlog=True, ylog=True),
        "Local VA in use (one unit per live chunk) and the reserved local window; neither grows "
        "with the CPU count, which is the design's point.",
        data=dict(va)))
    # this bundle's real history replayed on a 160-CPU machine, per granule (48-bit VA)
    real = []
    for gran, r160 in zip(grans, results[1:]):
        if isinstance(r160, LocalmapError):
            s.notes.append(f"{gran}/48 on {BIG_MACHINE_CPUS} CPUs: {r160.one_line()}")
            continue
        real.append([f"{gran}/48", str(BIG_MACHINE_CPUS), human(r160["local_va_peak_bytes"]),
                     human(r160["local_va_bytes"]), human(r160["pgtable_extra_bytes"]),
                     " ".join(f"L{k}:{v}" for k, v in r160["private_tables_per_cpu"].items()),
                     "960K VA, a couple of MB" if gran == "4K" else "more than 4K (no figure)"])
    if real:
        s.tables.append(Table(
            f"This bundle's history replayed on a {BIG_MACHINE_CPUS}-CPU machine",
            ["granule/VA", "CPUs", "local VA peak", "local VA final", "extra page tables",
             "private tables/CPU", "talk (Fedora, AmpereOne)"], real))
    talk_rows = [r for r in grid if r.get("talk_local_va_bytes") and "error" not in r]
    tab = []
    for r in grid:
        if "error" in r or r["cpus"] not in (online, 4, 64, 160, 1024):
            continue
        tab.append([f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), human(r["local_va_bytes"]),
                    human(r["pgtable_extra_bytes"]),
                    " ".join(f"L{k}:{v}" for k, v in r["private_tables_per_cpu"].items())])
    s.tables.append(Table("Scaling (synthetic: this bundle's chunks, all pages populated)",
                          ["granule/VA", "CPUs", "local VA", "extra page tables", "private tables/CPU"], tab))
    if talk_rows:
        r = talk_rows[0]
        s.notes.append(f"Talk, 160 CPUs, 4K, Fedora config: {human(r['talk_local_va_bytes'])} local VA; "
                       f"{r['talk_pgtable']}. Model with this bundle's chunks: "
                       f"{human(r['local_va_bytes'])} VA, {human(r['pgtable_extra_bytes'])} page tables.")
    s.notes.extend(errors)
    return s


# --- checker verdicts (issue 4) -----------------------------------------------------------------

def build_check(ctx: Context, title: str) -> Section:
    run_checks = optional("localmap.check", "run_checks")
    res = run_checks()
    s = Section("check", title)
    safe = sum(1 for r in res if r["verdict"] == "safe")
    s.facts.append(("scenarios", f"{len(res)} explored exhaustively: {safe} safe, {len(res) - safe} unsafe"))
    s.facts.append(("states", f"{sum(r['states'] for r in res):,} in "
                              f"{sum(r['seconds'] for r in res):.2f} s"))
    s.tables.append(Table("Verdicts", ["scenario", "verdict", "states", "violated property", "why"],
                          [[r["scenario"], r["verdict"], f"{r['states']:,}", r.get("property") or "",
                            (r.get("violation") or "")] for r in res]))
    s.notes.append("Each unsafe verdict comes with a shortest counterexample: "
                   "`localmap check SCENARIO` prints it step by step.")
    return s


# --- performance (issue 5) ----------------------------------------------------------------------

def build_perf(ctx: Context, title: str) -> Section:
    performance_summary = optional("localmap.perf.summary", "performance_summary")
    sm = performance_summary()
    s = Section("perf", title)
    s.facts.append(("source", sm["source"]))
    rows = []
    for fl in sm["flavours"]:
        t = fl["totals"]
        label = "" if fl["preempt_count"] else " (no preempt count: not comparable to the talk)"
        rows.append([fl["flavour"] + label, fl["preempt_model"], f"{fl['text_bytes'] / 2**20:.1f} MB", f"{fl['sites']:,}",
                     f"{t['replaceable']:,}", f"{t['protection'].get('preempt', 0):,}",
                     f"{t['removed_instructions']:,}", f"{t['removed_fast_path']:,}"])
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
                " (no preempt count: not comparable to the talk)"
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
    s.facts.append((f"measured: {k['label']}", f"{k['preempt_model']}, {k['sites']:,} sites, "
                    f"{k['removable_sites']:,} with a removable preempt bracket; {prof['cpus']} vCPUs{label}"))
    rows = []
    for w in prof["workloads"]:
        rows.append([w["workload"] + (" (not comparable)" if prof.get("label") else ""), f"{w['ops']:,}",
                     f"{w['kernel_instructions']:,.0f}", f"{w['this_cpu_executions']:.1f}",
                     f"{w['static_executions']:.1f} / {w['dynamic_executions']:.1f}",
                     f"{w['removed_instructions']:.1f}", f"{100 * w['removed_share']:.2f} %",
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


__all__ = ["Context", "Unavailable", "LocalmapError", "replay_scores"]
