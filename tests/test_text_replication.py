"""Kernel text replication on per-CPU tables: costs by hand, from the capture, and the checker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from localmap.check.explore import explore
from localmap.check.scenarios import ALL_SCENARIOS
from localmap.design.text_replication import DEBIAN_612_ARM64, text_replication_cost

BUNDLES = Path("/work/shared/data/bundles")
if not BUNDLES.is_dir():
    BUNDLES = Path(__file__).resolve().parents[2] / "shared/data/bundles"
S1 = BUNDLES / "s1_612_4k_smp4"


def test_cost_by_hand():
    # [_stext, __end_rodata) = [0xffff800080010000, 0xffff800081cef000): 30,273,536 bytes
    image = 0xFFFF800081CEF000 - 0xFFFF800080010000
    # 2 MiB regions it touches: (0x...81ceefff >> 21) - (0x...80010000 >> 21) + 1
    ptes = ((0xFFFF800081CEF000 - 1) >> 21) - (0xFFFF800080010000 >> 21) + 1
    assert ptes == 15
    r = text_replication_cost(4, 160)
    assert r["replicas"] == 3 and r["memory_bytes"] == 3 * image == 90_820_608
    # per extra copy: its own pud table, one pmd table (the image is in one 1 GiB entry), 15 ptes
    assert r["pgtable_bytes"] == 3 * (1 + 1 + ptes) * 4096 == 208_896
    assert r["per_patch"]["copies_written"] == 4 and r["per_patch"]["alias_pte_writes"] == 8
    cpu = text_replication_cost(4, 160, per="cpu")
    assert cpu["memory_bytes"] == 159 * image
    blk = text_replication_cost(2, 8, mapping="block")
    assert blk["pgtable_bytes"] == 1 * 2 * 4096  # no pte tables with block leaves
    mods = text_replication_cost(2, 8, modules_bytes=8 << 20, replicate_modules=True)
    # 8 MiB of module text packed from MODULES_VADDR: one pmd table and four pte tables more
    assert mods["pgtable_bytes"] == (1 + 1 + 15 + 1 + 4) * 4096
    assert mods["memory_bytes"] == image + (8 << 20)


def test_defaults_are_the_captured_kernels_sections(capsys):
    if not (S1 / "kallsyms.gz").is_file():
        pytest.fail(f"missing shared capture {S1}")
    syms = {}
    for line in gzip.decompress((S1 / "kallsyms.gz").read_bytes()).decode().splitlines():
        a, _t, n = line.split()[:3]
        syms.setdefault(n, int(a, 16))
    assert DEBIAN_612_ARM64 == {"stext": syms["_stext"], "etext": syms["_etext"],
                                "start_rodata": syms["__start_rodata"], "end_rodata": syms["__end_rodata"]}
    from localmap.cli import main

    assert main(["overhead", str(S1), "--text-replication", "--nodes", "4", "--cpus", "160", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["memory_bytes"] == 90_820_608 and out["pgtable_bytes"] == 208_896
    assert main(["overhead", "--text-replication"]) == 0
    assert "4.5 GiB" in capsys.readouterr().out  # per-CPU copies on 160 CPUs: 159 x 28.9 MiB


def test_errors_are_one_line(capsys):
    from localmap.cli import main

    assert main(["overhead", "--text-replication", "--nodes", "8", "--cpus", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot populate" in err


@pytest.mark.parametrize("name,verdict", [("ktr-patch-one-copy", "unsafe"), ("ktr-patch-all-copies", "safe"),
                                          ("ktr-patch-all-no-icache", "unsafe"), ("ktr-patch-all-no-tlbi", "unsafe"),
                                          ("ktr-patch-all-no-isb", "unsafe")])
def test_patching_scenarios(name, verdict):
    r = explore(ALL_SCENARIOS[name])
    assert r.verdict == verdict
    if verdict == "unsafe":
        assert r.prop == "stale-code" and "executes the old instruction" in r.steps[-1]["violation"]
        assert any("publish" in s["action"] for s in r.steps)


def test_one_copy_counterexample_is_another_nodes_cpu():
    r = explore(ALL_SCENARIOS["ktr-patch-one-copy"])
    assert "CPU1" in r.violation and "copy 1" in r.violation


def test_all_copies_stays_safe_on_bigger_machines():
    for cpus, tasks in ((3, 2), (2, 3), (3, 3)):
        assert explore(ALL_SCENARIOS["ktr-patch-all-copies"], cpus, tasks).verdict == "safe"
