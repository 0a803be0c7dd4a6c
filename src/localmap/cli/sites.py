"""``localmap sites``: this_cpu access sites of a real arm64 kernel image, as terminal tables.

Drives :func:`localmap.perf.sites.analyse` (the model and its simplifications are described
there). ``IMAGE`` may be ``debian:arm64`` or ``debian:rt-arm64`` to fetch (cached) Debian's
6.12.117 image and the real System.map from its -dbg package.
"""

from __future__ import annotations

import json
import sys

from localmap.cli.common import add_command, positive, progress
from localmap.cli.console import stdout_console


def resolve_image(image: str, kallsyms: str | None, system_map: str | None) -> tuple[str, str | None]:
    """``IMAGE`` and its symbols; ``debian:FLAVOUR`` is fetched (cached) with its System.map."""
    symbols = kallsyms or system_map
    if image.startswith("debian:"):
        from localmap.debian import debian_kernel, debian_system_map
        flavour = image.split(":", 1)[1]
        path, _stub = debian_kernel(flavour)
        return str(path), symbols or str(debian_system_map(flavour))
    return image, symbols


def run(args) -> int:
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    image, symbols = resolve_image(args.image, args.kallsyms, args.system_map)
    img = load_image(image, symbols, config=args.config)
    with progress(args) as prog:
        rep = analyse(img, progress=prog)
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
    p = add_command(subparsers, "sites", help="this_cpu sites in an arm64 kernel image",
                    description="Find every this_cpu access in an arm64 kernel image, classify "
                    "it (operation, form, preemption protection) and count the instructions the "
                    "local mapping removes.")
    p.add_argument("image", metavar="IMAGE",
                   help="raw arm64 Image or Debian vmlinuz, vmlinux ELF, or debian:arm64 | debian:rt-arm64")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE", help="/proc/kallsyms of the image's kernel (KASLR off), may be .gz")
    g.add_argument("--system-map", metavar="FILE", help="System.map of the image's build")
    p.add_argument("--config", metavar="FILE", help="the kernel's .config (default: config-* beside IMAGE)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--per-site", action="store_true", help="with --json: list every site")
    p.add_argument("--top", type=positive, default=25, metavar="N", help="functions to list (default 25)")
    p.set_defaults(func=run)
