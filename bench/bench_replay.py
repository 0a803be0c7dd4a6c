"""Speed and memory of the percpu replay against its targets, measured in one run.

    .venv/bin/python bench/bench_replay.py                 # (a) to (d)
    .venv/bin/python bench/bench_replay.py --only a        # s1: tight parse vs replay
    .venv/bin/python bench/bench_replay.py --only b        # 10^6 events, 64 CPUs
    .venv/bin/python bench/bench_replay.py --only c        # where the replay's time goes

(a) ``s1_612_4k_smp4`` (31,170 events): a tight regex parse of every percpu event's fields
    (:func:`tight_parse`: one expression per line for the prefix and the event, one for the
    fields of each hot event, every number converted; it keeps nothing; it reads the text
    through the replay's own reader, so both pay the same decompression; also with the faster
    lazy task-field expression, and through the standard library's slower ``gzip``, reported
    beside it) against the whole
    replay of the bundle (``localmap.analysis.replay.replay``: reading, parsing, replaying,
    checking), side by side in one process, alternating, ``--runs`` times each; medians of
    process CPU time (what load from other processes disturbs least) and of wall time, and
    their ratio. Target: replay <= 3x the parse (goal 2x).
(b) a synthetic bundle of 1,000,000 events on a 64-CPU machine
    (``localmap.analysis.synthetic.make_synthetic_bundle``, generated first and not timed,
    cached under ``${XDG_CACHE_HOME:-~/.cache}/localmap/bench`` by generator source and
    arguments), replayed in a fresh child process:
    wall and CPU time, and peak RSS (``VmHWM`` of the child, so it includes the interpreter).
    Targets: < 20 s and < 300 MB.
(d) (a) in instructions (valgrind callgrind, when installed; about two minutes), a measure
    other load on the machine does not move.
(c) where the time of (a) goes: the reading and parsing alone (``iter_records``), the
    reconstruction pass (records it replays twice), and, from a cProfile run, the allocator's
    search (``pcpu_alloc_search``), commit with its bitmap and hint updates (``commit_alloc``)
    and frees (``free_in_chunk``), as shares of the replay.
"""

from __future__ import annotations

import contextlib
import cProfile
import gzip
import io
import json
import os
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import Row, main, s1_bundle
from localmap.units import fmt_bytes, fmt_count, fmt_percent, fmt_seconds

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "localmap" / "bench"

# the reference: a tight regex parse of every percpu event's fields. The task field may hold
# '-', so "(.+)-(\d+)" takes the last "-PID"; the variant "(.+?)" (first "-PID" that fits, the
# trick the replay's own reader uses) is faster and reported beside it.
_EV = re.compile(r" *(.+)-(\d+) +(?:\( *[-\d]+\) +)?\[(\d+)\] \S+ +(\d+\.\d+): "
                 r"percpu_(\w+): (.*)")
_EV_LAZY = re.compile(r" *(.+?)-(\d+) +(?:\( *[-\d]+\) +)?\[(\d+)\] \S+ +(\d+\.\d+): "
                      r"percpu_(\w+): (.*)")
_ALLOC = re.compile(r"call_site=(\S+) reserved=(\d) is_atomic=(\d) size=(\d+) align=(\d+) "
                    r"base_addr=([0-9a-f]+) off=(\d+) ptr=([0-9a-f]+)")
_FREE = re.compile(r"base_addr=([0-9a-f]+) off=(\d+) ptr=([0-9a-f]+)")
_FIELD = re.compile(r"(\w+)=(\S*)")


@contextlib.contextmanager
def _open_like_the_replay(path: Path):
    """The text stream the replay reads (``localmap.ingest.textfile``: gzip through ISA-L)."""
    from localmap.ingest.textfile import open_text_stream

    fh, raw, _ = open_text_stream(path)
    try:
        yield fh
    finally:
        fh.close()
        raw.close()


def tight_parse(path: Path, ev: re.Pattern = _EV, stdlib_gzip: bool = False) -> int:
    """Every field of every percpu event, numbers converted; returns the event count. The text
    comes through the replay's own reader (same decompression), or ``gzip.open``."""
    n = 0
    match = ev.match
    with (gzip.open(path, "rt") if stdlib_gzip else _open_like_the_replay(path)) as fh:
        for line in fh:
            m = match(line)
            if m is None:
                continue
            task, pid, cpu, ts, name, rest = m.groups()
            pid, cpu, ts = int(pid), int(cpu), float(ts)
            if name == "alloc_percpu":
                cs, res, atom, size, align, base, off, ptr = _ALLOC.match(rest).groups()
                res, atom = res == "1", atom == "1"
                size, align, off = int(size), int(align), int(off)
                base, ptr = int(base, 16), int(ptr, 16)
            elif name == "free_percpu":
                base, off, ptr = _FREE.match(rest).groups()
                base, off, ptr = int(base, 16), int(off), int(ptr, 16)
            else:
                dict(_FIELD.findall(rest))
            n += 1
    return n


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def bench_a(runs: int) -> dict:
    from localmap.analysis.replay import replay
    from localmap.ingest.bundle import load_bundle

    bundle = s1_bundle()
    trace_path = load_bundle(bundle).trace_path
    tight_parse(trace_path)          # warm the page cache and the regex caches
    replay(load_bundle(bundle))
    parse_w, parse_c, rep_w, rep_c, lazy_c, std_c = [], [], [], [], [], []
    agreement = events = None
    for i in range(runs):
        print(f"  (a) run {i + 1}/{runs}", file=sys.stderr, flush=True)
        w, c, events = _timed(lambda: tight_parse(trace_path))
        parse_w.append(w)
        parse_c.append(c)
        lazy_c.append(_timed(lambda: tight_parse(trace_path, _EV_LAZY))[1])
        std_c.append(_timed(lambda: tight_parse(trace_path, stdlib_gzip=True))[1])
        w, c, r = _timed(lambda: replay(load_bundle(bundle)))
        rep_w.append(w)
        rep_c.append(c)
        agreement = r.agreement
    pw, pc = statistics.median(parse_w), statistics.median(parse_c)
    rw, rc = statistics.median(rep_w), statistics.median(rep_c)
    lc = statistics.median(lazy_c)
    sc = statistics.median(std_c)
    return {"std_cpu": sc, "ratio_std": rc / sc,
            "bundle": str(bundle), "events": events, "runs": runs,
            "parse_wall": pw, "parse_cpu": pc, "replay_wall": rw, "replay_cpu": rc,
            "ratio_wall": rw / pw, "ratio_cpu": rc / pc, "agreement": agreement,
            "lazy_cpu": lc, "ratio_lazy": rc / lc, "ok": rc <= 3 * pc}


def make_synthetic(events: int, cpus: int, seed: int, reuse: bool) -> tuple[Path, float]:
    from localmap.analysis.synthetic import make_synthetic_bundle

    import hashlib
    import localmap.analysis.synthetic as syn
    version = hashlib.sha1(Path(syn.__file__).read_bytes()).hexdigest()[:8]
    out = CACHE / f"synthetic_{cpus}cpu_{events}ev_seed{seed}_{version}"
    if reuse and (out / "trace").exists() and (out / "meminfo.fork").exists():
        return out, 0.0         # (same generator source, same arguments: the same bytes)
    from localmap.cli.progress import TerminalProgress

    t = time.perf_counter()
    with TerminalProgress(sys.stderr.isatty()) as prog:
        prog.start(f"generating {events:,} events, {cpus} CPUs", total=events)
        make_synthetic_bundle(out, nr_cpus=cpus, nr_events=events, seed=seed, progress=prog.update)
    return out, time.perf_counter() - t


def peak_rss_kb() -> int:
    """This process's peak resident set: VmHWM (reset by exec, unlike ru_maxrss, which a
    child keeps from the parent it was forked from), else ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(path: str) -> None:
    """Runs in a fresh interpreter: replay only, then report time and peak RSS as JSON."""
    from localmap.analysis.replay import replay

    w, c, r = _timed(lambda: replay(path))
    rss_kb = peak_rss_kb()
    print(json.dumps({"wall": w, "cpu": c, "rss_kb": rss_kb,
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
              "ok": d["wall"] < 20 and d["rss_kb"] * 1024 < 300 << 20})
    return d


def bench_c() -> dict:
    """Where the replay of s1 spends its time (CPU seconds; shares from one cProfile run)."""
    from localmap.analysis import replay as rp
    from localmap.ingest.bundle import load_bundle
    from localmap.ingest.trace import iter_records

    bundle = s1_bundle()
    trace_path = load_bundle(bundle).trace_path
    reads = [_timed(lambda: sum(1 for _ in iter_records(trace_path)))[1] for _ in range(3)]
    whole = [_timed(lambda: rp.replay(load_bundle(bundle)))[1] for _ in range(3)]
    learned = [0]
    orig = rp._Engine.learn_prefix

    def counting(self):
        buf = orig(self)
        learned[0] = len(buf)
        return buf
    rp._Engine.learn_prefix = counting
    try:
        pr = cProfile.Profile()
        pr.enable()
        r = rp.replay(load_bundle(bundle))
        pr.disable()
    finally:
        rp._Engine.learn_prefix = orig
    st = pstats.Stats(pr)
    total = st.total_tt
    cum = {}
    for (file, _, name), (_, _, _, ct, _) in st.stats.items():
        if name in ("pcpu_alloc_search", "commit_alloc", "free_in_chunk", "iter_records",
                    "learn_prefix") and ("percpu" in file or "trace" in file or
                                         "replay" in file):
            cum[name] = cum.get(name, 0.0) + ct
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    return {"read_parse_cpu": statistics.median(reads), "replay_cpu": statistics.median(whole),
            "events": r.nr_events, "reconstruction_events": learned[0],
            "shares": {k: v / total for k, v in cum.items()}, "profile": s.getvalue()}


_CG_SCRIPTS = {
    "import": "import sys; sys.path.insert(0, {bench!r}); import bench_replay, "
              "localmap.analysis.replay",
    "tight": "import sys; sys.path.insert(0, {bench!r}); import bench_replay, "
             "localmap.analysis.replay; bench_replay.tight_parse({trace!r})",
    "replay": "import sys; sys.path.insert(0, {bench!r}); import bench_replay, "
              "localmap.analysis.replay as r; r.replay({bundle!r})",
}


def bench_instructions() -> dict | None:
    """(a) counted in instructions (valgrind's callgrind), which other load on the machine
    does not change: the replay and the tight parse, each less the imports they share."""
    import shutil
    if shutil.which("valgrind") is None:
        return None
    from localmap.ingest.bundle import load_bundle
    bundle = s1_bundle()
    trace = str(load_bundle(bundle).trace_path)
    counts = {}
    for name, code in _CG_SCRIPTS.items():
        print(f"  (d) callgrind: {name}", file=sys.stderr, flush=True)
        code = code.format(bench=str(Path(__file__).parent), trace=trace, bundle=str(bundle))
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              sys.executable, "-c", code], capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", out.stderr)
        if out.returncode or not m:
            return {"error": f"callgrind of the {name} step failed (exit {out.returncode}): "
                             + (out.stderr.strip().splitlines() or ["no output"])[-1][:120]}
        counts[name] = int(m.group(1))
    tight = counts["tight"] - counts["import"]
    rep = counts["replay"] - counts["import"]
    return {"tight": tight, "replay": rep, "ratio": rep / tight}


def rows(args) -> list[Row]:
    out = []
    if args.only in (None, "a"):
        a = bench_a(args.runs)
        name = Path(a["bundle"]).name
        out += [
            Row(f"tight regex parse of {name}'s trace ({fmt_count(a['events'])} events), median "
                f"of {a['runs']}, side by side with the replay",
                f"{fmt_seconds(a['parse_cpu'], 3)} CPU, {fmt_seconds(a['parse_wall'], 3)} wall"),
            Row(f"whole replay of {name} (reconstruction pass, scoring pass, checks)",
                f"{fmt_seconds(a['replay_cpu'], 3)} CPU = {a['ratio_cpu']:.2f}x the parse "
                f"({a['ratio_wall']:.2f}x in wall time), agreement {fmt_percent(a['agreement'])}",
                "<= 3x parse (goal 2x)", a["ok"]),
            Row("  the same against the faster tight parse (lazy task field)",
                f"{a['ratio_lazy']:.2f}x ({fmt_seconds(a['lazy_cpu'], 3)} CPU)"),
            Row("  the same against the tight parse reading through the standard library's "
                "gzip (slower than the replay's ISA-L reader)",
                f"{a['ratio_std']:.2f}x ({fmt_seconds(a['std_cpu'], 3)} CPU)"),
        ]
    if args.only in (None, "b"):
        b = bench_b(args.events, args.cpus, args.seed, not args.regenerate)
        out += [
            Row(f"replay of a synthetic {fmt_count(b['events'])}-event trace, {b['cpus']} CPUs, "
                "fresh process", f"{fmt_seconds(b['wall'], 1)} wall, {fmt_seconds(b['cpu'], 1)} "
                f"CPU, peak RSS {fmt_bytes(b['rss_kb'] * 1024)}, agreement "
                f"{fmt_percent(b['agreement'])}", "< 20 s, < 300 MB", b["ok"]),
        ]
    if args.only in (None, "c"):
        c = bench_c()
        sh = c["shares"]
        out += [
            Row("where the replay of s1 spends its time (cProfile shares)",
                f"read+parse {c['read_parse_cpu'] / c['replay_cpu']:.0%}; allocator search "
                f"{sh.get('pcpu_alloc_search', 0):.0%}, commit (bitmaps, hints, population) "
                f"{sh.get('commit_alloc', 0):.0%}, free {sh.get('free_in_chunk', 0):.0%}; "
                f"reconstruction pass {fmt_count(c['reconstruction_events'])} of "
                f"{fmt_count(c['events'])} events"),
        ]
        if args.profile:
            print(c["profile"], file=sys.stderr)
    if args.only in (None, "d"):
        d = bench_instructions()
        if d is not None:
            out += [
                Row("tight parse and replay of s1 in instructions (callgrind, imports "
                    "subtracted; load does not change it)",
                    d["error"] if "error" in d else
                    f"{d['tight'] / 1e9:.2f} G and {d['replay'] / 1e9:.2f} G: "
                    f"{d['ratio']:.2f}x"),
            ]
    return out


def add_args(ap) -> None:
    ap.add_argument("--only", choices=("a", "b", "c", "d"))
    ap.add_argument("--runs", type=int, default=11, help="repetitions for (a) (default 11)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--cpus", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--regenerate", action="store_true",
                    help="generate the synthetic bundle even if one made by the same generator "
                    "source with the same arguments is cached")
    ap.add_argument("--profile", action="store_true", help="also print (c)'s cProfile table")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
        sys.exit(0)
    sys.exit(main(__doc__, rows, add_args))
