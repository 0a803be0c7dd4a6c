"""``localmap evaluate [BUNDLE] [--html DIR] [--json]``: the main job (``make run``).

Runs :func:`localmap.report.evaluate.evaluate` and prints the report in the terminal
(:mod:`.report_view`); ``--html`` also writes it as one self-contained page, ``--json`` prints
the report's facts, tables and the numbers behind its figures instead of tables.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from localmap.cli.common import add_command, html_folder, info, progress


def register(sub) -> None:
    p = add_command(sub, "evaluate",
                    help="the main job: replay, overhead, checks and performance of one bundle, "
                    "in the terminal and as an HTML report",
                    description="Evaluate the design on a capture bundle (default: the one "
                    "shipped with localmap) and print one report; --html also writes a "
                    "self-contained HTML page with plots and Before/After diagrams.")
    p.add_argument("bundle", nargs="?", metavar="BUNDLE",
                   help="bundle folder or trace file (default: the shipped bundle)")
    p.add_argument("--html", metavar="DIR", help="also write the report to DIR/index.html")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON (the report's facts, tables and figure data)")
    p.set_defaults(func=run)


def run(args) -> int:
    from localmap.report import html
    from localmap.report.evaluate import evaluate

    if args.html:                          # a folder we cannot write fails before the work
        html_folder(args.html)
    with progress(args) as prog:
        report = evaluate(args.bundle, progress=prog)
    if args.json:
        d = dataclasses.asdict(report)
        for s in d["sections"]:
            for f in s["figures"]:
                f.pop("svg")
        json.dump(d, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        from localmap.cli.report_view import print_report

        print_report(report)
    if args.html:
        out = html.write(report, args.html)
        info(args, f"HTML report: {out}")
    return 0
