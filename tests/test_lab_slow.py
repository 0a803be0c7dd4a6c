"""Slow: rebuild s2_612_4k_smp2_page with the QEMU lab, and capture on this host.

Both need root; the lab installs qemu-system-arm when it is missing (as CI does on a fresh
Debian machine) and fetches the kernel and busybox with apt-get download.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from localmap.ingest.bundle import load_bundle
from localmap.lab import bundle_io

pytestmark = pytest.mark.slow


def _ensure_qemu() -> None:
    if shutil.which("qemu-system-aarch64"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("qemu-system-aarch64 missing and cannot apt-get install it (not root / no apt)")
    subprocess.run(["apt-get", "update", "-qq"], check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "qemu-system-arm"], check=True,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def _event_counts(trace: Path) -> Counter:
    c = Counter()
    with gzip.open(trace, "rt") as fh:
        for line in fh:
            if not line.startswith("#"):
                for ev in ("percpu_alloc_percpu:", "percpu_free_percpu:", "percpu_create_chunk:",
                           "percpu_destroy_chunk:"):
                    if ev in line:
                        c[ev] += 1
    return c


def test_lab_rebuilds_s2(s2, tmp_path):
    _ensure_qemu()
    if os.geteuid() != 0:
        pytest.skip("apt-get download of the kernel needs root on a fresh machine")
    from localmap.lab.qemu import DEFAULT_KERNEL, lab_capture

    out = tmp_path / "s2"
    res = lab_capture(DEFAULT_KERNEL, 2, out, memcgs=300, remove=0, forks=200,
                      percpu_alloc="page", timeout=1500, progress=False)
    assert res.validation.ok
    lab, ref = load_bundle(out), load_bundle(s2)
    # same kernel, same first chunk, same command line, same CPUs
    assert lab.first_chunk.text.split("] ", 1)[1] == ref.first_chunk.text.split("] ", 1)[1]
    assert lab.uname == ref.uname
    assert lab.cmdline == ref.cmdline
    assert lab.cpus == ref.cpus
    assert (gzip.decompress((out / "config.gz").read_bytes())
            == gzip.decompress((s2 / "config.gz").read_bytes()))
    # the workload did the same thing: Percpu in every phase within one page per CPU
    assert [p for p, _ in lab.meminfo] == [p for p, _ in ref.meminfo]
    for (_, a), (_, b) in zip(lab.meminfo, ref.meminfo):
        assert abs(a - b) <= 2 * 4096 * 2, (lab.meminfo, ref.meminfo)
    # and the trace has the same shape (the collection step after the workload differs a little)
    a, b = _event_counts(out / "trace.gz"), _event_counts(s2 / "trace.gz")
    assert a["percpu_create_chunk:"] == b["percpu_create_chunk:"]
    for ev in ("percpu_alloc_percpu:", "percpu_free_percpu:"):
        assert abs(a[ev] - b[ev]) <= 0.05 * b[ev], (ev, a, b)
    # the replay scores it like the shared one
    try:
        from localmap.analysis.replay import replay
    except ModuleNotFoundError:
        pytest.skip("localmap.analysis.replay not in the tree: replay comparison not run")
    ra, rb = replay(lab, progress=False), replay(ref, progress=False)
    from localmap.report.sections import replay_scores

    sa, sb = replay_scores(ra), replay_scores(rb)
    for key in sb:
        assert abs(sa[key] - sb[key]) <= 0.02, (key, sa, sb)


def test_host_capture_loads_like_the_others(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("localmap capture needs root")
    from localmap.lab import host

    try:
        res = host.capture(tmp_path / "h", memcgs=5, remove=2, forks=5, progress=False)
    except Exception as exc:  # pragma: no cover - depends on the host kernel
        if "tracefs" in str(exc) or "CONFIG_FTRACE" in str(exc):
            pytest.skip(f"this host cannot trace: {exc}")
        raise
    if not (tmp_path / "h" / "trace.gz").is_file():
        pytest.skip("this host has no percpu tracepoints: " + "; ".join(res.validation.problems))
    b = load_bundle(tmp_path / "h")
    assert b.first_chunk is not None
    assert [p for p, _ in b.meminfo] == ["boot", "memcg", "memcg_del", "fork"]
    assert b.cpus["possible"] and set(b.cpus["online"]) <= set(b.cpus["possible"])
    v = bundle_io.validate_bundle(tmp_path / "h")
    assert v.events > 0  # fork+exec and memcgs allocate percpu memory on every kernel


def test_host_capture_with_a_custom_workload(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("localmap capture needs root")
    from localmap.lab import host

    host.capture(tmp_path / "w", workload="for i in 1 2 3; do /bin/true; done", progress=False)
    if not (tmp_path / "w" / "trace.gz").is_file():
        pytest.skip("this host has no percpu tracepoints")
    b = load_bundle(tmp_path / "w")
    assert [p for p, _ in b.meminfo] == ["boot", "workload"]
