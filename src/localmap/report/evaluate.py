"""``localmap evaluate [BUNDLE] [--html DIR]``: the main job, one report over the whole model.

Models nothing itself: it runs the other parts on one bundle (the shipped default when none is
given) and collects their results into a :class:`~localmap.report.model.Report`: the capture,
the allocator replay (issue 2), the local-mapping overhead (issue 3), the checker verdicts
(issue 4), the this_cpu performance analysis (issue 5), and the Before/After figures. A part
whose Python API is not in the tree is listed under "Not in this report" with the reason; it is
never replaced by made-up numbers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.report import sections
from localmap.report.model import Report

# (title, builder in localmap.report.sections); order is the report's order
SECTIONS = [
    ("Capture", "capture"),
    ("Allocator replay", "replay"),
    ("Local-mapping overhead", "overhead"),
    ("Kernel VA layout, before and after", "layout"),
    ("Per-CPU kernel page tables, before and after", "tables"),
    ("Checker verdicts", "check"),
    ("this_cpu performance", "perf"),
    ("Other architectures", "arches"),
    ("Three designs side by side", "designs"),
    ("Kernel text replication", "text_replication"),
]


def evaluate(bundle: str | Path | None = None, progress: bool = True) -> Report:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from localmap.ingest.bundle import default_bundle_path, load_bundle

    t0 = time.monotonic()
    path = Path(bundle) if bundle else default_bundle_path()
    b = load_bundle(path)
    label = "default bundle (" + b.name + ")" if bundle is None else str(path)
    report = Report(title="localmap evaluation: percpu local mappings through per-CPU page tables",
                    bundle=label)
    ctx = sections.Context(bundle=b, progress=progress)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=Console(stderr=True), disable=not progress,
                  transient=True) as bar:
        task = bar.add_task("evaluating", total=len(SECTIONS))
        for title, name in SECTIONS:
            bar.update(task, description=f"evaluating: {title}")
            s0 = time.monotonic()
            builder = getattr(sections, "build_" + name)
            try:
                sec = builder(ctx, title)
            except sections.Unavailable as exc:
                report.omitted.append((title, str(exc)))
            else:
                sec.seconds = time.monotonic() - s0
                report.sections.append(sec)
            bar.advance(task)
    report.seconds = time.monotonic() - t0
    return report


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="the main job: replay, overhead, checks and performance "
                       "of one bundle, in the terminal and as an HTML report",
                       description="Evaluate the design on a bundle (default: the one shipped in "
                       "the package) and print one report; --html also writes a self-contained "
                       "HTML report with plots and Before/After diagrams.")
    p.add_argument("bundle", nargs="?", help="bundle folder or trace file (default: shipped bundle)")
    p.add_argument("--html", metavar="DIR", help="write DIR/index.html")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from localmap.report import html, terminal

    if args.html:                          # a folder we cannot write fails before the work
        try:
            Path(args.html).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalmapError(f"cannot create the HTML folder: {exc.strerror}",
                                args.html) from None
    report = evaluate(args.bundle, progress=not args.no_progress and sys.stderr.isatty())
    terminal.print_report(report)
    if args.html:
        out = html.write(report, args.html)
        print(f"HTML report: {out}")
    return 0


__all__ = ["evaluate", "register"]
