"""Fast tests of the lab's kernel builder (no source tree, no compiler run): config derivation
text handling, required options, cache keys, patch application on a hard-linked copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from localmap.errors import LocalmapError
from localmap.lab import kernel as kb


def fake_source(tmp_path: Path) -> Path:
    src = tmp_path / "linux"
    (src / "arch/arm64").mkdir(parents=True)
    (src / "arch/arm64/Kconfig.platforms").write_text(
        'menu "Platform selection"\n\nconfig ARCH_ACTIONS\n\tbool "Actions Semi"\n\n'
        "menuconfig ARCH_BCM\n\tbool\n\nconfig ARCH_VEXPRESS\n\tbool\n\nconfig ARM64_NOT_A_PLATFORM\n\tbool\n")
    (src / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 117\nEXTRAVERSION =\n")
    (src / "mm").mkdir()
    (src / "mm/percpu.c").write_text("int a;\nint b;\n")
    (src / "mm/other.c").write_text("int c;\n")
    return src


def test_overrides_replace_old_lines_and_parse_back():
    text = ("# comment\nCONFIG_PREEMPT_VOLUNTARY=y\n# CONFIG_PREEMPT_DYNAMIC is not set\n"
            "CONFIG_ARM64_VA_BITS_52=y\nCONFIG_FOO=\"x y\"\nCONFIG_PCI=y\n")
    out = kb.apply_overrides(text, {"PREEMPT_DYNAMIC": "y", "PCI": "n", "ARM64_VA_BITS_52": "n"})
    cfg = kb.parse_config(out)
    assert cfg["PREEMPT_DYNAMIC"] == "y" and cfg["PCI"] == "n" and cfg["ARM64_VA_BITS_52"] == "n"
    assert cfg["PREEMPT_VOLUNTARY"] == "y" and cfg["FOO"] == '"x y"'
    assert out.count("PREEMPT_DYNAMIC") == 1 and out.count("CONFIG_PCI") == 1
    assert "# comment" in out


def test_platforms_read_from_kconfig(tmp_path):
    assert kb.platform_symbols(fake_source(tmp_path)) == ["ARCH_ACTIONS", "ARCH_BCM", "ARCH_VEXPRESS"]
    with pytest.raises(LocalmapError, match="Kconfig.platforms"):
        kb.platform_symbols(tmp_path)


def test_overrides_per_flavour_and_extras(tmp_path):
    src = fake_source(tmp_path)
    dyn = kb.config_overrides("dynamic", src)
    assert dyn["PREEMPT_DYNAMIC"] == "y" and dyn["PREEMPT_VOLUNTARY"] == "y" and dyn["PREEMPT"] == "n"
    assert dyn["ARCH_BCM"] == "n" and dyn["ARM64_VA_BITS_48"] == "y" and dyn["ARM64_4K_PAGES"] == "y"
    for sym in ("DRM", "SOUND", "MEDIA_SUPPORT", "USB_SUPPORT", "WLAN", "PCI", "ACPI", "EFI", "KVM"):
        assert dyn[sym] == "n", sym
    assert "ARM64_NOT_A_PLATFORM" not in dyn
    assert kb.config_overrides("voluntary", src)["PREEMPT_DYNAMIC"] == "n"
    assert kb.config_overrides("rt", src)["PREEMPT_RT"] == "y"
    assert kb.config_overrides("full", src)["PREEMPT"] == "y"
    ex = kb.config_overrides("dynamic", src, {"CONFIG_PREEMPT_DYNAMIC": "n", "DEBUG_PREEMPT": "y"})
    assert ex["PREEMPT_DYNAMIC"] == "n" and ex["DEBUG_PREEMPT"] == "y"
    with pytest.raises(LocalmapError, match="flavour"):
        kb.config_overrides("tiny", src)
    with pytest.raises(LocalmapError, match="Kconfig symbol"):
        kb.config_overrides("dynamic", src, {"BAD SYM": "y"})


def _good(flavour):
    cfg = {k: v for k, v in kb.REQUIRED.items() if v}
    cfg.update({k: v for k, v in kb.FLAVOUR_REQUIRED[flavour].items() if v != "-"})
    return cfg


def test_check_config_names_what_is_missing():
    assert kb.check_config(_good("dynamic"), "dynamic") == []
    cfg = _good("dynamic")
    del cfg["PREEMPT_COUNT"]
    cfg["ARM64_VA_BITS"] = "52"
    bad = kb.check_config(cfg, "dynamic")
    assert "CONFIG_PREEMPT_COUNT=n (want y)" in bad and "CONFIG_ARM64_VA_BITS=52 (want 48)" in bad
    vol = _good("voluntary")
    assert kb.check_config(vol, "voluntary") == []
    vol["PREEMPT_COUNT"] = "y"  # a voluntary kernel must not have a preempt count
    assert kb.check_config(vol, "voluntary") == ["CONFIG_PREEMPT_COUNT=y (want unset)"]
    assert kb.check_config(_good("dynamic"), "dynamic", {"KASAN": "y"}) == ["CONFIG_KASAN=n (want y)"]


def test_build_key_depends_on_config_lines_patches_and_compiler(tmp_path):
    p1 = tmp_path / "a.patch"
    p1.write_text("one")
    p2 = tmp_path / "b.patch"
    p2.write_text("two")
    cfg = "#\n# Linux/arm64 6.12.117 Kernel Configuration\n#\nCONFIG_A=y\n# CONFIG_B is not set\n"
    k = kb.build_key(cfg, "src", "6.12.117", [], "gcc 12")
    assert k == kb.build_key(cfg.replace("Kernel Configuration", "whatever"), "src", "6.12.117", [], "gcc 12")
    assert k != kb.build_key(cfg + "CONFIG_C=y\n", "src", "6.12.117", [], "gcc 12")
    assert k != kb.build_key(cfg, "src", "6.12.117", [p1], "gcc 12")
    assert kb.build_key(cfg, "src", "6.12.117", [p1, p2], "gcc 12") != kb.build_key(cfg, "src", "6.12.117", [p2, p1], "gcc 12")
    assert k != kb.build_key(cfg, "src", "6.12.117", [], "gcc 13")
    assert k != kb.build_key(cfg, "src2", "6.12.117", [], "gcc 12")


@pytest.mark.skipif(shutil.which("patch") is None, reason="patch(1) not installed")
def test_patched_copy_leaves_pristine_tree_alone(tmp_path):
    src = fake_source(tmp_path)
    patch = tmp_path / "0001-x.patch"
    patch.write_text("--- a/mm/percpu.c\n+++ b/mm/percpu.c\n@@ -1,2 +1,2 @@\n int a;\n-int b;\n+int b2;\n")
    tree = kb.patched_source(src, [patch])
    assert (tree / "mm/percpu.c").read_text() == "int a;\nint b2;\n"
    assert (src / "mm/percpu.c").read_text() == "int a;\nint b;\n"
    assert os.stat(tree / "mm/other.c").st_ino == os.stat(src / "mm/other.c").st_ino  # shared
    assert kb.patched_source(src, [patch]) == tree  # cached
    bad = tmp_path / "bad.patch"
    bad.write_text("--- a/mm/other.c\n+++ b/mm/other.c\n@@ -1 +1 @@\n-int zzz;\n+int y;\n")
    with pytest.raises(LocalmapError, match="does not apply"):
        kb.patched_source(src, [bad])
    assert (src / "mm/other.c").read_text() == "int c;\n"
    assert kb.patched_source(src, []) == src


def test_find_cached_picks_flavour_and_patches(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kd = kb.kernels_dir()
    for name, flavour, patches in (("6.12.117-dynamic-aaaa", "dynamic", []),
                                   ("6.12.117-dynamic-bbbb", "dynamic", ["/x/0001-a.patch"]),
                                   ("6.12.117-rt-cccc", "rt", [])):
        d = kd / name
        d.mkdir()
        for f in ("Image", "vmlinux", "System.map", "config"):
            (d / f).write_text(f)
        (d / "build.json").write_text(json.dumps({"key": name[-4:], "flavour": flavour, "seconds": 10.0,
                                                  "objects": 5, "patches": patches, "version": "6.12.117"}))
    assert kb.find_cached("dynamic").key == "aaaa"
    assert kb.find_cached("dynamic", [Path("kernel/0001-a.patch")]).key == "bbbb"
    assert kb.find_cached("rt").key == "cccc"
    assert kb.find_cached("full") is None
    assert {k.key for k in kb.cached_kernels()} == {"aaaa", "bbbb", "cccc"}


def test_build_refuses_missing_patch(tmp_path):
    with pytest.raises(LocalmapError, match="no such patch"):
        kb.build_kernel("dynamic", [tmp_path / "nope.patch"])
