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


def _cache_deb(tmp_path, name: str, data: bytes = b"!<arch>\n", recorded: bytes | None = None):
    """A cached .deb, with the archive hash recorded at its download (of ``recorded``)."""
    import hashlib

    deb = tmp_path / "localmap" / "debs" / name
    deb.parent.mkdir(parents=True, exist_ok=True)
    deb.write_bytes(data)
    rec = data if recorded is None else recorded
    (deb.parent / f".{name}.sha256").write_text(f"{hashlib.sha256(rec).hexdigest()} {len(rec)}\n")
    return deb


def test_cache_hit_needs_no_apt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    deb = _cache_deb(tmp_path, "foo_1.0-1_arm64.deb")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)  # apt absent: must not be needed
    assert debian.fetch_deb("foo:arm64") == deb
    assert debian.fetch_deb("foo:arm64=1.0-1") == deb


def test_a_cached_deb_is_verified_once_and_again_when_it_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    deb = _cache_deb(tmp_path, "foo_1.0-1_arm64.deb", b"A" * 5000)
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    hashed = []
    real = debian.sha256_file
    monkeypatch.setattr(debian, "sha256_file", lambda p: hashed.append(p) or real(p))
    assert debian.fetch_deb("foo:arm64") == deb and debian.fetch_deb("foo:arm64") == deb
    assert len(hashed) == 1                         # the second use trusts the stamp
    deb.write_bytes(b"B" * 5000)                    # same size, other bytes: hashed again, refused
    with pytest.raises(LocalmapError, match="dpkg not found|apt"):
        debian.fetch_deb("foo:arm64")               # (downloading it again needs apt)
    assert len(hashed) == 2 and not deb.exists()


def test_a_damaged_cached_deb_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    deb = _cache_deb(tmp_path, "foo_1.0-1_arm64.deb", b"!<arch>\ncut", recorded=b"!<arch>\nwhole")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    with pytest.raises(LocalmapError, match="dpkg not found|apt"):
        debian.fetch_deb("foo:arm64")
    assert not deb.exists()


def test_a_cached_deb_with_no_hash_to_check_is_downloaded_again(tmp_path, monkeypatch):
    """A cached package apt does not list and whose hash was never recorded (cached by an older
    version) is not used unchecked: the index is refreshed, then the package downloaded again
    over it; if that fails the file stays (it may be fine) and the error is the download's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    deb = _cache_deb(tmp_path, "foo_1.0-1_arm64.deb")
    (deb.parent / ".foo_1.0-1_arm64.deb.sha256").unlink()
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    updated = []
    monkeypatch.setattr(debian, "apt_update", lambda arch=None: updated.append(arch))
    with pytest.raises(LocalmapError, match="dpkg not found|apt") as err:
        debian.fetch_deb("foo:arm64")
    assert "cannot verify" not in str(err.value) and set(updated) == {"arm64"}
    assert deb.exists()                             # not deleted: it may be fine
    with pytest.raises(LocalmapError, match="cannot verify the cached foo_1.0-1_arm64.deb"):
        debian.verify_deb(deb)                      # (the check itself still refuses it)


@pytest.mark.skipif(not __import__("shutil").which("apt-cache"), reason="no apt-cache here")
def test_the_archive_hash_comes_from_apt(tmp_path, monkeypatch):
    """apt's own index gives the hash (a package this machine's apt lists: apt itself)."""
    import subprocess

    ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "apt"], capture_output=True,
                         text=True).stdout.strip()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True).stdout.strip()
    got = debian._archive_hash("apt", arch, ver)
    if got is None:
        pytest.skip("apt's index does not list the installed apt version")
    assert len(got[0]) == 64 and int(got[0], 16) >= 0 and got[1] > 100_000


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


VERSIONS = ["6.12.117-1~deb12u1", "6.12.117-1", "6.12.117-1+deb13u1", "6.12.9-1", "6.12.117", "1:0.1",
            "6.1.0-50", "6.1.176-1", "1.0~rc1", "1.0", "1.0a", "1.0+", "1.0.0", "2.0-1~bpo12+1", "2.0-1",
            "0:2.0-1", "1.35.0-4+deb12u1+b1", "1.35.0-4+deb12u1", "1.0-1~~", "1.0-1~"]


def test_versions_compare_as_dpkg_does():
    import itertools
    import os
    import shutil
    import subprocess

    if shutil.which("dpkg") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dpkg missing: the oracle of this test")
        pytest.skip("dpkg missing (the oracle of this test)")
    for a, b in itertools.product(VERSIONS, VERSIONS):
        r = debian.compare_versions(a, b)
        rel = "lt" if r < 0 else "eq" if r == 0 else "gt"
        assert subprocess.run(["dpkg", "--compare-versions", a, rel, b]).returncode == 0, (a, rel, b)


def test_cache_picks_the_newest_version(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = tmp_path / "localmap" / "debs"
    d.mkdir(parents=True)
    for v in ("6.12.9-1", "6.12.117-1~deb12u1", "6.12.117-1", "6.12.10-1"):
        _cache_deb(tmp_path, f"linux_{v}_arm64.deb")
    monkeypatch.setattr(debian.shutil, "which", lambda name: None)
    assert debian.fetch_deb("linux:arm64").name == "linux_6.12.117-1_arm64.deb"


def test_suite_configuration_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("LOCALMAP_DEBIAN_MIRROR", "http://mirror.example/debian")
    opts = debian.suite_options("trixie", "riscv64")
    opts = debian.suite_options("trixie", "armhf")
    root = tmp_path / "localmap" / "apt" / "trixie"
    assert (root / "sources.list").read_text() == "deb [arch=riscv64,armhf] http://mirror.example/debian trixie main\n"
    assert f"-o=Dir::State::Lists={root / 'lists'}" in opts and f"-o=Dir::State::status={root / 'status'}" in opts
    assert "-o=APT::Architectures::=riscv64" in opts and "-o=APT::Architectures::=armhf" in opts
    with pytest.raises(LocalmapError):
        debian.suite_dir("../etc")


def test_every_architecture_has_a_kernel_package():
    from localmap.perf.images import ARCHES

    assert set(debian.ARCH_KERNELS) | {"arm64"} == set(ARCHES)
    for arch, (spec, suite, kind) in debian.ARCH_KERNELS.items():
        name, parch, _v = debian._split_spec(spec)
        assert parch == arch and name.startswith("linux-image-") and kind in ("vmlinuz", "vmlinux")
        assert suite is None or arch != "amd64"  # the native architecture comes from the system
