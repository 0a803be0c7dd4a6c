"""``localmap predict``: expected saving of a profiled workload, and its terminal tables.

Drives :func:`localmap.perf.summary.performance_summary` (sites, costs, prediction; assumptions
in :mod:`localmap.perf.predict`). Without ``--image`` it uses the shipped summary of Debian's
6.12.117 arm64 (PREEMPT_VOLUNTARY) and rt-arm64 (PREEMPT_RT) images, so both flavours are
compared.
"""

from __future__ import annotations

import json
import sys

from localmap.cli.common import add_command, progress
from localmap.cli.console import safe_row, stdout_console
from localmap.units import fmt_bytes


def run(args) -> int:
    from localmap.cli.sites import resolve_image
    from localmap.perf.summary import performance_summary

    image, symbols = args.image, args.kallsyms or args.system_map
    if image:
        image, symbols = resolve_image(image, args.kallsyms, args.system_map)
    with progress(args) as prog:
        summary = performance_summary(image=image, kallsyms=symbols, profile=args.profile,
                                      progress=prog)
    if args.json:
        json.dump({k: v for k, v in summary.items() if k != "flavours"} |
                  {"flavours": [{k: v for k, v in f.items() if k != "function_facts"} for f in summary["flavours"]]},
                  sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    render_performance(summary)
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "predict",
                    help="predict the saving of a perf profile from real this_cpu sites",
                    description="Predict how much of a profiled workload's time the local "
                    "mapping saves, from the this_cpu sites of a kernel image and per-core "
                    "costs. Default: the talk's profile against the shipped summary of "
                    "Debian's 6.12.117 arm64 and rt-arm64 images.")
    p.add_argument("--profile", metavar="PERF_REPORT",
                   help="text of 'perf report --stdio' or 'perf diff' (default: the talk's "
                   "backup-slide profile)")
    p.add_argument("--image", metavar="IMAGE",
                   help="kernel image: raw Image, vmlinux, debian:arm64 or debian:rt-arm64 "
                        "(default: the shipped summary of Debian's two 6.12.117 flavours)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE", help="/proc/kallsyms of the image's kernel (KASLR off)")
    g.add_argument("--system-map", metavar="FILE", help="System.map of the image's build")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def render_performance(summary: dict, console=None) -> None:
    """Print the performance section as rich tables."""
    from rich.table import Table

    from localmap.perf.talk import NOT_COMPARABLE

    con = console or stdout_console()
    con.print(f"[bold]this_cpu sites and what the local mapping removes[/bold]  (from {summary['source']})")
    t = Table(show_header=True, header_style="bold")
    for col in ("flavour", "preempt", "text", "sites", "replaceable", "protected", "removed instr",
                "fast-path", "LSE alts", "funcs"):
        t.add_column(col, justify="right" if col not in ("flavour", "preempt") else "left")
    for fl in summary["flavours"]:
        tot = fl["totals"]
        safe_row(t, fl["flavour"] + ("" if fl["preempt_count"] else f" ({NOT_COMPARABLE})"), fl["preempt_model"],
                  fmt_bytes(fl["text_bytes"]), str(fl["sites"]),
                  str(tot["replaceable"]), str(tot["protection"].get("preempt", 0)),
                  str(tot["removed_instructions"]), str(tot["removed_fast_path"]),
                  str(tot["lse_alternatives"]), str(tot["functions"]))
    con.print(t)

    c = Table(title="cost of one this_cpu RMW op (ns): before -> after the local mapping", header_style="bold")
    for col in ("core", "preempt count", "op", "before", "after", "saved (cycles)", "assumed"):
        c.add_column(col)
    for r in summary["costs"]:
        if not r["preempt_count"]:
            continue
        safe_row(c, r["core"], "yes", r["form"], f"{r['before_low_ns']:.2f}..{r['before_high_ns']:.2f}",
                  f"{r['after_ns']:.2f}", f"{r['saved_low_cycles']:.2f}..{r['saved_high_cycles']:.0f}",
                  ", ".join(r["assumed"]) or "-")
    con.print(c)
    con.print("  without PREEMPT_COUNT (Debian arm64 PREEMPT_VOLUNTARY) before == after: nothing is removed.")
    o = Table(title="this_cpu_add on other architectures (instruction sequences, Linux 6.12)", header_style="bold")
    for col in ("arch", "today", "with a local mapping", "cycles"):
        o.add_column(col)
    for r in summary.get("other_arches", []):
        safe_row(o, r["arch"], r["before"], r["after"], str(r["cycles"]))
    con.print(o)

    for pred in summary["predictions"]:
        p = Table(title=f"talk profile vs model ({pred['image']}, {pred['preempt_model']})", header_style="bold")
        for col in ("section", "symbol", "matched", "overhead %", "talk Δ", "sites", "protected",
                    "removed", "instr", "model Δ", "saved/call ns"):
            p.add_column(col)
        for r in pred["rows"]:
            safe_row(p, r["section"], r["symbol"], r["matched"] if r["match"] == "exact" else f"{r['matched']} ({r['match']})",
                      f"{r['overhead']:.2f}", "-" if r["measured_delta"] is None else f"{r['measured_delta']:+.2f}",
                      str(r["sites"]), str(r["protected"]), str(r["removed_fast"]), str(r["instructions"]),
                      f"{r['predicted_delta']:+.3f}",
                      "{:.1f}..{:.1f}".format(*r["saved_per_call_ns"]))
        con.print(p)
        con.print(f"  saved/call: removable sites x the preempt bracket on {pred['rows'][0]['core'] if pred['rows'] else '-'} "
                  "(fully overlapped .. serial), assuming each removable site runs once per call", markup=False)
        for sec, tot in pred["sections"].items():
            talk = "-" if tot["talk"] is None else f"{tot['talk']:+.2f}"
            con.print(f"  {sec or 'profile'}: model {tot['model']:+.3f} points, talk {talk} points",
                      markup=False)
        con.print(f"  image-wide static share of removable fast-path instructions "
                  f"{100 * pred['image_static_share']:.3f}% (talk, kernel build: sys "
                  f"{summary['talk_kernel_build']['sys_time']})", markup=False)
    for prof in summary.get("measured", []):
        from localmap.cli.lab import render_profile
        con.print(f"[bold]measured per operation (dynamic profile, {prof['kernel']['label']})[/bold]")
        render_profile(prof, con)
    con.print("[bold]assumptions[/bold]")
    for a in summary["site_assumptions"] + summary["prediction_assumptions"]:
        con.print(f"  - {a}", markup=False, highlight=False)
