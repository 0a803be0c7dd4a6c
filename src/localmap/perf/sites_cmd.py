"""``localmap sites``: this_cpu access sites of a real arm64 kernel image (CLI of perf/sites.py).

Models nothing itself; see :mod:`localmap.perf.sites` for the model and its simplifications.
``IMAGE`` may be ``debian:arm64`` or ``debian:rt-arm64`` to fetch (cached) Debian's 6.12.117
image and the real System.map from its -dbg package.
"""

from __future__ import annotations

import argparse
import json
import sys
from localmap.report.console import stdout_console


def _resolve(args) -> tuple[str, str | None]:
    image = args.image
    symbols = args.kallsyms or args.system_map
    if image.startswith("debian:"):
        from localmap.debian import debian_kernel, debian_system_map
        flavour = image.split(":", 1)[1]
        path, _stub = debian_kernel(flavour)
        return str(path), symbols or str(debian_system_map(flavour))
    return image, symbols


def run(args: argparse.Namespace) -> int:
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    image, symbols = _resolve(args)
    img = load_image(image, symbols, config=args.config)
    rep = analyse(img, progress=not args.json)
    if args.json:
        json.dump(rep.to_json(per_site=args.per_site), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    con = stdout_console()
    tot = rep.totals()
    con.print(f"[bold]{rep.image}[/bold] ({rep.kind}, symbols: {rep.symbols})", highlight=False)
    con.print(f"preemption model {rep.preempt_model}, preempt count: {rep.preempt_count}; "
              f"text [{rep.text_start:#x}, {rep.text_end:#x}) = {rep.text_bytes} bytes", highlight=False)
    t = Table(title="whole image", header_style="bold")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("sites", "el2_reads", "functions", "replaceable", "removed_instructions", "removed_fast_path",
              "lse_alternatives", "vhe_alternatives"):
        t.add_row(k, str(tot[k]))
    for group in ("ops", "forms", "protection"):
        for k, v in tot[group].items():
            t.add_row(f"{group}: {k}", str(v))
    con.print(t)
    f = Table(title=f"top {args.top} functions by sites", header_style="bold")
    for col in ("function", "sites", "replaceable", "protected", "removed", "ops"):
        f.add_column(col, justify="left" if col in ("function", "ops") else "right")
    for r in rep.functions()[:args.top]:
        f.add_row(r["function"], str(r["sites"]), str(r["replaceable"]), str(r["protected"]),
                  str(r["removed"]), " ".join(f"{k}:{v}" for k, v in r["ops"].items()))
    con.print(f)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sites", help="this_cpu sites in an arm64 kernel image (capstone)",
                              description=__doc__.split("\n")[0])
    p.add_argument("image", metavar="IMAGE",
                   help="raw arm64 Image / Debian vmlinuz, vmlinux ELF, or debian:arm64 | debian:rt-arm64")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE", help="/proc/kallsyms dump (KASLR off), may be .gz")
    g.add_argument("--system-map", metavar="FILE", help="System.map of the same build")
    p.add_argument("--config", metavar="FILE", help="the kernel's .config (default: config-* beside IMAGE)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--per-site", action="store_true", help="with --json: every site")
    p.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    p.set_defaults(func=run)
