"""Time the main job (``localmap evaluate``) as ``make run`` runs it, and each of its sections.

Usage: .venv/bin/python bench/bench_evaluate.py [BUNDLE] [--repeat N]

Prints the wall time of the whole command in a fresh process (imports included, HTML written)
and, in-process, the seconds spent in each report section. ``make run`` must stay under 60 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
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
    print(f"localmap evaluate {args.bundle or '(default bundle)'} --html: "
          f"median {statistics.median(walls):.2f} s, min {min(walls):.2f} s over {len(walls)} runs")
    from localmap.report.evaluate import evaluate

    rep = evaluate(args.bundle, progress=False)
    for s in rep.sections:
        print(f"  {s.title:<48} {s.seconds:6.2f} s")
    for title, reason in rep.omitted:
        print(f"  {title:<48} omitted: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
