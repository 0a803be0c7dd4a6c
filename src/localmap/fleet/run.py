"""The driver of a fleet run: what is left to do, the Dask cluster, collecting and writing.

:func:`run_fleet` expands the sources, reads the results folder, and submits one task per
bundle that still lacks a configuration (:func:`localmap.fleet.task.evaluate_bundle`) to a
Dask cluster: by default a local one (``LocalCluster``: worker *processes* on this machine, one
thread each, since the replay is pure Python), or the existing scheduler at ``scheduler``
(``tcp://host:port``), whose workers must be able to import localmap and read the bundles'
locations. Results are written to the folder as they arrive (:mod:`localmap.fleet.store`), at
most :data:`FLUSH_SECONDS` apart; on an interruption (Ctrl-C) the rows collected so far are
written before the cluster is closed. Nothing is started when nothing is left to do.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from localmap.errors import LocalmapError
from localmap.fleet.sources import expand
from localmap.fleet.store import ResultStore, normalize
from localmap.fleet.task import Config, evaluate_bundle
from localmap.progress import Progress, as_progress

FLUSH_SECONDS = 1.0        # results are written at least this often while bundles finish
FLUSH_ROWS = 512           # ... or as soon as this many rows are waiting
CONNECT_TIMEOUT_S = 20     # to reach an existing scheduler
WORKERS_TIMEOUT_S = 120    # to wait for --workers N workers on an existing scheduler


def available_cpus() -> int:
    """CPUs this process may run on (the default number of local workers)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class FleetRun:
    """What a fleet run did, and the rows of every bundle x configuration asked."""
    sources: list[str]
    bundles: list[str]
    configs: list[Config]
    results: str
    rows: list[dict[str, Any]]
    done_before: int = 0          # bundles whose every configuration was already in the folder
    ran: int = 0                  # bundles evaluated by this run
    failed: int = 0               # of those, bundles with an error in some row
    workers: int = 0
    cluster: str = "none (nothing left to do)"
    seconds: float = 0.0          # the whole run, cluster start and stop included
    compute_seconds: float = 0.0  # first task submitted to last result written
    run_id: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def bundles_per_minute(self) -> float | None:
        return self.ran * 60 / self.compute_seconds if self.ran and self.compute_seconds else None


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Keep Dask's own log lines (connection chatter, errors of connections closed at shutdown)
    off the terminal: what a bundle's task says is in its rows."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


@contextmanager
def _workers_ignore_sigint() -> Iterator[None]:
    """Start the local workers with Ctrl-C ignored (a process started with SIGINT ignored keeps
    it ignored, and Python then installs no KeyboardInterrupt handler): Ctrl-C in the terminal
    reaches the whole process group, and it is the driver's to handle -- write what it has,
    close the cluster -- not each worker's to die with a traceback. The driver ignores it only
    while the workers start."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _worker_check() -> str:
    """Run on every worker before the work: localmap must be importable there."""
    import localmap
    import localmap.fleet.task  # noqa: F401

    return localmap.__version__


@contextmanager
def cluster(scheduler: str | None, workers: int | None) -> Iterator[tuple[Any, str, int]]:
    """``(client, description, workers)``: a local cluster of ``workers`` processes, or a client
    of the scheduler at ``scheduler`` (waiting for ``workers`` workers when given)."""
    from dask.distributed import Client, LocalCluster

    import localmap

    with _quiet_dask():
        if scheduler is None:
            n = workers or available_cpus()
            with _workers_ignore_sigint():
                lc = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.CRITICAL)
            try:
                with Client(lc) as client:
                    yield client, f"local cluster of {n} worker processes", n
            finally:
                lc.close()
            return
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise LocalmapError(f"cannot connect to the Dask scheduler: {exc}", scheduler) \
                from None
        try:
            try:
                client.wait_for_workers(workers or 1, timeout=WORKERS_TIMEOUT_S)
            except (TimeoutError, OSError) as exc:
                have = len(client.scheduler_info().get("workers", {}))
                raise LocalmapError(f"the scheduler has {have} worker(s), waited "
                                    f"{WORKERS_TIMEOUT_S} s for {workers or 1} ({exc})",
                                    scheduler) from None
            try:
                versions = client.run(_worker_check)
            except Exception as exc:         # an ImportError raised on a worker, re-raised here
                raise LocalmapError(f"a worker cannot run localmap ({type(exc).__name__}: "
                                    f"{exc}); install localmap on every worker", scheduler) \
                    from None
            other = sorted({v for v in versions.values() if v != localmap.__version__})
            n = len(versions)
            desc = f"scheduler {scheduler} with {n} workers"
            if other:
                desc += f" (localmap {', '.join(other)} on some workers, here " \
                        f"{localmap.__version__})"
            yield client, desc, n
        finally:
            client.close()


def _error_rows(loc: str, configs: list[Config], reason: str, run_id: str) -> list[dict]:
    return [normalize({"bundle": loc, "name": os.path.basename(loc.rstrip("/")) or loc,
             "config": c.label, "granule": c.granule, "va_bits": c.va_bits, "cpus": c.cpus,
             "error": f"{loc}: {reason}", "error_reason": reason, "run_id": run_id})
            for c in configs]


def run_fleet(sources: list[str], configs: list[Config], results: str | os.PathLike, *,
              scheduler: str | None = None, workers: int | None = None, fresh: bool = False,
              retry_errors: bool = False, progress: Progress | None = None,
              flush_seconds: float = FLUSH_SECONDS, flush_rows: int = FLUSH_ROWS) -> FleetRun:
    """Evaluate every bundle of ``sources`` on every configuration, resuming from ``results``.

    ``fresh`` discards the folder's earlier results first; ``retry_errors`` runs again the
    bundles whose earlier rows failed. Returns a :class:`FleetRun` whose ``rows`` are the newest
    row of each bundle x configuration, in source order."""
    if not configs:
        raise LocalmapError("no configuration to run")
    if workers is not None and workers < 1:
        raise LocalmapError(f"--workers must be at least 1 (got {workers})")
    t_start = time.perf_counter()
    prog = as_progress(progress)
    prog.start("finding bundles")
    locations = expand(list(sources))
    store = ResultStore(results)
    if fresh:
        store.clear()
    latest = store.latest()
    run_id = uuid.uuid4().hex[:12]
    todo: list[tuple[str, list[Config]]] = []
    for loc in locations:
        missing = [c for c in configs
                   if (r := latest.get((loc, c.label))) is None or (retry_errors and r["error"])]
        if missing:
            todo.append((loc, missing))
    run = FleetRun(sources=list(sources), bundles=locations, configs=list(configs),
                   results=str(results), rows=[], done_before=len(locations) - len(todo),
                   run_id=run_id)
    if todo:
        _run_tasks(todo, store, latest, run, scheduler, workers, prog, flush_seconds, flush_rows)
    run.rows = [latest[(loc, c.label)] for loc in locations for c in configs
                if (loc, c.label) in latest]
    run.seconds = time.perf_counter() - t_start
    return run


def _run_tasks(todo, store: ResultStore, latest: dict, run: FleetRun, scheduler, workers,
               prog: Progress, flush_seconds: float, flush_rows: int) -> None:
    from dask.distributed import as_completed

    pending: list[dict] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal last_flush
        if pending:
            store.append(pending)
            for r in pending:
                latest[(r["bundle"], r["config"])] = r
            pending.clear()
        last_flush = time.monotonic()

    prog.start("starting a local Dask cluster" if scheduler is None else
               f"connecting to {scheduler}")
    with cluster(scheduler, workers) as (client, desc, n):
        run.cluster, run.workers = desc, n
        prog.start(f"evaluating {len(todo)} bundles on {n} workers", total=len(todo))
        t0 = time.perf_counter()
        work: dict[str, tuple[str, list[Config]]] = {}
        try:
            submitted = []
            for loc, cfgs in todo:
                fut = client.submit(evaluate_bundle, loc, cfgs, run.run_id, pure=False)
                work[fut.key] = (loc, cfgs)
                submitted.append(fut)
            done = as_completed(submitted)
            del submitted
            for fut in done:
                loc, cfgs = work.pop(fut.key)
                try:
                    rows = fut.result()
                except Exception as exc:     # the task itself failed: worker died, lost data
                    first = (str(exc).strip().splitlines() or [""])[0]
                    rows = _error_rows(loc, cfgs, f"the task failed on the cluster: "
                                       f"{type(exc).__name__}" + (f": {first}" if first else ""),
                                       run.run_id)
                fut.release()
                run.ran += 1
                run.failed += any(r.get("error") for r in rows)
                pending.extend(rows)
                if len(pending) >= flush_rows or time.monotonic() - last_flush >= flush_seconds:
                    flush()
                prog.advance()
        finally:
            flush()
            run.compute_seconds = time.perf_counter() - t0
