"""What a fleet's rows say together: distributions per configuration, outliers and why, failures.

Percentiles are *nearest-rank*: the p-th percentile of n sorted values is the value at rank
ceil(p * n / 100), a value some bundle really has (p50 of 1..10 is 5, p90 is 9, p99 is 10).
An outlier is a bundle whose value lies beyond Tukey's fences of its configuration, below
Q1 - 1.5 IQR or above Q3 + 1.5 IQR with the quartiles taken the same way; for the replay's
agreement only the low side counts, for sizes only the high side. Each outlier carries the
reason read from its own row against the configuration's medians: the mispredicted allocations
and their main cause, a partial trace, the live chunks, the unit size or the CPU count that
make its VA or page tables larger. Failed rows are grouped by their reason (the error without
its location).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any, Iterable

from localmap.units import fmt_bytes, fmt_percent

PERCENTILES = (50, 90, 99)
TUKEY_K = 1.5

# column -> (title, unit, the side that is bad)
METRICS: dict[str, tuple[str, str, str]] = {
    "agreement": ("replay agreement", "fraction", "low"),
    "local_va_bytes": ("local VA, final", "bytes", "high"),
    "local_va_peak_bytes": ("local VA, peak", "bytes", "high"),
    "pgtable_extra_bytes": ("extra page tables, final", "bytes", "high"),
    "pgtable_extra_peak_bytes": ("extra page tables, peak", "bytes", "high"),
}


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (sorted or not, at least one)."""
    s = sorted(values)
    if not s:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(p * len(s) / 100))
    return s[min(rank, len(s)) - 1]


def summary(values: list[float]) -> dict[str, float]:
    """n, min, p50, p90, p99, max and mean of ``values``."""
    out: dict[str, float] = {"n": len(values)}
    if not values:
        return out
    out["min"] = min(values)
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(values, p)
    out["max"] = max(values)
    out["mean"] = sum(values) / len(values)
    return out


def fences(values: list[float]) -> tuple[float, float]:
    """Tukey's fences ``(Q1 - 1.5 IQR, Q3 + 1.5 IQR)``."""
    q1, q3 = percentile(values, 25), percentile(values, 75)
    iqr = q3 - q1
    return q1 - TUKEY_K * iqr, q3 + TUKEY_K * iqr


def _fmt(unit: str, v: float) -> str:
    return fmt_percent(v, 2) if unit == "fraction" else fmt_bytes(int(v))


def _median(rows: list[dict], col: str) -> float | None:
    vals = [r[col] for r in rows if r.get(col) is not None]
    return percentile(vals, 50) if vals else None


def _why_agreement(r: dict) -> str:
    from localmap.analysis.replay import CAUSES

    parts = [f"{r['misses']} of {r['allocs']} allocations mispredicted"]
    causes = json.loads(r.get("miss_causes") or "{}")
    if causes:
        cause, n = max(causes.items(), key=lambda kv: (kv[1], kv[0]))
        parts.append(f"{n} of them {cause}: {CAUSES.get(cause, cause)}")
    if r.get("partial"):
        parts.append(f"partial trace: {r.get('partial_reasons') or 'see localmap replay'}")
    return "; ".join(parts)


def _why_size(r: dict, col: str, ok: list[dict]) -> str:
    parts = []
    unit = r.get("unit_size")
    m_unit = _median(ok, "unit_size")
    if col.startswith("local_va"):
        chunks = r[col] // unit if unit else None
        med = [x[col] // x["unit_size"] for x in ok if x.get("unit_size")]
        when = "at the end" if col == "local_va_bytes" else "at the peak"
        if chunks is not None and med:
            parts.append(f"{chunks} chunks live {when} (median {percentile(med, 50)})")
        if r.get("chunks_created") is not None:
            parts.append(f"{r['chunks_created']} chunks created in the trace "
                         f"(median {_median(ok, 'chunks_created')})")
    else:
        cpus, m_cpus = r.get("cpus"), _median(ok, "cpus")
        if cpus is not None and m_cpus is not None and cpus != m_cpus:
            parts.append(f"{cpus} CPUs (median {m_cpus})")
        if col == "pgtable_extra_bytes":
            live, m_live = r.get("live_chunks"), _median(ok, "live_chunks")
            if live is not None and m_live is not None and live != m_live:
                parts.append(f"{live} live chunks at the end (median {m_live})")
        else:
            peak = [x["local_va_peak_bytes"] // x["unit_size"] for x in ok if x.get("unit_size")]
            if unit and peak:
                parts.append(f"{r['local_va_peak_bytes'] // unit} chunks live at the peak "
                             f"(median {percentile(peak, 50)})")
    if unit is not None and m_unit is not None and unit != m_unit:
        parts.append(f"unit size {fmt_bytes(unit)} (median {fmt_bytes(int(m_unit))})")
    if r.get("split_level") is not None and _median(ok, "split_level") not in (None,
                                                                              r["split_level"]):
        parts.append(f"split at level {r['split_level']}")
    return "; ".join(parts) or "the history's chunks span more page-table regions"


def aggregate(rows: Iterable[dict[str, Any]], configs: list[str] | None = None) -> dict[str, Any]:
    """The fleet's distributions, outliers and failures (see module doc). ``configs``: the
    configuration labels in the order to report them (default: first seen)."""
    rows = list(rows)
    order = list(configs or dict.fromkeys(r["config"] for r in rows))
    by_config: dict[str, list[dict]] = {c: [] for c in order}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)
    out_configs, outliers = [], []
    for label, rs in by_config.items():
        ok = [r for r in rs if not r.get("error")]
        metrics = {}
        for col, (title, unit, side) in METRICS.items():
            vals = [r[col] for r in ok if r.get(col) is not None]
            metrics[col] = summary(vals)
            if len(vals) < 4:           # too few for quartiles to mean anything
                continue
            lo, hi = fences(vals)
            med = percentile(vals, 50)
            for r in ok:
                v = r.get(col)
                if v is None or not (v < lo if side == "low" else v > hi):
                    continue
                why = _why_agreement(r) if col == "agreement" else _why_size(r, col, ok)
                outliers.append({"bundle": r["bundle"], "name": r.get("name"), "config": label,
                                 "metric": col, "title": title, "value": v,
                                 "fence": lo if side == "low" else hi, "median": med,
                                 "text": f"{_fmt(unit, v)} (median {_fmt(unit, med)})",
                                 "why": why})
        out_configs.append({"config": label, "rows": len(rs), "ok": len(ok),
                            "failed": len(rs) - len(ok), "metrics": metrics})
    rank = {c: i for i, c in enumerate(METRICS)}
    outliers.sort(key=lambda o: (rank[o["metric"]], o["config"],
                                 o["value"] if METRICS[o["metric"]][2] == "low" else -o["value"],
                                 o["bundle"]))
    failures: dict[str, dict] = {}
    for r in rows:
        if not r.get("error"):
            continue
        reason = r.get("error_reason") or r["error"]
        f = failures.setdefault(reason, {"reason": reason, "bundles": [], "configs": set(),
                                         "examples": []})
        if r["bundle"] not in f["bundles"]:
            f["bundles"].append(r["bundle"])
            if len(f["examples"]) < 3:
                f["examples"].append(r["error"])
        f["configs"].add(r["config"])
    fails = sorted(({"reason": f["reason"], "count": len(f["bundles"]), "bundles": f["bundles"],
                     "configs": sorted(f["configs"]), "examples": f["examples"]}
                    for f in failures.values()), key=lambda f: (-f["count"], f["reason"]))
    bundles = list(dict.fromkeys(r["bundle"] for r in rows))
    failed_bundles = {r["bundle"] for r in rows if r.get("error")}
    replayed = {r["bundle"]: r for r in rows if r.get("agreement") is not None}
    return {
        "bundles": len(bundles),
        "rows": len(rows),
        "rows_ok": sum(1 for r in rows if not r.get("error")),
        "bundles_failed": len(failed_bundles),
        "bundles_replayed": len(replayed),
        "bundles_partial": sum(1 for r in replayed.values() if r.get("partial")),
        "events": sum(r.get("events") or 0 for r in replayed.values()),
        "kernels": dict(Counter(r.get("kernel") or "unknown" for r in replayed.values())
                        .most_common()),
        "configs": out_configs,
        "outliers": outliers,
        "failures": fails,
    }
