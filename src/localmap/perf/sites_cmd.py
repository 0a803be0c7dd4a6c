"""``localmap sites``: this_cpu access sites of a real kernel image (CLI of perf/sites.py and
perf/arches.py).

Models nothing itself; see :mod:`localmap.perf.sites` (arm64) and :mod:`localmap.perf.arches`
(every other Debian architecture) for the models and their simplifications. ``IMAGE`` may be
``debian:arm64`` or ``debian:rt-arm64`` (Debian's 6.12.117 image and the real System.map from its
-dbg package) or ``debian:ARCH`` for ARCH in amd64, armhf, ppc64el, riscv64, s390x (the image
package only: the kernel's own kallsyms give the symbols).
"""

from __future__ import annotations

import argparse
import json
import sys
from localmap.report.console import stdout_console


def _resolve(args) -> tuple[str, str | None, str | None]:
    image = args.image
    symbols = args.kallsyms or args.system_map
    if image.startswith("debian:"):
        from localmap.debian import ARCH_KERNELS, debian_arch_kernel, debian_kernel, debian_system_map
        flavour = image.split(":", 1)[1]
        if flavour in ARCH_KERNELS:
            path, config = debian_arch_kernel(flavour)
            return str(path), symbols, args.config or str(config)
        from localmap.debian import DEBIAN_KERNELS
        from localmap.errors import LocalmapError
        if flavour not in DEBIAN_KERNELS:
            raise LocalmapError(f"unknown Debian kernel {image!r} (known: debian:"
                                + ", debian:".join([*DEBIAN_KERNELS, *ARCH_KERNELS]) + ")")
        path, _stub = debian_kernel(flavour)
        return str(path), symbols or str(debian_system_map(flavour)), args.config
    return image, symbols, args.config


def run(args: argparse.Namespace) -> int:
    from localmap.perf.images import detect_file, load_any
    from localmap.perf.sites import analyse

    image, symbols, config = _resolve(args)
    if detect_file(image) != "arm64":
        return _run_arch(args, load_any(image, symbols, config))
    img = load_any(image, symbols, config)
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


def _run_arch(args, img) -> int:
    from localmap.perf.arches import analyse_arch

    progress = None
    if not args.json:
        from rich.console import Console
        from rich.progress import Progress

        bar = Progress(console=Console(stderr=True), transient=True)
        task = bar.add_task(f"{img.arch} sites", total=None)
        bar.start()

        def progress(done, total):
            bar.update(task, completed=done, total=total)
    try:
        rep = analyse_arch(img, progress=progress)
    finally:
        if progress is not None:
            bar.stop()
    if args.json:
        json.dump(rep.to_json(per_site=args.per_site), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    con = stdout_console()
    tot = rep.totals()
    con.print(f"[bold]{rep.image}[/bold] ({rep.arch} {rep.kind}, symbols: {rep.symbols})", highlight=False)
    for n in rep.notes:
        con.print(f"  {n}", highlight=False)
    con.print(f"preemption model {rep.preempt_model}, preempt count: {rep.preempt_count}; "
              f"text [{rep.text_start:#x}, {rep.text_end:#x}) = {rep.text_bytes} bytes; site: {rep.pattern}",
              highlight=False)
    t = Table(title="whole image", header_style="bold")
    t.add_column("what")
    t.add_column("count", justify="right")
    for k in ("sites", "functions", "replaceable", "own_bracket_sites", "own_bracket_instructions",
              "removed_instructions"):
        t.add_row(k, str(tot[k]))
    for group in ("access", "protection", "own_brackets"):
        for k, v in tot[group].items():
            t.add_row(f"{group}: {k}", str(v))
    for k, v in rep.params.items():
        t.add_row(f"derived: {k}", str(v))
    con.print(t)
    f = Table(title=f"top {args.top} functions by sites", header_style="bold")
    for col in ("function", "sites", "own brackets", "removed"):
        f.add_column(col, justify="left" if col == "function" else "right")
    for r in rep.functions(args.top):
        f.add_row(r["function"], str(r["sites"]), str(r["own_brackets"]), str(r["removed"]))
    con.print(f)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sites", help="this_cpu sites in a kernel image of any Debian architecture (capstone)",
                              description=__doc__.split("\n")[0])
    p.add_argument("image", metavar="IMAGE",
                   help="a Debian vmlinuz/vmlinux of any architecture (arm64 Image, bzImage, zImage, "
                   "s390 image, riscv Image, ELF), or debian:FLAVOUR (arm64, rt-arm64, amd64, armhf, "
                   "ppc64el, riscv64, s390x)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE", help="/proc/kallsyms dump (KASLR off), may be .gz")
    g.add_argument("--system-map", metavar="FILE", help="System.map of the same build")
    p.add_argument("--config", metavar="FILE", help="the kernel's .config (default: config-* beside IMAGE)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--per-site", action="store_true", help="with --json: every site")
    p.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    p.set_defaults(func=run)
