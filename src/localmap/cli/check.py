"""``localmap check``: run the exhaustive checker on named scenarios and print verdicts.

Models nothing itself; it drives :func:`localmap.check.run_checks` and renders the
verdict table (scenario, verdict, states, seconds, states/s) and, for each unsafe scenario, the
shortest counterexample as a step-by-step trace (CPU, instruction, TLB entry, physical page).
``--json`` prints the list of result objects instead.
"""

from __future__ import annotations

import json
import sys

from localmap.cli.common import add_command, cpu_count, positive, progress
from localmap.cli.console import safe_row, stdout_console
from localmap.errors import LocalmapError
from localmap.units import fmt_count, fmt_seconds


def register(subparsers) -> None:
    p = add_command(
        subparsers, "check", help="exhaustively check this_cpu safety and the page-table lifecycle",
        description="Explore every interleaving of small configurations of the model and print "
        "each scenario's verdict; for an unsafe one, the shortest counterexample. Without "
        "SCENARIO, the named set of scenarios (this_cpu and the page-table lifecycle, the "
        "register fix-up design, code patching under text replication); 'all' adds the extra "
        "twins and references.")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="scenario names (see --list), or 'all'")
    p.add_argument("--cpus", type=cpu_count, default=None, metavar="N",
                   help="number of CPUs of each explored configuration (default: per scenario, 2)")
    p.add_argument("--tasks", type=positive, default=None, metavar="N",
                   help="tasks (default: per scenario, 2)")
    p.add_argument("--list", action="store_true",
                   help="list every scenario with its verdict (explored at its default size) and exit")
    p.add_argument("--load", action="append", default=[], metavar="FILE",
                   help="import a Python file that registers scenarios (localmap.check.api); repeatable")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--mmu", action="store_true", help="re-execute this_cpu-op counterexamples "
                   "through the page-table and TLB model of the design and report what it reaches")
    p.set_defaults(func=cmd_check)


def _list(args, out) -> int:
    from localmap.check import list_scenarios
    from localmap.check.scenarios import ALL_SCENARIOS

    with progress(args) as prog:
        prog.start("check --list", total=len(ALL_SCENARIOS))

        def step(name, first=[True]):  # noqa: B006 - one call per scenario, before it runs
            if not first[0]:
                prog.advance()
            first[0] = False
            prog.update(description=f"check {name}")

        rows = list_scenarios(progress=step)
    for r in rows:
        tag = " [extra]" if r["extra"] else ""
        verdict = r["verdict"] + (f" ({r['property']})" if r["property"] else "")
        twin = f" (safe twin: {r['twin']}, mechanism: {r['mechanism']})" if r["twin"] else ""
        print(f"{r['name']}: {verdict}{tag}: {r['summary']}{twin}", file=out)
    return 0


def _trace_lines(steps: list[dict]) -> list[str]:
    lines = []
    for s in steps:
        where = f"CPU{s['cpu']}" if s["cpu"] is not None else "-"
        lines.append(f"  {s['step']:>2}. [{where:>4}] {s['actor']}: {s['action']}")
        for ins in s["instructions"]:
            lines.append(f"        {ins}")
        for a in s["accesses"]:
            if "ttbr1" in a:
                lines.append(f"        TTBR1 <- {a['ttbr1']} ({a['page']})")
            else:
                tail = f" -> PA {a['pa']} ({a['page']})" if "pa" in a else ""
                lines.append(f"        VA {a['va']}: TLB {a['tlb']}{tail}")
        if "violation" in s:
            lines.append(f"        VIOLATION {s['violation']}")
    return lines


def cmd_check(args) -> int:
    if args.load:
        from localmap.check.api import load

        for f in args.load:
            load(f)
    if args.list:
        return _list(args, sys.stdout)
    if args.cpus is not None and args.cpus < 1:
        raise LocalmapError("--cpus must be at least 1")
    if args.tasks is not None and args.tasks < 1:
        raise LocalmapError("--tasks must be at least 1")
    from localmap.check import run_checks
    from localmap.check.scenarios import resolve

    scs = resolve(args.scenarios)
    results = []
    with progress(args) as prog:
        prog.start("check", total=len(scs))
        for sc in scs:
            prog.update(description=f"check {sc.name}")
            results += run_checks([sc], args.cpus, args.tasks, mmu=args.mmu)
            prog.advance()
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    out = stdout_console(highlight=False)
    table = Table(title="localmap check: exhaustive exploration (BFS, shortest counterexamples)")
    for col in ("scenario", "verdict", "cpus", "tasks", "states", "seconds", "states/s",
                "property"):
        table.add_column(col, no_wrap=True, justify="right" if col in ("cpus", "tasks", "states", "seconds",
                                                          "states/s") else "left")
    total_states = total_s = 0.0
    for r in results:
        total_states += r["states"]
        total_s += r["seconds"]
        safe_row(table, r["scenario"], r["verdict"], str(r["cpus"]), str(r["tasks"]),
                      str(r["states"]), f"{r['seconds']:.3f}", f"{r['states_per_second']:.0f}",
                      r["property"] or "")
    out.print(table)
    rate = total_states / total_s if total_s else 0.0
    out.print(f"{len(results)} scenario(s), {fmt_count(int(total_states))} states in "
              f"{fmt_seconds(total_s)} ({fmt_count(round(rate))} states/s)")
    for r in results:
        if r["counterexample"]:
            out.print(f"\n{r['scenario']}: UNSAFE, shortest counterexample "
                      f"({len(r['counterexample'])} steps)")
            out.print("\n".join(_trace_lines(r["counterexample"])), markup=False)
            mr = r.get("mmu_replay")
            if mr:
                out.print(f"  re-executed through the MMU model: {mr['property']} at step "
                          f"{mr['step']}: {mr['message']}", markup=False)
            elif args.mmu:
                out.print("  (not re-executable through the MMU model: worker-driven, exception-path "
                          "or code-patching scenario)")
    return 0
