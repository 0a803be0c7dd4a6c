"""The prototype patch series (kernel/) and its driver (localmap.lab.prototype).

Fast tests read the series and a real console transcript of a boot of the patched kernel
(tests/data/prototype-console-8cpu.txt, produced by ``localmap.lab.prototype.boot``). Slow tests
apply the series to the installed source and compile the files it touches; when a cached patched
build exists they boot it and require a clean self-check.
"""

from __future__ import annotations

import re
import shutil
import sys
import subprocess
from pathlib import Path

import pytest

from localmap.errors import LocalmapError
from localmap.lab import prototype as proto

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
CONSOLE = DATA / "prototype-console-8cpu.txt"


# --- the series ----------------------------------------------------------------------------------

def test_series_lists_every_patch_in_order():
    patches = proto.series()
    names = [p.name for p in patches]
    on_disk = sorted(p.name for p in (REPO / "kernel").glob("*.patch"))
    assert names == on_disk  # every patch listed once, numbered in series order
    assert [int(n[:4]) for n in names] == list(range(1, len(names) + 1))


def test_every_patch_is_one_commit_with_a_message():
    for p in proto.series():
        text = p.read_text()
        assert text.count("\nSubject: [PATCH") + text.startswith("Subject: [PATCH") <= 1
        head, _, body = text.partition("\n---\n")
        subject = re.search(r"^Subject: \[PATCH[^\]]*\] (.+)$", head, re.M)
        assert subject, p.name
        msg = head.split("\n\n", 1)[1] if "\n\n" in head else ""
        assert len(msg.split()) >= 20, f"{p.name}: the commit message says too little"
        assert "diff --git" in body


def test_series_touches_the_design_points():
    """The series changes every TTBR1 path and percpu mapping path the design names."""
    touched = set()
    for p in proto.series():
        touched |= set(re.findall(r"^diff --git a/(\S+)", p.read_text(), re.M))
    for f in ("arch/arm64/kernel/head.S", "arch/arm64/kernel/smp.c", "arch/arm64/mm/proc.S",
              "arch/arm64/kernel/cpufeature.c", "arch/arm64/mm/mmu.c", "mm/percpu-vm.c",
              "mm/percpu.c", "mm/vmalloc.c", "arch/arm64/include/asm/percpu.h"):
        assert f in touched, f


def test_version_other_than_the_series_is_refused():
    proto.check_version(proto.SERIES_VERSION)
    with pytest.raises(LocalmapError, match=r"for Linux 6\.12\.117, but .* is 6\.12\.118"):
        proto.check_version("6.12.118")


def test_missing_patch_in_series_is_an_error(tmp_path):
    (tmp_path / "series").write_text("# comment\n0001-a.patch\n0002-b.patch\n")
    (tmp_path / "0001-a.patch").write_text("x")
    with pytest.raises(LocalmapError, match=r"series:3: no such patch 0002-b.patch"):
        proto.series(tmp_path)


def test_patches_dir_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "series").write_text("0001-a.patch\n")
    (tmp_path / "0001-a.patch").write_text("x")
    monkeypatch.setenv("LOCALMAP_KERNEL_PATCHES", str(tmp_path))
    assert proto.series() == [tmp_path / "0001-a.patch"]


# --- a real boot of the patched kernel (8 vCPUs, -cpu max, preempt=full) -------------------------

@pytest.fixture(scope="module")
def rec():
    if not CONSOLE.is_file():
        pytest.fail(f"missing test data {CONSOLE}")
    r = proto.parse_console(CONSOLE.read_text().splitlines(keepends=True))
    r.update(seconds=0.0, booted=r["done"], cpus=8, cpu_model="max")
    return r


def test_console_records(rec):
    assert rec["done"]
    assert rec["info"]["kernel"].endswith("-localmap-dynamic") and rec["info"]["prototype"] == "1"
    assert rec["info"]["online"] == "8" and rec["info"]["possible"] == "0-7"
    assert {k: v["ok"] for k, v in rec["results"].items()} == {"hotplug": True, "memcg": True, "fork": True}
    assert rec["phases"] == ["stress", "hotplug", "memcg", "fork", "final"]
    for name in ("layout_final", "tables_final", "check_final", "stress", "check_off_0", "check_on_1"):
        assert name in rec["sections"], name


def test_layout_obeys_the_design(rec):
    """Windows, first-chunk placement and the this_cpu constant, derived independently."""
    from localmap.arch.arm64.pgtable import Geometry
    from localmap.design.layout import design_layout

    lay = proto.parse_layout(rec["sections"]["layout_final"])
    win, geo, k = lay["window"], lay["geometry"], lay["constants"]
    model = design_layout(Geometry(4096, 48))
    assert (win["local_start"], win["global_start"]) == (model.local_window[0], model.global_window[0])
    assert win["global_start"] - win["local_start"] == 1 << 39  # one 512 GiB root entry (4K/48)
    span = geo["nr_units"] * geo["unit_size"]
    assert geo["nr_units"] == geo["possible"] == 8 and geo["unit_pages"] * 4096 == geo["unit_size"]
    # the first chunk takes the top of the global window
    assert lay["first_area"]["base"] == win["global_end"] - span == k["pcpu_base_addr"]
    # DELTA_THIS_CPU = local base - __per_cpu_start (mod 2^64)
    assert k["this_cpu_delta"] == (k["pcpu_base_addr"] + k["delta"] - k["per_cpu_start"]) % (1 << 64)
    assert k["delta"] == (win["local_start"] - win["global_start"]) % (1 << 64)
    dyn = sorted(c["base"] for c in lay["chunks"] if c["kind"] == "dynamic")
    assert len(dyn) >= 2
    # dynamic chunks stack downwards from the first, without overlapping, inside the window
    tops = dyn[1:] + [lay["first_area"]["base"]]
    assert all(b + span <= t for b, t in zip(dyn, tops))
    assert all(win["global_start"] <= b for b in dyn)
    # reserved and first chunk live inside the first chunk's area
    for c in lay["chunks"]:
        if c["kind"] in ("first", "reserved"):
            assert k["pcpu_base_addr"] <= c["base"] < k["pcpu_base_addr"] + geo["unit_size"]


def _regions(lay, shift):
    """Distinct 2^shift-byte regions of the local window holding a mapped local page."""
    geo, k = lay["geometry"], lay["constants"]
    pages = [lay["first_area"]["base"] + i * 4096 for i in range(geo["unit_pages"])]
    for c in lay["chunks"]:
        if c["kind"] == "dynamic":
            pages += [c["base"] + i * 4096 for i in c["populated"]]
    return {((va + k["delta"]) % (1 << 64)) >> shift for va in pages}, len(pages)


def test_tables_equal_a_hand_count_and_the_model(rec):
    lay = proto.parse_layout(rec["sections"]["layout_final"])
    tab = proto.parse_tables(rec["sections"]["tables_final"])
    pmd_regions, mapped = _regions(lay, 30)
    pte_regions, _ = _regions(lay, 21)
    assert sorted(tab["cpus"]) == list(range(8))
    for cpu, row in tab["cpus"].items():
        assert row["root"] == ("swapper" if cpu == 0 else "copy")
        assert (row["pud"], row["pmd"], row["pte"], row["mapped"]) == \
            (1, len(pmd_regions), len(pte_regions), mapped)
    assert tab["roots"] == {"copies": 7, "block_pages": 21, "pages_per_block": 3, "root_bytes": 4096}
    assert tab["total"]["private_pages"] == sum(r["pud"] + r["pmd"] + r["pte"] for r in tab["cpus"].values())
    cmp = proto.compare_pgtables(lay, tab)
    assert cmp["equal"], cmp["differences"]
    assert cmp["model"]["pgtable_pages"] == cmp["measured"]["pgtable_pages"] == 21 + 8 * (2 + len(pte_regions))
    assert cmp["model"]["holes"] == [] and cmp["model"]["placement_mismatch"] == []


def test_comparison_sees_a_difference(rec):
    """A page the kernel did not map, or a missing CPU, shows up as a difference."""
    lay = proto.parse_layout(rec["sections"]["layout_final"])
    tab = proto.parse_tables(rec["sections"]["tables_final"])
    far = dict(lay)
    dyn = [c for c in lay["chunks"] if c["kind"] == "dynamic"]
    low = min(dyn, key=lambda c: c["base"])
    # a chunk 1 GiB further down needs a PMD and a PTE table more per CPU in the model
    far["chunks"] = lay["chunks"] + [{"kind": "dynamic", "base": low["base"] - (1 << 30),
                                       "nr_pages": 30, "populated": [0]}]
    cmp = proto.compare_pgtables(far, tab)
    assert not cmp["equal"]
    assert cmp["model"]["pgtable_pages"] == cmp["measured"]["pgtable_pages"] + 8 * 2
    assert any("hole" in str(h) or h["bytes"] > 0 for h in cmp["model"]["holes"])
    tab2 = {**tab, "cpus": {c: r for c, r in tab["cpus"].items() if c != 7}}
    assert not proto.compare_pgtables(lay, tab2)["equal"]


def test_self_check_and_stress_results(rec):
    s = proto.summarize_boot(rec, "patched")
    assert s["failures"] == 0 and s["fail"] == [] and s["kernel_errors"] == []
    assert s["checks"] == len([n for n in rec["sections"] if n.startswith("check_")]) >= 7
    lay = proto.parse_layout(rec["sections"]["layout_final"])
    chk = proto.parse_check(rec["sections"]["check_final"])
    per_cpu = lay["geometry"]["unit_pages"] + sum(c["nr_pages"] for c in lay["chunks"] if c["kind"] == "dynamic")
    assert chk["pages_checked"] == 8 * per_cpu and chk["cpus"] == 8
    off = proto.parse_check(rec["sections"]["check_off_0"])
    assert off["cpus"] == 1  # every CPU but 0 offline: only CPU 0's tables remain
    for st in s["stress"].values():
        assert st["failures"] == 0
        assert st["inc"] == st["add_return"] == st["cmpxchg"] == st["add32"] == st["expected"]
        assert st["expected"] == st["process_ops"] + st["softirq_ops"] + st["hardirq_ops"]
        assert min(st["process_ops"], st["softirq_ops"], st["hardirq_ops"], st["migrations"]) > 0
    assert s["measured_pgtable_pages"] == s["model_pgtable_pages"]


def test_failure_lines_are_counted(rec):
    bad = dict(rec, sections=dict(rec["sections"]))
    bad["sections"]["check_final"] = ("fail cpu=3 chunk=0x1 page=2 local=0x2 wrong\n"
                                      + rec["sections"]["check_final"])
    assert proto.summarize_boot(bad, "patched")["failures"] == 1
    bad["sections"]["stress"] = rec["sections"]["stress"].replace("failures=0", "failures=2")
    assert proto.summarize_boot(bad, "patched")["failures"] == 3
    del bad["sections"]["check_final"]
    assert proto.parse_check("")["failures"] == 1  # a check that printed nothing failed


def test_bad_debugfs_text_is_one_clear_error():
    with pytest.raises(LocalmapError, match=r"percpu_local/layout: no window line"):
        proto.parse_layout("geometry page_size=4096\n")
    with pytest.raises(LocalmapError, match=r"percpu_local/tables:1: cannot parse"):
        proto.parse_tables("cpu=x root=copy\n")


# --- slow: the series against the installed source, and the cached builds -------------------------

def _need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} missing (apt-get install {package})")


def _function(dis: str, name: str) -> str:
    m = re.search(rf"^[0-9a-f]+ <{re.escape(name)}>:\n(.*?)(?=^[0-9a-f]+ <|\Z)", dis, re.M | re.S)
    assert m, f"{name} not in the object"
    return m.group(1)


@pytest.mark.slow
def test_series_applies_and_the_patched_files_compile(tmp_path):
    """Without a full build: the installed source is 6.12.117, the series applies, the lab's
    config turns the prototype on, and every file the series touches compiles without a warning;
    percpu_counter_add_batch's fast path uses the local delta and has no preempt bracket."""
    from localmap.lab import kernel as kb

    for tool, pkg in (("patch", "patch"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc"),
                      ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"), ("make", "make")):
        _need(tool, pkg)
    if not kb.SOURCE_TARBALL.is_file():
        pytest.skip(f"{kb.SOURCE_TARBALL} missing (apt-get install linux-source-6.12)")
    res = proto.check_series()
    assert res["version"] == proto.SERIES_VERSION
    assert res["patches"] == [p.name for p in proto.series()]
    tree = Path(res["tree"])
    work = tmp_path / "o"
    cfg = kb.parse_config(kb.derive_config(proto.FLAVOUR, tree, work))
    for sym in ("ARM64_PER_CPU_KERNEL_PGD", "HAVE_LOCAL_PER_CPU_MAP", "LOCAL_PER_CPU_MAP",
                "LOCAL_PER_CPU_MAP_SELFTEST", "PREEMPT_DYNAMIC"):
        assert cfg.get(sym) == "y", sym
    assert subprocess.run(kb._make(tree, work, "prepare", jobs=2), capture_output=True).returncode == 0
    touched = set()
    for p in proto.series():
        touched |= set(re.findall(r"^diff --git a/(\S+\.[cS]) ", p.read_text(), re.M))
    # percpu-vm.c and the self-check are #included by percpu.c, not objects of their own
    objs = sorted(f[:-2] + ".o" for f in touched
                  if f not in ("mm/percpu-vm.c", "mm/percpu-local-selftest.c"))
    assert "arch/arm64/mm/kernel_pgd.o" in objs and "mm/percpu.o" in objs
    # headers the series changes are also read by assembly (head.S, entry.S)
    extra = ("lib/percpu_counter.o", "arch/arm64/kernel/entry.o", "arch/arm64/mm/proc.o")
    proc = subprocess.run(kb._make(tree, work, *objs, *extra, jobs=2),
                          capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert "warning:" not in out, out[-2000:]
    dis = subprocess.run(["aarch64-linux-gnu-objdump", "-dr", str(work / "lib/percpu_counter.o")],
                         capture_output=True, text=True).stdout
    body = _function(dis, "percpu_counter_add_batch")
    # the fast path (this_cpu_read + this_cpu_try_cmpxchg) goes through the local mapping with no
    # preempt bracket; TPIDR_EL1 remains only for __this_cpu_* under the counter's spinlock
    assert "__pcpu_local_delta" in body and "preempt_schedule" not in body


@pytest.fixture(scope="module")
def builds():
    patched = proto.find_build(proto.series())
    if patched is None:
        pytest.skip("no cached build of the patch series (a full kernel build, 25-75 min on 2 cores, "
                    f"does not fit CI); build it with: {proto.build_command()}")
    return proto.find_build([]), patched


@pytest.mark.slow
def test_cached_build_boots_with_a_clean_self_check(builds):
    _need(proto.QEMU, "qemu-system-arm")
    base, patched = builds
    rec = proto.boot(patched.image, 2, stress_ms=500, cycles=1, memcgs=50, dels=25, forks=50,
                     extra_append="preempt=full", timeout=600)
    s = proto.summarize_boot(rec, "patched")
    assert s["booted"], s.get("error")
    assert all(s["results"].values()) and s["kernel_errors"] == []
    assert s["failures"] == 0, s["fail"]
    assert s["measured_pgtable_pages"] == s["model_pgtable_pages"], s["pgtables"]["differences"]
    assert rec["info"]["kernel"] == f"{proto.SERIES_VERSION}-localmap-{proto.FLAVOUR}"
    if base is not None:  # the unpatched build of the same config boots the same guest
        b = proto.summarize_boot(proto.boot(base.image, 2, stress_ms=500, cycles=1, memcgs=50,
                                            dels=25, forks=50, extra_append="preempt=full",
                                            timeout=600), "baseline")
        assert b["booted"] and all(b["results"].values())


def test_check_series_refuses_another_source_version(tmp_path, monkeypatch):
    """The lab unpacks the source it is given and refuses any version but the series' own."""
    import io
    import tarfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tarball = tmp_path / "linux-source-6.12.tar.xz"
    with tarfile.open(tarball, "w:xz") as tf:
        text = b"VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 118\nEXTRAVERSION =\n"
        info = tarfile.TarInfo("linux-source-6.12/Makefile")
        info.size = len(text)
        tf.addfile(info, io.BytesIO(text))
    with pytest.raises(LocalmapError, match=r"patches are for Linux 6\.12\.117, but .*linux-source"
                                            r"-6\.12\.tar\.xz is 6\.12\.118"):
        proto.check_series(tarball=tarball)


def test_cli_refuses_bad_cpu_lists():
    for bad, msg in (("0", "between 1 and 64"), ("2,x", "comma-separated integers")):
        proc = subprocess.run([sys.executable, "-m", "localmap", "lab", "prototype", "--cpus", bad,
                               "--no-build"], capture_output=True, text=True)
        assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr


def test_a_build_of_other_patch_contents_is_not_the_series(tmp_path, monkeypatch):
    """The cache is matched by patch contents: an edited patch of the same name misses."""
    import json
    from types import SimpleNamespace

    from localmap.lab import kernel as kb

    old, new = tmp_path / "0001-x.patch", tmp_path / "new" / "0001-x.patch"
    old.write_text("old\n")
    new.parent.mkdir()
    new.write_text("new\n")
    d = tmp_path / "build"
    d.mkdir()
    (d / "Image").write_bytes(b"")
    (d / "build.json").write_text(json.dumps({"patch_sha256": [kb.sha256_file(old)]}))
    fake = SimpleNamespace(flavour=proto.FLAVOUR, dir=d, image=d / "Image")
    monkeypatch.setattr(kb, "cached_kernels", lambda: [fake])
    assert proto.find_build([old]) is fake
    assert proto.find_build([new]) is None
    assert proto.find_build([]) is None
