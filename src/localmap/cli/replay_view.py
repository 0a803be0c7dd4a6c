"""Terminal view of an allocator replay (:class:`~localmap.analysis.replay.ReplayResult`).

Models nothing; it prints what the replay computed: geometry against dmesg, how the first
chunk's addresses and pre-trace occupancy were obtained, the agreement, every disagreement
class, the final allocator state in the spirit of ``percpu_stats``, the cross-checks labelled by
what they test, and the evidence that the trace is complete or partial.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from localmap.analysis.replay import CAUSES, ReplayResult
from localmap.arch.arm64.pgtable import granule_name
from localmap.cli.console import safe, safe_row, stdout_console
from localmap.units import fmt_bytes, fmt_seconds


def replay_tables(res: ReplayResult, show: int = 10) -> list:
    """The replay as a list of rich renderables (used by the replay command and evaluate)."""
    out: list = []
    g = res.geometry
    d = res.as_dict()

    t = Table(title="First chunk geometry", title_justify="left", show_lines=False)
    t.add_column("")
    for col in ("static", "reserved", "dynamic", "unit"):
        t.add_column(col, justify="right")
    safe_row(t, "kernel (dmesg)", str(g.static_size), str(g.reserved_size), str(g.dyn_size),
              str(g.unit_size))
    if g.derived:
        safe_row(t, "model (config + CPUs)", str(g.derived["static_size"]),
                  str(g.derived["reserved_size"]), str(g.derived["dyn_size"]),
                  str(g.derived["unit_size"]))
    t.caption = (f"{g.mode} mode, {granule_name(g.page_size)} pages, {g.nr_cpus} possible CPUs; "
                 + ("model equals dmesg" if g.matches_dmesg else
                    "no derivation (no config)" if g.matches_dmesg is None else
                    "MODEL DIFFERS FROM DMESG"))
    out.append(t)

    a = res.base_info
    t = Table(title="Addresses", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    safe_row(t, "pcpu_base_addr", a["pcpu_base_addr"])
    safe_row(t, "__per_cpu_start", a["per_cpu_start"] + (
        "  (= kallsyms)" if a.get("kallsyms_per_cpu_start") == a["per_cpu_start"] else ""))
    safe_row(t, "first chunk", f"{a['first_chunk_base']}  ({a['first_chunk_found_by']})")
    if a.get("reserved_chunk_base"):
        safe_row(t, "reserved chunk", a["reserved_chunk_base"])
    out.append(t)

    rc = res.reconstruction
    t = Table(title="Pre-trace occupancy (reconstructed, 0 free parameters)",
              title_justify="left")
    t.add_column("chunk")
    t.add_column("off", justify="right")
    t.add_column("size", justify="right")
    t.add_column("evidence")
    t.add_column("trace line", justify="right")
    for ar in rc["areas"][:show]:
        safe_row(t, ar["base_addr"], str(ar["off"]), str(ar["size"]), ar["evidence"],
                  str(ar["line"] or "-"))
    if len(rc["areas"]) > show:
        safe_row(t, "…", "", "", f"{len(rc['areas']) - show} more", "")
    if not rc["areas"]:
        safe_row(t, "-", "", "", "nothing needed: the trace is consistent with an empty start", "")
    t.caption = rc["method"]
    out.append(t)

    ag = d["agreement"]
    t = Table(title="Agreement with the kernel's allocation decisions", title_justify="left")
    for col in ("allocations", "same chunk and offset", "rate"):
        t.add_column(col, justify="right")
    t.add_column("", justify="left")
    safe_row(t, str(ag["total"]), str(ag["agree"]), f"{ag['overall']:.4%}", "all")
    safe_row(t, str(ag["nonatomic_total"]), str(ag["nonatomic_agree"]),
              f"{ag['nonatomic']:.4%}", "non-atomic")
    safe_row(t, str(ag["atomic_total"]), str(ag["atomic_agree"]),
              f"{ag['atomic']:.4%}" if ag["atomic_total"] else "-", "atomic")
    t.caption = (f"{ag['race_swaps']} allocation(s) replayed in the allocator's order; "
                 f"{res.nr_events} events ({res.nr_allocs} alloc, {res.nr_frees} free, "
                 f"{res.nr_creates} create, {res.nr_destroys} destroy, {res.nr_fails} fail"
                 + (f", {res.nr_fail_disagree} of them the model would have served"
                    if res.nr_fail_disagree else "") + ")")
    out.append(t)

    if res.reorders:
        t = Table(title="Events replayed in the allocator's order (printed in another)",
                  title_justify="left")
        for col in ("allocation line", "other line", "replayed as"):
            t.add_column(col)
        for ro in res.reorders[:show]:
            safe_row(t, str(ro["line"]), str(ro["other_line"]), ro["how"])
        out.append(t)

    bw = res.balance
    out.append(Text(
        f"Balance work: {bw.get('runs', 0)} runs ({bw.get('chunks_by_work', 0)} chunk(s) "
        f"created by the work, {bw.get('chunks_by_pcpu_alloc', 0)} by pcpu_alloc); "
        f"off until {bw['percpu_enable_async_by']}", style="dim"))

    if res.disagreements:
        t = Table(title="Disagreements by cause", title_justify="left")
        t.add_column("cause")
        t.add_column("count", justify="right")
        t.add_column("meaning")
        for cause, n in res.causes().most_common():
            safe_row(t, cause, str(n), CAUSES.get(cause, ""))
        out.append(t)
        t = Table(title=f"First {min(show, len(res.disagreements))} disagreements",
                  title_justify="left")
        for col in ("#", "line", "size/align", "kernel", "model", "cause", "call site"):
            t.add_column(col)
        for dd in res.disagreements[:show]:
            safe_row(t, str(dd.index), str(dd.line), f"{dd.size}/{dd.align}",
                      f"{dd.kernel[0]:x}+{dd.kernel[1]}",
                      "no space" if dd.model is None else f"{dd.model[0]:x}+{dd.model[1]}",
                      dd.cause, dd.call_site)
        out.append(t)

    fs = res.final_state()
    t = Table(title="Final allocator state", title_justify="left")
    for col in ("chunk", "kind", "pages pop/total", "used", "free", "allocs", "largest free",
                "frag"):
        t.add_column(col, justify="right" if col not in ("chunk", "kind") else "left")
    for c in fs["chunks"]:
        safe_row(t, c["base_addr"], c["kind"] + (" (isolated)" if c["isolated"] else ""),
                  f"{c['populated_pages']}/{c['nr_pages']}", fmt_bytes(c["used_bytes"]),
                  fmt_bytes(c["free_bytes"]), str(c["nr_alloc"]), fmt_bytes(c["max_free_run"]),
                  f"{c['fragmentation']:.0%}")
    t.caption = (f"unit {fmt_bytes(fs['unit_size'])} × {fs['nr_units']} units; {fs['nr_chunks']} chunks "
                 f"live ({fs['chunks_created']} created, {fs['chunks_destroyed']} destroyed in "
                 f"the trace); populated {fs['populated_pages']} pages/unit = "
                 f"{fmt_bytes(fs['populated_bytes'])} (meminfo Percpu)")
    out.append(t)

    if res.meminfo_check:
        t = Table(title="/proc/meminfo Percpu cross-check", title_justify="left")
        for col in ("phase", "meminfo", "model", "check", ""):
            t.add_column(col)
        for m in res.meminfo_check:
            safe_row(t, m["phase"], fmt_bytes(m["meminfo_bytes"]), fmt_bytes(m["model_bytes"]),
                      m["kind"], "ok" if m["ok"] else "MISMATCH")
        out.append(t)
    vc = res.vmalloc_check
    if vc is not None:
        t = Table(title="/proc/vmallocinfo cross-check (read at the end)", title_justify="left",
                  show_header=False)
        t.add_column(style="bold")
        t.add_column()
        safe_row(t, "pcpu_get_vm_areas areas", str(vc["kernel_areas"]))
        safe_row(t, "model's live dynamic chunk groups", str(vc["model_areas"]))
        safe_row(t, "same addresses and sizes", "yes" if vc["ok"] else
                  "NO: only in vmallocinfo " + ", ".join(vc["only_kernel"]) +
                  "; only in the model " + ", ".join(vc["only_model"]))
        out.append(t)
    checks = res.checks()
    if checks:
        t = Table(title="Cross-checks and what each tests (a model that predicts nothing still "
                  "passes the trace-completeness ones)", title_justify="left")
        for col in ("check", "tests", "", "detail"):
            t.add_column(col, overflow="fold")
        for c in checks:
            safe_row(t, c["check"], c["tests"], "ok" if c["ok"] else "FAILS", c["detail"])
        out.append(t)
    if res.completeness:
        t = Table(title="Is the trace the whole story? (the evidence behind 'partial')",
                  title_justify="left")
        for col in ("evidence", "source", "", "detail"):
            t.add_column(col, overflow="fold")
        for e in res.completeness:
            verdict = {True: "complete", False: "PARTIAL", None: "unknown"}[e["complete"]]
            safe_row(t, e["evidence"], e["source"], verdict, e["detail"])
        out.append(t)
    return out


def print_replay(res: ReplayResult, show: int = 10, console: Console | None = None) -> None:
    con = console or stdout_console()
    con.rule(f"[bold]percpu allocator replay: {safe(res.source)}")
    if res.partial:
        con.print("[bold yellow]PARTIAL REPLAY[/]: " + safe("; ".join(res.partial_reasons)))
    for note in res.geometry.notes:
        con.print(f"[yellow]note:[/] {safe(note)}")
    for r in replay_tables(res, show):
        con.print(r)
        con.print()
    con.print(f"read and replayed in {fmt_seconds(res.seconds)}")
