"""The main job as ``make run`` runs it (``localmap evaluate --html``), and each report section.

Wall time of the whole command in a fresh process (imports included, HTML written), median of
``--repeat`` runs, then the seconds of each section in-process. Target: ``make run`` < 60 s.

    .venv/bin/python bench/bench_evaluate.py [BUNDLE] [--repeat N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Row, main
from localmap.units import fmt_seconds


def rows(args) -> list[Row]:
    exe = Path(sys.executable).with_name("localmap")
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            cmd = [str(exe), "evaluate", "--no-progress", "--html", tmp]
            if args.bundle:
                cmd.insert(2, args.bundle)
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            walls.append(time.perf_counter() - t0)
    from localmap.report.evaluate import evaluate

    wall = statistics.median(walls)
    out = [Row(f"localmap evaluate {args.bundle or '(default bundle)'} --html (= make run), "
               f"median of {len(walls)}", fmt_seconds(wall), "< 60 s", wall < 60)]
    rep = evaluate(args.bundle)
    for s in rep.sections:
        out.append(Row(f"  section: {s.title}", fmt_seconds(s.seconds)))
    for title, reason in rep.omitted:
        out.append(Row(f"  section: {title}", f"omitted: {reason}"))
    return out


def add_args(ap) -> None:
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--repeat", type=int, default=3)


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
