"""For the fleet tests and benchmark: a fleet of bundles built from the shared captures, and a
Dask scheduler with workers started as separate processes on this machine.

Every variant is a real capture changed in one way a fleet meets: its trace cut after the
first K events (a shorter tracing session), its ``cpus`` file naming another count of possible
CPUs, with the boot log's map of CPUs to percpu units rewritten to match (a bundle whose two
sources disagree is refused; the fleet's default machine is the bundle's own CPU count), without ``kallsyms`` /
``vmallocinfo`` (not every host exports them), or broken (a truncated gzip trace, a line of
garbage, no first-chunk line in dmesg, no percpu event, an unreadable ``cpus`` file, a folder
that does not exist). Unchanged files are symbolic links to the capture's, so a fleet of
hundreds costs a few MB.

:func:`dask_processes` starts ``dask scheduler`` and ``dask worker`` processes on the loopback
address (the scheduler on a port the system picks, found through its scheduler file), each in
its own session, and always tears them down, killing what does not stop.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

CORRUPT = ("gzip-cut", "garbage-line", "no-dmesg", "no-events", "bad-cpus", "missing")


def _events(src: Path) -> tuple[list[str], list[str]]:
    with gzip.open(src / "trace.gz", "rt") as fh:
        lines = fh.readlines()
    return [ln for ln in lines if ln.startswith("#")], [ln for ln in lines if not ln.startswith("#")]


def _bundle(src: Path, dest: Path, *, trace: str | bytes, cpus: int | None = None,
            drop: tuple[str, ...] = (), cpus_text: str | None = None, gz: bool = False) -> None:
    dest.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.name.startswith("trace") or f.name.split(".")[0] in drop:
            continue
        if f.name == "cpus" and (cpus is not None or cpus_text is not None):
            continue
        if f.name == "dmesg" and cpus is not None:
            continue
        os.symlink(f.resolve(), dest / f.name)
    if cpus_text is not None:
        (dest / "cpus").write_text(cpus_text)
    elif cpus is not None:
        (dest / "cpus").write_text(f"possible 0-{cpus - 1}\nonline 0-{cpus - 1}\n")
        units = "".join(f"[0] {c} " for c in range(cpus))
        (dest / "dmesg").write_text(re.sub(r"(pcpu-alloc: )\[0\] 0 .*", lambda m: m.group(1) + units,
                                           (src / "dmesg").read_text()))
    if gz:
        (dest / "trace.gz").write_bytes(trace if isinstance(trace, bytes) else
                                        gzip.compress(trace.encode()))
    else:
        (dest / "trace").write_text(trace)


def build_fleet(shared: Path, out: Path, n: int = 200, *, corrupt: bool = True,
                every: int = 29, full: int = 1, short: bool = True,
                max_events: int = 1600) -> dict[str, str]:
    """Write ``n`` bundles into ``out`` (which must not exist); returns ``{bundle folder:
    kind}`` in order (kinds: ``cut``, ``cpus``, ``full``, ``short`` (no chunk event: the replay
    runs, the design machine has nothing to build from) and the :data:`CORRUPT` ones, one
    every ``every`` bundles while they last). The ``missing`` variant is not written: it is a
    location a manifest can list. ``full``: how many whole captures (the heavy ones, s2 then
    s1) are in the fleet."""
    srcs = [shared / "s1_612_4k_smp4", shared / "s2_612_4k_smp2_page"]
    traces = {s: _events(s) for s in srcs}
    out.mkdir(parents=True)
    kinds: dict[str, str] = {}
    broken = list(CORRUPT) if corrupt else []
    i = 0
    while len(kinds) < n:
        src = srcs[i % 2]
        head, ev = traces[src]
        name = out / f"v{i:04d}_{src.name.split('_')[0]}"
        if broken and i % every == every // 2:
            kind = broken.pop(0)
            cut = "".join(head + ev[:300])
            if kind == "gzip-cut":
                blob = gzip.compress(cut.encode())
                _bundle(src, name, trace=blob[: len(blob) // 2], gz=True)
            elif kind == "garbage-line":
                _bundle(src, name, trace="".join(head + ev[:150] + ["\x00garbage\x7f line\n"]
                                                 + ev[150:300]))
            elif kind == "no-dmesg":
                _bundle(src, name, trace=cut, drop=("dmesg",))
            elif kind == "no-events":
                _bundle(src, name, trace="".join(head))
            elif kind == "bad-cpus":
                _bundle(src, name, trace=cut, cpus_text="possible banana\n")
            kinds[str(name)] = kind
        elif i in (3, 4)[:full]:
            _bundle(src, name, trace="".join(head + ev))
            kinds[str(name)] = "full"
        else:
            # 340 .. max_events events: past the first percpu_create_chunk of s1 (event 329)
            # and s2 (226); one bundle stops before it: its design machine cannot be built
            is_short = short and i == 6
            k = 100 if is_short else 340 + (i * 37) % (max_events - 340)
            # more CPUs than the capture's (the trace's CPUs stay possible ones)
            cpus = (5, 6, 8, 12, 16)[i % 5] if i % 3 == 0 else None
            drop = ("kallsyms", "vmallocinfo") if i % 4 else ()
            _bundle(src, name, trace="".join(head + ev[:k]), cpus=cpus, drop=drop)
            kinds[str(name)] = "short" if is_short else "cpus" if cpus else "cut"
        i += 1
    return kinds


def dask_command() -> str:
    """The ``dask`` command of this interpreter's environment."""
    here = Path(sys.executable).parent / "dask"
    found = str(here) if here.exists() else shutil.which("dask")
    if not found:
        raise RuntimeError("the dask command is not installed (dask[distributed])")
    return found


def stop(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """Stop every process (SIGTERM to its session, then SIGKILL), and reap it."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)


@contextmanager
def dask_processes(tmp: Path, workers: int = 2, timeout: float = 60.0):
    """``(scheduler address, [worker processes])``: ``dask scheduler`` and ``workers`` x
    ``dask worker --no-nanny --nthreads 1`` on 127.0.0.1 (so a row's worker pid is the pid of
    one of these processes), torn down on exit whatever happens."""
    dask = dask_command()
    tmp.mkdir(parents=True, exist_ok=True)
    sfile = tmp / "scheduler.json"
    logs = []
    procs: list[subprocess.Popen] = []

    def spawn(args: list[str], name: str) -> subprocess.Popen:
        log = open(tmp / f"{name}.log", "wb")
        logs.append(log)
        p = subprocess.Popen([dask, *args], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp)
        procs.append(p)
        return p

    try:
        spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
               "--scheduler-file", str(sfile)], "scheduler")
        deadline = time.monotonic() + timeout
        address = None
        while address is None:
            if procs[0].poll() is not None:
                raise RuntimeError("dask scheduler exited: " + (tmp / "scheduler.log").read_text())
            if time.monotonic() > deadline:
                raise RuntimeError("dask scheduler did not start in time")
            try:
                address = json.loads(sfile.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        ws = [spawn(["worker", "--scheduler-file", str(sfile), "--no-nanny", "--nthreads", "1",
                     "--host", "127.0.0.1", "--no-dashboard", "--name", f"w{i}",
                     "--local-directory", str(tmp / f"w{i}")], f"worker{i}")
              for i in range(workers)]
        yield address, ws
    finally:
        stop(procs)
        for log in logs:
            log.close()
