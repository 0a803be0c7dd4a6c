"""What every bench script shares: a result row, timing, where the captures are, and the
command-line wrapper (``--rows-json`` is how ``bench/report.py`` collects the rows).

A bench script is a plain program ``bench/bench_<topic>.py`` with a module docstring and
``rows(args) -> list[Row]``; it ends with ``sys.exit(benchlib.main(__doc__, rows, add_args))``.
Run alone it prints its rows; ``make bench`` runs every script in a fresh process and writes
``docs/benchmarks.md``. Figures are quoted nowhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    what: str                 # what was measured
    result: str               # the figure(s), with units
    target: str = ""          # the target it is held to, if any
    ok: bool | None = None    # whether the target is met (None: no target)
    command: str = ""         # filled in by main(): the command that measured it


def timed(fn: Callable, repeat: int = 1) -> tuple[float, float, object]:
    """(median wall seconds, minimum, the last result) of ``repeat`` calls of ``fn``."""
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times), result


def write_data(path: Path, data: dict, compact: bool = True) -> int:
    """Write a data file the package ships (``src/localmap/data``): JSON, keys sorted, compact
    unless asked otherwise, through a temporary file renamed over it. Returns its size."""
    from localmap.fileio import write_atomic

    text = json.dumps(data, sort_keys=True, separators=(",", ":")) if compact else \
        json.dumps(data, indent=1)
    write_atomic(path, text + "\n")
    size = path.stat().st_size
    print(f"wrote {path} ({size} bytes)", file=sys.stderr)
    return size


def shared_bundle(name: str) -> Path | None:
    """A capture of ``../shared/data/bundles`` (or ``$LOCALMAP_SHARED_DATA/bundles``), if there."""
    base = Path(os.environ.get("LOCALMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
    p = base / "bundles" / name
    return p if p.is_dir() else None


def s1_bundle() -> Path:
    """``s1_612_4k_smp4``: the shared capture, else the copy shipped as the default bundle."""
    from localmap.ingest.bundle import default_bundle_path

    return shared_bundle("s1_612_4k_smp4") or default_bundle_path()


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main(doc: str, rows: Callable[[argparse.Namespace], list[Row]],
         add_args: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    if add_args:
        add_args(ap)
    ap.add_argument("--rows-json", action="store_true", help="print the rows as JSON (for make bench)")
    args = ap.parse_args()
    script = Path(sys.argv[0]).resolve().relative_to(ROOT)
    argv = [a for a in sys.argv[1:] if a != "--rows-json"]
    command = " ".join([".venv/bin/python", str(script), *argv])
    out = rows(args)
    for r in out:
        r.command = r.command or command
    if args.rows_json:
        print(json.dumps([asdict(r) for r in out]))
    else:
        w = max((len(r.what) for r in out), default=0)
        for r in out:
            tail = f"  [{r.target}: {met(r.ok)}]" if r.target and r.ok is not None else ""
            print(f"{r.what:<{w}}  {r.result}{tail}")
    return 1 if any(r.ok is False for r in out) else 0
