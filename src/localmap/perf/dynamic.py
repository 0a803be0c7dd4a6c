"""What the local mapping saves per workload operation, from executed (not static) counts.

What it models: a dynamic profile (executions of every this_cpu site and of every kernel
translation block between two markers, :mod:`localmap.lab.profile`) joined with the site
analysis of the same image (:mod:`localmap.perf.sites`) and the llvm-mca prices of each site's
sequence (:mod:`localmap.perf.mca`). Per workload operation:

* ``kernel_instructions``: kernel instructions executed;
* ``this_cpu_executions``: executions of this_cpu sites (``mrs tpidr_el1``), split by where
  the percpu address comes from (``static`` ``DEFINE_PER_CPU`` symbol / ``dynamic`` pointer);
* ``removed_instructions``: executions x fast-path instructions the local mapping removes at
  each site (the preempt bracket; 0 without ``CONFIG_PREEMPT_COUNT``), and its share of the
  kernel instructions; ``net_removed`` per DELTA variant (the materialisation adds or removes
  instructions too);
* ``saved_cycles``: per core and variant, [low, high] cycles saved (mca.py's two modes);
* ``kernel_time_change``: predicted change of kernel time, saved cycles over the kernel's cycles
  taken as ``kernel_instructions x CPI`` with CPI = 1 (assumption D2).

Differs from the kernel: no cache, TLB or branch effects; the removed bracket is attributed once
per site execution (mca.py M5). Every figure is tied to the image that was profiled.

API::

    run = localmap.lab.profile.run_profile(kernel, [("fork", 50)])   # the counts (QEMU)
    data = measured_profile(run)      # plain data, as ``localmap lab profile --json`` prints it
"""

from __future__ import annotations

from collections import defaultdict

from localmap.perf import mca
from localmap.perf.talk import NOT_COMPARABLE, compare
from localmap.progress import Progress, as_progress

HEADLINE = "patched"  # the DELTA variant used for the one-number summaries
CPI = 1.0

ASSUMPTIONS = [
    "D1 instructions and site executions are exact counts from QEMU (TCG, -accel "
    "tcg,thread=single); a translation block left early by an exception is counted whole.",
    "D2 kernel time = kernel instructions x CPI with CPI = 1.0 on every core (no public kernel "
    "CPI for these cores); the predicted change scales with 1/CPI.",
    "D3 everything the kernel executed between a workload's two markers belongs to it (its own "
    "system calls and faults, interrupts, kworkers and RCU callbacks meanwhile).",
]


def _per(x: float, ops: int) -> float:
    return x / ops if ops else 0.0


def analyse_workload(name: str, counts, report, prices: dict, symbols, *, op: str = "",
                     talk: str = "", top: int = 12) -> dict:
    """One workload's figures per operation (see the module doc). ``counts`` is a
    :class:`~localmap.lab.profile.WorkloadCounts`, ``report`` the
    :class:`~localmap.perf.sites.SitesReport` of the same image, ``prices`` from
    :func:`localmap.perf.mca.price_sites`, ``symbols`` the image's symbol table."""
    by_addr = {s.addr: s for s in report.sites_list}
    ops = counts.ops
    execs = removed = 0
    kinds = defaultdict(int)
    unknown_addrs = 0
    net = {v: 0 for v in mca.VARIANTS}
    saved = {c: {v: [0.0, 0.0] for v in mca.VARIANTS} for c in mca.CORES}
    fn = defaultdict(lambda: {"executions": 0, "removed": 0, "instructions": 0})
    site_rows = []
    for addr, n in counts.sites.items():
        execs += n
        s = by_addr.get(addr)
        if s is None:  # not a site of the analysed text (e.g. outside [_stext, _etext))
            unknown_addrs += n
            continue
        kinds[s.base] += n
        removed += n * s.removed_fast
        f = fn[s.function]
        f["executions"] += n
        f["removed"] += n * s.removed_fast
        delta_instr = {"load": 1, "patched": 2, "hoisted": -1,
                       "static-alias": -2 if s.base == "static" else 2}
        for v in mca.VARIANTS:
            net[v] += n * (s.removed_fast - delta_instr[v])
        p = prices.get(addr)
        if p is not None:
            for c in p.saved:
                for v, (lo, hi) in p.saved[c].items():
                    saved[c][v][0] += n * lo
                    saved[c][v][1] += n * hi
        site_rows.append({"addr": hex(addr), "function": s.function, "executions": round(_per(n, ops), 3),
                          "removed": s.removed_fast, "base": s.base, "op": s.op,
                          "protection": s.protection})
    # executed kernel instructions per function, from the translation blocks
    for (addr, n_insns), cnt in counts.blocks.items():
        hit = symbols.lookup(addr)
        if hit is not None:
            fn[hit[0]]["instructions"] += n_insns * cnt
    kernel = counts.kernel_instructions
    site_rows.sort(key=lambda r: -r["executions"])
    rows = []
    for f, v in fn.items():
        if not v["executions"]:
            continue
        rows.append({"function": f, "executions": round(_per(v["executions"], ops), 3),
                     "removed": round(_per(v["removed"], ops), 3),
                     "instructions": round(_per(v["instructions"], ops), 1),
                     "share": round(v["instructions"] / kernel, 5) if kernel else 0.0,
                     "removed_share_of_function": round(v["removed"] / v["instructions"], 4)
                     if v["instructions"] else 0.0,
                     "predicted_points": round(-100 * v["removed"] / kernel, 3) if kernel else 0.0})
    rows.sort(key=lambda r: (-r["executions"], r["function"]))
    kpo = _per(kernel, ops)
    saved_po = {c: {v: [round(_per(lo, ops), 2), round(_per(hi, ops), 2)] for v, (lo, hi) in d.items()}
                for c, d in saved.items()}
    change = {c: [round(-100 * saved_po[c][HEADLINE][1] / (kpo * CPI), 3) if kpo else 0.0,
                  round(-100 * saved_po[c][HEADLINE][0] / (kpo * CPI), 3) if kpo else 0.0]
              for c in saved_po}
    return {
        "workload": name, "op": op, "talk_benchmark": talk, "rounds": counts.rounds, "ops": ops,
        "kernel_instructions": round(kpo, 1),
        "this_cpu_executions": round(_per(execs, ops), 3),
        "static_executions": round(_per(kinds["static"], ops), 3),
        "dynamic_executions": round(_per(kinds["dynamic"], ops), 3),
        "unclassified_executions": round(_per(kinds["unknown"] + unknown_addrs, ops), 3),
        "removed_instructions": round(_per(removed, ops), 2),
        "removed_share": round(removed / kernel, 5) if kernel else 0.0,
        "net_removed": {v: round(_per(x, ops), 2) for v, x in net.items()},
        "saved_cycles": saved_po,
        "kernel_time_change": change,
        "functions": rows[:top],
        "sites": site_rows[:top],
    }


def executed_sites(runs) -> set[int]:
    out: set[int] = set()
    for w in runs:
        out.update(w.sites)
    return out


def measured_profile(run, cores: tuple[str, ...] | None = None,
                     progress: Progress | None = None) -> dict:
    """Analyse and price a profiling run: the plain-data profile of its kernel.

    ``run`` is a :class:`localmap.lab.profile.ProfileRun` (read through its attributes only:
    ``kernel`` with ``image``/``vmlinux``/``system_map``/``config``/``label``, ``workloads`` by
    key, ``cpus``, ``boot_seconds``, ``seconds``). The image's sites are analysed, the executed
    ones priced with llvm-mca on ``cores`` (default :data:`localmap.perf.mca.CORES`), each
    workload reduced to figures per operation and the talk's figures put beside them
    (:mod:`localmap.perf.talk`)."""
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    prog = as_progress(progress)
    cores = tuple(cores or mca.CORES)
    kernel = run.kernel
    prog.start("analysing the image's this_cpu sites")
    if kernel.vmlinux is not None and kernel.vmlinux.is_file():
        img = load_image(kernel.vmlinux, None, config=kernel.config)
    else:
        img = load_image(kernel.image, kernel.system_map, config=kernel.config)
    report = analyse(img, progress=prog)
    executed = executed_sites(run.workloads.values())
    sites = [s for s in report.sites_list if s.addr in executed]
    prog.start(f"pricing {len(sites)} executed sites with llvm-mca ({', '.join(cores)})")
    prices = mca.price_sites(img, sites, cores)
    results = []
    all_functions = {}
    for key, counts in run.workloads.items():
        full = analyse_workload(key, counts, report, prices, img.symbols,
                                op=counts.op, talk=counts.talk, top=10_000)
        all_functions[key] = full["functions"]
        full["functions"] = full["functions"][:12]
        full["sites"] = full["sites"][:12]
        results.append(full)
    tot = report.totals()
    has_count = bool(img.preempt_count())
    return {
        "kernel": {"label": kernel.label, "image": str(kernel.image),
                   "preempt_model": img.preempt_model(), "preempt_count": img.preempt_count(),
                   "sites": report.sites, "removable_sites": sum(1 for s in report.sites_list if s.removed),
                   "removed_instructions": tot["removed_instructions"],
                   "static_sites": sum(1 for s in report.sites_list if s.base == "static"),
                   "dynamic_sites": sum(1 for s in report.sites_list if s.base == "dynamic")},
        "comparable_to_talk": has_count,
        "label": None if has_count else NOT_COMPARABLE,
        "cpus": run.cpus, "boot_seconds": round(run.boot_seconds, 1), "seconds": round(run.seconds, 1),
        "cores": list(cores), "headline_variant": HEADLINE,
        "workloads": results,
        "talk": compare(results, img.preempt_count(), functions_of=all_functions),
        "assumptions": ASSUMPTIONS + mca.ASSUMPTIONS,
    }
