"""Speed of the percpu replay (against its targets), measured in one run. A plain script.

    .venv/bin/python bench/bench_replay.py                 # (a) and (b)
    .venv/bin/python bench/bench_replay.py --only a        # s1 parse vs replay only
    .venv/bin/python bench/bench_replay.py --profile 200000  # + cProfile of both replays

(a) ``s1_612_4k_smp4``: reading+parsing its trace (``localmap.ingest.trace.read_trace``) against
    the whole replay of the bundle (``localmap.analysis.replay.replay``, which parses the trace
    itself too), each repeated ``--runs`` times, alternating; medians of wall time (and of the
    process CPU time, less sensitive to other load on the machine) and their ratio.
    Target: replay <= 3x parse.
(b) a synthetic bundle of 1,000,000 events on a 512-CPU machine
    (``localmap.analysis.synthetic.make_synthetic_bundle``, generated first and not timed,
    written under ``${XDG_CACHE_HOME:-~/.cache}/localmap/bench``), replayed in a fresh child
    process: wall and CPU time, and peak RSS as ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
    of that child (so it includes the interpreter and imports, ~40 MB).
    Targets: < 60 s and < 1 GB.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

S1 = Path("/work/shared/data/bundles/s1_612_4k_smp4")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "localmap" / "bench"


def _s1() -> Path:
    if S1.is_dir():
        return S1
    from localmap.ingest.bundle import default_bundle_path   # the shipped copy of s1
    return default_bundle_path()


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def bench_a(runs: int) -> dict:
    from localmap.analysis.replay import replay
    from localmap.ingest.bundle import load_bundle
    from localmap.ingest.trace import read_trace

    bundle = _s1()
    trace_path = load_bundle(bundle).trace_path
    parse_w, parse_c, rep_w, rep_c = [], [], [], []
    agreement = None
    for i in range(runs):
        print(f"  (a) run {i + 1}/{runs}", file=sys.stderr, flush=True)
        w, c, t = _timed(lambda: read_trace(trace_path))
        parse_w.append(w)
        parse_c.append(c)
        w, c, r = _timed(lambda: replay(load_bundle(bundle)))
        rep_w.append(w)
        rep_c.append(c)
        agreement = r.agreement
    pw, pc = statistics.median(parse_w), statistics.median(parse_c)
    rw, rc = statistics.median(rep_w), statistics.median(rep_c)
    return {"bundle": str(bundle), "events": len(t.events), "runs": runs,
            "parse_wall": pw, "parse_cpu": pc, "replay_wall": rw, "replay_cpu": rc,
            "ratio_wall": rw / pw, "ratio_cpu": rc / pc, "agreement": agreement,
            "ok": rw <= 3 * pw}


def make_synthetic(events: int, cpus: int, seed: int, reuse: bool) -> tuple[Path, float]:
    from localmap.analysis.synthetic import make_synthetic_bundle

    out = CACHE / f"synthetic_{cpus}cpu_{events}ev_seed{seed}"
    if reuse and (out / "trace").exists() and (out / "meminfo.fork").exists():
        return out, 0.0
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
    t = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task(f"generating {events:,} events, {cpus} CPUs", total=events)
        make_synthetic_bundle(out, nr_cpus=cpus, nr_events=events, seed=seed,
                              progress=lambda n: prog.update(task, completed=n))
    return out, time.perf_counter() - t


def _child(path: str) -> None:
    """Runs in a fresh interpreter: replay only, then report time and peak RSS as JSON."""
    from localmap.analysis.replay import replay

    w, c, r = _timed(lambda: replay(path, progress=sys.stderr.isatty()))
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"wall": w, "cpu": c, "parse": r.parse_seconds, "rss_kb": rss_kb,
                      "allocs": r.nr_allocs, "events": r.nr_events, "agreement": r.agreement,
                      "causes": dict(r.causes()), "swaps": r.swaps,
                      "partial": r.partial, "chunks_created": r.nr_creates,
                      "chunks_destroyed": r.nr_destroys}))


def bench_b(events: int, cpus: int, seed: int, reuse: bool) -> dict:
    path, gen_s = make_synthetic(events, cpus, seed, reuse)
    print(f"  (b) replaying {path} in a child process", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, __file__, "--child", str(path)],
                          stdout=subprocess.PIPE, text=True, check=True)
    d = json.loads(proc.stdout.strip().splitlines()[-1])
    d.update({"path": str(path), "generate_s": gen_s, "cpus": cpus,
              "ok": d["wall"] < 60 and d["rss_kb"] * 1024 < 1 << 30})
    return d


def profile(label: str, source, top: int = 15) -> str:
    from localmap.analysis.replay import replay

    pr = cProfile.Profile()
    pr.enable()
    replay(source)
    pr.disable()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(top)
    return f"== cProfile of the replay of {label} (top {top} by own time) ==\n" + s.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=("a", "b"))
    ap.add_argument("--runs", type=int, default=5, help="repetitions for (a) (default 5)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--cpus", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a synthetic bundle generated earlier with the same arguments")
    ap.add_argument("--profile", type=int, metavar="EVENTS", default=0,
                    help="also cProfile the replay of s1 and of a synthetic trace of EVENTS")
    ap.add_argument("--child", metavar="BUNDLE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return 0
    cmd = "$ .venv/bin/python bench/bench_replay.py " + " ".join(sys.argv[1:])
    rows = []
    a = b = None
    if args.only in (None, "a"):
        a = bench_a(args.runs)
    if args.only in (None, "b"):
        b = bench_b(args.events, args.cpus, args.seed, args.reuse)
    print(cmd.rstrip())
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"python {sys.version.split()[0]}")
    if a:
        rows += [
            ("(a) s1 parse (read_trace), median", f"{a['parse_wall']:.3f} s wall",
             f"{a['parse_cpu']:.3f} s CPU", f"{a['events']} events, {a['runs']} runs"),
            ("(a) s1 whole replay, median", f"{a['replay_wall']:.3f} s wall",
             f"{a['replay_cpu']:.3f} s CPU", f"agreement {a['agreement']:.4%}"),
            ("(a) replay / parse", f"{a['ratio_wall']:.2f}x wall", f"{a['ratio_cpu']:.2f}x CPU",
             "target <= 3x: " + ("met" if a["ok"] else "MISSED")),
        ]
    if b:
        rows += [
            ("(b) synthetic generation (not counted)", f"{b['generate_s']:.1f} s wall", "",
             f"{b['events']:,} events, {b['cpus']} CPUs" +
             (" (reused)" if not b["generate_s"] else "")),
            ("(b) replay, fresh child process", f"{b['wall']:.1f} s wall", f"{b['cpu']:.1f} s CPU",
             f"parse {b['parse']:.1f} s; target < 60 s"),
            ("(b) peak RSS (getrusage ru_maxrss, child)", f"{b['rss_kb'] / 1024:.0f} MB", "",
             "target < 1 GB: " + ("met" if b["rss_kb"] * 1024 < 1 << 30 else "MISSED")),
            ("(b) agreement", f"{b['agreement']:.4%}", "",
             f"{b['allocs']:,} allocs, causes {b['causes'] or '-'}, "
             f"chunks +{b['chunks_created']}/-{b['chunks_destroyed']}"),
        ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]:>{w2}}  {r[3]}")
    missed = (a is not None and not a["ok"]) or (b is not None and not b["ok"])
    if args.profile or missed:
        print(profile("s1_612_4k_smp4", _s1()))
        n = args.profile or 200_000
        path, _ = make_synthetic(n, args.cpus, args.seed, True)
        print(profile(f"a synthetic trace of {n:,} events, {args.cpus} CPUs", path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
