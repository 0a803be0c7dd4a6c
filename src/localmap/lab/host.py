"""``localmap capture``: capture a bundle from the running kernel of this host.

Models nothing of the kernel; it runs ``guest/capture.sh`` (the very script the QEMU lab uses as
``/init``) with ``/bin/sh`` as root, with ``lm_tracing=1`` so the script enables the ``percpu:*``
tracepoints through tracefs itself (the lab enables them from boot with ``trace_event=``), and
splits its output into a bundle. Differences from a lab bundle, said plainly afterwards: boot-time
allocations are not in the trace (tracing starts now, so the replay has to start from a running
system), and pointers are hashed unless the kernel booted with ``no_hash_pointers``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.lab import bundle_io
from localmap.progress import Progress, as_progress


@dataclass
class HostResult:
    out: Path
    validation: bundle_io.Validation
    seconds: float


def capture(out, workload: str | None = None, memcgs: int = 300, remove: int = 0, forks: int = 200,
            buffer_kb: int = 8192, progress: Progress | None = None, shell: str = "/bin/sh",
            root_check: bool = True) -> HostResult:
    out = Path(out)
    if memcgs < 0 or forks < 0 or not 0 <= remove <= memcgs:
        raise LocalmapError("need --memcgs/--forks >= 0 and 0 <= --remove <= --memcgs")
    if buffer_kb < 1:
        raise LocalmapError(f"--buffer-kb must be at least 1 (per-CPU trace buffer), not {buffer_kb}")
    if root_check and os.geteuid() != 0:
        raise LocalmapError("localmap capture needs root (tracefs, cgroups, kallsyms)")
    if not Path("/sys/kernel/tracing/events/percpu").is_dir() and not Path(
            "/sys/kernel/debug/tracing/events/percpu").is_dir():
        # the script mounts tracefs itself; only complain when it is clearly absent
        if not Path("/sys/kernel/tracing").exists():
            raise LocalmapError("no tracefs at /sys/kernel/tracing: the kernel lacks CONFIG_FTRACE")
    if out.exists() and any(out.iterdir()):
        raise LocalmapError("output folder exists and is not empty", out)
    env = dict(os.environ, nmemcg=str(memcgs), ndel=str(remove), nfork=str(forks), lm_tracing="1",
               lm_buf_kb=str(buffer_kb))
    if workload:
        env["lm_workload"] = workload
    script = Path(tempfile.mkdtemp(prefix="localmap-capture-")) / "capture.sh"
    script.write_bytes(bundle_io.guest_script())

    t0 = time.monotonic()
    with as_progress(progress) as bar:
        bar.start("starting the capture script")
        names = {"memcg": "creating memcgs", "memcg_del": "removing memcgs",
                 "fork": "fork+exec loop", "workload": f"running {workload!r}",
                 "collect": "collecting files"}

        def on_event(kind, name):
            if kind == "phase":
                bar.update(description=names.get(name, name))
            elif kind == "file":
                bar.update(description=f"collecting {name}")

        try:
            proc = subprocess.Popen([shell, str(script)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    errors="replace", env=env)
        except OSError as exc:
            raise LocalmapError(f"cannot run {shell}: {exc}") from None
        try:
            res = bundle_io.split_console(proc.stdout, out, on_event, source="capture.sh output")
        finally:
            err = proc.stderr.read()
            proc.wait()
            shutil.rmtree(script.parent, ignore_errors=True)
    if not res.done:
        last = [ln for ln in err.splitlines() if ln.strip()]
        raise LocalmapError("the capture script stopped early" + (f": {last[-1]}" if last else ""))
    v = bundle_io.validate_bundle(out)
    for name, why in res.missing.items():
        v.notes.append(f"{name}: {why}")
    if not (out / "config.gz").is_file():
        v.notes.append("no .config: the kernel has no /proc/config.gz and /boot/config-$(uname -r) "
                       "is absent")
    v.notes.append("tracing started after boot: boot-time allocations are not in the trace")
    return HostResult(out, v, time.monotonic() - t0)
