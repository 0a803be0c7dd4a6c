"""The configurations of a fleet run and the work of one bundle, as a Dask worker runs it.

A configuration is a design machine to run each bundle's history on: a granule, a VA size and
a CPU count, each either given or the bundle's own (its ``.config`` and its possible CPUs).
:func:`evaluate_bundle` replays the bundle once and feeds every configuration from that replay
(:func:`localmap.analysis.overhead.replay_overhead`); it returns one row per configuration
(plain dicts with exactly the columns of :func:`localmap.fleet.store.schema`) and never raises: a bundle
that cannot be read, replayed or evaluated gets its one-line error (``FILE[:LINE]: what is
wrong``, as ``localmap replay`` prints it) in ``error`` and ``error_reason`` (the message
without its location, what the report groups failures by). A configuration the bundle rules
out (a 16K history at 4K pages, a VA size the granule lacks) is an error of that row only.

A bundle at a URL that is not a local path is copied into a temporary folder on the worker
first (its top-level files: a bundle is flat).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import product
from typing import Any, Iterator

from localmap.errors import LocalmapError
from localmap.fleet.store import normalize

MAX_CPUS = 65536   # arm64 NR_CPUS bound, as localmap overhead


@dataclass(frozen=True)
class Config:
    """One design machine: ``None`` fields are the bundle's own."""
    granule: str | None = None
    va_bits: int | None = None
    cpus: int | None = None

    @property
    def label(self) -> str:
        """``granule/VA bits/CPUs``, ``own`` for the bundle's own (e.g. ``4K/48/160``)."""
        return "/".join("own" if v is None else str(v) for v in (self.granule, self.va_bits,
                                                                   self.cpus))


def grid(granules: list[str] | None = None, va_bits: list[int] | None = None,
         cpus: list[int] | None = None) -> tuple[list[Config], list[str]]:
    """Every combination of the values asked (``None`` in a list, or no list: the bundle's own).
    Returns the configurations and, for the granule/VA pairs that do not exist, a note each;
    :class:`LocalmapError` for a value that is wrong on its own or when no pair is left."""
    from localmap.arch.arm64.pgtable import VA_BITS_CHOICES, granule_name, parse_granule

    gs: list[str | None] = []
    for g in granules or [None]:
        if g is None:
            gs.append(None)
            continue
        try:
            gs.append(granule_name(parse_granule(g)))
        except (LocalmapError, ValueError, KeyError):
            raise LocalmapError(f"--granules: unknown granule {g!r} (expected 4K, 16K or 64K)") \
                from None
    for n in cpus or []:
        if n is not None and not 1 <= n <= MAX_CPUS:
            raise LocalmapError(f"--cpus: {n} is not a CPU count arm64 Linux supports "
                                f"(1 to {MAX_CPUS})")
    for v in va_bits or []:
        if v is not None and not any(v in c for c in VA_BITS_CHOICES.values()):
            raise LocalmapError(f"--va-bits: {v} is no arm64 VA size "
                                f"(36, 39, 42, 47, 48 or 52)")
    out, notes = [], []
    for g, v, n in product(dict.fromkeys(gs), dict.fromkeys(va_bits or [None]),
                           dict.fromkeys(cpus or [None])):
        if g is not None and v is not None and v not in VA_BITS_CHOICES[parse_granule(g)]:
            note = f"{g} pages have no {v}-bit VA"
            if note not in notes:
                notes.append(note)
            continue
        out.append(Config(g, v, n))
    if not out:
        raise LocalmapError("no configuration left: " + "; ".join(notes))
    return out, notes


@contextmanager
def local_copy(loc: str) -> Iterator[str]:
    """A local path for the bundle at ``loc``: the path itself when local, else a temporary
    copy of its files, removed afterwards."""
    from localmap.fleet.sources import is_local, url_to_fs

    fs, path = url_to_fs(loc)
    if is_local(fs):
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="localmap-fleet-")
    try:
        try:
            if fs.isdir(path):
                dest = os.path.join(tmp, posixpath.basename(path.rstrip("/")) or "bundle")
                os.mkdir(dest)
                for entry in fs.ls(path, detail=True):
                    if entry.get("type") == "file":
                        fs.get_file(entry["name"], os.path.join(dest, posixpath.basename(entry["name"])))
            elif fs.isfile(path):
                dest = os.path.join(tmp, posixpath.basename(path))
                fs.get_file(path, dest)
            else:
                raise LocalmapError("no such bundle folder or trace file", loc)
        except OSError as exc:
            raise LocalmapError(f"cannot fetch the bundle: {exc}", loc) from None
        yield dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kernel(bundle) -> str | None:
    try:
        parts = (bundle.uname or "").split()
    except LocalmapError:
        return None
    return parts[2] if len(parts) >= 3 else None


def _replay_columns(res) -> dict[str, Any]:
    """The replay's figures a fleet keeps (the same numbers as ``localmap replay --json``)."""
    meminfo = res.meminfo_check
    vm = res.vmalloc_check
    return {
        "mode": res.geometry.mode,
        "page_size": res.geometry.page_size,
        "possible_cpus": res.geometry.nr_cpus,
        "events": res.nr_events,
        "allocs": res.nr_allocs,
        "agree": res.agree,
        "agreement": res.agreement,
        "agreement_nonatomic": res.agreement_nonatomic,
        "agreement_atomic": res.agreement_atomic,
        "misses": res.nr_allocs - res.agree,
        "miss_causes": json.dumps(dict(sorted(res.causes().items())), sort_keys=True),
        "reorders": res.swaps,
        "partial": res.partial,
        "partial_reasons": "; ".join(res.partial_reasons) or None,
        "meminfo_ok": all(c["ok"] for c in meminfo) if meminfo else None,
        "vmalloc_ok": vm["ok"] if vm else None,
        "final_populated_bytes": res.percpu.populated_bytes,
        "replay_seconds": res.seconds,
    }


OVERHEAD_COLUMNS = ("granule", "va_bits", "cpus", "unit_size", "split_level", "window_bytes",
                    "live_chunks", "chunks_created", "chunks_destroyed", "local_va_bytes",
                    "local_va_peak_bytes", "pgtable_extra_bytes", "pgtable_extra_peak_bytes")


def _error_text(exc: BaseException, tmp_path: str | None, loc: str) -> tuple[str, str]:
    """(one-line error, reason without its location) for an exception of a bundle."""
    if isinstance(exc, LocalmapError):
        line, reason = exc.one_line(), exc.message
    else:
        first = (str(exc).strip().splitlines() or [""])[0]
        reason = f"internal error: {type(exc).__name__}" + (f": {first}" if first else "")
        line = f"{loc}: {reason}"
    if tmp_path and tmp_path != loc:
        line, reason = line.replace(tmp_path, loc), reason.replace(tmp_path, loc)
    return line, reason


def evaluate_bundle(loc: str, configs: list[Config], run_id: str = "") -> list[dict[str, Any]]:
    """The rows of one bundle: replay once, run every configuration (see module doc)."""
    from localmap.analysis.overhead import replay_overhead
    from localmap.ingest.bundle import load_bundle

    t0 = time.perf_counter()
    base = {"bundle": loc, "name": posixpath.basename(loc.rstrip("/")) or loc,
            "worker": f"{socket.gethostname()}:{os.getpid()}", "run_id": run_id}
    rows = [dict(base, config=c.label, granule=c.granule, va_bits=c.va_bits, cpus=c.cpus)
            for c in configs]
    where: str | None = None
    try:
        with local_copy(loc) as where:
            bundle = load_bundle(where)
            own_cpus = None
            if any(c.cpus is None for c in configs):
                own_cpus = bundle.nr_possible_cpus
            specs, slots, pre = [], [], {}
            for i, c in enumerate(configs):
                cpus = c.cpus if c.cpus is not None else own_cpus
                if cpus is None:
                    pre[i] = LocalmapError("the bundle has no 'cpus' file: its own CPU count is "
                                           "unknown (give --cpus)", where)
                    continue
                slots.append(i)
                specs.append((cpus, c.granule, c.va_bits, False))
            res, results = replay_overhead(bundle, specs)
            common = _replay_columns(res)
            common["kernel"] = _kernel(bundle)
            by_slot = dict(zip(slots, results))
            for i, row in enumerate(rows):
                row.update(common)
                r = pre.get(i, by_slot.get(i))
                if isinstance(r, BaseException):
                    row["error"], row["error_reason"] = _error_text(r, where, loc)
                else:
                    row.update({k: r[k] for k in OVERHEAD_COLUMNS})
    except Exception as exc:          # the bundle's failure, never the fleet's
        line, reason = _error_text(exc, where, loc)
        for row in rows:
            row["error"], row["error_reason"] = line, reason
    seconds = time.perf_counter() - t0
    for row in rows:
        row["seconds"] = seconds
    return [normalize(r) for r in rows]
