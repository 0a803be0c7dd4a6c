"""The fleet report: a fleet run's rows and aggregate as a :class:`~localmap.report.model.Report`.

Models nothing of the kernel. :func:`fleet_report` turns the rows of ``localmap fleet`` (one
per bundle x configuration) and their aggregate (:func:`localmap.fleet.aggregate.aggregate`)
into sections: the run, the distributions per configuration (nearest-rank p50/p90/p99, min,
max) with their cumulative distributions drawn, the outliers with the reason for each, and the
failed bundles grouped by reason. The terminal prints it with
:func:`localmap.cli.report_view.print_report`; :mod:`localmap.report.html` writes it as one
self-contained page.
"""

from __future__ import annotations

from typing import Any

from localmap.fleet.aggregate import METRICS, percentile
from localmap.report.model import Figure, Report, Section, Table
from localmap.report.svg import line_chart
from localmap.units import fmt_bytes, fmt_count, fmt_percent, fmt_seconds

PLOTTED = ("agreement", "local_va_bytes", "pgtable_extra_bytes")


def _fmt(col: str, v: float | None) -> str:
    if v is None:
        return "-"
    return fmt_percent(v, 2) if METRICS[col][1] == "fraction" else fmt_bytes(int(v))


def cdf(values: list[float]) -> list[tuple[float, float]]:
    """The cumulative distribution of ``values`` as a step line: ``(smallest value, 0)``, then
    ``(value, fraction of values <= it)`` at each distinct value, ascending."""
    s = sorted(values)
    n = len(s)
    out: list[tuple[float, float]] = [(s[0], 0.0)] if s else []
    for i, v in enumerate(s, 1):
        if len(out) > 1 and out[-1][0] == v:
            out[-1] = (v, i / n)
        else:
            out.append((v, i / n))
    return out


def _run_section(run: Any, agg: dict) -> Section:
    s = Section("fleet", "The fleet")
    if run is not None:
        s.facts.append(("sources", " ".join(run.sources)))
        s.facts.append(("results folder", run.results))
        s.facts.append(("configurations", ", ".join(c.label for c in run.configs)
                        + "  (granule/VA bits/CPUs; own: the bundle's)"))
    s.facts.append(("bundles", f"{fmt_count(agg['bundles'])}: {fmt_count(agg['bundles_replayed'])}"
                               f" replayed, {fmt_count(agg['bundles_failed'])} with a failure"))
    if run is not None:
        s.facts.append(("this run", f"{fmt_count(run.ran)} bundles evaluated, "
                                    f"{fmt_count(run.done_before)} already in the results folder"))
        s.facts.append(("cluster", run.cluster))
        if run.ran:
            bpm = run.bundles_per_minute
            s.facts.append(("throughput", f"{bpm:,.0f} bundles per minute ({fmt_count(run.ran)} in "
                                          f"{fmt_seconds(run.compute_seconds, 1)} on "
                                          f"{run.workers} workers; "
                                          f"{fmt_seconds(run.seconds, 1)} in all)"))
    s.facts.append(("events replayed", fmt_count(agg["events"])))
    if agg["kernels"]:
        s.facts.append(("kernels", ", ".join(f"{k} ({n})" for k, n in agg["kernels"].items())))
    if agg["bundles_partial"]:
        s.facts.append(("partial traces", f"{agg['bundles_partial']} (events lost, or chunks "
                                          "older than the trace: approximate reconstruction)"))
    for n in getattr(run, "notes", []) or []:
        s.notes.append(n)
    return s


def _distributions(rows: list[dict], agg: dict) -> Section:
    s = Section("distributions", "Distributions per configuration")
    t = Table("per bundle, over the bundles that succeeded (nearest-rank percentiles)",
              ["measure", "configuration", "bundles", "failed", "min", "p50", "p90", "p99", "max"],
              [])
    for col, (title, unit, side) in METRICS.items():
        for c in agg["configs"]:
            m = c["metrics"][col]
            t.rows.append([title, c["config"], fmt_count(c["ok"]), fmt_count(c["failed"])]
                          + [_fmt(col, m.get(k)) for k in ("min", "p50", "p90", "p99", "max")])
    s.tables.append(t)
    by_config: dict[str, list[dict]] = {}
    for r in rows:
        if not r.get("error"):
            by_config.setdefault(r["config"], []).append(r)
    for col in PLOTTED:
        title, unit, _ = METRICS[col]
        series = [(label, cdf([r[col] for r in rs if r.get(col) is not None]))
                  for label, rs in by_config.items()]
        series = [(n, pts) for n, pts in series if pts]
        if not series:
            continue
        frac = unit == "fraction"
        lowest = min(x for _, p in series for x, _ in p)
        svg = line_chart(f"fleet-cdf-{col}", series, xlabel=title,
                         ylabel="fraction of bundles at or below", step=True,
                         xlog=not frac and all(x > 0 for _, p in series for x, _ in p),
                         yfmt=lambda v: f"{100 * v:.0f} %",
                         xfmt=(lambda v: f"{100 * v:.2f} %") if frac else (lambda v: fmt_bytes(int(v))),
                         xlim=(min(lowest, 0.99), 1.0) if frac else None)
        s.figures.append(Figure(f"fleet-cdf-{col}", f"{title}: cumulative distribution", svg,
                                caption="Fraction of the bundles (y) whose value is at most x, one "
                                        "line per configuration.", data=dict(series)))
    s.figures.extend(_against_cpus(rows))
    return s


def _against_cpus(rows: list[dict]) -> list[Figure]:
    """Extra page tables against the CPU count, when the fleet ran several CPU counts: the
    p50 and the max over the bundles, one pair of lines per granule/VA."""
    groups: dict[str, dict[int, list[int]]] = {}
    for r in rows:
        if r.get("error") or r.get("pgtable_extra_bytes") is None:
            continue
        key = f"{r['granule']}/{r['va_bits']}"
        groups.setdefault(key, {}).setdefault(r["cpus"], []).append(r["pgtable_extra_bytes"])
    if not any(len(by) > 1 for by in groups.values()):
        return []
    series = []
    for key, by in groups.items():
        if len(by) < 2:
            continue
        xs = sorted(by)
        series.append((f"{key} p50", [(x, percentile(by[x], 50)) for x in xs]))
        series.append((f"{key} max", [(x, max(by[x])) for x in xs]))
    svg = line_chart("fleet-pgtable-cpus", series, xlabel="CPUs", ylabel="extra page tables",
                     xlog=True, ylog=True)
    return [Figure("fleet-pgtable-cpus", "extra page tables against CPU count", svg,
                   caption="Per granule/VA bits: the median and the largest bundle at each CPU "
                           "count the fleet ran.", data=dict(series))]


def _outliers(agg: dict, limit: int) -> Section:
    s = Section("outliers", "Outliers")
    out = agg["outliers"]
    if not out:
        s.facts.append(("outliers", "none: every bundle lies within its configuration's fences"))
    else:
        t = Table(f"bundles beyond Tukey's fences of their configuration ({len(out)})",
                  ["bundle", "configuration", "measure", "value", "why"], [])
        for o in out[:limit]:
            t.rows.append([o["name"] or o["bundle"], o["config"], o["title"], o["text"], o["why"]])
        s.tables.append(t)
        if len(out) > limit:
            s.notes.append(f"{len(out) - limit} more outliers not listed (raise --outliers).")
    s.notes.append("Outlier: below Q1 - 1.5 IQR (agreement) or above Q3 + 1.5 IQR (sizes) of "
                   "its configuration, nearest-rank quartiles.")
    return s


def _failures(agg: dict, limit: int) -> Section:
    s = Section("failures", "Failed bundles")
    if not agg["failures"]:
        s.facts.append(("failures", "none"))
        return s
    t = Table("failures by reason", ["reason", "bundles", "configurations", "example"], [])
    for f in agg["failures"][:limit]:
        t.rows.append([f["reason"], fmt_count(f["count"]), ", ".join(f["configs"]),
                       f["examples"][0]])
    s.tables.append(t)
    if len(agg["failures"]) > limit:
        s.notes.append(f"{len(agg['failures']) - limit} more reasons not listed.")
    return s


def fleet_report(rows: list[dict], agg: dict, run: Any = None, *, limit: int = 10) -> Report:
    """The report of a fleet's ``rows`` and their aggregate ``agg``; ``run`` (a
    :class:`localmap.fleet.run.FleetRun`) adds how it ran. ``limit``: outliers and failure
    reasons listed."""
    label = " ".join(run.sources) if run is not None else f"{agg['bundles']} bundles"
    rep = Report(title="localmap fleet: the design across many captures", bundle=label,
                 subject="sources", command="localmap fleet")
    rep.sections = [_run_section(run, agg), _distributions(rows, agg), _outliers(agg, limit),
                    _failures(agg, limit)]
    rep.seconds = run.seconds if run is not None else 0.0
    return rep
