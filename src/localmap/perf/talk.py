"""The talk's measured figures beside the model's predictions, with why they agree or differ.

What it models: nothing; it puts the prediction of :mod:`localmap.perf.dynamic` (kernel time
change per workload, per-function instruction shares) next to what the LSF/MM/BPF 2026 talk
measured on a 160-core AmpereOne with 7.1-rc1 and Fedora's config (the talk's "Performance
Benchmark" and backup slides). Nothing here is fitted: the talk's numbers are only compared.
The verdict is mechanical: the talk's range and the model's [serial, overlapped] range overlap
("agrees"), or the model is smaller/larger. The reasons name the differences between the two
settings that the data show (e.g. a profiled function with no removable bracket in 6.12).
"""

from __future__ import annotations

NOT_COMPARABLE = "no preempt count: not comparable to the talk"

# workload -> the talk's figure: (label, low %, high %, kind) with kind "sys" (kernel time
# change, negative = faster) or "throughput" (ops/s change, positive = faster)
TALK = {
    "exec-io": ("kernel build (make -j160, Fedora config, in a memcg): sys time -13 .. -18 %, "
                "wall -3 .. -7 %", -18.0, -13.0, "sys"),
    "vm": ("stress-ng --vm 160 --vm-bytes 128M: +6 .. +8.5 % ops", 6.0, 8.5, "throughput"),
    "mmapfork": ("stress-ng --mmapfork 160 --mmapfork-bytes 128M: +15 % ops", 15.0, 15.0, "throughput"),
    "fork": ("stress-ng --fork 160: -1 % ops (regression)", -1.0, -1.0, "throughput"),
    "memcg": ("10K memcgs created: elapsed time basically the same", -1.0, 1.0, "sys"),
    "page-fault": ("page_fault3 (backup-slide profile rows only)", None, None, "profile"),
}

# the talk's backup-slide profile: workload -> [(function, overhead %, change in points)]
TALK_ROWS = {
    "page-fault": [("mod_memcg_lruvec_state", 5.91, -1.82), ("percpu_counter_add_batch", 2.84, -1.30)],
    "memcg": [("percpu_ref_get_many", 0.35, -0.33), ("percpu_counter_add_batch", 0.61, -0.30),
              ("pcpu_alloc_noprof", 0.34, 0.02), ("free_percpu.part.0", 0.00, 0.05)],
}

COMMON = ("the talk ran 7.1-rc1 with Fedora's config on 160 AmpereOne cores (contention and "
          "cache effects of 160 CPUs are not modelled); the model runs 6.12.117 on a few QEMU "
          "vCPUs and prices sequences with CPI = 1 for the rest of the kernel")


def _to_time(change_pct: float, kind: str) -> float:
    """A throughput change of a kernel-bound benchmark as a kernel-time change (percent)."""
    if kind != "throughput":
        return change_pct
    return 100.0 * (1.0 / (1.0 + change_pct / 100.0) - 1.0)


def _lookup(functions: list[dict], name: str) -> dict | None:
    base = name.split(".")[0]
    for f in functions:
        if f["function"] == name or f["function"].split(".")[0] in (base, "__" + base) or \
                f["function"].lstrip("_") == base.lstrip("_"):
            return f
    return None


def compare(results: list[dict], preempt_count: bool | None, core: str = "ampere1",
            functions_of: dict[str, list[dict]] | None = None) -> list[dict]:
    """One row per profiled workload the talk measured: model vs talk, verdict, reasons.

    ``functions_of``: workload -> all per-function rows (default: each result's top list)."""
    rows = []
    for r in results:
        name = r["workload"]
        if name not in TALK:
            continue
        label, lo, hi, kind = TALK[name]
        model = r["kernel_time_change"].get(core, [0.0, 0.0])  # [serial, overlapped] percent
        m_lo, m_hi = min(model), max(model)
        reasons = []
        if preempt_count is False:
            verdict = NOT_COMPARABLE
            reasons.append("this kernel has no preempt count, so no bracket to remove")
        elif lo is None:
            verdict = "per-function rows only"
        else:
            t_lo, t_hi = sorted((_to_time(lo, kind), _to_time(hi, kind)))
            if m_hi < t_lo:
                verdict = "model larger"
            elif m_lo > t_hi:
                verdict = "model smaller"
            else:
                verdict = "agrees"
            if kind == "throughput":
                reasons.append(f"the talk's throughput change read as kernel time "
                               f"{t_lo:+.1f} .. {t_hi:+.1f} % (benchmark assumed kernel-bound)")
        fn_rows = []
        funcs = (functions_of or {}).get(name, r.get("functions", []))
        for fname, overhead, delta in TALK_ROWS.get(name, []):
            f = _lookup(funcs, fname)
            row = {"function": fname, "talk_overhead": overhead, "talk_change": delta,
                   "model_function": f["function"] if f else None,
                   "model_share": round(100 * f["share"], 3) if f else None,
                   "model_change": f["predicted_points"] if f else None}
            if f is None:
                row["why"] = "not executed in this workload on 6.12 (or inlined into its callers)"
            elif not f["removed"]:
                row["why"] = ("no removable preempt bracket in 6.12's function (6.12's "
                              "__mod_memcg_lruvec_state uses __this_cpu_add under its caller's "
                              "protection; 7.1-rc1's uses this_cpu_add inside get_cpu/put_cpu)"
                              if "memcg_lruvec" in fname else
                              "no removable preempt bracket in 6.12's function")
            else:
                row["why"] = (f"{100 * f['removed_share_of_function']:.0f} % of the function's "
                              "executed instructions are the removed bracket")
            fn_rows.append(row)
        if name == "fork":
            reasons.append("the model prices only this_cpu sequences: the design's extra page-table "
                           "work per percpu allocation (per-fork mm counters) is not in this figure "
                           "(see `localmap overhead`)")
        if name == "memcg":
            reasons.append("memcg creation is dominated by allocation and page-table work; the "
                           "this_cpu saving is a small part of it")
        reasons.append(COMMON)
        rows.append({"workload": name, "talk": label, "model_kernel_time": [round(m_lo, 2), round(m_hi, 2)],
                     "core": core, "verdict": verdict, "reasons": reasons, "functions": fn_rows})
    return rows
