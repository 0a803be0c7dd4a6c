"""The cached Debian package fetcher (fast: no network; the real download is in the slow tests)."""

from __future__ import annotations

import pytest

from localmap import debian
from localmap.errors import LocalmapError


def test_spec_parsing():
    assert debian._split_spec("busybox-static:arm64") == ("busybox-static", "arm64", None)
    assert debian._split_spec("linux-image-6.12.117+deb12-arm64-unsigned:arm64=6.12.117-1~deb12u1") == (
        "linux-image-6.12.117+deb12-arm64-unsigned", "arm64", "6.12.117-1~deb12u1")
    with pytest.raises(LocalmapError):
        debian._split_spec("no spaces allowed")


def test_cache_hit_needs_no_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    deb = tmp_path / "localmap" / "debs" / "foo_1.0-1_arm64.deb"
    deb.parent.mkdir(parents=True)
    deb.write_bytes(b"!<arch>\n")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)  # apt absent: must not be needed
    assert debian.fetch_deb("foo:arm64") == deb
    assert debian.fetch_deb("foo:arm64=1.0-1") == deb


def test_missing_apt_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    monkeypatch.setattr(debian, "_updated", set())
    with pytest.raises(LocalmapError, match="dpkg not found|apt"):
        debian.fetch_deb("definitely-not-cached:arm64")


def test_lock_is_retried(monkeypatch):
    calls = []

    class P:
        def __init__(self, rc, err):
            self.returncode, self.stderr, self.stdout = rc, err, ""

    def fake_run(cmd, **kw):
        calls.append(cmd)
        if len(calls) < 3:
            return P(100, "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 1")
        return P(0, "")

    monkeypatch.setattr(debian.subprocess, "run", fake_run)
    monkeypatch.setattr(debian.time, "sleep", lambda s: None)
    monkeypatch.setattr(debian.shutil, "which", lambda name: "/usr/bin/" + name)
    assert debian._run(["apt-get", "download", "x"], what="t").returncode == 0
    assert len(calls) == 3


def test_extract_missing_deb(tmp_path):
    with pytest.raises(LocalmapError, match="no such"):
        debian.extract_deb(tmp_path / "nope.deb")
