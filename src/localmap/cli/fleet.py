"""``localmap fleet SOURCE...``: many bundles evaluated as Dask tasks, with an aggregate report.

Drives :func:`localmap.fleet.run.run_fleet` (the sources, the cluster, the Parquet results
folder) and prints :func:`localmap.report.fleet.fleet_report` (:mod:`.report_view`); ``--html``
also writes it as a page, ``--json`` prints the rows instead: one JSON object per line inside
one JSON list, a row per bundle x configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from localmap.cli.common import add_command, count, html_folder, info, positive, progress

EXAMPLES = """
examples:
  localmap fleet captures/                         every bundle below captures/, local cluster
  localmap fleet 'captures/*/' --cpus 4,64,160 --granules 4K,16K
  localmap fleet fleet.csv --scheduler tcp://10.0.0.5:8786 --html fleet-report
  localmap fleet captures/ --json > rows.json      one row per bundle x configuration
"""


OWN = "own"     # in a list: the bundle's own value


def _list(kind):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if not items or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, not {text!r}")
        try:
            return [None if t == OWN else kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a list of {kind.__name__}s or '{OWN}': "
                                             f"{text!r}") from None
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "fleet", help="evaluate many bundles as Dask tasks (local cluster or a scheduler) "
        "and report the distribution",
        description=textwrap.fill(
            "Replay every bundle of the sources and run its history on the design machine of "
            "each configuration asked (granule x VA bits x CPU count), as Dask tasks on a local "
            "cluster of worker processes or on an existing scheduler. A bundle that fails is "
            "reported with its error and the fleet goes on. Results are written as Parquet to "
            "the results folder as bundles finish: run the same command again to resume. "
            "Prints the distributions per configuration (p50/p90/p99/max), the outliers and "
            "why, and the failures.", 78) + "\n" + EXAMPLES, raw=True)
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="a bundle folder, a folder of bundles, a glob, or a manifest (.csv or "
                   ".json) of bundle paths or URLs")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a "
                   "local cluster)")
    p.add_argument("--workers", type=positive, metavar="N",
                   help="local cluster: worker processes (default: one per CPU); with "
                   "--scheduler: wait for N workers before starting (default 1)")
    p.add_argument("--granules", type=_list(str), metavar="LIST",
                   help="granules to run each history on, e.g. 4K,16K or own,64K (own, the "
                   "default: the bundle's)")
    p.add_argument("--va-bits", type=_list(int), metavar="LIST",
                   help="VA sizes, e.g. 48,52 (own, the default: the bundle's)")
    p.add_argument("--cpus", type=_list(int), metavar="LIST",
                   help="number of CPUs of each machine, a list (e.g. own,64,160; own, the "
                   "default: the bundle's possible CPUs)")
    p.add_argument("--results", default="fleet-results", metavar="DIR",
                   help="folder of the Parquet results, resumed when it holds some "
                   "(default: fleet-results)")
    p.add_argument("--fresh", action="store_true",
                   help="discard the results folder's earlier results first")
    p.add_argument("--retry-errors", action="store_true",
                   help="evaluate again the bundles whose earlier results are errors")
    p.add_argument("--html", metavar="DIR", help="also write the report to DIR/index.html")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON (one row per bundle x configuration, instead "
                   "of the report)")
    p.add_argument("--outliers", type=count, default=10, metavar="N",
                   help="outliers and failure reasons to list in the report (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from localmap.fleet.aggregate import aggregate
    from localmap.fleet.run import run_fleet
    from localmap.fleet.task import grid

    configs, skipped = grid(args.granules, args.va_bits, args.cpus)
    if args.html:                          # a folder we cannot write fails before the work
        html_folder(args.html)
    with progress(args) as prog:
        result = run_fleet(args.sources, configs, args.results, scheduler=args.scheduler,
                           workers=args.workers, fresh=args.fresh,
                           retry_errors=args.retry_errors, progress=prog)
    result.notes[:0] = [f"not run: {s}" for s in skipped]
    agg = aggregate(result.rows, [c.label for c in configs])
    if args.json:
        out = sys.stdout
        out.write("[\n")
        for i, row in enumerate(result.rows):
            out.write(json.dumps(row, sort_keys=False) + (",\n" if i + 1 < len(result.rows) else "\n"))
        out.write("]\n")
    else:
        from localmap.cli.report_view import print_report
        from localmap.report.fleet import fleet_report

        print_report(fleet_report(result.rows, agg, result, limit=args.outliers))
    if args.html:
        from localmap.report import html
        from localmap.report.fleet import fleet_report

        path = html.write(fleet_report(result.rows, agg, result, limit=args.outliers), args.html)
        if not args.json:
            info(args, f"HTML report: {path}")
    return 0
