"""Fast tests of the executed-count analysis: sequences cut from real functions, the static /
dynamic classification, llvm-mca pricing, per-operation arithmetic and the talk comparison."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from localmap.lab.profile import WorkloadCounts
from localmap.perf import dynamic, mca, talk
from localmap.perf.image import KernelImage, Symbols
from localmap.perf.sites import analyse
from test_perf_sites import ADD_BATCH, ADD_BATCH_HEX, REF_GET, REF_GET_HEX, fake_image

AS, LD, OBJCOPY = "aarch64-linux-gnu-as", "aarch64-linux-gnu-ld", "aarch64-linux-gnu-objcopy"
TEXT, PCPU = 0xFFFF800080010000, 0xFFFF800081000000
needs_binutils = pytest.mark.skipif(shutil.which(LD) is None, reason="binutils-aarch64-linux-gnu missing")
needs_mca = pytest.mark.skipif(not mca.available(), reason="llvm-mca-19 (llvm-19) not installed")


def rt_image():
    return fake_image([(REF_GET, bytes.fromhex(REF_GET_HEX), "percpu_ref_get_many"),
                       (ADD_BATCH, bytes.fromhex(ADD_BATCH_HEX), "percpu_counter_add_batch")])


def linked_image(tmp_path: Path) -> KernelImage:
    """Two functions assembled and linked here: a DEFINE_PER_CPU read (adrp/add of a symbol in the
    percpu section + the offset) and a dynamic pointer (loaded from memory) add."""
    (tmp_path / "f.s").write_text("""
        .text
        .globl static_read, dynamic_add
static_read:
        adrp x0, pcpu_var
        add x0, x0, :lo12:pcpu_var
        mrs x1, tpidr_el1
        ldr w2, [x0, x1]
        ret
dynamic_add:
        ldr x0, [x3, #8]
        mrs x1, tpidr_el1
        add x0, x0, x1
        ldadd x4, x5, [x0]
        ret
        .section .pcpu, "aw"
pcpu_var: .word 0
""")
    subprocess.run([AS, "-march=armv8.1-a", "-o", str(tmp_path / "f.o"), str(tmp_path / "f.s")], check=True)
    subprocess.run([LD, f"-Ttext={TEXT:#x}", f"--section-start=.pcpu={PCPU:#x}", "-e", "static_read",
                    "-o", str(tmp_path / "f.elf"), str(tmp_path / "f.o")], check=True)
    subprocess.run([OBJCOPY, "-O", "binary", "-j", ".text", str(tmp_path / "f.elf"), str(tmp_path / "f.bin")],
                   check=True)
    code = (tmp_path / "f.bin").read_bytes()
    syms = Symbols(source="test")
    syms.add_all([(TEXT, "T", "_stext"), (TEXT, "t", "static_read"), (TEXT + 20, "t", "dynamic_add"),
                  (TEXT + len(code), "D", "_etext"), (PCPU, "D", "__per_cpu_start"),
                  (PCPU + 0x1000, "D", "__per_cpu_end")])
    return KernelImage(path=Path("linked"), kind="Image", text=code, stext=TEXT, etext=TEXT + len(code),
                       symbols=syms, config={"CONFIG_PREEMPT_VOLUNTARY": "y"}, segments=[(TEXT, code)])


@needs_binutils
def test_static_and_dynamic_sites_told_apart(tmp_path):
    rep = analyse(linked_image(tmp_path))
    by_fn = {s.function: s for s in rep.sites_list}
    assert by_fn["static_read"].base == "static" and by_fn["static_read"].add_addr == TEXT + 12
    assert by_fn["dynamic_add"].base == "dynamic" and by_fn["dynamic_add"].add_addr == TEXT + 28


def test_removed_addresses_are_the_preempt_bracket():
    img = rt_image()
    rep = analyse(img)
    site = next(s for s in rep.sites_list if s.addr == REF_GET + 0x38)
    assert len(site.removed_addrs) == site.removed_fast == 7
    import capstone
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    text = {a: (m, o) for a, _s, m, o in md.disasm_lite(img.read(REF_GET, len(REF_GET_HEX) // 2), REF_GET)}
    removed = [text[a] for a in site.removed_addrs]
    # increment: ldr w, [x, #8] ; add w, w, #1 ; str w, [x, #8]; decrement: ldr x ; sub ; str ; cbnz/cbz
    assert [m for m, _o in removed[:3]] == ["ldr", "add", "str"]
    assert removed[1][1].endswith("#1") and removed[4][0] == "sub"
    assert all(a < site.addr for a in site.removed_addrs[:3]) and all(a > site.addr for a in site.removed_addrs[3:])
    assert site.base == "dynamic"


def test_sequences_before_and_after():
    img = rt_image()
    site = next(s for s in analyse(img).sites_list if s.addr == REF_GET + 0x38)
    sp = mca.sequences(img, site)
    assert sp.before[0].startswith("ldr") and "mrs x2, tpidr_el1" in sp.before
    assert all("tpidr_el1" not in x for v in sp.after.values() for x in v)
    n = len(sp.before)
    assert len(sp.after["hoisted"]) == n - 8            # bracket (7) + mrs
    assert len(sp.after["patched"]) == n - 8 + 3        # + movn/movk/movk
    assert len(sp.after["load"]) == n - 8 + 2           # + adrp/ldr
    assert sp.after["static-alias"] == sp.after["patched"]  # a dynamic pointer keeps patched
    assert all("#0x" not in x.split(",")[-1] for x in sp.before if x.split()[0] in ("cbz", "cbnz", "b", "bl"))


@needs_mca
def test_prices_match_a_direct_llvm_mca_run(tmp_path):
    img = rt_image()
    site = next(s for s in analyse(img).sites_list if s.addr == REF_GET + 0x38)
    prices = mca.price_sites(img, [site], ("neoverse-n1",))
    sp = prices[site.addr]
    lo, hi = sp.saved["neoverse-n1"]["hoisted"]

    def direct(body, its, noalias):
        f = tmp_path / "x.s"
        f.write_text("\n".join(body + ["9:"]) + "\n")
        out = subprocess.run(["llvm-mca-19", "-mtriple=aarch64", "-mcpu=neoverse-n1", f"-iterations={its}",
                              f"-noalias={'true' if noalias else 'false'}",
                              "-skip-unsupported-instructions=any", "-json", str(f)],
                             capture_output=True, text=True, check=True).stdout
        sv = json.loads(out)["CodeRegions"][0]["SummaryView"]
        return sv["TotalCycles"] / sv["Iterations"]

    assert hi == pytest.approx(direct(sp.before, 1, False) - direct(sp.after["hoisted"], 1, False))
    assert lo == pytest.approx(direct(sp.before, 100, True) - direct(sp.after["hoisted"], 100, True))
    assert hi > 0  # removing the serial preempt-count round trip saves cycles on one pass
    # materialising DELTA costs: patched saves less than hoisted in one pass
    assert sp.saved["neoverse-n1"]["patched"][1] <= hi


def test_per_operation_arithmetic():
    img = rt_image()
    rep = analyse(img)
    s_ref, s_read = REF_GET + 0x38, ADD_BATCH + 0x38
    prices = {s_ref: mca.SitePrice(s_ref, [], {}, {c: {v: (1.0, 4.0) for v in mca.VARIANTS} for c in mca.CORES}),
              s_read: mca.SitePrice(s_read, [], {}, {c: {v: (0.5, 2.0) for v in mca.VARIANTS} for c in mca.CORES})}
    counts = WorkloadCounts("fork", rounds=1, ops=2, kernel_instructions=1000, user_instructions=0,
                            sites={s_ref: 10, s_read: 4, 0xFFFF800099999000: 2},
                            blocks={(REF_GET, 20): 10, (ADD_BATCH, 5): 4})
    r = dynamic.analyse_workload("fork", counts, rep, prices, img.symbols)
    assert r["this_cpu_executions"] == 8.0                      # (10 + 4 + 2) / 2
    assert r["removed_instructions"] == (10 * 7 + 4 * 9) / 2
    assert r["removed_share"] == pytest.approx((10 * 7 + 4 * 9) / 1000)
    assert r["net_removed"]["patched"] == (10 * 5 + 4 * 7) / 2
    assert r["net_removed"]["hoisted"] == (10 * 8 + 4 * 10) / 2
    assert r["unclassified_executions"] == 1.0                  # the address that is no site
    assert r["saved_cycles"]["ampere1"]["patched"] == [(10 * 1 + 4 * 0.5) / 2, (10 * 4 + 4 * 2) / 2]
    assert r["kernel_time_change"]["ampere1"] == [-100 * 24 / 500, -100 * 6 / 500]
    fns = {f["function"]: f for f in r["functions"]}
    assert fns["percpu_ref_get_many"]["instructions"] == 100 and fns["percpu_ref_get_many"]["removed"] == 35
    assert fns["percpu_counter_add_batch"]["instructions"] == 10
    assert fns["percpu_ref_get_many"]["predicted_points"] == pytest.approx(-100 * 70 / 1000)


def _result(name, change):
    return {"workload": name, "kernel_time_change": {"ampere1": change}, "functions": []}


def test_talk_verdicts_are_mechanical():
    rows = {r["workload"]: r for r in talk.compare(
        [_result("exec-io", [-20.0, -14.0]), _result("vm", [-1.0, -0.5]), _result("mmapfork", [-30.0, -25.0]),
         _result("syscall", [-1.0, -1.0])], preempt_count=True)}
    assert "syscall" not in rows
    assert rows["exec-io"]["verdict"] == "agrees"
    assert rows["vm"]["verdict"] == "model smaller"       # talk +6..8.5 % ops = -5.7..-7.8 % time
    assert rows["mmapfork"]["verdict"] == "model larger"  # talk +15 % ops = -13 % time
    off = talk.compare([_result("fork", [-1.0, 0.0])], preempt_count=False)
    assert off[0]["verdict"] == "no preempt count: not comparable to the talk"


def test_talk_rows_explain_a_function_without_bracket():
    funcs = [{"function": "__mod_memcg_lruvec_state", "share": 0.045, "predicted_points": 0.0, "removed": 0.0,
              "removed_share_of_function": 0.0},
             {"function": "percpu_counter_add_batch", "share": 0.01, "predicted_points": -0.3, "removed": 9.0,
              "removed_share_of_function": 0.3}]
    r = talk.compare([{"workload": "page-fault", "kernel_time_change": {"ampere1": [-1, 0]}, "functions": funcs}],
                     preempt_count=True)[0]
    by = {f["function"]: f for f in r["functions"]}
    assert "__this_cpu_add under its caller" in by["mod_memcg_lruvec_state"]["why"]
    assert by["percpu_counter_add_batch"]["model_change"] == -0.3 and "30 %" in by["percpu_counter_add_batch"]["why"]


@needs_mca
def test_measured_profile_joins_counts_analysis_and_prices(monkeypatch, tmp_path):
    """The profile of a run, as ``localmap lab profile --json`` prints it: every workload in run
    order with the figures of :func:`dynamic.analyse_workload` on the same image and prices, the
    kernel's site totals, and the talk rows for the workloads the talk measured."""
    from types import SimpleNamespace

    import localmap.perf.image as image_mod

    img = rt_image()
    img.config = {"CONFIG_PREEMPT_RT": "y", "CONFIG_PREEMPT_COUNT": "y"}
    monkeypatch.setattr(image_mod, "load_image", lambda *a, **kw: img)
    s_ref, s_read = REF_GET + 0x38, ADD_BATCH + 0x38
    fork = WorkloadCounts("fork", 1, 2, 1000, 0, {s_ref: 10}, {(REF_GET, 20): 10},
                          op="fork + exit + wait", talk="stress-ng --fork 160")
    probe = WorkloadCounts("syscall", 1, 5, 500, 0, {s_read: 5}, {(ADD_BATCH, 5): 5})
    kernel = SimpleNamespace(label="test", image=tmp_path / "Image", vmlinux=None,
                             system_map=tmp_path / "System.map", config=None)
    run = SimpleNamespace(kernel=kernel, cpus=2, boot_seconds=1.23, seconds=4.56,
                          workloads={"fork": fork, "syscall": probe})
    data = dynamic.measured_profile(run, cores=("neoverse-n1",))
    assert [w["workload"] for w in data["workloads"]] == ["fork", "syscall"]
    rep = analyse(img)
    prices = mca.price_sites(img, [s for s in rep.sites_list if s.addr in (s_ref, s_read)], ("neoverse-n1",))
    for got, (name, counts) in zip(data["workloads"], run.workloads.items()):
        want = dynamic.analyse_workload(name, counts, rep, prices, img.symbols, op=counts.op, talk=counts.talk)
        for key in ("ops", "kernel_instructions", "this_cpu_executions", "removed_instructions",
                    "removed_share", "net_removed", "op", "talk_benchmark"):
            assert got[key] == want[key], (name, key)
        assert got["saved_cycles"]["neoverse-n1"] == want["saved_cycles"]["neoverse-n1"], name
        assert any(x != 0 for v in got["saved_cycles"]["neoverse-n1"].values() for x in v), name
    assert data["cores"] == ["neoverse-n1"] and data["cpus"] == 2 and data["boot_seconds"] == 1.2
    assert data["kernel"]["sites"] == rep.sites and data["kernel"]["preempt_count"] is True
    assert data["comparable_to_talk"] and data["label"] is None
    assert [r["workload"] for r in data["talk"]] == ["fork"]       # the probe is not in the talk
    assert data["assumptions"] == dynamic.ASSUMPTIONS + mca.ASSUMPTIONS
