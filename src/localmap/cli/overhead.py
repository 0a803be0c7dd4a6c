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
from localmap.cli.common import add_command, cpu_count, info, option, positive, progress, whole
from localmap.cli.console import safe_row, stdout_console
from localmap.errors import LocalmapError
from localmap.units import fmt_bytes, parse_size

EXAMPLES = """
examples:
  synthetic:  localmap overhead --granule 4K --va-bits 48 --cpus 160 --unit-size 192K --chunks 5
  a bundle:   localmap overhead BUNDLE --cpus 160 [--granule 16K --va-bits 48]
  text replication:  localmap overhead --text-replication [--nodes 4] [--per cpu] [BUNDLE]
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
    p.add_argument("--va-bits", type=whole(1, 64), metavar="N", help="CONFIG_ARM64_VA_BITS (39/48/52 with 4K, 36/47/48/52 with 16K, 42/48/52 with 64K)")
    p.add_argument("--vabits-actual", type=whole(1, 64), metavar="N", help="VA bits the CPU runs with (52-bit kernels fall back to 48/47 without LPA2)")
    p.add_argument("--cpus", type=cpu_count, metavar="N", help="number of CPUs of the machine (all online)")
    p.add_argument("--unit-size", default=None, metavar="SIZE",
                   help="percpu unit size, e.g. 192K (synthetic form)")
    p.add_argument("--chunks", type=positive, default=None, metavar="K",
                   help="live chunks, the first included (synthetic form)")
    p.add_argument("--window-bytes", default=None, metavar="SIZE",
                   help="size of each window (default: one split-level entry)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--check", action="store_true", help="check the design's invariants after every step (slower)")
    p.add_argument("--sync", action="store_true",
                   help="the sync's cost against CPU count (per sync, and per vmalloc of BUNDLE) "
                   "and the preallocation alternative's memory per granule/VA, then exit")
    t = p.add_argument_group("kernel text replication (--text-replication)")
    t.add_argument("--text-replication", action="store_true",
                   help="cost of replicating kernel text + rodata on the per-CPU tables (arm64 4K/48; "
                   "image range from BUNDLE's kallsyms, else Debian 6.12.117 arm64's)")
    t.add_argument("--nodes", type=positive, default=None, metavar="N",
                   help="NUMA nodes (default: a table for 1, 2, 4, 8)")
    t.add_argument("--per", choices=("node", "cpu"), default="node",
                   help="one copy per node (default) or per CPU")
    t.add_argument("--modules-bytes", default="0", metavar="SIZE",
                   help="module text to account, e.g. 8M (BUNDLE: from vmallocinfo)")
    t.add_argument("--replicate-modules", action="store_true", help="replicate module text as well")
    t.add_argument("--mapping", choices=("pte", "block"), default="pte",
                   help="image leaves: pages (default) or blocks of the level above")
    p.set_defaults(func=run)


def _text_replication(args: argparse.Namespace, console) -> int:
    from localmap.design.text_replication import text_replication_cost, text_replication_table

    cpus = args.cpus if args.cpus is not None else ov.TALK_CPUS
    kw = dict(modules_bytes=option("--modules-bytes", parse_size, args.modules_bytes, minimum=0), replicate_modules=args.replicate_modules,
              mapping=args.mapping)
    if args.bundle:
        got = _bundle_image_range(args.bundle)
        if kw["modules_bytes"]:  # an explicit --modules-bytes wins over the bundle's vmallocinfo
            got.pop("modules_bytes", None)
        kw.update(got)
    if args.nodes is not None:
        rows = [text_replication_cost(args.nodes, cpus, per=args.per, **kw)]
    else:
        rows = text_replication_table(cpus=cpus, **kw)
    if args.json:
        print(json.dumps(rows[0] if args.nodes is not None else rows, indent=2))
        return 0
    from rich.table import Table

    r0 = rows[0]
    t = Table(title=f"kernel text replication on per-CPU tables: {cpus} CPUs, image {fmt_bytes(r0['image_bytes'])} "
                    f"({r0['image_range'][0]}-{r0['image_range'][1]}), {r0['mapping']} leaves")
    for col in ("copies per", "nodes", "replicas", "memory", "page tables", "tables/replica", "module tables/replica",
                "synced entries/replica", "writes per patch"):
        t.add_column(col, justify="left" if col in ("copies per", "tables/replica", "module tables/replica") else "right")
    for r in rows:
        safe_row(t, r["per"], str(r["nodes"]), str(r["replicas"]), fmt_bytes(r["memory_bytes"]),
                  fmt_bytes(r["pgtable_bytes"]), " ".join(f"{k}:{v}" for k, v in r["private_tables_per_replica"].items()),
                  " ".join(f"{k}:{v}" for k, v in r["module_tables_per_replica"].items()) or "-",
                  str(r["synced_entries_per_replica"]), str(r["per_patch"]["copies_written"]))
    console.print(t)
    pp = r0["per_patch"]
    info(args, "per patched instruction, for each copy: map its poke alias, write, unmap, local TLBI, "
               "D-cache clean, I-cache invalidate by the copy's alias; then an isb on every CPU "
               f"({pp['cross_cpu_isb']}). `localmap check ktr-patch-one-copy ktr-patch-all-copies` "
               "shows why each step is needed.")
    return 0


def _bundle_image_range(bundle) -> dict:
    """[_stext, __end_rodata) and the module text of a bundle (kallsyms, vmallocinfo)."""
    from localmap.ingest.bundle import load_bundle
    from localmap.perf.image import read_symbol_file

    b = load_bundle(bundle)
    if b.kallsyms_path is None:
        raise LocalmapError("the bundle has no kallsyms: the image range is unknown", bundle)
    syms = read_symbol_file(b.kallsyms_path)
    names = ("_stext", "_etext", "__start_rodata", "__end_rodata")
    got = {n: syms.get(n) for n in names}
    missing = [n for n, v in got.items() if v is None]
    if missing:
        raise LocalmapError(f"kallsyms lacks {', '.join(missing)}", b.kallsyms_path)
    out = {"image_range": (got["_stext"], got["__end_rodata"]), "text_bytes": got["_etext"] - got["_stext"],
           "rodata_bytes": got["__end_rodata"] - got["__start_rodata"]}
    areas = b.vmallocinfo or []
    mods = sum(a.size for a in areas if a.caller.startswith(("execmem", "module_alloc", "load_module")))
    if mods:
        out["modules_bytes"] = mods
    return out


def run(args: argparse.Namespace) -> int:
    if args.sync:
        return run_sync(args)
    if args.text_replication:
        return _text_replication(args, stdout_console())
    if args.cpus is None:
        raise LocalmapError("--cpus N is required")
    window = option("--window-bytes", parse_size, args.window_bytes) if args.window_bytes else None
    if args.granule is not None:
        option("--granule", parse_granule, args.granule)
    if args.unit_size is not None:
        args.unit_size = option("--unit-size", parse_size, args.unit_size)
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
    if args.vabits_actual is not None:
        from localmap.arch.arm64.memory import KernelLayout
        from localmap.arch.arm64.pgtable import Geometry
        option("--vabits-actual", KernelLayout.for_geometry,
               option("--va-bits", Geometry, parse_granule(args.granule), args.va_bits),
               args.vabits_actual)
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
        safe_row(t, op, str(d.get("count", 0)), str(ent), str(extra), str(tl), str(bent) if b else "-",
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
            safe_row(t, f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), "", "", "", "", r["error"], "", "", "")
            continue
        talk = ""
        if "talk_local_va_bytes" in r:
            talk = f"VA {fmt_bytes(r['talk_local_va_bytes'])}; {r['talk_pgtable']}"
        safe_row(t, 
            f"{r['granule']}/{r['va_bits']}", str(r["cpus"]), fmt_bytes(r["unit_size"]), str(r.get("chunks", r.get("live_chunks", ""))),
            f"L{r['split_level']}", fmt_bytes(r["root_copy_bytes"]),
            "/".join(str(v) for v in r["private_tables_per_cpu"].values())
            + f" (L{'-'.join(r['private_tables_per_cpu'])})",
            fmt_bytes(r["local_va_bytes"]), fmt_bytes(r["pgtable_extra_bytes"]), talk,
        )
    return t



def run_sync(args: argparse.Namespace) -> int:
    """``--sync``: the sync's cost against CPU count, and the preallocation alternative."""
    from rich.table import Table

    cpus_list = sorted(set(ov.DEFAULT_CPUS) | ({args.cpus} if args.cpus else set()))
    granule, va_bits = args.granule or "4K", args.va_bits or 48
    if args.bundle and not (args.granule or args.va_bits):
        from localmap.ingest.bundle import load_bundle

        geom = ov._bundle_geometry(load_bundle(args.bundle), None, None)
        granule, va_bits = geom.page_size, geom.va_bits
    sync = ov.sync_cost(cpus_list, granule, va_bits, bundle=args.bundle,
                        vabits_actual=args.vabits_actual)
    pre = ov.preallocation_table()
    if args.json:
        print(json.dumps({"sync": sync, "preallocation": pre}, indent=2))
        return 0
    console = stdout_console()
    prof = sync["profile"]
    t = Table(title=f"the sync ({sync['granule']}/{sync['va_bits']}): an entry appearing in a "
                    "copied table, design vs today")
    cols = ["CPUs", "entries per new entry", "today", "TLBI", "entries per removed entry",
            "TLBI (vaae1is)"]
    if prof:
        cols.append("extra entries per vmalloc")
    for c in cols:
        t.add_column(c, justify="right")
    for r in sync["rows"]:
        row = [str(r["cpus"]), str(r["add_entries"]), str(r["add_entries_today"]),
               str(r["add_tlbi"]), str(r["remove_entries"]), str(r["remove_tlbi"])]
        if prof:
            row.append(f"{r['extra_entries_per_vmalloc']:.4f}")
        safe_row(t, *row)
    console.print(t)
    if prof:
        console.print(f"{args.bundle}: {prof['areas']} vmalloc areas needed "
                      f"{prof['synced_entries']} new entries of copied tables beyond the "
                      f"{prof['boot_entries']} of the boot mappings "
                      f"({prof['syncs_per_vmalloc']:.5f} syncs per vmalloc)")
    t = Table(title="the alternative: preallocate every copied-table entry of the growable "
                    "kernel ranges at boot (no sync ever; one-time, shared by all CPUs)")
    for c in ("granule/VA", "split", "vmalloc+modules", "vmemmap", "linear map", "total"):
        t.add_column(c, justify="left" if c == "granule/VA" else "right")
    for r in pre:
        reg = r["regions"]

        def cell(k):
            return f"{fmt_bytes(reg[k]['bytes'])} ({reg[k]['entries']})"

        safe_row(t, f"{r['granule']}/{r['va_bits']}", f"L{r['split_level']}", cell("vmalloc"),
                  cell("vmemmap"), cell("linear map"), fmt_bytes(r["all_bytes"]))
    console.print(t)
    return 0
