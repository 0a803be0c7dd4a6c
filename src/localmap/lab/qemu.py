"""The capture lab: boot a real arm64 kernel under QEMU and capture a bundle from it.

Models nothing of the kernel itself; it reproduces how ``shared/data/bundles`` were made: a
Debian arm64 kernel (``apt-get download``, cached) booted with ``qemu-system-aarch64 -M virt -cpu
max`` from a busybox initramfs (built here in Python) whose ``/init`` is the same
``guest/capture.sh`` that ``localmap capture`` runs on a live host. The workload parameters travel
on the kernel command line (``nmemcg= ndel= nfork=``: the kernel hands unknown parameters to
``/init`` as environment variables), exactly as in the shared bundles, so a lab bundle's
``cmdline`` matches theirs. The console is parsed while it arrives (progress through boot and
each workload phase) and split into bundle files, which are then validated.

Deliberate choices: the kernel's ``.config`` is taken from the package's ``boot/config-*``
(Debian kernels lack ``/proc/config.gz``); KASLR is off (``nokaslr``) so ``kallsyms`` equals the
image's link addresses. An optional module phase (``--modules``, ``--net``) loads the package's
own modules, unpacked on the host and shipped in the initramfs, and leaves the command line
unchanged; the bundle's ``modules`` file records what happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sys
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.lab import bundle_io
from localmap.lab.initramfs import busybox_initramfs
from localmap.progress import Progress, as_progress

DEFAULT_KERNEL = "linux-image-6.12.117+deb12-arm64-unsigned"
BUSYBOX = "busybox-static:arm64"
QEMU = "qemu-system-aarch64"


@dataclass
class LabKernel:
    image: Path
    config: Path | None
    label: str
    deb: Path | None = None  # the Debian package it came from (its modules), None for an Image


@dataclass
class LabResult:
    out: Path
    validation: bundle_io.Validation
    seconds: float
    console: Path


def _cache() -> Path:
    from localmap import debian

    p = debian.cache_dir() / "lab"
    p.mkdir(parents=True, exist_ok=True)
    return p


def resolve_kernel(kernel: str, config: str | None = None) -> LabKernel:
    """``kernel`` is an arm64 ``Image`` file or a Debian package name (``:arm64`` implied)."""
    p = Path(kernel)
    if p.is_file():
        head = p.read_bytes()[:64]
        if head[56:60] != b"ARM\x64":
            raise LocalmapError("not a raw arm64 kernel Image (no ARM\\x64 magic at offset 56); "
                                "gzip'd vmlinuz.efi images are not supported", p)
        cfg = Path(config) if config else None
        if cfg is None:
            cands = sorted(p.parent.glob("config-" + p.name.removeprefix("vmlinuz-")))
            cfg = cands[0] if cands else None
        return LabKernel(p, cfg, p.name)
    if "/" in kernel:
        raise LocalmapError("no such kernel image file", kernel)
    from localmap import debian

    spec = kernel if ":" in kernel else kernel + ":arm64"
    name = spec.split(":", 1)[0].split("=", 1)[0]
    m = re.fullmatch(r"linux-image-(.+?)(-unsigned)?", name)
    if not m:
        raise LocalmapError(f"{kernel!r} is neither an Image file nor a linux-image-* package")
    version = m.group(1)
    deb = debian.fetch_deb(spec)
    image, cfg = debian.extract_members(deb, [f"boot/vmlinuz-{version}", f"boot/config-{version}"])
    return LabKernel(image, Path(config) if config else cfg, version, deb)


def busybox_binary() -> Path:
    from localmap import debian

    root = debian.extract_deb(debian.fetch_deb(BUSYBOX))
    bb = root / "bin" / "busybox"
    if not bb.is_file():
        raise LocalmapError("busybox-static package has no bin/busybox", root)
    return bb


def kernel_cmdline(memcgs: int, remove: int, forks: int, percpu_alloc: str | None,
                   buf: str = "6M") -> str:
    """The command line of the shared bundles (see shared/data/README.md).

    A module phase adds nothing here: its list rides in the initramfs and the bundle's
    ``modules`` file says what was loaded and unloaded."""
    parts = ["console=ttyAMA0", "no_hash_pointers", "nokaslr", "trace_event=percpu:*",
             f"trace_buf_size={buf}", f"percpu_alloc={percpu_alloc}" if percpu_alloc else "",
             f"nmemcg={memcgs}", f"ndel={remove}", f"nfork={forks}"]
    return " ".join(parts)


def qemu_command(image: Path, initrd: Path, cpus: int, append: str, memory: str = "4G") -> list[str]:
    # The explicit NIC is QEMU's default one for -M virt (virtio-net-pci on user networking, as in
    # the shared bundles' boots) minus its boot ROM, so ipxe-qemu need not be installed.
    return [QEMU, "-M", "virt", "-cpu", "max", "-smp", str(cpus), "-m", memory, "-nographic",
            "-no-reboot", "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-kernel", str(image), "-initrd", str(initrd), "-append", append]


def lab_capture(
    kernel: str,
    cpus: int,
    out: Path,
    memcgs: int = 300,
    remove: int = 0,
    forks: int = 200,
    percpu_alloc: str | None = None,
    timeout: float = 1200.0,
    config: str | None = None,
    progress: Progress | None = None,
    modules: list[str] | None = None,
    unload_modules: bool = True,
    net_up: bool = False,
) -> LabResult:
    """Boot ``kernel`` with ``cpus`` CPUs under QEMU, run the workload and write a bundle to ``out``.

    ``modules``: names of the kernel package's modules to load (after their dependencies, see
    :mod:`localmap.lab.modules`) after the fork phase, then to unload in reverse order unless
    ``unload_modules`` is false (phases ``modules`` and ``modules_del``). ``net_up`` adds the
    NIC's driver (``virtio_net``, and ``virtio_pci`` where it is not built in) and sets every
    interface up after loading: IPv6/IPv4 routes of the link then allocate their per-CPU caches
    with ``GFP_ATOMIC``."""
    if cpus < 1 or memcgs < 0 or forks < 0 or not 0 <= remove <= memcgs:
        raise LocalmapError("need --cpus >= 1, --memcgs/--forks >= 0 and 0 <= --remove <= --memcgs")
    if percpu_alloc not in (None, "page", "embed"):
        raise LocalmapError(f"--percpu-alloc must be 'page' or 'embed', not {percpu_alloc!r}")
    if shutil.which(QEMU) is None:
        raise LocalmapError(f"{QEMU} not found: install it with 'apt-get install qemu-system-arm'")
    if not timeout > 0:
        raise LocalmapError(f"--timeout must be a positive number of seconds, not {timeout}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LocalmapError("output folder exists and is not empty", out)
    try:                                   # before anything boots: a bad -o fails at once
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalmapError(f"cannot create the output folder: {exc.strerror}", out) from None
    if config is not None:
        from localmap.ingest.kconfig import read_config
        read_config(Path(config))          # a garbled .config is refused before the boot

    with as_progress(progress) as bar:
        bar.start("fetching kernel and busybox (apt-get download, cached)")
        k = resolve_kernel(kernel, config)
        bb = busybox_binary()
        script = bundle_io.guest_script()
        extra = _config_entry(k.config)  # Debian kernels have no /proc/config.gz
        modset = None
        if modules or net_up:
            bar.update(description="resolving modules (dependencies from .modinfo)")
            # the NIC's driver, and its PCI transport where that is a module too (Linux 6.1)
            modset = _module_set(k, modules or [], ["virtio_pci", "virtio_net"] if net_up else [])
            extra += modset.initramfs_entries(unload=unload_modules, net_up=net_up)
        initrd_bytes = busybox_initramfs(bb.read_bytes(), script, extra=extra)
        work = Path(tempfile.mkdtemp(prefix="run-", dir=_cache()))
        initrd = work / "initrd.gz"
        initrd.write_bytes(initrd_bytes)
        append = kernel_cmdline(memcgs, remove, forks, percpu_alloc)
        cmd = qemu_command(k.image, initrd, cpus, append)
        console_log = work / "console.log"
        bar.update(description=f"booting {k.label} on {cpus} CPUs (QEMU TCG)")
        t0 = time.monotonic()
        res = _run_qemu(cmd, out, console_log, timeout, bar)
        secs = time.monotonic() - t0
        bar.update(description=f"captured in {secs:.0f} s; validating")
    if not res.done:
        raise LocalmapError(f"the guest did not finish its capture (console kept in {console_log})")
    v = bundle_io.validate_bundle(out)
    if k.config is None:
        v.notes.append("no .config found for the kernel image (pass --config)")
    if modset is not None:
        _check_modules(out, modset, unload_modules, v)
    if not v.ok:
        raise LocalmapError("capture is not usable: " + "; ".join(v.problems), out)
    # keep only the last good console (runs that failed keep theirs for the error message)
    last = _cache() / "last-console.log"
    os.replace(console_log, last)
    shutil.rmtree(work, ignore_errors=True)
    return LabResult(out, v, secs, last)


def _module_set(k: LabKernel, names: list[str], optional: list[str] = ()):
    from localmap import debian
    from localmap.lab import modules as kmod

    if k.deb is None:
        raise LocalmapError("--modules needs a Debian linux-image package as --kernel (a raw "
                            "Image comes without its modules)")
    return kmod.resolve(debian.extract_deb(k.deb), k.label, names, optional)


def _check_modules(out: Path, modset, unload: bool, v: bundle_io.Validation) -> None:
    """Compare the guest's ``modules`` report with the plan; a module that failed to load is a
    problem (the capture would not show what was asked), one that stayed loaded is a note."""
    p = out / "modules"
    if not p.is_file():
        v.problems.append("the guest sent no 'modules' report")
        return
    status: dict[str, list[str]] = {}
    for line in p.read_text().splitlines():
        w = line.split()
        if len(w) >= 2:
            status.setdefault(w[0], []).append(w[1])
    for m in modset.modules:
        st = status.get(m.name, [])
        if "loaded" not in st:
            v.problems.append(f"module {m.name} did not load (insmod failed; see dmesg)")
        elif unload and "unloaded" not in st:
            v.notes.append(f"module {m.name} could not be unloaded (in use or no exit function)")
    loaded = [m for m in modset.modules if "loaded" in status.get(m.name, [])]
    v.notes.append(f"modules: {len(loaded)} loaded ({sum(modset.percpu[m.name] for m in loaded)} "
                   f"bytes of .data..percpu in {sum(1 for m in loaded if modset.percpu[m.name])} "
                   "of them)" + (", then unloaded in reverse order" if unload else ""))


def _config_entry(config: Path | None):
    import stat

    from localmap.lab.initramfs import Entry

    if config is None:
        return []
    return [Entry("config", stat.S_IFREG | 0o644, config.read_bytes())]


@contextlib.contextmanager
def qemu_running(cmd: list[str], timeout: float, cwd: Path | None = None):
    """QEMU started in its own session, its console on ``proc.stdout``; yields ``(proc,
    timed_out)``. QEMU is stopped after ``timeout`` seconds (``timed_out`` is then set), when
    the block is left by an exception, and on SIGTERM (which would otherwise orphan it)."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True, cwd=cwd)
    except OSError as exc:
        raise LocalmapError(f"cannot start {QEMU}: {exc}") from None
    timed_out = threading.Event()

    def _kill():
        timed_out.set()
        terminate(proc)

    timer = threading.Timer(timeout, _kill)
    timer.start()
    old_term = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield proc, timed_out
    except BaseException:
        terminate(proc)
        raise
    finally:
        timer.cancel()
        if in_main:
            signal.signal(signal.SIGTERM, old_term)


def _run_qemu(cmd, out: Path, console_log: Path, timeout: float, bar: Progress) -> bundle_io.SplitResult:
    with qemu_running(cmd, timeout) as (proc, timed_out):
        res = _split_console(proc, out, console_log, timeout, timed_out, bar)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        terminate(proc)
    if timed_out.is_set() and not res.done:
        raise LocalmapError(f"QEMU timed out after {timeout:.0f} s (console in {console_log})")
    if not res.done and proc.returncode not in (0, None):
        tail = _tail(console_log)
        raise LocalmapError(f"QEMU exited with status {proc.returncode}: {tail} (console in {console_log})")
    return res


def _split_console(proc, out: Path, console_log: Path, timeout: float, timed_out, bar: Progress
                   ) -> bundle_io.SplitResult:
    lines_seen = [0]
    phases = {"memcg": "creating memcgs", "memcg_del": "removing memcgs", "fork": "fork+exec loop",
              "modules": "loading modules", "modules_del": "unloading modules",
              "workload": "running the workload", "collect": "collecting files"}

    def lines():
        with open(console_log, "w") as log:
            for line in proc.stdout:
                log.write(line)
                lines_seen[0] += 1
                if lines_seen[0] % 50 == 0 and not phase_seen[0]:
                    bar.update(description=f"booting ({lines_seen[0]} console lines)")
                yield line

    phase_seen = [False]

    def on_event(kind, name):
        if kind == "phase":
            phase_seen[0] = True
            bar.update(description=f"guest: {phases.get(name, name)}")
        elif kind == "file":
            bar.update(description=f"guest: sending {name}")
        elif kind == "done":
            bar.update(description="guest: done, powering off")

    try:
        return bundle_io.split_console(lines(), out, on_event, source=str(console_log))
    except LocalmapError:
        if timed_out.is_set():
            raise LocalmapError(f"QEMU timed out after {timeout:.0f} s (console in {console_log})") from None
        raise


def terminate(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session: SIGTERM to the group, SIGKILL after 10 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass


def _tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else "no output"
