"""The capture lab's pieces on real data: console splitting, validation, initramfs, guest script."""

from __future__ import annotations

import base64
import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from localmap.errors import LocalmapError
from localmap.ingest.bundle import load_bundle
from localmap.lab import bundle_io
from localmap.lab.initramfs import Entry, busybox_initramfs, newc


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def _record(name: str, payload: bytes, width: int = 76) -> list[str]:
    """What capture.sh prints for one file: base64 of the gzip, 76 columns like busybox."""
    b64 = base64.b64encode(gzip.compress(payload)).decode()
    return ([f"@@LOCALMAP file {name}\r\n"] + [b64[i:i + width] + "\r\n" for i in range(0, len(b64), width)]
            + [f"@@LOCALMAP end {name}\r\n"])


def _console_from_bundle(src: Path, noise: bool = True) -> list[str]:
    """A serial console as the lab sees it: kernel lines, phases, records with CRLF and noise."""
    lines = ["[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r\n",
             "@@LOCALMAP phase memcg\r\n", "@@LOCALMAP phase fork\r\n", "@@LOCALMAP phase collect\r\n"]
    names = {"trace.gz": "trace", "dmesg": "dmesg", "vmallocinfo.gz": "vmallocinfo",
             "kallsyms.gz": "kallsyms", "config.gz": "config", "cpus": "cpus", "uname": "uname",
             "cmdline": "cmdline", "event_format": "event_format"}
    for fname, rec in names.items():
        recs = _record(rec, _raw(src / fname))
        if noise and rec == "trace":  # a kernel message that slipped through mid-record
            recs.insert(3, "[   19.000001] random: crng reseeded on system resumption\r\n")
        lines += recs
    for p in sorted(src.glob("meminfo.*")):
        lines += _record(p.name, p.read_bytes())
    lines.append("@@LOCALMAP done\r\n")
    lines.append("[   20.100000] reboot: Power down\r\n")
    return lines


def test_split_console_rebuilds_the_shared_bundle(s2, tmp_path):
    events = []
    res = bundle_io.split_console(_console_from_bundle(s2), tmp_path,
                                  on_event=lambda k, n: events.append((k, n)))
    assert res.done and res.foreign_lines == 1
    assert ("phase", "memcg") in events and ("done", "") in events
    for f in s2.iterdir():
        got = tmp_path / f.name
        assert got.is_file(), f.name
        assert _raw(got) == _raw(f), f.name
    a, b = load_bundle(tmp_path), load_bundle(s2)
    assert a.first_chunk.text == b.first_chunk.text
    assert a.meminfo == b.meminfo
    assert a.cpus == b.cpus and a.config.page_size == b.config.page_size == 4096
    v = bundle_io.validate_bundle(tmp_path)
    assert v.ok, v.problems
    assert v.first_chunk == "percpu: 32 4K pages/cpu s101464 r8192 d21416"


def test_split_console_rejects_cut_and_corrupt_output(tmp_path):
    rec = _record("dmesg", b"hello\n")
    with pytest.raises(LocalmapError, match="ended inside record 'dmesg'"):
        bundle_io.split_console(rec[:-1], tmp_path / "a")
    bad = rec[:1] + ["SGVsbG8gd29ybGQ=\r\n"] + rec[-1:]  # valid base64, not gzip
    with pytest.raises(LocalmapError, match="corrupt"):
        bundle_io.split_console(bad, tmp_path / "b")
    with pytest.raises(LocalmapError, match="unknown record"):
        bundle_io.split_console(_record("passwd", b"x"), tmp_path / "c")


def test_validate_accepts_the_shared_captures(shared_bundle):
    bundle = shared_bundle
    v = bundle_io.validate_bundle(bundle)
    assert v.ok, v.problems
    with gzip.open(bundle / "trace.gz", "rt") as fh:
        n = sum(1 for line in fh if not line.startswith("#") and "percpu_" in line)
    assert v.events == n > 1000


def test_validate_finds_lost_events_hashed_pointers_and_no_first_chunk(s2, tmp_path):
    shutil.copytree(s2, tmp_path / "b")
    b = tmp_path / "b"
    for p in b.iterdir():
        p.chmod(0o644)
    text = _raw(s2 / "trace.gz").decode()
    lost = text.replace("entries-in-buffer/entries-written: 6751/6751",
                        "entries-in-buffer/entries-written: 6751/7000")
    assert lost != text
    (b / "trace.gz").write_bytes(gzip.compress(lost.encode()))
    v = bundle_io.validate_bundle(b)
    assert any("lost 249 events" in p for p in v.problems)

    hashed = text.replace("base_addr=ffff800082b4b000", "base_addr=000000006ad7df82")
    (b / "trace.gz").write_bytes(gzip.compress(hashed.encode()))
    (b / "dmesg").write_text("[    0.0] nothing about percpu here\n")
    v = bundle_io.validate_bundle(b)
    assert any("no_hash_pointers" in p for p in v.problems)
    assert any("first-chunk" in p for p in v.problems)


def _parse_newc(data: bytes) -> dict[str, tuple[int, bytes, int, int]]:
    """An independent reader of newc archives: name -> (mode, data, rdevmajor, rdevminor)."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701", pos
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos: pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return out
        out[name] = (f[1], body, f[9], f[10])


def test_initramfs_layout():
    bb, init = b"\x7fELF fake busybox" * 100, b"#!/bin/sh\necho hi\n"
    img = busybox_initramfs(bb, init, extra=[Entry("config", stat.S_IFREG | 0o644, b"CONFIG_X=y\n")])
    files = _parse_newc(gzip.decompress(img))
    assert files["init"][1] == init and stat.S_IMODE(files["init"][0]) == 0o755
    assert files["bin/busybox"][1] == bb
    assert stat.S_ISLNK(files["bin/sh"][0]) and files["bin/sh"][1] == b"busybox"
    mode, _, major, minor = files["dev/console"]
    assert stat.S_ISCHR(mode) and (major, minor) == (5, 1)
    assert files["config"][1] == b"CONFIG_X=y\n"
    assert busybox_initramfs(bb, init) == busybox_initramfs(bb, init)  # reproducible


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio(1) not installed")
def test_initramfs_reads_back_with_cpio(tmp_path):
    arc = newc([Entry("d", stat.S_IFDIR | 0o755), Entry("d/f", stat.S_IFREG | 0o644, b"abc" * 7)])
    out = subprocess.run(["cpio", "-it"], input=arc, capture_output=True, check=True).stdout.split()
    assert out == [b"d", b"d/f"]


def test_guest_script_is_posix_sh():
    script = bundle_io.guest_script()
    assert script.startswith(b"#!/bin/sh")
    for sh in ("dash", "busybox", "sh"):
        exe = shutil.which(sh)
        if exe:
            cmd = [exe, "sh", "-n"] if sh == "busybox" else [exe, "-n"]
            subprocess.run(cmd, input=script, check=True)
    if shutil.which("checkbashisms"):
        subprocess.run(["checkbashisms", "-"], input=script, check=True)


def test_lab_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from localmap.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no qemu, no apt
    assert main(["lab", "capture", "--cpus", "2", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "qemu-system-aarch64 not found" in err
    monkeypatch.undo()
    img = tmp_path / "Image"
    img.write_bytes(b"\0" * 128)
    from localmap.lab.qemu import resolve_kernel

    with pytest.raises(LocalmapError, match="not a raw arm64 kernel Image"):
        resolve_kernel(str(img))
    with pytest.raises(LocalmapError, match="no such kernel image"):
        resolve_kernel(str(tmp_path / "missing" / "Image"))


def test_lab_command_line_matches_the_shared_capture(s2):
    from localmap.lab.qemu import kernel_cmdline

    line = kernel_cmdline(300, 0, 200, "page")
    if (s2 / "cmdline").is_file():
        assert line == (s2 / "cmdline").read_text().strip()
    assert "no_hash_pointers" in line and "trace_event=percpu:*" in line


def test_host_capture_refuses_without_root(tmp_path, monkeypatch):
    from localmap.lab import host

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(LocalmapError, match="needs root"):
        host.capture(tmp_path / "o", progress=False)
    with pytest.raises(LocalmapError, match="--remove"):
        host.capture(tmp_path / "o", memcgs=1, remove=2, progress=False)
