"""The lab's module phase: dependency order, .modinfo/.data..percpu from real ELF objects built
here with the host compiler, the initramfs entries, the guest report check, phase order."""

from __future__ import annotations

import gzip
import lzma
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from localmap.errors import LocalmapError
from localmap.lab import bundle_io
from localmap.lab import modules as kmod
from localmap.lab.initramfs import busybox_initramfs


DEP = """\
kernel/net/a/base.ko.xz:
kernel/net/a/mid-one.ko.xz: kernel/net/a/base.ko.xz
kernel/net/a/top.ko.xz: kernel/net/a/mid-one.ko.xz kernel/net/a/base.ko.xz
kernel/fs/other.ko.xz:
"""


def test_module_names_follow_kbuild():
    assert kmod.module_name("kernel/drivers/md/dm-mod.ko.xz") == "dm_mod"
    assert kmod.module_name("x/nf_conntrack.ko") == "nf_conntrack"
    assert kmod.module_name("y/crc32c-generic.ko.gz") == "crc32c_generic"


def test_load_order_puts_dependencies_first_once():
    deps = kmod.parse_modules_dep(DEP)
    order = kmod.load_order(deps, ["top", "other", "mid_one"])
    assert [m.name for m in order] == ["base", "mid_one", "top", "other"]
    assert [m.requested for m in order] == [False, True, True, True]
    # a module asked for after it was pulled in as a dependency is loaded once, marked requested
    order = kmod.load_order(deps, ["mid-one", "base"])
    assert [(m.name, m.requested) for m in order] == [("base", True), ("mid_one", True)]


def test_load_order_errors():
    deps = kmod.parse_modules_dep(DEP)
    with pytest.raises(LocalmapError, match="built into"):
        kmod.load_order(deps, ["ipv6"], builtin={"ipv6"})
    with pytest.raises(LocalmapError, match="no module 'nope'"):
        kmod.load_order(deps, ["nope"])
    with pytest.raises(LocalmapError, match="no ':'"):
        kmod.parse_modules_dep("kernel/x.ko.xz\n")


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build ELF objects")


def _object(tmp: Path, name: str, percpu_bytes: int, depends: str) -> bytes:
    """A relocatable ELF like a module: a .modinfo section and optionally .data..percpu."""
    src = tmp / f"{name}.c"
    body = [f'static const char info[] __attribute__((section(".modinfo"), used)) = '
            f'"license=GPL\\0depends={depends}\\0name={name}";']
    if percpu_bytes:
        body.append(f'char pcpu[{percpu_bytes}] __attribute__((section(".data..percpu"))) = {{1}};')
    src.write_text("\n".join(body) + "\n")
    subprocess.run(["cc", "-c", "-o", str(tmp / f"{name}.o"), str(src)], check=True)
    return (tmp / f"{name}.o").read_bytes()


@needs_cc
def test_modinfo_and_percpu_section_from_real_elf(tmp_path):
    ko = _object(tmp_path, "m1", 24, "dep_a,dep-b")
    assert kmod.depends(ko) == ["dep_a", "dep-b"]
    assert kmod.modinfo(ko)["license"] == ["GPL"]
    assert kmod.percpu_section_size(ko) == 24
    assert kmod.percpu_section_size(_object(tmp_path, "m2", 0, "")) == 0
    with pytest.raises(LocalmapError, match="not an ELF"):
        kmod.percpu_section_size(b"not an elf at all" * 10)


@needs_cc
def test_resolve_a_package_tree_without_modules_dep(tmp_path):
    """Debian packages ship no modules.dep: dependencies come from each .modinfo."""
    base = tmp_path / "pkg" / "lib" / "modules" / "9.9.9-test"
    (base / "kernel" / "net").mkdir(parents=True)
    (base / "kernel" / "lib").mkdir(parents=True)
    blobs = {
        "leaf": _object(tmp_path, "leaf", 8, ""),
        "mid": _object(tmp_path, "mid", 0, "leaf"),
        "top-mod": _object(tmp_path, "top_mod", 92, "mid,leaf"),
    }
    (base / "kernel" / "lib" / "leaf.ko.xz").write_bytes(lzma.compress(blobs["leaf"]))
    (base / "kernel" / "net" / "mid.ko.gz").write_bytes(gzip.compress(blobs["mid"]))
    (base / "kernel" / "net" / "top-mod.ko").write_bytes(blobs["top-mod"])
    (base / "modules.builtin").write_text("kernel/net/ipv6/ipv6.ko\n")
    s = kmod.resolve(tmp_path / "pkg", "9.9.9-test", ["top_mod"])
    assert [m.name for m in s.modules] == ["leaf", "mid", "top_mod"]
    assert s.blobs["leaf"] == blobs["leaf"] and s.blobs["mid"] == blobs["mid"]
    assert s.percpu == {"leaf": 8, "mid": 0, "top_mod": 92}
    with pytest.raises(LocalmapError, match="built into"):
        kmod.resolve(tmp_path / "pkg", "9.9.9-test", ["ipv6"])
    # optional names: loaded when they are modules, skipped when built in
    s2 = kmod.resolve(tmp_path / "pkg", "9.9.9-test", ["mid"], optional=["ipv6", "top-mod"])
    assert [m.name for m in s2.modules] == ["leaf", "mid", "top_mod"]
    with pytest.raises(LocalmapError, match="no module 'absent'"):
        kmod.resolve(tmp_path / "pkg", "9.9.9-test", ["absent"])
    with pytest.raises(LocalmapError, match="no lib/modules"):
        kmod.resolve(tmp_path / "pkg", "1.0", ["leaf"])
    # the initramfs gets the unpacked modules, the load list and the unload flag
    from test_lab import _parse_newc  # pytest puts tests/ on sys.path (rootdir, no package)

    img = busybox_initramfs(b"bb", b"#!/bin/sh\n", extra=s.initramfs_entries(unload=True))
    files = _parse_newc(gzip.decompress(img))
    assert files["lib/modules/top_mod.ko"][1] == blobs["top-mod"]
    assert files[kmod.LIST_FILE][1] == b"leaf.ko leaf\nmid.ko mid\ntop_mod.ko top_mod\n"
    assert "lib/modules/localmap.unload" in files and stat.S_ISDIR(files["lib/modules"][0])
    img = busybox_initramfs(b"bb", b"#!/bin/sh\n", extra=s.initramfs_entries(unload=False))
    assert "lib/modules/localmap.unload" not in _parse_newc(gzip.decompress(img))


def test_guest_report_check():
    from localmap.lab.qemu import _check_modules

    mods = [kmod.Module("a", "k/a.ko.xz", False), kmod.Module("b", "k/b.ko.xz", True),
            kmod.Module("c", "k/c.ko.xz", True)]
    s = kmod.ModuleSet(mods, {}, {"a": 0, "b": 8, "c": 4})
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        v = bundle_io.Validation()
        _check_modules(out, s, True, v)
        assert v.problems == ["the guest sent no 'modules' report"]
        (out / "modules").write_text("a loaded\nb loaded\nc failed\nb unloaded\na busy\n")
        v = bundle_io.Validation()
        _check_modules(out, s, True, v)
        assert v.problems == ["module c did not load (insmod failed; see dmesg)"]
        assert any("module a could not be unloaded" in n for n in v.notes)
        assert any("2 loaded (8 bytes of .data..percpu in 1 of them)" in n for n in v.notes)


def test_modules_record_and_phase_order(s2, tmp_path):
    assert bundle_io.bundle_filename("modules") == ("modules", False)
    assert bundle_io.bundle_filename("meminfo.modules_del") == ("meminfo.modules_del", False)
    script = bundle_io.guest_script().decode()
    assert "insmod" in script and "rmmod" in script and "emit modules" in script
    from localmap.ingest.bundle import load_bundle

    b = tmp_path / "b"
    shutil.copytree(s2, b)
    fork = (b / "meminfo.fork").read_text()
    (b / "meminfo.modules").write_text(fork)
    (b / "meminfo.modules_del").write_text(fork)
    assert [p for p, _ in load_bundle(b).meminfo] == ["boot", "memcg", "memcg_del", "fork",
                                                       "modules", "modules_del"]


def test_lab_refuses_modules_without_a_package(tmp_path):
    from localmap.lab.qemu import LabKernel, _module_set

    with pytest.raises(LocalmapError, match="needs a Debian linux-image package"):
        _module_set(LabKernel(tmp_path / "Image", None, "x"), ["ext4"])
