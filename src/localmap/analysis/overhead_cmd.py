"""``localmap overhead``: what the per-CPU page tables and the local mapping cost.

Synthetic: ``localmap overhead --granule 4K --va-bits 48 --cpus 160 --unit-size 192K --chunks 5``
(K live chunks, every page populated, one group, all CPUs online). Real:
``localmap overhead BUNDLE --cpus N [--granule G --va-bits N]`` (the bundle's allocation history
replayed on N CPUs). ``--json`` prints the figures of the one configuration asked for; the human
form prints a table across granules and CPU counts with the talk's figure beside the model's.
"""

from __future__ import annotations

import argparse
import json
import sys

from localmap.analysis import overhead as ov
from localmap.arch.arm64.pgtable import VA_BITS_CHOICES, parse_granule
from localmap.errors import LocalmapError
from localmap.report.console import stdout_console

GRID_CPUS = (1, 4, 64, 160, 1024, 4096)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "overhead",
        help="VA, page-table memory and page-table work of the design (synthetic or a replayed bundle)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", nargs="?", help="capture bundle (folder) to replay; omit for the synthetic form")
    p.add_argument("--granule", help="page size: 4K, 16K or 64K (synthetic: required unless --json is off)")
    p.add_argument("--va-bits", type=int, help="CONFIG_ARM64_VA_BITS (39/48/52 with 4K, 36/47/48/52 with 16K, 42/48/52 with 64K)")
    p.add_argument("--vabits-actual", type=int, help="VA bits the CPU runs with (52-bit kernels fall back to 48/47 without LPA2)")
    p.add_argument("--cpus", type=int, help="number of CPUs (all online)")
    p.add_argument("--unit-size", default=None, help="percpu unit size, e.g. 192K (synthetic)")
    p.add_argument("--chunks", type=int, default=None, help="live chunks, the first included (synthetic)")
    p.add_argument("--window-bytes", default=None, help="size of each window (default: one split-level entry)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--check", action="store_true", help="check invariants I1-I5 after every step (slower)")
    t = p.add_argument_group("kernel text replication (--text-replication)")
    t.add_argument("--text-replication", action="store_true",
                   help="cost of replicating kernel text + rodata on the per-CPU tables (arm64 4K/48; "
                   "image range from BUNDLE's kallsyms, else Debian 6.12.117 arm64's)")
    t.add_argument("--nodes", type=int, default=None, help="NUMA nodes (default: a table for 1, 2, 4, 8)")
    t.add_argument("--per", choices=("node", "cpu"), default="node", help="one copy per node (default) or per CPU")
    t.add_argument("--modules-bytes", default="0", help="module text to account, e.g. 8M (BUNDLE: from vmallocinfo)")
    t.add_argument("--replicate-modules", action="store_true", help="replicate module text as well")
    t.add_argument("--mapping", choices=("pte", "block"), default="pte",
                   help="image leaves: pages (default) or blocks of the level above")
    p.set_defaults(func=run)


def _text_replication(args: argparse.Namespace, console) -> int:
    from localmap.design.text_replication import text_replication_cost, text_replication_table

    cpus = args.cpus if args.cpus is not None else 160
    kw = dict(modules_bytes=ov.parse_size(args.modules_bytes), replicate_modules=args.replicate_modules,
              mapping=args.mapping)
    if args.bundle:
        got = _bundle_image_range(args.bundle)
        if kw["modules_bytes"]:  # an explicit --modules-bytes wins over the bundle's vmallocinfo
            got.pop("modules_bytes", None)
        kw.update(got)
    if args.nodes is not None:
        res = text_replication_cost(args.nodes, cpus, per=args.per, **kw)
        rows = [res]
    else:
        rows = text_replication_table(cpus=cpus, **kw)
    if args.json:
        print(json.dumps(rows[0] if args.nodes is not None else rows, indent=2))
        return 0
    from rich.table import Table

    r0 = rows[0]
    t = Table(title=f"kernel text replication on per-CPU tables: {cpus} CPUs, image {ov.human(r0['image_bytes'])} "
                    f"({r0['image_range'][0]}-{r0['image_range'][1]}), {r0['mapping']} leaves")
    for col in ("copies per", "nodes", "replicas", "memory", "page tables", "tables/replica", "module tables/replica",
                "synced entries/replica", "writes per patch"):
        t.add_column(col, justify="left" if col in ("copies per", "tables/replica", "module tables/replica") else "right")
    for r in rows:
        t.add_row(r["per"], str(r["nodes"]), str(r["replicas"]), ov.human(r["memory_bytes"]),
                  ov.human(r["pgtable_bytes"]), " ".join(f"{k}:{v}" for k, v in r["private_tables_per_replica"].items()),
                  " ".join(f"{k}:{v}" for k, v in r["module_tables_per_replica"].items()) or "-",
                  str(r["synced_entries_per_replica"]), str(r["per_patch"]["copies_written"]))
    console.print(t)
    pp = r0["per_patch"]
    console.print("per patched instruction, for each copy: map its poke alias, write, unmap, local TLBI, "
                  "D-cache clean, I-cache invalidate by the copy's alias; then an isb on every CPU "
                  f"({pp['cross_cpu_isb']}). `localmap check ktr-patch-one-copy ktr-patch-all-copies` "
                  "shows why each step is needed.", highlight=False)
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


def _progress_enabled() -> bool:
    return sys.stderr.isatty()


def run(args: argparse.Namespace) -> int:
    if args.text_replication:
        return _text_replication(args, stdout_console())

    if args.cpus is None:
        raise LocalmapError("--cpus N is required")
    if args.cpus < 1:
        raise LocalmapError(f"--cpus must be at least 1 (got {args.cpus})")
    window = ov.parse_size(args.window_bytes) if args.window_bytes else None
    console = stdout_console()
    if args.bundle:
        if args.unit_size or args.chunks:
            raise LocalmapError("--unit-size and --chunks belong to the synthetic form (no BUNDLE)")
        if args.json:
            res = ov.overhead_bundle(args.bundle, args.cpus, args.granule, args.va_bits,
                                     checked=args.check, progress=_progress_enabled())
            print(json.dumps(res, indent=2))
            return 0
        # the other granules side by side, all fed by the same single replay
        specs = [(args.cpus, args.granule, args.va_bits, True)]
        for g in ("4K", "16K", "64K"):
            vab = args.va_bits
            if vab is not None and vab not in VA_BITS_CHOICES[parse_granule(g)]:
                vab = 48
            specs.append((args.cpus, g, vab, False))
        results = ov.overhead_bundles(args.bundle, specs, checked=args.check,
                                      progress=_progress_enabled())
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
        console.print(ov.rich_table(rows, title=f"overhead of {res['bundle']} replayed on {args.cpus} CPUs "
                                                  f"(local VA column: final; peak {ov.human(res['local_va_peak_bytes'])})"))
        console.print(ops_table(res))
        for n in notes:
            console.print(f"not shown: {n}")
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
    cpus_list = sorted(set(GRID_CPUS) | {args.cpus})
    pairs = []
    for g in (4096, 16384, 65536):
        vab = args.va_bits if args.va_bits in VA_BITS_CHOICES[g] else 48
        pairs.append((g, vab))
    rows = ov.overhead_table(cpus_list, res["unit_size"], args.chunks, pairs)
    console.print(ov.rich_table(rows, title=f"synthetic overhead: {args.chunks} chunks of "
                                            f"{ov.human(res['unit_size'])} units, every page populated"))
    console.print(f"asked for: {res['granule']}/{res['va_bits']} {args.cpus} CPUs -> split level L{res['split_level']}, "
                  f"local VA {res['local_va_bytes']} bytes, extra page tables {res['pgtable_extra_bytes']} bytes "
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
