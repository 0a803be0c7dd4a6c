"""``localmap predict``: expected saving of a profiled workload (CLI of perf/predict.py).

Models nothing itself; see :mod:`localmap.perf.predict` (assumptions P1-P5) and
:mod:`localmap.perf.costs`. Without ``--image`` it uses the shipped summary of Debian's 6.12.117
arm64 (PREEMPT_VOLUNTARY) and rt-arm64 (PREEMPT_RT) images, so both flavours are compared.
"""

from __future__ import annotations

import argparse
import json
import sys


def run(args: argparse.Namespace) -> int:
    from localmap.perf.summary import performance_summary, render_performance

    image, symbols = args.image, args.kallsyms or args.system_map
    if image and image.startswith("debian:"):
        from localmap.perf.sites_cmd import _resolve
        image, symbols = _resolve(argparse.Namespace(image=image, kallsyms=args.kallsyms,
                                                     system_map=args.system_map))
    summary = performance_summary(image=image, kallsyms=symbols, profile=args.profile)
    if args.json:
        json.dump({k: v for k, v in summary.items() if k != "flavours"} |
                  {"flavours": [{k: v for k, v in f.items() if k != "function_facts"} for f in summary["flavours"]]},
                  sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    render_performance(summary)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict the saving of a perf profile from real this_cpu sites",
                              description=__doc__.split("\n")[0])
    p.add_argument("--profile", metavar="PERF_REPORT",
                   help="`perf report --stdio` or `perf diff` text (default: the talk's backup-slide profile)")
    p.add_argument("--image", metavar="IMAGE",
                   help="kernel image (raw Image, vmlinux, debian:arm64, debian:rt-arm64); "
                        "default: the shipped summary of Debian's two 6.12.117 flavours")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--kallsyms", metavar="FILE")
    g.add_argument("--system-map", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
