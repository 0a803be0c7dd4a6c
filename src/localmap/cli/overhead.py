"""``localmap overhead``: what the per-CPU page tables and the local mapping cost, as tables.

Drives :mod:`localmap.analysis.overhead`. Synthetic form: K live chunks, every page populated,
one group, all CPUs online. Bundle form: the bundle's allocation history replayed on N CPUs.
``--json`` prints the figures of the one configuration asked for; the tables compare granules
and CPU counts, with the talk's figure beside the model's.
"""

from __future__ import annotations

import argparse
import json
import textwrap

from localmap.analysis import overhead as ov
from localmap.arch.arm64.pgtable import GRANULES, VA_BITS_CHOICES, parse_granule
from localmap.cli.common import add_command, info, progress
from localmap.cli.console import stdout_console
from localmap.errors import LocalmapError
from localmap.units import fmt_bytes, parse_size

EXAMPLES = """
examples:
  synthetic:  localmap overhead --granule 4K --va-bits 48 --cpus 160 --unit-size 192K --chunks 5
  a bundle:   localmap overhead BUNDLE --cpus 160 [--granule 16K --va-bits 48]
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "overhead",
        help="VA, page-table memory and page-table work of the design (synthetic or a replayed bundle)",
        description=textwrap.fill(
            "What the per-CPU page tables and the local mapping cost: local virtual address "
            "space, extra page-table memory and page-table work, for a synthetic machine or for "
            "a bundle's allocation history replayed on N CPUs.", 78) + "\n" + EXAMPLES,
        raw=True,
    )
    p.add_argument("bundle", nargs="?", metavar="BUNDLE",
                   help="capture bundle to replay; omit for the synthetic form")
    p.add_argument("--granule", help="page size: 4K, 16K or 64K (synthetic form: required)")
    p.add_argument("--va-bits", type=int, metavar="N", help="CONFIG_ARM64_VA_BITS (39/48/52 with 4K, 36/47/48/52 with 16K, 42/48/52 with 64K)")
    p.add_argument("--vabits-actual", type=int, metavar="N", help="VA bits the CPU runs with (52-bit kernels fall back to 48/47 without LPA2)")
    p.add_argument("--cpus", type=int, metavar="N", help="number of CPUs of the machine (all online)")
    p.add_argument("--unit-size", default=None, metavar="SIZE",
                   help="percpu unit size, e.g. 192K (synthetic form)")
    p.add_argument("--chunks", type=int, default=None, metavar="K",
                   help="live chunks, the first included (synthetic form)")
    p.add_argument("--window-bytes", default=None, metavar="SIZE",
                   help="size of each window (default: one split-level entry)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--check", action="store_true", help="check the design's invariants after every step (slower)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cpus is None:
        raise LocalmapError("--cpus N is required")
    if args.cpus < 1:
        raise LocalmapError(f"--cpus must be at least 1 (got {args.cpus})")
    window = parse_size(args.window_bytes) if args.window_bytes else None
    console = stdout_console()
    if args.bundle:
        if args.unit_size or args.chunks:
            raise LocalmapError("--unit-size and --chunks belong to the synthetic form (no BUNDLE)")
        if args.json:
            with progress(args) as prog:
                res = ov.overhead_bundle(args.bundle, args.cpus, args.granule, args.va_bits,
                                         checked=args.check, progress=prog)
            print(json.dumps(res, indent=2))
            return 0
        # the other granules side by side, all fed by the same single replay
        specs = [(args.cpus, args.granule, args.va_bits, True)]
        for g in GRANULES:
            vab = args.va_bits
            if vab is not None and vab not in VA_BITS_CHOICES[parse_granule(g)]:
                vab = 48
            specs.append((args.cpus, g, vab, False))
        with progress(args) as prog:
            results = ov.overhead_bundles(args.bundle, specs, checked=args.check, progress=prog)
        if isinstance(results[0], LocalmapError):
            raise results[0]
        res = results[0]
        own = parse_granule(res["granule"])
        rows, notes = [res], []
        for (_, g, _, _), r in zip(specs[1:], results[1:]):
            if parse_granule(g) == own:
                continue
            if isinstance(r, LocalmapError):
                notes.append(f"{g}: {r.message}")
            else:
                rows.append(r)
        for r in rows:
            if r["granule"] == "4K" and r["cpus"] == ov.TALK_CPUS:
                r["talk_local_va_bytes"] = ov.TALK["local_va_bytes"]
                r["talk_pgtable"] = ov.TALK["pgtable_note"]
        console.print(rich_table(rows, title=f"overhead of {res['bundle']} replayed on {args.cpus} CPUs "
                                               f"(local VA column: final; peak {fmt_bytes(res['local_va_peak_bytes'])})"))
        console.print(ops_table(res))
        for n in notes:
            info(args, f"not shown: {n}")
        return 0
    missing = [n for n, v in (("--granule", args.granule), ("--va-bits", args.va_bits),
                              ("--unit-size", args.unit_size), ("--chunks", args.chunks)) if v is None]
    if missing:
        raise LocalmapError(f"the synthetic form needs {', '.join(missing)} (or give a BUNDLE)")
    res = ov.overhead_synthetic(args.granule, args.va_bits, args.cpus, args.unit_size, args.chunks,
                                vabits_actual=args.vabits_actual, window_bytes=window)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    cpus_list = sorted(set(ov.DEFAULT_CPUS) | {args.cpus})
    pairs = []
    for g in GRANULES.values():
        vab = args.va_bits if args.va_bits in VA_BITS_CHOICES[g] else 48
        pairs.append((g, vab))
    rows = ov.overhead_table(cpus_list, res["unit_size"], args.chunks, pairs)
    console.print(rich_table(rows, title=f"synthetic overhead: {args.chunks} chunks of "
                                         f"{fmt_bytes(res['unit_size'])} units, every page populated"))
    console.print(f"asked for: {res['granule']}/{res['va_bits']} {args.cpus} CPUs -> split level L{res['split_level']}, "
                  f"local VA {fmt_bytes(res['local_va_bytes'])}, extra page tables {fmt_bytes(res['pgtable_extra_bytes'])} "
                  f"(closed form agrees: {res['closed_form_agrees']})")
    return 0


def ops_table(res: dict):
    """Page-table work per operation, design beside today's kernel."""
    from rich.table import Table

    t = Table(title=f"page-table work, {res['granule']}/{res['va_bits']} on {res['cpus']} CPUs: design vs today")
    for col in ("operation", "count", "entries written (design)", "of which local+sync+copy", "TLBI (design)",
                "entries written (today)", "TLBI (today)"):
        t.add_column(col, justify="left" if col == "operation" else "right")
    base = res.get("baseline_ops", {})
    for op, d in res["ops"].items():
        if op.startswith("this_cpu"):
            continue
        ent = sum(v for k, v in d.items() if k.startswith("entries_") and k != "entries_per_op")
        extra = sum(d.get(k, 0) for k in ("entries_local", "entries_sync", "entries_copy"))
        tl = sum(v for k, v in d.items() if k.startswith("tlbi_") and k != "tlbi_per_op")
        b = base.get(op, {})
        bent = sum(v for k, v in b.items() if k.startswith("entries_") and k != "entries_per_op")
        btl = sum(v for k, v in b.items() if k.startswith("tlbi_") and k != "tlbi_per_op")
        t.add_row(op, str(d.get("count", 0)), str(ent), str(extra), str(tl), str(bent) if b else "-",
                  str(btl) if b else "-")
    return t


def rich_table(rows: list[dict], title: str = "localmap overhead"):
    """The overhead rows (synthetic grid or replayed bundles) as one table."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("granule/VA", "CPUs", "unit", "chunks", "split", "root copy", "private tables/CPU",
                "local VA", "extra page tables", "talk"):
        t.add_column(col, justify="right" if col not in ("granule/VA", "private tables/CPU", "talk") else "left")
    for r in rows:
        if "error" in r:
            t.add_row(f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), "", "", "", "", r["error"], "", "", "")
            continue
        talk = ""
        if "talk_local_va_bytes" in r:
            talk = f"VA {fmt_bytes(r['talk_local_va_bytes'])}; {r['talk_pgtable']}"
        t.add_row(
            f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), fmt_bytes(r["unit_size"]), str(r.get("chunks", r.get("live_chunks", ""))),
            f"L{r['split_level']}", fmt_bytes(r["root_copy_bytes"]),
            "/".join(str(v) for v in r["private_tables_per_cpu"].values())
            + f" (L{'-'.join(r['private_tables_per_cpu'])})",
            fmt_bytes(r["local_va_bytes"]), fmt_bytes(r["pgtable_extra_bytes"]), talk,
        )
    return t
