"""Fast tests of the profiling plumbing: marker encoding (checked against the cross assembler),
the plugin's output format, the workload list and the guest's command line."""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest

from localmap.errors import LocalmapError
from localmap.lab import profile as prof
from localmap.lab import tcgplugin

AS = "aarch64-linux-gnu-as"
OBJCOPY = "aarch64-linux-gnu-objcopy"


@pytest.mark.skipif(shutil.which(AS) is None, reason="binutils-aarch64-linux-gnu not installed")
def test_marker_is_movk_xzr_as_assembled(tmp_path):
    src = tmp_path / "m.s"
    src.write_text("movk xzr, #0\nmovk xzr, #7\nmovk xzr, #0xffff\n")
    subprocess.run([AS, "-o", str(tmp_path / "m.o"), str(src)], check=True)
    subprocess.run([OBJCOPY, "-O", "binary", "-j", ".text", str(tmp_path / "m.o"), str(tmp_path / "m.bin")],
                   check=True)
    words = [int.from_bytes((tmp_path / "m.bin").read_bytes()[i:i + 4], "little") for i in (0, 4, 8)]
    assert words == [tcgplugin.marker_word(0), tcgplugin.marker_word(7), tcgplugin.marker_word(0xFFFF)]
    # the plugin and the workload program use the same encoding
    c_plugin = tcgplugin.plugin_source()
    assert re.search(r"MARK_VALUE 0x%08xu" % tcgplugin.marker_word(0), c_plugin)
    assert "0x%08xu" % tcgplugin.marker_word(0) in prof.workload_source()
    with pytest.raises(ValueError):
        tcgplugin.marker_word(1 << 16)


def test_plugin_output_parsed_into_snapshots():
    text = ("M 0 100 5\nS ffff800080010000 3\nT ffff800080010000 4 7\nE\n"
            "M 1 250 9\nS ffff800080010000 8\nS ffff800080020000 1\nT ffff800080010000 4 20\nE\n"
            "M -1 300 9\nE\n")
    snaps = tcgplugin.parse_output(text)
    assert [s["marker"] for s in snaps] == [0, 1, -1]
    assert snaps[1]["sites"] == {0xFFFF800080010000: 8, 0xFFFF800080020000: 1}
    assert snaps[1]["blocks"] == {(0xFFFF800080010000, 4): 20}
    assert snaps[0]["kernel_insns"] == 100 and snaps[1]["user_insns"] == 9
    with pytest.raises(LocalmapError, match="line 2"):
        tcgplugin.parse_output("M 0 1 1\nX garbage\n")


def test_deb_src_lines_mirror_the_deb_sources():
    lines = tcgplugin._deb_src_lines()
    assert lines and all(ln.startswith("deb-src ") for ln in lines)


def test_workload_spec_and_names():
    for name in ("page-fault", "fork", "mmapfork", "memcg", "vm"):
        assert name in prof.WORKLOADS, name
        assert f'"{name}"' in prof.workload_source()
    assert prof._spec([("fork", 3), ("vm", 2)]) == "fork:3:0,vm:2:1"
    with pytest.raises(LocalmapError, match="unknown workload"):
        prof._spec([("forkbomb", 1)])
    with pytest.raises(LocalmapError, match="rounds"):
        prof._spec([("fork", 0)])


def test_qemu_command_is_single_threaded_with_plugin(tmp_path):
    cmd = prof.qemu_command(tmp_path / "Image", tmp_path / "initrd", 2, "console=ttyAMA0",
                            tmp_path / "p.so", tmp_path / "out.txt")
    assert cmd[cmd.index("-accel") + 1] == "tcg,thread=single"
    assert cmd[cmd.index("-plugin") + 1] == f"{tmp_path / 'p.so'},out={tmp_path / 'out.txt'}"
    assert "-plugin" not in prof.qemu_command(tmp_path / "I", tmp_path / "i", 1, "", None, None)


def test_resolve_refuses_unknown_kernels(tmp_path):
    with pytest.raises(LocalmapError, match="no such kernel"):
        prof.resolve(str(tmp_path / "nothing"))
    img = tmp_path / "Image"
    img.write_bytes(b"\0" * 64)
    with pytest.raises(LocalmapError, match="system-map"):
        prof.resolve(str(img))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_compile_cached_builds_once_per_source_and_flags(tmp_path):
    from localmap.lab.cc import compile_cached

    src = "int main(void) { return 3; }\n"
    exe = compile_cached("cc", src, "prog", ["-O2"], tmp_path)
    assert subprocess.run([str(exe)]).returncode == 3
    stamp = exe.stat().st_mtime_ns
    assert compile_cached("cc", src, "prog", ["-O2"], tmp_path) == exe and exe.stat().st_mtime_ns == stamp
    assert compile_cached("cc", src, "prog", ["-O1"], tmp_path) != exe          # flags are in the key
    assert compile_cached("cc", src, "prog", ["-O2"], tmp_path, key_extra="qemu 8") != exe
    assert compile_cached("cc", src, "lib.so", ["-O2"], tmp_path).name.endswith(".so")
    with pytest.raises(LocalmapError, match="building it failed: .*error"):
        compile_cached("cc", "int main(void) { return x; }\n", "bad", [], tmp_path, what="building it")
    assert not list(tmp_path.glob(".cc-*"))                                     # no work folders left


def test_qemu_runner_stops_the_process_on_timeout_and_on_errors():
    from localmap.lab.qemu import qemu_running

    t0 = time.monotonic()
    with qemu_running(["sh", "-c", "echo up; exec sleep 30"], timeout=0.5) as (proc, timed_out):
        assert proc.stdout.readline() == "up\n"
        proc.wait()
    assert timed_out.is_set() and proc.returncode != 0 and time.monotonic() - t0 < 15
    with pytest.raises(RuntimeError):
        with qemu_running(["sh", "-c", "exec sleep 30"], timeout=60) as (proc, timed_out):
            raise RuntimeError("the caller failed")
    assert proc.poll() is not None and not timed_out.is_set()
    with pytest.raises(LocalmapError, match="cannot start"):
        with qemu_running(["/nonexistent/qemu"], timeout=1):
            pass
