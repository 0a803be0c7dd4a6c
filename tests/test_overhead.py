"""`localmap overhead`: both CLI forms, JSON keys, errors, and full checked replays of the captures."""

import json

import pytest

from localmap.errors import LocalmapError

from localmap.analysis.overhead import closed_form, overhead_bundle, overhead_synthetic, overhead_table
from localmap.arch.arm64.pgtable import Geometry
from localmap.cli import main

KEYS = {"levels", "root_level", "split_level", "root_copy_bytes", "window_bytes", "local_va_bytes",
        "private_tables_per_cpu", "pgtable_extra_bytes"}


def test_cli_synthetic_json(capsys):
    rc = main(["overhead", "--granule", "4K", "--va-bits", "48", "--cpus", "160", "--unit-size", "192K",
               "--chunks", "5", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert KEYS <= set(d)
    assert (d["levels"], d["root_level"], d["split_level"]) == (4, 0, 0)
    assert d["private_tables_per_cpu"] == {"1": 1, "2": 1, "3": 5}
    assert d["local_va_bytes"] == 983_040 and d["pgtable_extra_bytes"] == 5_238_784
    assert d["root_copy_bytes"] == 4096 and d["window_bytes"] == 512 << 30


def test_cli_synthetic_human_table_has_talk_column(capsys):
    rc = main(["overhead", "--granule", "16K", "--va-bits", "48", "--cpus", "8", "--unit-size", "64K",
               "--chunks", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "960 KiB" in out and "couple of MB" in out  # the talk's figures beside the 4K/160 row
    assert "16K/48" in out and "64K/48" in out


@pytest.mark.parametrize("argv,msg", [
    (["--granule", "4K", "--va-bits", "47", "--cpus", "4", "--unit-size", "32K", "--chunks", "1"], "does not exist"),
    (["--granule", "4K", "--va-bits", "48", "--cpus", "0", "--unit-size", "32K", "--chunks", "1"], "at least 1"),
    (["--granule", "16K", "--va-bits", "36", "--cpus", "4096", "--unit-size", "192K", "--chunks", "4"], "too small"),
    (["--granule", "4K", "--va-bits", "48", "--cpus", "4"], "needs --unit-size, --chunks"),
    (["--granule", "4K", "--va-bits", "48", "--cpus", "4", "--unit-size", "lots", "--chunks", "1"], "bad size"),
    (["/nonexistent/bundle", "--cpus", "4"], ""),
])
def test_cli_bad_input_is_one_line(argv, msg, capsys):
    try:
        rc = main(["overhead"] + argv)
    except SystemExit as exc:           # refused by the option's parser
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("localmap: ") and err.count("\n") == 1 and "Traceback" not in err
    assert msg in err


def test_synthetic_4096_cpus_64_chunks_is_fast():
    import time

    t = time.perf_counter()
    r = overhead_synthetic("4K", 48, 4096, "192K", 64)
    assert time.perf_counter() - t < 5
    cf = closed_form(Geometry(4096, 48), 4096, 192 * 1024, 64)
    assert r["pgtable_extra_bytes"] == cf["pgtable_extra_bytes"] and r["closed_form_agrees"]


def test_overhead_table_rows():
    rows = overhead_table(cpus_list=(1, 160), chunks=5)
    assert len(rows) == 6
    r = next(r for r in rows if r["granule"] == "4K" and r["cpus"] == 160)
    assert r["pgtable_extra_bytes"] == 5_238_784 and r["talk_local_va_bytes"] == 960 * 1024
    # one CPU: no root copies, only CPU 0's private tables
    r1 = next(r for r in rows if r["granule"] == "4K" and r["cpus"] == 1)
    # (five 192K slices back to back fit one 2 MB PTE table)
    assert r1["pgtable_extra_bytes"] == 4096 * (1 + 1 + 1)


def test_full_replay_keeps_invariants(shared_bundle):
    """I1-I5 checked after every step over the whole allocation history, on the bundle's own
    CPU count, then a final full check."""
    from localmap.ingest.bundle import load_bundle

    b = load_bundle(shared_bundle)
    n = b.nr_possible_cpus
    r = overhead_bundle(b, n, checked=True)
    assert KEYS <= set(r)
    assert r["cpus"] == n and r["granule"] == "4K" and r["va_bits"] == 52
    assert r["split_level"] == 0 and r["root_level"] == -1
    assert r["local_va_bytes"] == r["live_chunks"] * r["unit_size"]
    assert r["local_va_peak_bytes"] >= r["local_va_bytes"]
    assert r["chunks_created"] - r["chunks_destroyed"] == r["live_chunks"]  # the first chunk counts
    # extra = (n-1) root copies (128-byte PGD, 16 entries) + (n-1) copied level-0 tables + private
    priv = sum(r["private_tables_per_cpu"].values()) * 4096 * n
    assert r["pgtable_extra_bytes"] == (n - 1) * (128 + 4096) + priv


def test_replay_on_more_cpus_scales_page_tables(s1):
    b = s1
    r4 = overhead_bundle(b, 4)
    r16 = overhead_bundle(b, 16)
    assert r16["local_va_bytes"] == r4["local_va_bytes"]  # one unit per chunk, whatever the CPU count
    assert r16["pgtable_extra_bytes"] > r4["pgtable_extra_bytes"]
    r16_64k = overhead_bundle(b, 16, granule="64K")
    assert r16_64k["granule"] == "64K" and r16_64k["split_level"] == 1


def test_one_replay_feeds_several_machines_like_separate_replays(s2):
    from localmap.analysis.overhead import overhead_bundles
    b = s2
    shared = overhead_bundles(b, [(4, None, None, True), (16, "64K", 48, False),
                                  (16, "2K", 48, False)])
    assert shared[0] == overhead_bundle(b, 4)
    assert shared[1] == overhead_bundle(b, 16, granule="64K", va_bits=48, baseline=False)
    assert isinstance(shared[2], LocalmapError)       # a bad spec does not sink the others


@pytest.mark.parametrize("files,msg", [(("trace.gz", "dmesg", "cpus"), "no kernel .config"),
                                       (("trace.gz", "config.gz"), "first-chunk")])
def test_bundle_without_needed_data_is_one_error(s2, tmp_path, files, msg, capsys):
    import shutil

    for f in files:
        shutil.copy(s2 / f, tmp_path / f)
    rc = main(["overhead", str(tmp_path), "--cpus", "4"])
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and err.count("\n") == 1
