"""A small, cached fetcher of Debian packages (kernels, busybox, cross binutils).

What it models: nothing of the kernel; it is plumbing for the tools that analyse or boot real
Debian arm64 kernels. It uses the ordinary Debian clients only:

* ``dpkg --add-architecture arm64`` and ``apt-get update`` (once per process, and only when the
  package is not already known to ``apt-cache``),
* ``apt-get download PKG[:ARCH][=VERSION]`` into ``${XDG_CACHE_HOME:-~/.cache}/localmap/debs``,
* ``dpkg -x`` into ``${XDG_CACHE_HOME:-~/.cache}/localmap/extract/<deb name>``.

A package of another Debian release than the machine's (Debian 13 "trixie" builds 6.12.117 for
ppc64el, s390x, armhf and riscv64, which Debian 12 does not) is fetched through a private apt
configuration under ``${XDG_CACHE_HOME:-~/.cache}/localmap/apt/<suite>`` (its own sources list,
package lists and state, the system's keyring): the system's sources, architectures and packages
are never touched.

Both steps are cached: a ``.deb`` already in the cache is not downloaded again, but it is used only
after its SHA256 matches the archive's (from ``apt-cache show``, the index apt verified against
the signed Release file; or, when the index no longer lists that version, the hash recorded from
the index when it was downloaded): a damaged or replaced file is downloaded again, and so is one
there is nothing to check against even after an index refresh (kept if that download fails;
a file cached by an older version, before hashes were recorded). The hash of a
verified file is remembered beside it with its size, modification time and inode, so a large
package is read again only when it changed. Of several cached versions the newest in Debian's
order is taken (``6.12.117`` after ``6.12.9``; ``~`` before anything). An extracted
tree is reused (extraction goes to a temporary directory renamed into place, so an interrupted
run never leaves a half tree that looks complete).

Another process (a second agent, unattended-upgrades) may hold the apt/dpkg lock; every apt
call then waits and retries for up to ``LOCK_WAIT`` seconds. Every failure (no apt, not root for
``apt-get update``, no network, unknown package) is raised as one-line
:class:`~localmap.errors.LocalmapError`.

API::

    deb = fetch_deb("linux-image-6.12.117+deb12-arm64-unsigned:arm64")
    root = extract_deb(deb)          # root / "boot" / "vmlinuz-6.12.117+deb12-arm64"
    root = fetch_and_extract(spec)   # both
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.fileio import sha256_file

LOCK_WAIT = 600.0  # seconds to wait for another apt/dpkg user to release its lock
_LOCK_PATTERNS = (
    "could not get lock",
    "unable to lock",
    "unable to acquire the dpkg frontend lock",
    "is another process using it",
    "waiting for cache lock",
)
_updated: set[str] = set()  # architectures for which this process already ran apt-get update


def cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/localmap`` (created on demand)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "localmap"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debs_dir() -> Path:
    path = cache_dir() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _split_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``name[:arch][=version]`` -> (name, arch, version)."""
    m = re.fullmatch(r"([a-z0-9][a-z0-9+.\-]*)(?::([a-z0-9\-]+))?(?:=(\S+))?", spec.strip())
    if not m:
        raise LocalmapError(f"not a Debian package spec (name[:arch][=version]): {spec!r}")
    return m.group(1), m.group(2), m.group(3)


def _run(cmd: list[str], *, cwd: Path | None = None, what: str) -> subprocess.CompletedProcess:
    """Run an apt/dpkg command, retrying while someone else holds the lock."""
    if shutil.which(cmd[0]) is None:
        raise LocalmapError(f"{cmd[0]} not found: {what} needs a Debian system with apt and dpkg")
    deadline = time.monotonic() + LOCK_WAIT
    delay = 2.0
    while True:
        try:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        except OSError as exc:
            raise LocalmapError(f"{what}: cannot run {cmd[0]}: {exc}") from None
        if proc.returncode == 0:
            return proc
        err = (proc.stderr or "") + (proc.stdout or "")
        if any(p in err.lower() for p in _LOCK_PATTERNS) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 1.5, 15.0)
            continue
        return proc


def _last_error(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in ((proc.stderr or "") + (proc.stdout or "")).splitlines()]
    errs = [ln for ln in lines if ln.startswith(("E:", "dpkg:", "W:"))] or [ln for ln in lines if ln]
    return errs[-1] if errs else f"exit status {proc.returncode}"


def _known(name: str, arch: str | None, opts: tuple[str, ...] = ()) -> bool:
    spec = f"{name}:{arch}" if arch else name
    if shutil.which("apt-cache") is None:
        return False
    proc = subprocess.run(["apt-cache", *opts, "policy", spec], capture_output=True, text=True)
    m = re.search(r"Candidate:\s*(\S+)", proc.stdout)
    return bool(m and m.group(1) != "(none)")


MIRROR = "http://deb.debian.org/debian"  # overridden by $LOCALMAP_DEBIAN_MIRROR
_suite_updated: set[tuple[str, str]] = set()  # (suite, architectures) updated by this process


def suite_dir(suite: str) -> Path:
    """Root of the private apt configuration for Debian ``suite`` (created on demand)."""
    if not re.fullmatch(r"[a-z][a-z0-9-]*", suite):
        raise LocalmapError(f"not a Debian suite name: {suite!r}")
    root = cache_dir() / "apt" / suite
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def _suite_archs(root: Path, arch: str | None) -> list[str]:
    path = root / "architectures"
    archs = path.read_text().split() if path.is_file() else []
    if arch and arch not in archs:
        archs.append(arch)
        path.write_text(" ".join(archs) + "\n")
    return archs


def suite_options(suite: str, arch: str | None = None) -> tuple[str, ...]:
    """``apt-get``/``apt-cache`` options that use only the private configuration of ``suite``
    (main component, the architectures asked for so far plus ``arch``)."""
    root = suite_dir(suite)
    archs = _suite_archs(root, arch)
    mirror = os.environ.get("LOCALMAP_DEBIAN_MIRROR") or MIRROR
    tag = f"[arch={','.join(archs)}] " if archs else ""
    sources = root / "sources.list"
    line = f"deb {tag}{mirror} {suite} main\n"
    if not sources.is_file() or sources.read_text() != line:
        sources.write_text(line)
    status = root / "status"
    if not status.exists():
        status.write_text("")
    opts = [f"-o=Dir::Etc::SourceList={sources}", f"-o=Dir::Etc::SourceParts={root / 'sources.list.d'}",
            f"-o=Dir::State::Lists={root / 'lists'}", f"-o=Dir::State::status={status}",
            f"-o=Dir::Cache={root / 'cache'}", f"-o=Dir::Etc::Preferences={root / 'preferences'}",
            f"-o=Dir::Etc::PreferencesParts={root / 'preferences.d'}"]
    opts += [f"-o=APT::Architectures::={a}" for a in archs]
    return tuple(opts)


def suite_update(suite: str, arch: str | None = None) -> str:
    """``apt-get update`` of the private configuration of ``suite`` (once per process). Returns
    apt's last error line ("" when none): a mirror may fail some indices and still serve the one
    that is needed, so the caller decides by looking the package up afterwards."""
    opts = suite_options(suite, arch)
    key = (suite, " ".join(o for o in opts if "Architectures" in o))
    if key in _suite_updated:
        return ""
    proc = _run(["apt-get", *opts, "update", "-q"], what=f"apt-get update ({suite})")
    _suite_updated.add(key)
    return "" if proc.returncode == 0 else _last_error(proc)


def ensure_arch(arch: str) -> None:
    """Make ``arch`` a dpkg foreign architecture (no-op for the native one)."""
    if shutil.which("dpkg") is None:
        raise LocalmapError("dpkg not found: fetching Debian packages needs a Debian system")
    native = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    if arch == native:
        return
    foreign = subprocess.run(
        ["dpkg", "--print-foreign-architectures"], capture_output=True, text=True
    ).stdout.split()
    if arch in foreign:
        return
    proc = _run(["dpkg", "--add-architecture", arch], what=f"adding architecture {arch}")
    if proc.returncode != 0:
        raise LocalmapError(f"dpkg --add-architecture {arch} failed (needs root): {_last_error(proc)}")


def apt_update(arch: str | None = None) -> None:
    """``apt-get update`` once per process (after adding ``arch``)."""
    key = arch or ""
    if key in _updated:
        return
    if arch:
        ensure_arch(arch)
    proc = _run(["apt-get", "update", "-q"], what="apt-get update")
    if proc.returncode != 0:
        raise LocalmapError(f"apt-get update failed (root and network needed): {_last_error(proc)}")
    _updated.add(key)


def _order(c: str) -> int:
    """Sort weight of one character of a version part (Debian Policy 5.6.12): ``~`` before the
    end of the part, the end before letters, letters before everything else."""
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    """Compare two upstream-version or revision strings the dpkg way."""
    i = j = 0
    while i < len(a) or j < len(b):
        first = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first:
                first = (a[i] > b[j]) - (a[i] < b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first:
            return first
    return 0


def _split_version(v: str) -> tuple[int, str, str]:
    epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    try:
        e = int(epoch or "0")
    except ValueError:
        raise LocalmapError(f"not a Debian version: {v!r}") from None
    return e, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as Debian version ``a`` sorts before, equal to or after ``b`` (the order of
    ``dpkg --compare-versions``: epoch, then upstream version, then Debian revision, where ``~``
    sorts before anything, even the end: ``6.12.117-1~deb12u1 < 6.12.117-1``)."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def _deb_version(path: Path) -> str:
    # apt-get download names files NAME_VERSION_ARCH.deb with ':' in the version escaped as %3a
    return path.name.split("_")[1].replace("%3a", ":")


def _cached(name: str, arch: str | None, version: str | None) -> Path | None:
    """The cached ``.deb`` of ``name`` (the newest by Debian version when several are cached)."""
    ver = "*" if version is None else version.replace(":", "%3a")
    hits = list(debs_dir().glob(f"{name}_{ver}_{arch or '*'}.deb"))
    if not hits:
        return None
    best = hits[0]
    for h in hits[1:]:
        if compare_versions(_deb_version(h), _deb_version(best)) > 0:
            best = h
    return best


def _archive_hash(name: str, arch: str | None, version: str,
                  opts: tuple[str, ...] = ()) -> tuple[str, int] | None:
    """(SHA256, size) the archive's index gives for ``name:arch=version``, or None when apt
    does not know that version (or is absent)."""
    if shutil.which("apt-cache") is None:
        return None
    spec = f"{name}:{arch}={version}" if arch else f"{name}={version}"
    proc = _run(["apt-cache", *opts, "show", spec], what=f"apt-cache show {spec}")
    if proc.returncode != 0:
        return None
    sha = size = None
    for line in proc.stdout.splitlines():
        if not line.strip():
            if sha:
                break
            continue
        key, _, val = line.partition(":")
        if key == "SHA256":
            sha = val.strip().lower()
        elif key == "Size" and val.strip().isdigit():
            size = int(val)
    return (sha, size) if sha and size is not None else None


def _sidecar(deb: Path, what: str) -> Path:
    return deb.with_name(f".{deb.name}.{what}")


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def _name_arch_version(deb: Path) -> tuple[str, str, str]:
    name, version, arch = deb.name.removesuffix(".deb").split("_")
    return name, arch, version.replace("%3a", ":")


def verify_deb(deb: Path, opts: tuple[str, ...] = ()) -> bool:
    """Whether the cached ``deb`` has the archive's SHA256 and size (see the module docstring).
    Raises :class:`LocalmapError` when there is nothing to check it against."""
    name, arch, version = _name_arch_version(deb)
    expected = _archive_hash(name, arch, version, opts)
    recorded = _sidecar(deb, "sha256")
    if expected is None and recorded.is_file():
        sha, _, size = recorded.read_text().strip().partition(" ")
        expected = (sha, int(size)) if size.isdigit() else None
    if expected is None:
        raise LocalmapError(f"cannot verify the cached {deb.name}: apt does not list "
                            f"{name}={version} and no archive hash was recorded with it (run "
                            "apt-get update, or delete the file to download it again)", deb)
    stamp = _sidecar(deb, "verified")
    if deb.stat().st_size != expected[1]:
        return False
    if stamp.is_file() and stamp.read_text() == f"{expected[0]} {_stat_key(deb)}":
        return True
    if sha256_file(deb) != expected[0]:
        return False
    stamp.write_text(f"{expected[0]} {_stat_key(deb)}")
    if not recorded.is_file():
        recorded.write_text(f"{expected[0]} {expected[1]}\n")
    return True


def _drop(deb: Path) -> None:
    for p in (deb, _sidecar(deb, "verified"), _sidecar(deb, "sha256")):
        p.unlink(missing_ok=True)


def fetch_deb(spec: str, suite: str | None = None) -> Path:
    """Download the Debian package ``name[:arch][=version]`` (cached) and return its ``.deb``.

    The package index is refreshed (``apt-get update``) only when apt does not know the package.
    With ``suite`` (e.g. ``"trixie"``), a package the system's apt does not know is fetched from
    that Debian suite through the private configuration of :func:`suite_options`.
    """
    name, arch, version = _split_spec(spec)
    hit = _cached(name, arch, version)
    opts: tuple[str, ...] = ()
    if hit is not None:
        if suite is not None and _archive_hash(*_name_arch_version(hit)) is None \
                and not _sidecar(hit, "sha256").is_file():
            opts = suite_options(suite, arch)
        try:
            ok = verify_deb(hit, opts)
        except LocalmapError:       # nothing to check it against: refresh the index, once
            if suite is not None:
                suite_update(suite, arch)
            else:
                apt_update(arch)
            try:
                ok = verify_deb(hit, opts)
            except LocalmapError:   # still unknown (cached before hashes were recorded):
                ok = None           # download it again over it, kept if that fails
        if ok:
            return hit
        if ok is False:
            _drop(hit)              # damaged or replaced: download it again
        opts = ()
    if suite is not None and not _known(name, arch):
        opts = suite_options(suite, arch)
        if not _known(name, arch, opts):
            err = suite_update(suite, arch)
            if not _known(name, arch, opts):
                raise LocalmapError(f"Debian package {spec} not found in {suite} after apt-get update"
                                    + (f" ({err})" if err else " (network needed)"))
    elif not _known(name, arch):
        apt_update(arch)
        if not _known(name, arch):
            raise LocalmapError(f"Debian package {spec} not found by apt-cache (after apt-get update)")
    with tempfile.TemporaryDirectory(dir=debs_dir(), prefix=".dl-") as tmp:
        proc = _run(["apt-get", *opts, "download", "-q", spec], cwd=Path(tmp),
                    what=f"apt-get download {spec}")
        if proc.returncode != 0:
            raise LocalmapError(f"apt-get download {spec} failed: {_last_error(proc)}")
        got = sorted(Path(tmp).glob("*.deb"))
        if not got:
            raise LocalmapError(f"apt-get download {spec} produced no .deb")
        dest = debs_dir() / got[0].name
        os.replace(got[0], dest)
    # (apt-get checked the download against the index; record that hash for later re-checks)
    h = _archive_hash(*_name_arch_version(dest), opts)
    if h is not None:
        _sidecar(dest, "sha256").write_text(f"{h[0]} {h[1]}\n")
    return dest


def extract_deb(deb: Path) -> Path:
    """``dpkg -x`` a ``.deb`` into the cache (once) and return the root of the extracted tree."""
    deb = Path(deb)
    if not deb.is_file():
        raise LocalmapError("no such .deb", deb)
    root = cache_dir() / "extract" / deb.name.removesuffix(".deb")
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".x-"))
    try:
        proc = _run(["dpkg", "-x", str(deb), str(tmp)], what=f"dpkg -x {deb.name}")
        if proc.returncode != 0:
            raise LocalmapError(f"dpkg -x failed: {_last_error(proc)}", deb)
        try:
            os.replace(tmp, root)
        except OSError:
            if not root.is_dir():  # someone else won the race: fine; otherwise a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def extract_members(deb: Path, members: list[str]) -> list[Path]:
    """Extract only ``members`` (paths inside the package, e.g. ``usr/lib/debug/boot/System.map-V``)
    from a ``.deb`` into the same cache tree as :func:`extract_deb`; stops reading the archive once
    all were found, so a 1 GB debug package costs seconds when the members come first."""
    deb = Path(deb)
    if not deb.is_file():
        raise LocalmapError("no such .deb", deb)
    root = cache_dir() / "extract" / (deb.name.removesuffix(".deb") + ".partial")
    out = [root / m.lstrip("./") for m in members]
    if all(p.is_file() for p in out):
        return out
    if shutil.which("dpkg-deb") is None or shutil.which("tar") is None:
        raise LocalmapError("dpkg-deb and tar are needed to extract package members")
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".xm-"))
    try:
        feed = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        names = ["./" + m.lstrip("./") for m in members]
        tar = subprocess.run(["tar", "-x", "-C", str(tmp), "--occurrence=1", *names],
                             stdin=feed.stdout, capture_output=True, text=True)
        feed.stdout.close()
        feed.kill()
        feed.wait()
        if tar.returncode != 0:
            raise LocalmapError(f"cannot extract {', '.join(members)}: {_last_error(tar)}", deb)
        for m, dest in zip(members, out):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / m.lstrip("./"), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def fetch_and_extract(spec: str) -> Path:
    """:func:`fetch_deb` then :func:`extract_deb`."""
    return extract_deb(fetch_deb(spec))


# Names used by the performance analysis.
DEBIAN_KERNELS = {
    "arm64": "linux-image-6.12.117+deb12-arm64-unsigned:arm64",
    "rt-arm64": "linux-image-6.12.117+deb12-rt-arm64-unsigned:arm64",
}


# The kernel images analysed for every other Debian architecture: (package, suite or None for
# the machine's own sources, image file name in boot/). Debian 12 builds 6.12.117 for amd64 (and
# arm64); Debian 13 builds it for armhf and riscv64. ppc64el and s390x: Debian 12's 6.12 index
# and Debian 13's packages are not on the mirror this project is tested against, so Debian 12's
# 6.1 kernel is used (its percpu.h paths are the same; s390x reaches the lowcore at address 0).
# Foreign architectures always go through the private configuration of their suite, so the
# machine's dpkg architectures and apt indices stay as they are.
ARCH_KERNELS: dict[str, tuple[str, str | None, str]] = {
    "amd64": ("linux-image-6.12.117+deb12-amd64-unsigned:amd64", None, "vmlinuz"),
    "armhf": ("linux-image-6.12.117+deb13-armmp:armhf", "trixie", "vmlinuz"),
    "riscv64": ("linux-image-6.12.117+deb13-riscv64:riscv64", "trixie", "vmlinux"),
    "ppc64el": ("linux-image-6.1.0-50-powerpc64le:ppc64el", "bookworm", "vmlinux"),
    "s390x": ("linux-image-6.1.0-50-s390x:s390x", "bookworm", "vmlinuz"),
}


def debian_arch_kernel(arch: str) -> tuple[Path, Path]:
    """Fetch (cached) the kernel image package of Debian architecture ``arch`` (see
    :data:`ARCH_KERNELS`) and extract only its image and ``.config``: (image, config)."""
    try:
        spec, suite, kind = ARCH_KERNELS[arch]
    except KeyError:
        raise LocalmapError(f"unknown architecture {arch!r} (known: {', '.join(ARCH_KERNELS)})") from None
    name = spec.split(":")[0]
    version = name.removeprefix("linux-image-").removesuffix("-unsigned")
    if suite is not None:  # one index update per suite for all the architectures it serves here
        for other, (ospec, osuite, _k) in ARCH_KERNELS.items():
            if osuite == suite:
                _suite_archs(suite_dir(suite), ospec.split(":")[1])
    deb = fetch_deb(spec, suite=suite)
    image, config = extract_members(deb, [f"boot/{kind}-{version}", f"boot/config-{version}"])
    return image, config


def debian_kernel(flavour: str = "arm64") -> tuple[Path, Path | None]:
    """Fetch Debian's 6.12.117 arm64 kernel of ``flavour``; return (vmlinuz Image, System.map or
    None: the image package's map is a stub, see :func:`debian_system_map`)."""
    try:
        spec = DEBIAN_KERNELS[flavour]
    except KeyError:
        raise LocalmapError(f"unknown flavour {flavour!r} (known: {', '.join(DEBIAN_KERNELS)})") from None
    root = fetch_and_extract(spec)
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise LocalmapError("package has no boot/vmlinuz-*", root)
    # Debian ships a one-line stub System.map here; only a real one is returned
    maps = [m for m in sorted((root / "boot").glob("System.map-*")) if m.stat().st_size > 4096]
    return images[0], (maps[0] if maps else None)


def debian_system_map(flavour: str = "arm64") -> Path:
    """The real ``System.map`` of Debian's 6.12.117 ``flavour`` kernel, from its ``-dbg`` package.

    (The image package ships a one-line stub.) The debug package is ~1 GB; only the map is
    extracted, and reading stops once it has been found."""
    spec = DEBIAN_KERNELS.get(flavour)
    if spec is None:
        raise LocalmapError(f"unknown flavour {flavour!r} (known: {', '.join(DEBIAN_KERNELS)})")
    name = spec.split(":")[0]
    version = name.removeprefix("linux-image-").removesuffix("-unsigned")
    dbg = fetch_deb(f"linux-image-{version}-dbg:arm64")
    return extract_members(dbg, [f"usr/lib/debug/boot/System.map-{version}"])[0]
