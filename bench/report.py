"""``make bench``: run every ``bench/bench_*.py`` and write ``docs/benchmarks.md``.

Each script runs in a fresh process with ``--rows-json``; its rows become one table. The page
says on which machine, when, from which commit and with which command the figures were made; it
is the only place the project quotes speed figures. A script that fails is reported in the page
and makes ``make bench`` fail.

    .venv/bin/python bench/report.py [--out docs/benchmarks.md] [--only NAME ...]

With ``--only``, the named scripts are run again and their sections replaced; every other section
of the existing page is kept as it was, marked with the run that measured it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / (1 << 20):.0f} GiB"
    except OSError:
        pass
    return "unknown"


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "bench"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" with local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cell(s: str) -> str:
    return s.replace("|", "\\|")


def _old_sections(page: Path) -> dict[str, str]:
    """Sections of an existing page by their heading, each ending with a note of the run that
    measured it (taken from the page's header unless the section already names its run)."""
    try:
        text = page.read_text()
    except OSError:
        return {}
    head, *parts = text.split("\n## ")
    date, commit, load = "an earlier date", "?", "?"
    for ln in head.splitlines():
        if ln.startswith("- date: "):
            date = ln[len("- date: "):]
        elif ln.startswith("- Python") and "commit " in ln:
            commit = ln.split("commit ", 1)[1]
        elif ln.startswith("- machine: ") and "load average " in ln:
            load = ln.split("load average ", 1)[1].split(" at the start")[0]
    run = f"this section from `make bench` at commit {commit}, {date}, load {load}"
    out = {}
    for part in parts:
        title, _, body = part.partition("\n")
        body = body.rstrip()
        if "this section from `make bench`" not in body:
            body = body[:-2] + f"; {run}.)" if body.endswith(".)") else body + f"\n\n({run}.)"
        out[title.strip()] = body.strip("\n") + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--only", nargs="*", metavar="NAME", help="e.g. check replay (default: all)")
    args = ap.parse_args()
    scripts = sorted((ROOT / "bench").glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    load0 = os.getloadavg()[0]
    started = datetime.datetime.now(datetime.timezone.utc)
    commit = _commit()                     # the tree the scripts run, taken before they run
    sections, failed = [], []
    for script in scripts:
        print(f"== {script.relative_to(ROOT)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), "--rows-json"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t0
        try:
            rows = json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            rows = []
        if proc.returncode != 0 and not rows:       # a missed target is reported, not fatal
            failed.append(script.name)
        doc = script.read_text().split('"""')[1].strip().split("\n")[0].rstrip(".").replace("``", "`")
        sections.append((script, doc, rows, proc.returncode, secs))
    if args.only:        # keep every other section of the page as it was measured
        old = _old_sections(Path(args.out))
        ran = {s[0] for s in sections}
        for script in sorted((ROOT / "bench").glob("bench_*.py")):
            doc = script.read_text().split('"""')[1].strip().split("\n")[0].rstrip(".").replace("``", "`")
            if script not in ran and doc in old:
                sections.append((script, doc, old[doc], None, 0.0))
        sections.sort(key=lambda s: s[0].name)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/report.py`, which runs every `bench/bench_*.py` in a "
        "fresh process); do not edit by hand. This is the only page that quotes speed figures.",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: {_cpu_model()}, {os.cpu_count()} CPUs, {_memory()} RAM, "
        f"{platform.system()} {platform.release()}; load average {load0:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end (the machine may be shared: figures vary with load)",
        f"- Python {platform.python_version()}, localmap {_version()}, commit {commit}",
        ("- command: `make bench`; each row names the script run that measured it" if not args.only
         else f"- command: `bench/report.py --only {' '.join(args.only)}` (the other sections "
              "are kept from earlier runs, each marked with its run); each row names its script"),
        "",
    ]
    for script, doc, rows, rc, secs in sections:
        lines += [f"## {doc}", ""]
        if rc is None:                         # kept from the existing page
            lines += [rows]
            continue
        if rc != 0 and not rows:
            lines += [f"`{script.relative_to(ROOT)}` failed (exit status {rc}); no figures.", ""]
            continue
        lines += ["| what | result | target | command |", "|---|---|---|---|"]
        for r in rows:
            target = "" if not r["target"] else r["target"] + (
                "" if r["ok"] is None else (" (met)" if r["ok"] else " (**missed**)"))
            lines.append(f"| {_cell(r['what'])} | {_cell(r['result'])} | {_cell(target)} | "
                         f"`{_cell(r['command'])}` |")
        lines += ["", f"({secs:.0f} s for the script.)", ""]
    Path(args.out).write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _version() -> str:
    from localmap import __version__

    return __version__


if __name__ == "__main__":
    sys.exit(main())
