"""The fleet: sources, configurations, the results folder, aggregation, one bundle's task, and
the command on a small fleet with a local Dask cluster. The 200-bundle run, the kill and
resume, and the separate scheduler and worker processes are in test_fleet_slow.py."""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fleetlib import CORRUPT, build_fleet
from localmap.analysis.overhead import overhead_bundle
from localmap.analysis.replay import replay
from localmap.cli import main
from localmap.errors import LocalmapError
from localmap.fleet import aggregate as agg_mod
from localmap.fleet import sources, store as store_mod
from localmap.fleet.run import run_fleet
from localmap.fleet.task import Config, evaluate_bundle, grid
from localmap.ingest.bundle import load_bundle

RUN_COLUMNS = ("seconds", "replay_seconds", "run_id", "worker")   # how a row ran, not its result

# --- sources --------------------------------------------------------------------------------


def _fake(root: Path, *names: str, trace: str = "trace.gz") -> list[str]:
    out = []
    for n in names:
        d = root / n
        d.mkdir(parents=True)
        (d / trace).write_text("x")
        (d / "dmesg").write_text("x")
        out.append(str(d))
    return out


def test_a_folder_of_bundles_at_any_depth_and_a_bundle_folder(tmp_path):
    got = _fake(tmp_path, "a", "b", "deep/er/c")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("not a bundle")
    assert sources.expand([str(tmp_path)]) == sorted(got)
    assert sources.expand([got[1]]) == [got[1]]              # the folder is a bundle itself
    assert sources.expand([f"file://{got[0]}"]) == [got[0]]  # a URL through fsspec
    assert sources.expand([got[0], str(tmp_path)]) == [got[0]] + sorted(set(got) - {got[0]})


def test_globs_select_bundle_folders_trace_files_and_manifests(tmp_path):
    a, b, c = _fake(tmp_path, "h1", "h2", "other/h3", trace="trace")
    (tmp_path / "x.csv").write_text(f"bundle\n{c}\n")
    (tmp_path / "README.md").write_text("ignored")
    assert sources.expand([str(tmp_path / "h*")]) == [a, b]
    assert sources.expand([str(tmp_path / "*/trace")]) == [a, b]
    assert sources.expand([str(tmp_path / "*.csv")]) == [c]
    with pytest.raises(LocalmapError, match="no bundle matches"):
        sources.expand([str(tmp_path / "nothing*")])


def test_manifests_csv_and_json_relative_to_their_folder(tmp_path):
    a, b = _fake(tmp_path, "caps/a", "caps/b")
    m = tmp_path / "m"
    m.mkdir()
    (m / "with_header.csv").write_text("host,bundle\nx,../caps/a\n# a comment\ny,../caps/b\n")
    (m / "no_header.csv").write_text(f"{a}\n../caps/b\n\n../caps/gone\n")
    (m / "list.json").write_text(json.dumps(["../caps/a", {"bundle": "../caps/b"}]))
    (m / "object.json").write_text(json.dumps({"bundles": [{"url": f"file://{b}"}]}))
    assert sources.expand([str(m / "with_header.csv")]) == [a, b]
    assert sources.expand([str(m / "no_header.csv")]) == [a, b, str(tmp_path / "caps/gone")]
    assert sources.expand([str(m / "list.json")]) == [a, b]
    assert sources.expand([str(m / "object.json")]) == [b]


@pytest.mark.parametrize("text,name,match", [
    ("{oops", "bad.json", r"bad\.json:1: not JSON"),
    ('{"x": 1}', "bad.json", "expected a list of bundle locations"),
    ("[3]", "bad.json", "entry 0 is not a bundle location"),
    ("bundle\n", "empty.csv", "lists no bundle"),
    ("a,bundle\n1\n", "short.csv", r"short\.csv:2: row has no 'bundle' column"),
])
def test_bad_manifests_are_one_line_errors(tmp_path, text, name, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(LocalmapError, match=match):
        sources.expand([str(tmp_path / name)])


def test_missing_sources_and_empty_folders(tmp_path):
    with pytest.raises(LocalmapError, match="no such bundle folder"):
        sources.expand([str(tmp_path / "nope")])
    with pytest.raises(LocalmapError, match="no bundle in this folder"):
        sources.expand([str(tmp_path)])
    with pytest.raises(LocalmapError, match="cannot open this location"):
        sources.expand(["nosuchprotocol://x/y"])


# --- configurations -------------------------------------------------------------------------


def test_grid_is_the_product_with_own_values_and_drops_pairs_that_do_not_exist():
    cfgs, notes = grid(["4K", "16k"], [39, None], [None, 64])
    assert [c.label for c in cfgs] == ["4K/39/own", "4K/39/64", "4K/own/own", "4K/own/64",
                                       "16K/own/own", "16K/own/64"]
    assert notes == ["16K pages have no 39-bit VA"]
    assert grid()[0] == [Config(None, None, None)] and grid()[0][0].label == "own/own/own"
    for bad, match in (((["8K"], None, None), "unknown granule"),
                       ((None, [40], None), "no arm64 VA size"),
                       ((None, None, [0]), "not a CPU count"),
                       ((["64K"], [39], None), "no configuration left")):
        with pytest.raises(LocalmapError, match=match):
            grid(*bad)


# --- the results folder ---------------------------------------------------------------------


def test_store_round_trip_newest_wins_and_no_partial_files(tmp_path):
    st = store_mod.ResultStore(tmp_path / "r")
    assert st.read() == [] and st.append([]) is None
    st.append([{"bundle": "/b1", "config": "own/own/4", "agreement": 0.5, "cpus": 4,
                "error": None, "unknown_key": 1}])
    st.append([{"bundle": "/b1", "config": "own/own/4", "error": "/b1: broken",
                "error_reason": "broken"},
               {"bundle": "/b2", "config": "own/own/4", "agreement": 1.0, "events": 10}])
    rows = st.read()
    assert [set(r) for r in rows] == [set(store_mod.columns())] * 3
    assert rows[0]["agreement"] == 0.5 and rows[0]["cpus"] == 4 and rows[2]["events"] == 10
    latest = st.latest()
    assert latest[("/b1", "own/own/4")]["error"] == "/b1: broken"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [p.name for p in st.parts()]
    assert store_mod.ResultStore(tmp_path / "r").read() == rows      # another process reads it
    (tmp_path / "r" / "part-0-bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(LocalmapError, match=r"part-0-bad\.parquet: not a results file"):
        st.read()
    assert st.clear() == 3 and st.read() == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(LocalmapError, match="cannot create the results folder"):
        store_mod.ResultStore(tmp_path / "file")


# --- aggregation ----------------------------------------------------------------------------


def test_percentiles_are_nearest_rank_as_numpy_inverted_cdf():
    rng = random.Random(7)
    for n in (1, 2, 3, 10, 99, 100, 1001):
        vals = [rng.randrange(1000) for _ in range(n)]
        for p in (1, 25, 50, 75, 90, 99, 100):
            want = float(np.percentile(vals, p, method="inverted_cdf"))
            assert agg_mod.percentile(vals, p) == want, (n, p)
    assert [agg_mod.percentile(list(range(1, 11)), p) for p in (50, 90, 99)] == [5, 9, 10]


def _row(i, **kw):
    r = {"bundle": f"/f/b{i}", "name": f"b{i}", "config": "own/own/4", "error": None,
         "agreement": 1.0, "allocs": 100, "misses": 0, "miss_causes": "{}", "events": 200,
         "local_va_bytes": 4 * 139264, "local_va_peak_bytes": 5 * 139264,
         "pgtable_extra_bytes": 65536, "pgtable_extra_peak_bytes": 65536, "unit_size": 139264,
         "live_chunks": 4, "chunks_created": 5, "cpus": 4, "split_level": 0, "kernel": "6.12"}
    r.update(kw)
    return r


def test_outliers_are_beyond_the_fences_and_say_why():
    rows = [_row(i, local_va_bytes=(4 + i % 3) * 139264) for i in range(30)]
    rows.append(_row(30, agreement=0.9, misses=10,
                     miss_causes=json.dumps({"other-chunk": 7, "other-offset": 3})))
    rows.append(_row(31, local_va_bytes=40 * 139264, live_chunks=40, chunks_created=44))
    rows.append(_row(32, pgtable_extra_bytes=10 * 65536, cpus=64))
    # Q1 = 4, Q3 = 6 units: the upper fence is 6 + 1.5 x 2 = 9 units; 10 is out, 9 is in
    rows.append(_row(35, local_va_bytes=10 * 139264, live_chunks=10))
    rows.append(_row(36, local_va_bytes=9 * 139264, live_chunks=9))
    rows.append(_row(33, error="/f/b33/trace:3: bad line", error_reason="bad line",
                     agreement=None))
    rows.append(_row(34, error="/f/b34/trace:9: bad line", error_reason="bad line",
                     agreement=None))
    a = agg_mod.aggregate(rows)
    got = {(o["name"], o["metric"]): o for o in a["outliers"]}
    assert set(got) == {("b30", "agreement"), ("b31", "local_va_bytes"),
                        ("b32", "pgtable_extra_bytes"), ("b35", "local_va_bytes")}
    assert got["b30", "agreement"]["why"].startswith(
        "10 of 100 allocations mispredicted; 7 of them other-chunk")
    assert "40 chunks live at the end (median 5)" in got["b31", "local_va_bytes"]["why"]
    assert "64 CPUs (median 4)" in got["b32", "pgtable_extra_bytes"]["why"]
    c = a["configs"][0]
    assert (c["rows"], c["ok"], c["failed"]) == (37, 35, 2)
    assert c["metrics"]["agreement"]["min"] == 0.9
    assert c["metrics"]["local_va_bytes"]["max"] == 40 * 139264
    assert a["failures"] == [{"reason": "bad line", "count": 2, "bundles": ["/f/b33", "/f/b34"],
                              "configs": ["own/own/4"],
                              "examples": ["/f/b33/trace:3: bad line", "/f/b34/trace:9: bad line"]}]
    # without the planted rows nothing stands out
    assert agg_mod.aggregate(rows[:30])["outliers"] == []


# --- one bundle -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_fleet(tmp_path_factory, shared_data) -> dict[str, str]:
    """9 bundles (cut traces, other CPU counts), one too short for a design machine, and the 6
    broken kinds (one of them missing)."""
    return build_fleet(shared_data, tmp_path_factory.mktemp("fleet") / "f", 16, every=2, full=0)


def _expected(loc: str, cfg: Config) -> dict:
    """What ``localmap replay`` and ``localmap overhead`` give for one bundle x configuration."""
    b = load_bundle(loc)
    r = replay(b)
    cpus = cfg.cpus or b.nr_possible_cpus
    o = overhead_bundle(b, cpus, cfg.granule, cfg.va_bits, baseline=False)
    return {"agreement": r.agreement, "allocs": r.nr_allocs, "agree": r.agree,
            "events": r.nr_events, "reorders": r.swaps, "partial": r.partial,
            **{k: o[k] for k in ("granule", "va_bits", "cpus", "local_va_bytes",
                                 "local_va_peak_bytes", "pgtable_extra_bytes",
                                 "pgtable_extra_peak_bytes", "live_chunks", "split_level",
                                 "unit_size", "chunks_created")}}


def test_one_bundle_equals_replay_and_overhead_and_errors_are_per_row(small_fleet):
    loc = next(p for p, k in small_fleet.items() if k == "cpus")
    cfgs = [Config(), Config("16K", 48, 64), Config(None, 36, None)]
    rows = evaluate_bundle(loc, cfgs, "run1")
    assert [r["config"] for r in rows] == ["own/own/own", "16K/48/64", "own/36/own"]
    for r, c in zip(rows[:2], cfgs):
        assert r["error"] is None
        assert {k: r[k] for k in _expected(loc, c)} == _expected(loc, c)
    assert rows[0]["cpus"] == load_bundle(loc).nr_possible_cpus != 4   # its own, not s1's
    assert rows[2]["agreement"] == rows[0]["agreement"]        # the replay ran; the machine not
    assert rows[2]["error"] == "the bundle's 36-bit VA does not exist with 4K pages; pass --va-bits"
    assert rows[2]["local_va_bytes"] is None


def test_broken_bundles_give_the_error_localmap_replay_prints(small_fleet, capsys):
    for loc, kind in small_fleet.items():
        if kind not in CORRUPT:
            continue
        rows = evaluate_bundle(loc, [Config(), Config(cpus=64)])
        assert main(["replay", loc]) == 2
        printed = capsys.readouterr().err.strip()
        assert printed.startswith("localmap: ") and "\n" not in printed
        assert [r["error"] for r in rows] == [printed[len("localmap: "):]] * 2, kind
        assert rows[0]["error_reason"] and rows[0]["error"].endswith(rows[0]["error_reason"])
        assert rows[0]["agreement"] is None


def test_a_bundle_at_a_url_is_fetched_through_fsspec(small_fleet):
    import fsspec

    fs = fsspec.filesystem("memory")
    good = next(p for p, k in small_fleet.items() if k == "cut")
    bad = next(p for p, k in small_fleet.items() if k == "garbage-line")
    for name, src in (("good", good), ("bad", bad)):
        for f in Path(src).iterdir():
            fs.pipe(f"/fleet/{name}/{f.name}", f.read_bytes())
    try:
        assert sources.expand(["memory://fleet"]) == ["memory:///fleet/bad", "memory:///fleet/good"]
        remote = evaluate_bundle("memory:///fleet/good", [Config()])[0]
        local = evaluate_bundle(good, [Config()])[0]
        keep = set(_expected(good, Config())) | {"meminfo_ok", "miss_causes"}
        assert {k: remote[k] for k in keep} == {k: local[k] for k in keep}
        err = evaluate_bundle("memory:///fleet/bad", [Config()])[0]["error"]
        assert err.startswith("memory:///fleet/bad/trace:") and "not a trace line" in err
        assert evaluate_bundle("memory:///fleet/none", [Config()])[0]["error"] == \
            "memory:///fleet/none: no such bundle folder or trace file"
    finally:
        fs.rm("/fleet", recursive=True)


# --- the command ----------------------------------------------------------------------------


def test_fleet_command_json_resume_retry_and_report(small_fleet, tmp_path, capsys):
    manifest = tmp_path / "fleet.json"
    manifest.write_text(json.dumps(list(small_fleet)))
    res = tmp_path / "results"
    args = ["fleet", str(manifest), "--workers", "1", "--cpus", "own,64", "--results", str(res),
            "--no-progress"]
    assert main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 * len(small_fleet)
    assert [(r["bundle"], r["config"]) for r in rows] == \
        [(b, c) for b in small_fleet for c in ("own/own/own", "own/own/64")]
    for r in rows:
        kind = small_fleet[r["bundle"]]
        assert (r["error"] is not None) == (kind in CORRUPT or kind == "short")
        assert (r["agreement"] is None) == (kind in CORRUPT)
        if kind == "short":                 # replayed, but no chunk event to build from
            assert r["agreement"] == 1.0 and r["error"].endswith(
                "the replay produced no percpu chunk events")
    first = {(r["bundle"], r["config"]): r for r in rows}
    parts = sorted(p.name for p in res.glob("part-*.parquet"))

    # everything is done: nothing runs, no cluster, the same rows
    run = run_fleet([str(manifest)], [Config(), Config(cpus=64)], res)
    assert (run.ran, run.done_before, run.workers) == (0, len(small_fleet), 0)
    assert {(r["bundle"], r["config"]): r for r in run.rows} == first
    assert sorted(p.name for p in res.glob("part-*.parquet")) == parts

    # --retry-errors runs only the failed bundles again
    run = run_fleet([str(manifest)], [Config(), Config(cpus=64)], res, retry_errors=True,
                    workers=1)
    broken = [b for b, k in small_fleet.items() if k in CORRUPT or k == "short"]
    assert run.ran == len(broken) == 7 and run.failed == 7
    again = {(r["bundle"], r["config"]): r for r in run.rows}
    for key, r in first.items():
        same = RUN_COLUMNS if r["error"] else ()
        assert {k: v for k, v in again[key].items() if k not in same} == \
            {k: v for k, v in r.items() if k not in same}
        assert (again[key]["run_id"] != r["run_id"]) == bool(r["error"])

    # the report: terminal and a self-contained page
    html = tmp_path / "html"
    assert main(args + ["--html", str(html)]) == 0
    out = capsys.readouterr().out
    assert "0 bundles evaluated, 16 already in the results folder" in out
    assert "Failed bundles" in out and "no such bundle folder or trace file" in out
    assert re.search(r"replay agreement\s+│ own/own/64\s+│ 9\s+│ 7 ", out)
    page = (html / "index.html").read_text()
    for fig in ("fleet-cdf-agreement", "fleet-cdf-local_va_bytes", "fleet-cdf-pgtable_extra_bytes",
                "fleet-pgtable-cpus"):
        assert f'data-figure="{fig}"' in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")

    # --fresh: the folder's earlier results go, the bundles asked run again
    two = tmp_path / "two.json"
    two.write_text(json.dumps(list(small_fleet)[:2]))
    run = run_fleet([str(two)], [Config()], res, fresh=True, workers=1)
    assert (run.ran, run.done_before, len(run.rows)) == (2, 0, 2)
    assert not set(parts) & {p.name for p in res.glob("part-*.parquet")}
    assert [(r["bundle"], r["config"]) for r in store_mod.ResultStore(res).read()] == \
        [(b, "own/own/own") for b in list(small_fleet)[:2]]


def test_fleet_command_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from localmap.fleet import run as run_mod

    cases = [(["fleet", str(tmp_path / "none")], "no such bundle folder, folder of bundles"),
             (["fleet", str(tmp_path), "--granules", "8K"], "unknown granule"),
             (["fleet", str(tmp_path), "--cpus", "four"], "argument --cpus"),
             (["fleet", str(tmp_path), "--workers", "0"], "argument --workers")]
    for args, match in cases:
        try:
            code = main(args + ["--results", str(tmp_path / "r")])
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and match in err, (args, err)
    b = tmp_path / "b"
    shutil.copytree(Path(__file__).resolve().parents[1] / "src/localmap/data/default_bundle", b)
    monkeypatch.setattr(run_mod, "CONNECT_TIMEOUT_S", 1)
    assert main(["fleet", str(b), "--scheduler", "tcp://127.0.0.1:9", "--results",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("localmap: tcp://127.0.0.1:9: cannot connect to the Dask scheduler")
    assert err.count("\n") == 1
    assert not list((tmp_path / "r").glob("part-*"))


def test_cdf_and_summary_are_what_they_say():
    from localmap.report.fleet import cdf

    vals = [3, 1, 2, 2, 5]
    assert cdf(vals) == [(1, 0.0), (1, 0.2), (2, 0.6), (3, 0.8), (5, 1.0)]
    s = agg_mod.summary(vals)
    assert (s["min"], s["p50"], s["p90"], s["p99"], s["max"]) == (1, 2, 5, 5, 5)
    assert math.isclose(s["mean"], 2.6)
