"""The fleet at size, as separate processes: 200 bundles built from the shared captures (cut
traces, other CPU counts, broken ones) evaluated by ``localmap fleet``, killed part-way and
resumed, every row checked against ``localmap replay`` / ``localmap overhead`` for that bundle;
and a real ``dask scheduler`` with two ``dask worker`` processes on localhost giving the same
rows as the local cluster."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from fleetlib import CORRUPT, build_fleet, dask_processes, stop
from localmap.errors import LocalmapError
from localmap.fleet.store import ResultStore

pytestmark = pytest.mark.slow

LOCALMAP = [sys.executable, "-m", "localmap"]
RUN_COLUMNS = ("seconds", "replay_seconds", "run_id", "worker")
REPLAY_KEYS = ("agreement", "allocs", "agree", "events", "reorders", "partial")
OVERHEAD_KEYS = ("granule", "va_bits", "cpus", "local_va_bytes", "local_va_peak_bytes",
                 "pgtable_extra_bytes", "pgtable_extra_peak_bytes", "live_chunks", "split_level",
                 "unit_size", "chunks_created", "chunks_destroyed")


def _per_bundle(loc: str) -> dict:
    """What the API behind ``localmap replay`` and ``localmap overhead`` says about one bundle,
    for its own CPU count and for 64 CPUs (run in a pool: one process per bundle at a time)."""
    from localmap.analysis.overhead import overhead_bundle
    from localmap.analysis.replay import replay
    from localmap.ingest.bundle import load_bundle

    try:
        b = load_bundle(loc)
        r = replay(b)
    except LocalmapError as exc:
        return {"error": exc.one_line()}
    out = {"replay": {"agreement": r.agreement, "allocs": r.nr_allocs, "agree": r.agree,
                      "events": r.nr_events, "reorders": r.swaps, "partial": r.partial}}
    for label, cpus in (("own/own/own", b.nr_possible_cpus), ("own/own/64", 64)):
        try:
            o = overhead_bundle(b, cpus, baseline=False)
            out[label] = {k: o[k] for k in OVERHEAD_KEYS}
        except LocalmapError as exc:
            out[label] = {"error": exc.one_line()}
    return out


def _alive(pgid: int, within: float) -> list[str]:
    """The processes of group ``pgid`` still running (not zombies) after up to ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        ps = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)],
                            capture_output=True, text=True).stdout.splitlines()
        left = [ln.strip() for ln in ps if ln.split()[1:2] and not ln.split()[1].startswith("Z")]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _rows(path: Path) -> list[dict]:
    try:
        return ResultStore(path).read()
    except LocalmapError:
        return []


@pytest.fixture(scope="module")
def fleet200(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("fleet200")
    kinds = build_fleet(shared_data, root / "bundles", 200, max_events=1000)
    manifest = root / "fleet.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["host", "bundle"])
        for i, loc in enumerate(kinds):
            w.writerow([f"host{i}", os.path.relpath(loc, root)])
    return root, manifest, kinds


def test_200_bundles_killed_resumed_and_equal_to_per_bundle_results(fleet200, tmp_path):
    root, manifest, kinds = fleet200
    assert len(kinds) == 200 and set(CORRUPT) <= set(kinds.values())
    assert Counter(kinds.values())["cpus"] >= 40           # many CPU counts, not s1's 4 / s2's 2
    results = tmp_path / "results"
    cmd = LOCALMAP + ["fleet", str(manifest), "--cpus", "own,64", "--workers", "2",
                      "--results", str(results), "--no-progress"]
    # 1. start, and kill the whole process group (driver and its workers) part-way
    first = subprocess.Popen(cmd + ["--json"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(_rows(results)) < 120:
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "no results written in time"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        assert _alive(first.pid, within=10) == []
    finally:
        stop([first])
    killed = {(r["bundle"], r["config"]): r for r in _rows(results)}
    assert 120 <= len(killed) < 400, "the run finished before it was killed"
    assert len({r["run_id"] for r in killed.values()}) == 1
    parts_before = {p.name: p.read_bytes() for p in results.glob("part-*.parquet")}

    # 2. resume: only what is missing runs; the first run's files are left as they were
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {p.name: p.read_bytes() for p in results.glob("part-*.parquet")
            if p.name in parts_before} == parts_before
    stored = _rows(results)
    assert len(stored) == len({(r["bundle"], r["config"]) for r in stored}) == 400  # no redo
    assert len(rows) == 400
    by_key = {(r["bundle"], r["config"]): r for r in rows}
    assert all(by_key[k] == v for k, v in killed.items())
    resumed_runs = {r["run_id"] for k, r in by_key.items() if k not in killed}
    assert len(resumed_runs) == 1 and resumed_runs.isdisjoint({r["run_id"] for r in killed.values()})

    # 3. every row equals what replay/overhead give for that bundle on its own
    with ProcessPoolExecutor(2) as pool:
        expected = dict(zip(kinds, pool.map(_per_bundle, kinds, chunksize=8)))
    for loc, kind in kinds.items():
        exp = expected[loc]
        for label in ("own/own/own", "own/own/64"):
            r = by_key[(loc, label)]
            if "error" in exp:                              # broken: reported, one line
                assert kind in CORRUPT, (loc, exp)
                assert r["error"] == exp["error"] and r["agreement"] is None
                continue
            assert {k: r[k] for k in REPLAY_KEYS} == exp["replay"], loc
            if "error" in exp[label]:
                assert kind == "short" and r["error"] == exp[label]["error"]
            else:
                assert r["error"] is None and {k: r[k] for k in OVERHEAD_KEYS} == exp[label], loc
    errors = {loc for (loc, _), r in by_key.items() if r["agreement"] is None}
    assert {kinds[loc] for loc in errors} == set(CORRUPT) and len(errors) == len(CORRUPT)

    # ... and the commands themselves agree, on a few bundles of each kind
    sample = [next(loc for loc, k in kinds.items() if k == kind) for kind in ("full", "cpus", "cut")]
    for loc in sample:
        rep = json.loads(subprocess.run(LOCALMAP + ["replay", loc, "--json"], capture_output=True,
                                        text=True, check=True).stdout)
        assert by_key[(loc, "own/own/64")]["agreement"] == rep["agreement"]["overall"]
        ov = json.loads(subprocess.run(LOCALMAP + ["overhead", loc, "--cpus", "64", "--json"],
                                       capture_output=True, text=True, check=True).stdout)
        assert {k: by_key[(loc, "own/own/64")][k] for k in OVERHEAD_KEYS} == \
            {k: ov[k] for k in OVERHEAD_KEYS}

    # 4. the report over the finished folder (no cluster started): failures listed by reason
    report = subprocess.run(cmd + ["--html", str(tmp_path / "html"), "--outliers", "20"],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "0 bundles evaluated, 200 already in the results folder" in report.stdout
    assert "none (nothing left to do)" in report.stdout
    for reason in ("the compressed stream ends early", "not a trace line", "no dmesg first-chunk line",
                   "no percpu events found", "bad CPU list", "no such bundle folder"):
        assert reason in report.stdout.replace("\n", " ").replace("│", " ") or \
            reason in (tmp_path / "html" / "index.html").read_text(), reason
    page = (tmp_path / "html" / "index.html").read_text()
    assert 'data-figure="fleet-cdf-pgtable_extra_bytes"' in page and "<script" not in page


def test_a_scheduler_and_two_workers_give_the_local_rows(fleet200, tmp_path):
    root, manifest, kinds = fleet200
    sub = list(kinds)[:24]
    (tmp_path / "few.json").write_text(json.dumps(sub))
    base = LOCALMAP + ["fleet", str(tmp_path / "few.json"), "--cpus", "own,160",
                      "--granules", "4K,16K", "--no-progress", "--json"]
    local = subprocess.run(base + ["--workers", "2", "--results", str(tmp_path / "local")],
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    with dask_processes(tmp_path / "dask", workers=2) as (address, workers):
        assert address.startswith("tcp://127.0.0.1:")
        dist = subprocess.run(base + ["--scheduler", address, "--workers", "2",
                                      "--results", str(tmp_path / "dist")],
                              capture_output=True, text=True, timeout=300)
        assert dist.returncode == 0, dist.stderr
        pids = {str(w.pid) for w in workers}
        assert all(w.poll() is None for w in workers)
    assert all(w.poll() is not None for w in workers)          # torn down
    a, b = json.loads(local.stdout), json.loads(dist.stdout)
    assert len(a) == len(b) == 24 * 4

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in RUN_COLUMNS} for r in rows]

    assert strip(a) == strip(b)
    used = {r["worker"].rsplit(":", 1)[1] for r in b}
    assert used == pids                                      # both separate workers did work
    assert not used & {r["worker"].rsplit(":", 1)[1] for r in a}


def test_ctrl_c_writes_what_is_done_and_says_one_line(fleet200, tmp_path):
    """Ctrl-C in a terminal reaches the driver and its local workers (one process group): the
    driver writes the rows it has, closes the cluster and prints one line; no worker dies with
    a traceback, no process is left."""
    root, manifest, kinds = fleet200
    results = tmp_path / "results"
    cmd = LOCALMAP + ["fleet", str(manifest), "--workers", "2", "--results", str(results),
                      "--no-progress"]
    # as in a terminal: Ctrl-C live even if this test runs where SIGINT is ignored (a
    # background job of a non-interactive shell ignores it, and its children inherit that)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while len(_rows(results)) < 20:
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGINT)
        assert p.wait(60) == 130
        assert p.stderr.read().decode() == "localmap: interrupted\n"
        assert _alive(p.pid, within=10) == []
    finally:
        stop([p])
    assert 20 <= len(_rows(results)) < 200       # written; resuming is the test above
