"""The main job as an API: one report over the whole model for one bundle.

Models nothing itself: :func:`evaluate` runs the other parts on one bundle (the shipped default
when none is given) and collects their results into a :class:`~localmap.report.model.Report`:
the capture, the allocator replay, the local-mapping overhead, the Before/After figures, the
checker verdicts and the this_cpu performance analysis. Every section's builder calls its part's
API directly, so a renamed or missing API is an import error, never a quietly shorter report. A
section whose *input* the bundle lacks (no ``.config``, no CPU list) is listed under "Not in this
report" with the reason. The command is ``localmap evaluate`` (:mod:`localmap.cli.evaluate`).
"""

from __future__ import annotations

import time
from pathlib import Path

from localmap.progress import Progress, as_progress
from localmap.report import sections
from localmap.report.model import Report

# (title, builder); the order is the report's order
SECTIONS = [
    ("Capture", sections.build_capture),
    ("Allocator replay", sections.build_replay),
    ("Local-mapping overhead", sections.build_overhead),
    ("Kernel VA layout, before and after", sections.build_layout),
    ("Per-CPU kernel page tables, before and after", sections.build_tables),
    ("Checker verdicts", sections.build_check),
    ("this_cpu performance", sections.build_perf),
    ("Other architectures", sections.build_arches),
    ("Three designs side by side", sections.build_designs),
    ("Kernel text replication", sections.build_text_replication),
]


def evaluate(bundle: str | Path | None = None, progress: Progress | None = None) -> Report:
    """The report for ``bundle`` (a folder or trace file; None: the shipped default bundle)."""
    from localmap.ingest.bundle import default_bundle_path, load_bundle

    prog = as_progress(progress)
    t0 = time.monotonic()
    path = Path(bundle) if bundle else default_bundle_path()
    b = load_bundle(path)
    label = "default bundle (" + b.name + ")" if bundle is None else str(path)
    report = Report(title="localmap evaluation: percpu local mappings through per-CPU page tables",
                    bundle=label)
    ctx = sections.Context(bundle=b)
    prog.start("evaluating", total=len(SECTIONS))
    for title, builder in SECTIONS:
        prog.update(description=f"evaluating: {title}")
        s0 = time.monotonic()
        try:
            sec = builder(ctx, title)
        except sections.Unavailable as exc:
            report.omitted.append((title, str(exc)))
        else:
            sec.seconds = time.monotonic() - s0
            report.sections.append(sec)
        prog.advance()
    report.seconds = time.monotonic() - t0
    return report


__all__ = ["evaluate", "SECTIONS"]
