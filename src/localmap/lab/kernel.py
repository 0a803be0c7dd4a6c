"""The lab's kernel builder: an arm64 ``Image`` from Debian's own source and config.

What it models: nothing of the kernel; it reproduces a build. The talk measured a Fedora kernel,
whose config has ``CONFIG_PREEMPT_DYNAMIC=y`` (so ``PREEMPT_COUNT``: every ``this_cpu_*`` op is
bracketed by a preempt count increment/decrement) while Debian's 6.12 arm64 kernel is
``PREEMPT_VOLUNTARY`` without a preempt count. This module derives a config from Debian's arm64
config (its compiler flags and options: ``-O2``, same gcc, same hardening), switches the
preemption model, trims what QEMU ``virt`` does not need, and builds ``make Image`` with
``aarch64-linux-gnu-gcc`` from ``/usr/src/linux-source-6.12.tar.xz`` (Debian's
``linux-source-6.12`` package).

Where it deliberately differs from Debian's build:

* trimmed: every ``ARCH_*`` platform of ``arch/arm64/Kconfig.platforms``, DRM, sound, media,
  USB, wireless, PCI, ACPI, EFI and KVM (none is on QEMU ``virt``'s boot path with an
  initramfs; the code paths the talk profiles, mm/fork/memcg/vm, are untouched);
* ``CONFIG_ARM64_VA_BITS_48=y`` with 4K pages (Debian: 52-bit VA; Fedora's aarch64 config,
  the talk's, uses 48-bit VA with 4K pages);
* no debug info, no BTF (gcc's code generation does not depend on ``-g``), no module signing
  and no Debian certificate paths (they name files outside the source tarball);
* ``make Image`` only: modules are not built (the workloads need none).

Builds are cached under ``~/.cache/localmap/kernels/<key>/`` where ``key`` hashes the final
``.config`` (after ``olddefconfig``), the source tarball's identity and version, the contents of
the patches applied, and the compiler version. A build keeps ``Image``, ``vmlinux`` (for site
analysis and profiles), ``System.map``, ``.config``, ``build.log`` and ``build.json`` (timings).

API::

    res = build_kernel(flavour="dynamic", patches=[Path("kernel/0001-x.patch")],
                       extra_config={"FOO": "y"}, progress=reporter)  # localmap.progress
    res.image, res.vmlinux, res.system_map, res.config, res.key, res.seconds, res.cached
    image = build_kernel_image(...)   # just the Path of the Image
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from localmap.errors import LocalmapError
from localmap.fileio import sha256_file
from localmap.progress import Progress, as_progress

SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")
DEBIAN_CONFIG_PACKAGE = "linux-image-6.12.117+deb12-arm64-unsigned:arm64"
CROSS = "aarch64-linux-gnu-"
RECIPE = 1  # bump when the build recipe changes in a way the config does not show

# Preemption flavours: the options each one sets (the choice symbols are exclusive).
FLAVOURS: dict[str, dict[str, str]] = {
    # Debian's own: voluntary, no preempt count
    "voluntary": {"PREEMPT_NONE": "n", "PREEMPT_VOLUNTARY": "y", "PREEMPT": "n",
                  "PREEMPT_RT": "n", "PREEMPT_DYNAMIC": "n"},
    # the talk's (Fedora): voluntary by default, switchable at boot, with a preempt count
    "dynamic": {"PREEMPT_NONE": "n", "PREEMPT_VOLUNTARY": "y", "PREEMPT": "n",
                "PREEMPT_RT": "n", "PREEMPT_DYNAMIC": "y"},
    "full": {"PREEMPT_NONE": "n", "PREEMPT_VOLUNTARY": "n", "PREEMPT": "y",
             "PREEMPT_RT": "n", "PREEMPT_DYNAMIC": "n"},
    "rt": {"PREEMPT_NONE": "n", "PREEMPT_VOLUNTARY": "n", "PREEMPT": "n",
           "PREEMPT_RT": "y", "PREEMPT_DYNAMIC": "n", "EXPERT": "y"},
}

# Trimmed: top-level switches of subsystems QEMU virt does not need (olddefconfig drops their
# dependants). ARCH_* platforms are read from the source's Kconfig.platforms.
TRIM_OFF = ("DRM", "SOUND", "MEDIA_SUPPORT", "USB_SUPPORT", "USB", "WIRELESS", "WLAN",
            "CFG80211", "MAC80211", "PCI", "ACPI", "EFI", "VIRTUALIZATION", "KVM")

# Set whatever the flavour: 48-bit VA with 4K pages, no debug info, no signing/cert paths.
COMMON: dict[str, str] = {
    "ARM64_4K_PAGES": "y", "ARM64_16K_PAGES": "n", "ARM64_64K_PAGES": "n",
    "ARM64_VA_BITS_39": "n", "ARM64_VA_BITS_48": "y", "ARM64_VA_BITS_52": "n",
    "DEBUG_INFO_NONE": "y", "DEBUG_INFO": "n", "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT": "n",
    "DEBUG_INFO_DWARF4": "n", "DEBUG_INFO_DWARF5": "n", "DEBUG_INFO_BTF": "n",
    "MODULE_SIG": "n", "MODULE_SIG_ALL": "n",
    "SYSTEM_TRUSTED_KEYS": '""', "SYSTEM_REVOCATION_KEYS": '""', "SYSTEM_BLACKLIST_HASH_LIST": '""',
    "MODULE_SIG_KEY": '""',
}

# What QEMU virt and the lab's workloads need; the derived config must have each (value or set).
REQUIRED: dict[str, str] = {
    "SERIAL_AMBA_PL011": "y", "SERIAL_AMBA_PL011_CONSOLE": "y", "ARM_GIC_V3": "y",
    "ARM_ARCH_TIMER": "y", "BLK_DEV_INITRD": "y", "DEVTMPFS": "y", "TRACING": "y",
    "FTRACE": "y", "EVENT_TRACING": "y", "TRACEFS_AUTOMOUNT_DEPRECATED": "",  # "" = anything
    "CGROUPS": "y", "MEMCG": "y", "PROC_FS": "y", "SYSFS": "y", "SMP": "y",
    "CC_OPTIMIZE_FOR_PERFORMANCE": "y", "ARM64_4K_PAGES": "y", "ARM64_VA_BITS": "48",
    "BINFMT_ELF": "y", "KALLSYMS": "y", "SHMEM": "y",
}
FLAVOUR_REQUIRED: dict[str, dict[str, str]] = {
    "voluntary": {"PREEMPT_VOLUNTARY": "y", "PREEMPT_COUNT": "-"},
    "dynamic": {"PREEMPT_DYNAMIC": "y", "PREEMPT_COUNT": "y", "PREEMPT_VOLUNTARY": "y"},
    "full": {"PREEMPT": "y", "PREEMPT_COUNT": "y", "PREEMPT_DYNAMIC": "-"},
    "rt": {"PREEMPT_RT": "y", "PREEMPT_COUNT": "y"},
}

@dataclass
class KernelBuild:
    key: str
    flavour: str
    dir: Path
    image: Path
    vmlinux: Path
    system_map: Path
    config: Path
    seconds: float            # wall-clock of the build that produced it (0 if unknown)
    objects: int              # compiled objects (CC lines) in that build
    cached: bool              # True when this call found it in the cache
    patches: list[str] = field(default_factory=list)
    version: str = ""

    def to_dict(self) -> dict:
        return {"key": self.key, "flavour": self.flavour, "dir": str(self.dir),
                "image": str(self.image), "vmlinux": str(self.vmlinux),
                "system_map": str(self.system_map), "config": str(self.config),
                "seconds": self.seconds, "objects": self.objects, "cached": self.cached,
                "patches": self.patches, "version": self.version}


def kernels_dir() -> Path:
    from localmap import debian

    p = debian.cache_dir() / "kernels"
    p.mkdir(parents=True, exist_ok=True)
    return p


# ---------------------------------------------------------------- config text helpers

_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")


def parse_config(text: str) -> dict[str, str]:
    """``.config`` text -> {SYMBOL: value}; unset symbols map to ``"n"``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            out[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            out[m.group(1)] = "n"
    return out


def apply_overrides(text: str, overrides: dict[str, str]) -> str:
    """Rewrite ``.config`` text with ``overrides`` ({SYM: "y"|"n"|"m"|value}), dropping the old
    lines of every overridden symbol and appending the new ones (olddefconfig settles the rest)."""
    keep = []
    for line in text.splitlines():
        m = _SET.match(line) or _UNSET.match(line)
        if m and m.group(1) in overrides:
            continue
        keep.append(line)
    for sym, val in overrides.items():
        keep.append(f"# CONFIG_{sym} is not set" if val == "n" else f"CONFIG_{sym}={val}")
    return "\n".join(keep) + "\n"


def platform_symbols(source: Path) -> list[str]:
    """The ``ARCH_*`` platform symbols declared in the source's ``arch/arm64/Kconfig.platforms``."""
    kp = source / "arch" / "arm64" / "Kconfig.platforms"
    if not kp.is_file():
        raise LocalmapError("source tree has no arch/arm64/Kconfig.platforms", source)
    return sorted(set(re.findall(r"^\s*(?:menu)?config\s+(ARCH_[A-Z0-9_]+)\s*$",
                                 kp.read_text(), re.M)))


def config_overrides(flavour: str, source: Path, extra_config: dict[str, str] | None = None
                     ) -> dict[str, str]:
    """Every override applied to Debian's config for ``flavour`` (trim, common, flavour, extra)."""
    if flavour not in FLAVOURS:
        raise LocalmapError(f"unknown kernel flavour {flavour!r} (known: {', '.join(FLAVOURS)})")
    ov: dict[str, str] = {s: "n" for s in platform_symbols(source)}
    ov.update({s: "n" for s in TRIM_OFF})
    ov.update(COMMON)
    ov.update(FLAVOURS[flavour])
    for k, v in (extra_config or {}).items():
        k = k.removeprefix("CONFIG_")
        if not re.fullmatch(r"[A-Za-z0-9_]+", k):
            raise LocalmapError(f"not a Kconfig symbol: {k!r}")
        ov[k] = str(v)
    return ov


def check_config(cfg: dict[str, str], flavour: str, extra_config: dict[str, str] | None = None
                 ) -> list[str]:
    """What the derived config lacks (empty = fine): QEMU virt needs, the flavour, the extras."""
    want = dict(REQUIRED)
    want.update(FLAVOUR_REQUIRED[flavour])
    for k, v in (extra_config or {}).items():
        want[k.removeprefix("CONFIG_")] = "-" if str(v) == "n" else str(v)
    bad = []
    for k, v in want.items():
        have = cfg.get(k, "n")
        if v == "":
            continue
        if v == "-":
            if have not in ("n",):
                bad.append(f"CONFIG_{k}={have} (want unset)")
        elif have != v:
            bad.append(f"CONFIG_{k}={have} (want {v})")
    return bad


# ---------------------------------------------------------------- source and patches

def source_identity(tarball: Path = SOURCE_TARBALL) -> str:
    """sha256 of the source tarball, memoised in the cache by (size, mtime)."""
    if not tarball.is_file():
        raise LocalmapError("kernel source missing: apt-get install linux-source-6.12", tarball)
    st = tarball.stat()
    memo = kernels_dir() / "src" / f"{tarball.name}.{st.st_size}.{int(st.st_mtime)}.sha256"
    if memo.is_file():
        return memo.read_text().strip()
    digest = sha256_file(tarball)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest + "\n")
    return digest


def pristine_source(tarball: Path = SOURCE_TARBALL, progress: Progress | None = None) -> Path:
    """The source tree unpacked once into the cache (read-only use: builds are out of tree)."""
    ident = source_identity(tarball)[:16]
    dest = kernels_dir() / "src" / ident
    tree = dest / "linux"
    if (dest / ".complete").is_file():
        return tree
    if shutil.which("tar") is None:
        raise LocalmapError("tar is needed to unpack the kernel source")
    as_progress(progress).start(f"unpacking {tarball.name}")
    tmp = Path(tempfile.mkdtemp(dir=kernels_dir() / "src", prefix=".unpack-"))
    try:
        proc = subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalmapError(f"cannot unpack: {proc.stderr.strip().splitlines()[-1:]}", tarball)
        tops = [p for p in tmp.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "Makefile").is_file():
            raise LocalmapError("tarball does not hold one kernel source tree", tarball)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        os.replace(tops[0], tree)
        (dest / ".complete").write_text(str(tarball) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def source_version(tree: Path) -> str:
    text = (tree / "Makefile").read_text(errors="replace")[:2000]
    parts = [re.search(rf"^{k}\s*=\s*(\S*)", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    if not all(parts):
        raise LocalmapError("cannot read VERSION/PATCHLEVEL/SUBLEVEL", tree / "Makefile")
    return ".".join(p.group(1) for p in parts)  # type: ignore[union-attr]


def _patched_paths(patch: Path) -> list[str]:
    out = []
    for line in patch.read_text(errors="replace").splitlines():
        if line.startswith(("+++ ", "--- ")):
            name = line[4:].split("\t")[0].strip()
            if name != "/dev/null" and "/" in name:
                out.append(name.split("/", 1)[1])
    return sorted(set(out))


def patched_source(pristine: Path, patches: list[Path], progress: Progress | None = None) -> Path:
    """A copy of ``pristine`` with ``patches`` applied in order (``patch -p1``), cached by the
    patches' contents. The copy hard-links every file and breaks the link of each file a patch
    touches before patching, so the pristine tree is never modified."""
    if not patches:
        return pristine
    h = hashlib.sha256(str(pristine).encode())
    for p in patches:
        h.update(sha256_file(p).encode())
    dest = pristine.parent.parent / ("patched-" + h.hexdigest()[:16])
    tree = dest / "linux"
    if (dest / ".complete").is_file():
        return tree
    if shutil.which("patch") is None:
        raise LocalmapError("patch(1) is needed to apply kernel patches (apt-get install patch)")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    prog = as_progress(progress)
    prog.start("copying the source for patches")
    proc = subprocess.run(["cp", "-al", str(pristine), str(tree)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalmapError(f"cannot copy the source tree: {proc.stderr.strip()}", pristine)
    for i, p in enumerate(patches):
        for rel in _patched_paths(p):
            f = tree / rel
            if f.is_file() and not f.is_symlink():
                data = f.read_bytes()
                mode = f.stat().st_mode
                f.unlink()
                f.write_bytes(data)
                os.chmod(f, mode)
        proc = subprocess.run(["patch", "-p1", "--forward", "--batch", "-i", str(p.resolve())],
                              cwd=tree, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            shutil.rmtree(dest, ignore_errors=True)
            raise LocalmapError(f"patch does not apply to {source_version(pristine)}: "
                                f"{lines[-1] if lines else 'patch failed'}", p)
        prog.update(description=f"applied {i + 1} of {len(patches)} patches")
    (dest / ".complete").write_text("\n".join(str(p) for p in patches) + "\n")
    return tree


# ---------------------------------------------------------------- the build

def debian_config() -> Path:
    """Debian's 6.12 arm64 ``boot/config-*`` (downloaded and cached by :mod:`localmap.debian`)."""
    from localmap import debian

    root = debian.fetch_and_extract(DEBIAN_CONFIG_PACKAGE)
    cfgs = sorted((root / "boot").glob("config-*"))
    if not cfgs:
        raise LocalmapError("Debian kernel package has no boot/config-*", root)
    return cfgs[0]


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LocalmapError(f"{name} not found: apt-get install {package}")
    return path


def _compiler_version() -> str:
    gcc = _tool(CROSS + "gcc", "gcc-aarch64-linux-gnu")
    return subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _make(tree: Path, out: Path, *targets: str, jobs: int = 1, nice: int = 10,
          extra: list[str] | None = None) -> list[str]:
    cmd = ["make", "-C", str(tree), f"O={out}", "ARCH=arm64", f"CROSS_COMPILE={CROSS}",
           f"-j{jobs}", *(extra or []), *targets]
    if nice and shutil.which("nice"):
        cmd = ["nice", "-n", str(nice), *cmd]
    return cmd


def derive_config(flavour: str, tree: Path, workdir: Path,
                  extra_config: dict[str, str] | None = None, base: Path | None = None) -> str:
    """Debian's config with the overrides, settled by ``make olddefconfig`` in ``workdir``;
    returns the final ``.config`` text. Raises when a required option did not survive."""
    base_text = (base or debian_config()).read_text()
    ov = config_overrides(flavour, tree, extra_config)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".config").write_text(apply_overrides(base_text, ov))
    proc = subprocess.run(_make(tree, workdir, "olddefconfig", nice=0), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise LocalmapError(f"make olddefconfig failed: {' '.join(tail)}", workdir / ".config")
    text = (workdir / ".config").read_text()
    bad = check_config(parse_config(text), flavour, extra_config)
    if bad:
        raise LocalmapError(f"derived {flavour} config lacks {', '.join(bad)}")
    return text


def build_key(config_text: str, source_id: str, version: str, patches: list[Path], compiler: str) -> str:
    # the header comment of .config holds the version and a timestamp-free banner; hash the
    # symbol lines only so cosmetic changes do not rebuild
    lines = [ln for ln in config_text.splitlines() if ln.startswith(("CONFIG_", "# CONFIG_"))]
    h = hashlib.sha256()
    for part in ("\n".join(lines), source_id, version, compiler, str(RECIPE),
                 *(sha256_file(p) for p in patches)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def _load(dirpath: Path, cached: bool) -> KernelBuild:
    meta = json.loads((dirpath / "build.json").read_text())
    return KernelBuild(key=meta["key"], flavour=meta["flavour"], dir=dirpath,
                       image=dirpath / "Image", vmlinux=dirpath / "vmlinux",
                       system_map=dirpath / "System.map", config=dirpath / "config",
                       seconds=float(meta.get("seconds", 0.0)), objects=int(meta.get("objects", 0)),
                       cached=cached, patches=list(meta.get("patches", [])),
                       version=meta.get("version", ""))


def cached_kernels() -> list[KernelBuild]:
    """Every completed build in the cache."""
    out = []
    for d in sorted(kernels_dir().iterdir()):
        if (d / "build.json").is_file() and (d / "Image").is_file():
            out.append(_load(d, True))
    return out


def find_cached(flavour: str = "dynamic", patches: list[Path] | None = None) -> KernelBuild | None:
    """The newest cached build of ``flavour`` with exactly ``patches`` (by file name), without
    deriving a config (so without the source tree): for tests and callers that must not build."""
    names = [Path(p).name for p in (patches or [])]
    hits = [k for k in cached_kernels()
            if k.flavour == flavour and [Path(p).name for p in k.patches] == names]
    hits.sort(key=lambda k: k.image.stat().st_mtime)
    return hits[-1] if hits else None


_CC = re.compile(r"^\s+(CC|AS|LD|AR|OBJCOPY|GEN|CPP|LDS|HOSTCC|SYSMAP|KSYMS|SORTTAB)\s+(\S+)")


def build_kernel(flavour: str = "dynamic", patches: list[Path | str] | None = None,
                 extra_config: dict[str, str] | None = None, *, jobs: int = 2, nice: int = 10,
                 progress: Progress | None = None, keep_build: bool = False,
                 base_config: Path | None = None, tarball: Path = SOURCE_TARBALL) -> KernelBuild:
    """Build (or find in the cache) an arm64 ``Image`` of ``flavour`` with ``patches`` applied.

    ``patches``: files in ``git format-patch``/``diff -u`` form applied with ``patch -p1`` in
    order. ``extra_config``: more overrides ({SYMBOL: value}), checked after ``olddefconfig``.
    ``progress`` (:class:`localmap.progress.Progress`) follows unpacking, configuring and
    compiling (the total is an estimate: the object count of the last build, else 2000). The object tree is deleted
    after a successful build unless ``keep_build``."""
    patch_paths = [Path(p) for p in (patches or [])]
    for p in patch_paths:
        if not p.is_file():
            raise LocalmapError("no such patch file", p)
    _tool("make", "make")
    _tool(CROSS + "gcc", "gcc-aarch64-linux-gnu")
    for t, pkg in (("flex", "flex"), ("bison", "bison"), ("bc", "bc")):
        _tool(t, pkg)
    compiler = _compiler_version()
    prog = as_progress(progress)
    pristine = pristine_source(tarball, progress)
    tree = patched_source(pristine, patch_paths, progress)
    version = source_version(tree)
    work = Path(tempfile.mkdtemp(dir=kernels_dir(), prefix=".cfg-"))
    try:
        prog.start("configuring (olddefconfig)")
        config_text = derive_config(flavour, tree, work, extra_config, base_config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    key = build_key(config_text, source_identity(tarball), version, patch_paths, compiler)
    final = kernels_dir() / f"{version}-{flavour}-{key}"
    if (final / "build.json").is_file() and (final / "Image").is_file():
        return _load(final, True)

    objdir = kernels_dir() / f".build-{key}"
    objdir.mkdir(parents=True, exist_ok=True)  # an interrupted build resumes where it stopped
    (objdir / ".config").write_text(config_text)
    estimate = max((k.objects for k in cached_kernels()), default=0) or 2000
    log_path = objdir / "build.log"
    t0 = time.monotonic()
    cc = 0
    prog.start("compiling", estimate)
    with open(log_path, "a") as log:
        for targets in (["olddefconfig"], ["Image"]):
            cmd = _make(tree, objdir, *targets, jobs=jobs, nice=nice,
                        extra=[f"LOCALVERSION=-localmap-{flavour}", "KBUILD_BUILD_USER=localmap",
                               "KBUILD_BUILD_HOST=localmap"])
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, errors="replace")
            except OSError as exc:
                raise LocalmapError(f"cannot run make: {exc}") from None
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    log.write(line)
                    m = _CC.match(line)
                    if m and m.group(1) in ("CC", "AS"):
                        cc += 1
                        prog.update(cc, description=f"compiling {m.group(2)}")
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            if proc.wait() != 0:
                log.flush()
                errs = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines()
                        if "error" in ln.lower()]
                raise LocalmapError(f"kernel build failed ({errs[0] if errs else 'see log'}); "
                                    f"log: {log_path}")
    seconds = time.monotonic() - t0
    tmp = Path(tempfile.mkdtemp(dir=kernels_dir(), prefix=".out-"))
    for src, name in ((objdir / "arch/arm64/boot/Image", "Image"), (objdir / "vmlinux", "vmlinux"),
                      (objdir / "System.map", "System.map"), (objdir / ".config", "config"),
                      (log_path, "build.log")):
        shutil.copy2(src, tmp / name)
    meta = {"key": key, "flavour": flavour, "version": version, "seconds": round(seconds, 1),
            "objects": cc, "jobs": jobs, "compiler": compiler,
            "patches": [str(p.resolve()) for p in patch_paths],
            "patch_sha256": [sha256_file(p) for p in patch_paths],
            "extra_config": extra_config or {}, "source": str(tarball),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    (tmp / "build.json").write_text(json.dumps(meta, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if not keep_build:
        shutil.rmtree(objdir, ignore_errors=True)
    return _load(final, False)


def build_kernel_image(flavour: str = "dynamic", patches: list[Path | str] | None = None,
                       extra_config: dict[str, str] | None = None, **kw) -> Path:
    """:func:`build_kernel` returning only the ``Image`` path."""
    return build_kernel(flavour, patches, extra_config, **kw).image
