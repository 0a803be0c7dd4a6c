"""Speed of the percpu replay against its targets, measured in one run.

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

from benchlib import Row, main, s1_bundle
from localmap.units import fmt_bytes, fmt_count, fmt_percent, fmt_seconds

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "localmap" / "bench"


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def bench_a(runs: int) -> dict:
    from localmap.analysis.replay import replay
    from localmap.ingest.bundle import load_bundle
    from localmap.ingest.trace import read_trace

    bundle = s1_bundle()
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
    from localmap.cli.progress import TerminalProgress

    t = time.perf_counter()
    with TerminalProgress(sys.stderr.isatty()) as prog:
        prog.start(f"generating {events:,} events, {cpus} CPUs", total=events)
        make_synthetic_bundle(out, nr_cpus=cpus, nr_events=events, seed=seed, progress=prog.update)
    return out, time.perf_counter() - t


def _child(path: str) -> None:
    """Runs in a fresh interpreter: replay only, then report time and peak RSS as JSON."""
    from localmap.analysis.replay import replay

    w, c, r = _timed(lambda: replay(path))
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


def rows(args) -> list[Row]:
    out = []
    a = b = None
    if args.only in (None, "a"):
        a = bench_a(args.runs)
        out += [
            Row(f"parse {Path(a['bundle']).name}'s trace ({fmt_count(a['events'])} events), "
                f"median of {a['runs']}", f"{fmt_seconds(a['parse_wall'], 3)} wall, "
                f"{fmt_seconds(a['parse_cpu'], 3)} CPU"),
            Row(f"whole replay of {Path(a['bundle']).name} (both passes), median of {a['runs']}",
                f"{fmt_seconds(a['replay_wall'], 3)} wall = {a['ratio_wall']:.2f}x parse "
                f"({a['ratio_cpu']:.2f}x in CPU time), agreement {fmt_percent(a['agreement'])}",
                "<= 3x parse", a["ok"]),
        ]
    if args.only in (None, "b"):
        b = bench_b(args.events, args.cpus, args.seed, args.reuse)
        out += [
            Row(f"replay of a synthetic {fmt_count(b['events'])}-event trace, {b['cpus']} CPUs, "
                "fresh process", f"{fmt_seconds(b['wall'], 1)} wall (parse {fmt_seconds(b['parse'], 1)}), "
                f"peak RSS {fmt_bytes(b['rss_kb'] * 1024)}, agreement {fmt_percent(b['agreement'])}",
                "< 60 s, < 1 GiB", b["ok"]),
        ]
    missed = (a is not None and not a["ok"]) or (b is not None and not b["ok"])
    if args.profile or missed:
        print(profile("s1_612_4k_smp4", s1_bundle()), file=sys.stderr)
        n = args.profile or 200_000
        path, _ = make_synthetic(n, args.cpus, args.seed, True)
        print(profile(f"a synthetic trace of {n:,} events, {args.cpus} CPUs", path), file=sys.stderr)
    return out


def add_args(ap) -> None:
    ap.add_argument("--only", choices=("a", "b"))
    ap.add_argument("--runs", type=int, default=5, help="repetitions for (a) (default 5)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--cpus", type=int, default=512)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a synthetic bundle generated earlier with the same arguments")
    ap.add_argument("--profile", type=int, metavar="EVENTS", default=0,
                    help="also cProfile the replay of s1 and of a synthetic trace of EVENTS (stderr)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
        sys.exit(0)
    sys.exit(main(__doc__, rows, add_args))
