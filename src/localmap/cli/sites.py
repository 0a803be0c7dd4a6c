"""``localmap sites``: this_cpu access sites of a real kernel image, as terminal tables.

Drives :func:`localmap.perf.sites.analyse` (arm64) and :func:`localmap.perf.arches.analyse_arch`
(every other Debian architecture); the models and their simplifications are described there.
``IMAGE`` is any Debian kernel image (arm64 Image, bzImage, zImage, s390 image, riscv Image, ELF
vmlinux: the kernel's own kallsyms give the symbols when no symbol file is given), or
``debian:arm64`` / ``debian:rt-arm64`` (Debian's 6.12.117 image and the real System.map from its
-dbg package) or ``debian:ARCH`` for ARCH in amd64, armhf, ppc64el, riscv64, s390x (the image
package only).
"""

from __future__ import annotations

import json
import sys

from localmap.cli.common import add_command, positive, progress
from localmap.cli.console import safe, safe_row, stdout_console


def resolve_image(image: str, kallsyms: str | None, system_map: str | None,
                  config: str | None = None) -> tuple[str, str | None, str | None]:
    """``IMAGE``, its symbols and its .config; ``debian:FLAVOUR`` is fetched (cached): arm64
    flavours with their System.map, the other architectures' image packages alone."""
    symbols = kallsyms or system_map
    if image.startswith("debian:"):
        from localmap.debian import (ARCH_KERNELS, DEBIAN_KERNELS, debian_arch_kernel, debian_kernel,
                                     debian_system_map)
        from localmap.errors import LocalmapError

        flavour = image.split(":", 1)[1]
        if flavour in ARCH_KERNELS:
            path, cfg = debian_arch_kernel(flavour)
            return str(path), symbols, config or str(cfg)
        if flavour not in DEBIAN_KERNELS:
            raise LocalmapError(f"unknown Debian kernel {image!r} (known: debian:"
                                + ", debian:".join([*DEBIAN_KERNELS, *ARCH_KERNELS]) + ")")
        path, _stub = debian_kernel(flavour)
        return str(path), symbols or str(debian_system_map(flavour)), config
    return image, symbols, config


def run(args) -> int:
    from localmap.perf.images import load_any
    from localmap.perf.arches import analyse_arch
    from localmap.perf.sites import analyse

    image, symbols, config = resolve_image(args.image, args.kallsyms, args.system_map, args.config)
    img = load_any(image, symbols, config)
    with progress(args) as prog:
        rep = (analyse if img.arch == "arm64" else analyse_arch)(img, progress=prog)
    if args.json:
        json.dump(rep.to_json(per_site=args.per_site), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if img.arch != "arm64":
        return _print_arch(args, rep)
    from rich.table import Table

    con = stdout_console()
    tot = rep.totals()
    con.print(f"[bold]{safe(rep.image)}[/bold] ({safe(rep.kind)}, symbols: {safe(rep.symbols)})", highlight=False)
    con.print(f"preemption model {rep.preempt_model}, preempt count: {rep.preempt_count}; "
              f"text [{rep.text_start:#x}, {rep.text_end:#x}) = {rep.text_bytes} bytes", highlight=False)
    t = Table(title="whole image", header_style="bold")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("sites", "el2_reads", "functions", "replaceable", "removed_instructions", "removed_fast_path",
              "lse_alternatives", "vhe_alternatives"):
        safe_row(t, k, str(tot[k]))
    for group in ("ops", "forms", "protection"):
        for k, v in tot[group].items():
            safe_row(t, f"{group}: {k}", str(v))
    con.print(t)
    f = Table(title=f"top {args.top} functions by sites", header_style="bold")
    for col in ("function", "sites", "replaceable", "protected", "removed", "ops"):
        f.add_column(col, justify="left" if col in ("function", "ops") else "right")
    for r in rep.functions()[:args.top]:
        safe_row(f, r["function"], str(r["sites"]), str(r["replaceable"]), str(r["protected"]),
                  str(r["removed"]), " ".join(f"{k}:{v}" for k, v in r["ops"].items()))
    con.print(f)
    return 0


def _print_arch(args, rep) -> int:
    """The terminal view of another architecture's :class:`~localmap.perf.arches.ArchReport`."""
    from rich.table import Table

    con = stdout_console()
    tot = rep.totals()
    con.print(f"[bold]{safe(rep.image)}[/bold] ({safe(rep.arch)} {safe(rep.kind)}, symbols: {safe(rep.symbols)})", highlight=False)
    for n in rep.notes:
        con.print(f"  {safe(n)}", highlight=False)
    con.print(f"preemption model {rep.preempt_model}, preempt count: {rep.preempt_count}; "
              f"text [{rep.text_start:#x}, {rep.text_end:#x}) = {rep.text_bytes} bytes; site: {rep.pattern}",
              highlight=False)
    t = Table(title="whole image", header_style="bold")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("sites", "functions", "replaceable", "own_bracket_sites", "own_bracket_instructions",
              "removed_instructions"):
        safe_row(t, k, str(tot[k]))
    for group in ("access", "protection", "own_brackets"):
        for k, v in tot[group].items():
            safe_row(t, f"{group}: {k}", str(v))
    for k, v in rep.params.items():
        safe_row(t, f"derived: {k}", str(v))
    con.print(t)
    f = Table(title=f"top {args.top} functions by sites", header_style="bold")
    for col in ("function", "sites", "own brackets", "removed"):
        f.add_column(col, justify="left" if col == "function" else "right")
    for r in rep.functions(args.top):
        safe_row(f, r["function"], str(r["sites"]), str(r["own_brackets"]), str(r["removed"]))
    con.print(f)
    return 0


def register(subparsers) -> None:
    p = add_command(subparsers, "sites", help="this_cpu sites in a kernel image of any Debian architecture",
                    description="Find every this_cpu access (per-CPU offset acquisition, or %gs: "
                    "operand on amd64) in a kernel image of any Debian architecture, classify it "
                    "(operation, form, protection) and count the instructions the local mapping "
                    "removes.")
    p.add_argument("image", metavar="IMAGE",
                   help="a Debian vmlinuz/vmlinux of any architecture (arm64 Image, bzImage, zImage, "
                   "s390 image, riscv Image, ELF), or debian:FLAVOUR (arm64, rt-arm64, amd64, armhf, "
                   "ppc64el, riscv64, s390x)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE", help="/proc/kallsyms of the image's kernel (KASLR off), may be .gz")
    g.add_argument("--system-map", metavar="FILE", help="System.map of the image's build")
    p.add_argument("--config", metavar="FILE", help="the kernel's .config (default: config-* beside IMAGE)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--per-site", action="store_true", help="with --json: list every site")
    p.add_argument("--top", type=positive, default=25, metavar="N", help="functions to list (default 25)")
    p.set_defaults(func=run)
