"""Replay of a real percpu trace through the allocator model, predicting every decision.

The trace is read and replayed as a stream (:func:`localmap.ingest.trace.iter_records`): a
record is replayed as it is read and then dropped. What is kept: a short look-ahead (the chunk
events of one run of the balance work, a racing pair), the records since the last allocator
checkpoint (for the race trials, at most 2 x :data:`CHECKPOINT_EVERY`), the records of the
reconstruction pass (at most :data:`LEARN_PREFIX`), and per allocation two machine words (the
model's prediction). Memory follows the allocator's live state, not the trace's length.

Steps (each is reported):

1. **Geometry.** The first chunk's static/reserved/dynamic split and unit size are derived from
   the kernel config (PERCPU_MODULE_RESERVE, PERCPU_DYNAMIC_RESERVE/EARLY_SIZE), the static
   size and the possible CPU count, by :func:`~localmap.mm.percpu.first_chunk_alloc_info`, and
   compared with the dmesg first-chunk line. The kernel's own line wins if they differ (and the
   difference is reported).
2. **Addresses.** ``pcpu_base_addr`` and ``__per_cpu_start`` come from kallsyms and the events'
   ``ptr`` when kallsyms is there; otherwise the first chunk is the lowest chunk address used
   without a ``percpu_create_chunk`` in the first :data:`PREFIX_EVENTS` events (embed: linear
   map; page: near VMALLOC_START; dynamic chunks are placed top-down from VMALLOC_END).
3. **Starting occupancy.** Allocations made before tracing started never appear. The model
   starts from the emptiest state consistent with the trace: in a chunk older than the trace an
   area counts as allocated before tracing only when (a) the trace frees an offset it never
   allocated (an area starts there), or (b) the kernel placed an allocation above free space the
   model would have used first, and that space is untouched by any earlier traced event (an
   allocation inside such an area later shows it was free after all). No free parameter. These
   areas are learned by a reconstruction pass (kernel answers applied, nothing scored) that
   stops as soon as no chunk older than the trace has untouched free space left, or after
   :data:`LEARN_PREFIX` events; the scoring pass then replays from the reconstructed start
   (the pass's records again from memory, then the rest of the stream). Past that bound, the
   same learning goes on inline.
4. **Replay.** For each ``percpu_alloc_percpu`` the model predicts (chunk, offset) first, then
   applies the kernel's answer so it stays in step. Chunk creation and destruction are the
   trace's.
5. **The balance work as the kernel runs it.** Scheduling it (an allocation leaving fewer than
   2 empty populated pages, a free leaving a second fully free chunk or a chunk to isolate, an
   atomic failure, which also sets ``pcpu_atomic_alloc_failed``) sets a pending flag: requests
   coalesce as ``schedule_work`` of a pending work does, and count for nothing before
   ``percpu_enable_async`` (a ``subsys_initcall``; the bound is the boot log's
   ``clocksource: Switched to clocksource`` line, printed by an ``fs_initcall``, on the trace's
   clock). The work then runs when its kworker can take ``pcpu_alloc_mutex``: once the task
   that scheduled it lets the CPU go (the next event is another task's) or before the next
   non-atomic allocation (which needs the mutex), unless that run would create or destroy a
   chunk: such a run shows in the trace, so it runs where the trace shows its
   ``percpu_destroy_chunk`` / ``percpu_create_chunk`` (with the destructions the same kworker
   prints next). A ``percpu_create_chunk`` is ``pcpu_alloc``'s own when the creating task's
   next allocation finds no space in the model without the new chunk; else it is the work's.
6. **Races.** The allocation tracepoint fires after the allocator drops its lock and ftrace
   orders events by timestamp, so an allocation can be printed after events that happened
   after it took its area. On a miss, the replay tries the allocator's order: the next
   allocation first (another task, within :data:`RACE_WINDOW_S`, exactly the model's
   prediction), or this allocation before the frees and allocations other tasks printed within
   :data:`RACE_WINDOW_S` before it (nearest position first), whatever they changed (space,
   hints, slot, isolation, population, the balance work): the events since the last
   checkpoint are re-run in that order. An order is kept only if the model then agrees on the
   allocation and on every re-run allocation it agreed on; each one kept is reported with its
   lines (``reorders``). When no order explains a miss, the kernel's answer is applied; it does
   not put back a chunk the model holds isolated (the kernel cannot have taken the area from
   it: the model's list state is what is off).

Deliberate differences: when the trace shows nothing of a run of the balance work, the model
runs it at the earliest point the kernel could (step 5); a free that races the balance work's
own depopulation (the work drops ``pcpu_lock`` around it) cannot be seen and is not modelled.
"""

from __future__ import annotations

import copy
import functools
import itertools
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from localmap.errors import LocalmapError
from localmap.fileio import write_atomic
from localmap.ingest.bundle import Bundle, load_bundle
from localmap.ingest.trace import (ALLOC, ALLOC_FAIL, CREATE, DESTROY, FREE, R_ALIGN, R_ATOMIC,
                                   R_BASE, R_CALL_SITE, R_HEAD, R_KIND, R_LINE, R_OFF, R_PTR,
                                   R_RESERVED, R_SIZE, iter_records, parse_head, record_ts)
from localmap.mm.percpu import (MASK64, PAGE_SIZES, PCPU_MIN_ALLOC_SIZE, Percpu, PcpuAllocError,
                                PcpuChunk, first_chunk_alloc_info, pcpu_build_alloc_info)
from localmap.progress import Progress, as_progress

# what a cross-check tests: whether the trace is the whole story (a model that predicted
# nothing passes it as long as the trace is complete), or whether the model decides as the
# kernel does
TRACE_COMPLETENESS = "trace completeness"
MODEL_FIDELITY = "model fidelity"

RACE_WINDOW_S = 0.010       # how far apart two racing events can be printed
CHECKPOINT_EVERY = 4096     # events between allocator checkpoints (race trials restart there)
LOOKAHEAD = 64              # records read ahead (chunk events of one work run, racing pair)
PREFIX_EVENTS = 4096        # events read before the first chunk is located (no kallsyms)
LEARN_PREFIX = 32768        # at most this many events in the reconstruction pass
READ_BATCH = 512            # records the scoring pass reads at a time past what is buffered
MAX_RACE_CANDIDATES = 24    # positions tried for one allocation
WORK_POLICY = "task"

CAUSES = {
    "no-space-in-model": "the model found no space where the kernel did (state diverged)",
    "other-chunk": "the model chose another chunk (slot-list order or chunk state diverged)",
    "other-offset": "same chunk, another offset (hint or occupancy state diverged)",
    "occupied-in-model": "the kernel's area is allocated in the model (state diverged)",
    "pre-trace-area": "the kernel's area overlaps space reconstructed as used before tracing",
    "unknown-chunk": "the kernel used a chunk the trace never showed being created",
}


@dataclass
class Disagreement:
    index: int              # index among percpu_alloc_percpu events
    line: int
    cause: str
    size: int
    align: int
    atomic: bool
    kernel: tuple[int, int]
    model: tuple[int, int] | None
    call_site: str

    def as_dict(self) -> dict:
        return {
            "index": self.index, "line": self.line, "cause": self.cause, "size": self.size,
            "align": self.align, "atomic": self.atomic,
            "kernel": {"base_addr": f"{self.kernel[0]:x}", "off": self.kernel[1]},
            "model": None if self.model is None else
            {"base_addr": f"{self.model[0]:x}", "off": self.model[1]},
            "call_site": self.call_site,
        }


@dataclass
class FirstChunkGeometry:
    """The first chunk's static/reserved/dynamic split as the kernel printed it and as derived."""

    mode: str
    static_size: int
    reserved_size: int
    dyn_size: int
    unit_size: int
    page_size: int
    nr_cpus: int
    dmesg: str | None
    derived: dict
    matches_dmesg: bool | None
    notes: list[str] = field(default_factory=list)
    where: str | None = None          # FILE:LINE of the first-chunk line


class Decisions:
    """The model's prediction for every allocation, in trace order, as two word arrays."""

    def __init__(self):
        self.base = array("Q")
        self.off = array("q")          # -1: the model found no space

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[int, int | None, int | None]:
        if i < 0:
            i += len(self.base)
        off = self.off[i]
        return (i, None, None) if off < 0 else (i, self.base[i], off)

    def __iter__(self) -> Iterator[tuple[int, int | None, int | None]]:
        for i, (b, o) in enumerate(zip(self.base, self.off)):
            yield (i, None, None) if o < 0 else (i, b, o)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)

    def append(self, pred: tuple[int, int] | None) -> None:
        if pred is None:
            self.base.append(0)
            self.off.append(-1)
        else:
            self.base.append(pred[0])
            self.off.append(pred[1])


@dataclass
class ReplayResult:
    source: str
    geometry: FirstChunkGeometry
    percpu: Percpu
    partial: bool
    partial_reasons: list[str]
    nr_events: int
    nr_allocs: int
    nr_frees: int
    nr_creates: int
    nr_destroys: int
    nr_fails: int
    nr_fail_disagree: int     # percpu_alloc_percpu_fail the model would have served
    agree: int
    agree_nonatomic: int
    nr_nonatomic: int
    agree_atomic: int
    nr_atomic: int
    reorders: list[dict]
    disagreements: list[Disagreement]
    reconstruction: dict
    decisions: Decisions
    # (ts, alloc index, used bytes, chunks, populated pages) every 64 events
    timeline: list[tuple[float, int, int, int, int]]
    meminfo_check: list[dict]
    vmalloc_check: dict | None
    base_info: dict
    balance: dict
    seconds: float
    parse_seconds: float | None = None     # parsing is interleaved with the replay
    # what says whether the trace is the whole story (see _completeness)
    completeness: list[dict] = field(default_factory=list)
    # meminfo against the state reached by the model's own decisions (None: no meminfo)
    model_meminfo_check: list[dict] | None = None
    model_check_note: str = ""

    @property
    def swaps(self) -> int:
        """Events replayed in another order than printed (racing allocations and frees)."""
        return len(self.reorders)

    @property
    def agreement(self) -> float:
        return self.agree / self.nr_allocs if self.nr_allocs else 1.0

    @property
    def agreement_nonatomic(self) -> float:
        return self.agree_nonatomic / self.nr_nonatomic if self.nr_nonatomic else 1.0

    @property
    def agreement_atomic(self) -> float:
        return self.agree_atomic / self.nr_atomic if self.nr_atomic else 1.0

    def causes(self) -> Counter:
        return Counter(d.cause for d in self.disagreements)

    def checks(self) -> list[dict]:
        """Every cross-check, labelled by what it tests: ``model fidelity`` (the model decides
        as the kernel did) or ``trace completeness`` (the trace is the whole story; a model
        that predicted nothing would pass it too)."""
        g = self.geometry
        out = [{"check": "first-chunk geometry derived from the config and the CPUs equals the "
                         "boot log's", "tests": MODEL_FIDELITY, "ok": g.matches_dmesg,
                "detail": "no config" if g.matches_dmesg is None else g.dmesg},
               {"check": "each allocation's (chunk, offset) predicted before the kernel's "
                         "answer is applied", "tests": MODEL_FIDELITY,
                "ok": self.agree == self.nr_allocs,
                "detail": f"{self.agree} of {self.nr_allocs} ({self.swaps} replayed in the "
                          "allocator's order)"}]
        for name, rows, how in (
                ("meminfo Percpu per phase, the kernel's placements applied",
                 self.meminfo_check, "population of the replayed state"),
                ("meminfo Percpu per phase, the model deciding on its own",
                 self.model_meminfo_check or [], self.model_check_note)):
            if rows:
                bad = [m["phase"] for m in rows if not m["ok"]]
                out.append({"check": name, "tests": rows[0]["tests"], "ok": not bad,
                            "detail": (f"{len(rows) - len(bad)} of {len(rows)} phases"
                                       + (f" (not: {', '.join(bad)})" if bad else "")
                                       + f"; {how}")})
        vc = self.vmalloc_check
        if vc is not None:
            out.append({"check": "vmallocinfo's percpu areas are the live dynamic chunks of the "
                                 "trace's create/destroy events", "tests": vc["tests"],
                        "ok": vc["ok"], "detail": f"{vc['kernel_areas']} in vmallocinfo, "
                                                  f"{vc['model_areas']} in the replay"})
        return out

    def final_state(self) -> dict:
        p = self.percpu
        chunks = []
        for c in p.chunks:
            areas = c.areas()
            hidden = (1 if c.start_offset else 0) + (1 if c.end_offset else 0)
            free_runs = c.free_runs()
            chunks.append({
                "base_addr": f"{c.base_addr:x}",
                "kind": "reserved" if c.is_reserved else ("first" if c.is_first else "dynamic"),
                "nr_pages": c.nr_pages,
                "populated_pages": c.nr_populated,
                "empty_pop_pages": c.nr_empty_pop_pages,
                "free_bytes": c.free_bytes,
                "used_bytes": c.used_bytes,
                "nr_alloc": len(areas) - hidden,
                "contig_hint_bytes": c.chunk_md.contig_hint * PCPU_MIN_ALLOC_SIZE,
                "free_runs": len(free_runs),
                "max_free_run": max(free_runs, default=0) * PCPU_MIN_ALLOC_SIZE,
                "fragmentation": (1 - max(free_runs, default=0) * PCPU_MIN_ALLOC_SIZE /
                                  c.free_bytes) if c.free_bytes else 0.0,
                "isolated": c.isolated,
            })
        return {
            "unit_size": p.unit_size, "nr_units": p.ai.nr_units,
            "nr_chunks": p.nr_chunks, "populated_pages": p.nr_populated,
            "populated_bytes": p.populated_bytes, "empty_pop_pages": p.nr_empty_pop_pages,
            "chunks_created": p.nr_created, "chunks_destroyed": p.nr_destroyed,
            "chunks": chunks,
        }

    def as_dict(self) -> dict:
        g = self.geometry
        return {
            "source": self.source,
            "partial": self.partial, "partial_reasons": self.partial_reasons,
            "geometry": {
                "mode": g.mode, "static_size": g.static_size, "reserved_size": g.reserved_size,
                "dyn_size": g.dyn_size, "unit_size": g.unit_size, "page_size": g.page_size,
                "nr_cpus": g.nr_cpus, "dmesg": g.dmesg, "derived": g.derived,
                "matches_dmesg": g.matches_dmesg, "notes": g.notes,
            },
            "addresses": self.base_info,
            "events": {"total": self.nr_events, "alloc": self.nr_allocs, "free": self.nr_frees,
                       "create_chunk": self.nr_creates, "destroy_chunk": self.nr_destroys,
                       "alloc_fail": self.nr_fails,
                       "alloc_fail_model_would_serve": self.nr_fail_disagree},
            "agreement": {
                "overall": self.agreement, "agree": self.agree, "total": self.nr_allocs,
                "nonatomic": self.agreement_nonatomic, "nonatomic_agree": self.agree_nonatomic,
                "nonatomic_total": self.nr_nonatomic,
                "atomic": self.agreement_atomic, "atomic_agree": self.agree_atomic,
                "atomic_total": self.nr_atomic,
                "race_swaps": self.swaps,
            },
            "reorders": self.reorders,
            "disagreements": [d.as_dict() for d in self.disagreements],
            "disagreement_causes": dict(self.causes()),
            "reconstruction": self.reconstruction,
            "balance_work": self.balance,
            "final_state": self.final_state(),
            "meminfo_check": self.meminfo_check,
            "model_meminfo_check": self.model_meminfo_check,
            "model_check_note": self.model_check_note,
            "vmalloc_check": self.vmalloc_check,
            "checks": self.checks(),
            "completeness": self.completeness,
            "seconds": self.seconds,
        }

    def write_decisions(self, path: Path | str) -> None:
        """The decisions as ``index, base (hex), offset`` lines, written atomically."""
        write_atomic(path, "".join(f"{idx}\tnone\t-1\n" if base is None else
                                   f"{idx}\t{base:x}\t{off}\n"
                                   for idx, base, off in self.decisions))


# ---------------------------------------------------------------------------------------------
# geometry and addresses
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# geometry and addresses
# ---------------------------------------------------------------------------------------------

def possible_cpus(bundle: Bundle) -> tuple[list[int] | None, str | None]:
    """The kernel's possible CPUs and where they come from: the bundle's ``cpus`` file (or the
    option that replaced it), else the boot log's map of CPUs to percpu units. When both are
    there they must agree: a ``cpus`` file from another machine is refused, both sources named."""
    fc = bundle.first_chunk
    unit_cpus = list(fc.unit_cpus) if fc is not None and fc.unit_cpus else None
    cpus = bundle.cpus
    if cpus is None:
        if unit_cpus is None:
            return None, None
        return sorted(unit_cpus), f"{bundle.files['dmesg']}:{fc.unit_map_line}"
    possible = cpus["possible"]
    if unit_cpus is not None and set(unit_cpus) != set(possible):
        raise LocalmapError(
            f"{len(possible)} possible CPUs ({_cpulist(possible)}), but the boot log "
            f"{bundle.files['dmesg']}:{fc.unit_map_line} maps {len(unit_cpus)} CPUs "
            f"({_cpulist(unit_cpus)}) to percpu units: the two come from different machines",
            bundle.cpus_source)
    return possible, bundle.cpus_source


def _cpulist(cpus) -> str:
    """``0-3,8`` for [0, 1, 2, 3, 8]."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def derive_geometry(bundle: Bundle, page_size: int | None = None,
                    nr_cpus: int | None = None) -> FirstChunkGeometry:
    fc = bundle.first_chunk
    cfg = bundle.config
    notes: list[str] = []
    if nr_cpus is None:
        possible, _ = possible_cpus(bundle)
        nr_cpus = len(possible) if possible else None
    if page_size is None:
        if cfg is not None:
            page_size = cfg.page_size
        elif fc is not None and fc.page_size:
            page_size = fc.page_size
        else:
            page_size = 4096
            notes.append("page size not known (no config): assumed 4K")
    if fc is None:
        raise LocalmapError("no dmesg first-chunk line: the first chunk's geometry is unknown "
                            "(bundle needs a 'dmesg' with the 'percpu: ... pages/cpu' line)",
                            bundle.path)
    if fc.page_size is not None and fc.page_size not in PAGE_SIZES:
        raise LocalmapError(f"first-chunk line has {fc.page_size // 1024}K pages; the model knows "
                            "arm64's 4K, 16K and 64K", bundle.files.get("dmesg"), fc.line)
    if page_size not in PAGE_SIZES:
        raise LocalmapError(f"unknown page size {page_size} (expected 4K, 16K or 64K)",
                            bundle.path)
    if fc.page_size is not None and cfg is not None and fc.page_size != page_size:
        raise LocalmapError(
            f"the boot log's first chunk has {fc.page_size // 1024}K pages "
            f"({bundle.files.get('dmesg')}:{fc.line}), the kernel config "
            f"{page_size // 1024}K: the two come from different kernels", cfg.path)
    static = fc.static_size
    kb = bundle.kallsyms_percpu_bounds
    if kb is None and bundle.kallsyms_path is not None:
        notes.append(f"{bundle.kallsyms_path}: no __per_cpu_start/__per_cpu_end (not a "
                     "kallsyms of this kernel, or read without root): chunks located without it")
    if kb is not None and kb[1] - kb[0] != static:
        notes.append(f"{bundle.kallsyms_path} gives a static size of {kb[1] - kb[0]}, the boot "
                     f"log {bundle.files.get('dmesg')}:{fc.line} {static}: kallsyms of another "
                     "kernel? (not used)")
    if nr_cpus is None:
        # embed prints u; the unit count is unknown without the cpus file
        raise LocalmapError("number of possible CPUs unknown (bundle needs a 'cpus' file)",
                            bundle.path)
    derived = None
    if cfg is not None:
        ai = first_chunk_alloc_info(fc.mode, static, nr_cpus, page_size,
                                    module_reserve=cfg.percpu_module_reserve,
                                    dynamic_reserve=cfg.percpu_dynamic_reserve,
                                    dynamic_early_size=cfg.percpu_dynamic_early_size)
        derived = {"static_size": ai.static_size, "reserved_size": ai.reserved_size,
                   "dyn_size": ai.dyn_size, "unit_size": ai.unit_size}
    else:
        notes.append("no kernel config: geometry taken from dmesg without derivation")
    kernel = {"static_size": fc.static_size, "reserved_size": fc.reserved_size,
              "dyn_size": fc.dyn_size, "unit_size": fc.unit_size}
    matches = None if derived is None else derived == kernel
    if matches is False:
        notes.append(f"derived geometry {derived} differs from dmesg {kernel}; using dmesg's")
    return FirstChunkGeometry(fc.mode, fc.static_size, fc.reserved_size, fc.dyn_size, fc.unit_size,
                              page_size, nr_cpus, fc.text, derived or {}, matches, notes,
                              f"{bundle.files.get('dmesg')}:{fc.line}")


def _build_percpu(geo: FirstChunkGeometry, pcpu_base: int, per_cpu_start: int,
                  listener=None, async_enabled: bool = True) -> Percpu:
    """The model machine with the kernel's printed split (equal to the derived one when the
    config allowed a derivation)."""
    ai = pcpu_build_alloc_info(geo.static_size, geo.reserved_size, geo.dyn_size, geo.page_size,
                               geo.nr_cpus, geo.page_size, None, dynamic_early_size=0)
    if ai.unit_size != geo.unit_size or ai.dyn_size != geo.dyn_size:
        raise LocalmapError(f"the kernel's first chunk (s{geo.static_size} r{geo.reserved_size} "
                            f"d{geo.dyn_size} u{geo.unit_size}) is not a geometry "
                            f"pcpu_build_alloc_info can produce for {geo.nr_cpus} CPUs and "
                            f"{geo.page_size // 1024}K pages", geo.where)
    return Percpu(ai, mode=geo.mode, base_addr=pcpu_base, per_cpu_start=per_cpu_start,
                  listener=listener, async_enabled=async_enabled)


def _addresses(prefix: list[tuple], geo: FirstChunkGeometry, bundle: Bundle, path: str) -> dict:
    """Chunk addresses from the first events (``prefix``), checked against kallsyms.

    ``ptr - base_addr - off`` is one constant in a boot (``__per_cpu_start - pcpu_base_addr``);
    the value most of the prefix agrees on is taken, so a damaged first line is reported at its
    own line later. Kallsyms' ``__per_cpu_start``, when present, places the first chunk;
    without it the first chunk is the lowest chunk address used without
    ``percpu_create_chunk``. When kallsyms puts the first chunk where the trace has no event
    although the trace's lowest such chunk has only offsets the first chunk serves, the two
    come from different boots and the bundle is refused, both sources named (a trace that
    started late uses older dynamic chunks first: their offsets lie outside the first chunk's,
    and kallsyms is kept)."""
    created = set()
    uncreated: set[int] = set()
    nonreserved_bases = set()
    offsets: dict[int, list[int]] = {}      # non-reserved allocation offsets per base
    deltas: Counter = Counter()
    for rec in prefix:
        kind, base = rec[R_KIND], rec[R_BASE]
        if kind == CREATE:
            created.add(base)
        elif kind == ALLOC or kind == FREE:
            if base not in created:
                uncreated.add(base)
                if kind == ALLOC and not rec[R_RESERVED]:
                    nonreserved_bases.add(base)
                    offsets.setdefault(base, []).append(rec[R_OFF])
            deltas[(rec[R_PTR] - base - rec[R_OFF]) & MASK64] += 1
    if not deltas:
        raise LocalmapError("trace has no allocation or free to locate the chunks", path)
    ptr_delta = deltas.most_common(1)[0][0]
    ps = geo.page_size
    s_al = (geo.static_size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
    to_first = (s_al + geo.reserved_size) & ~(ps - 1)
    # (with 16K/64K pages the reserved and first chunks share one base_addr)
    cands = sorted(b for b in uncreated if b in nonreserved_bases) or sorted(uncreated)
    kb = bundle.kallsyms_percpu_bounds
    notes = []
    fc_base = None
    if kb is not None:
        k_pcpu_base = (kb[0] - ptr_delta) & MASK64
        k_fc_base = (k_pcpu_base + to_first) & MASK64
        lo = s_al + geo.reserved_size - to_first       # what the first chunk serves
        hi = lo + geo.dyn_size
        fits = bool(cands) and all(lo <= o < hi for o in offsets.get(cands[0], ()))
        if k_fc_base not in uncreated and fits:
            raise LocalmapError(
                f"its __per_cpu_start {kb[0]:#x} puts the first chunk at {k_fc_base:#x}, where "
                f"the trace {path} has no event, and the trace's first chunk is {cands[0]:#x}: "
                "kallsyms of another boot (capture both in one boot, or leave kallsyms out)",
                bundle.kallsyms_path)
        fc_base, pcpu_base = k_fc_base, k_pcpu_base
        how = "kallsyms __per_cpu_start and the events' ptr"
        if k_fc_base not in uncreated and cands:
            notes.append(f"the trace's first events use no address of the first chunk (at "
                         f"{k_fc_base:#x} by {bundle.kallsyms_path}): tracing began after boot")
    if fc_base is None:
        if not cands:
            raise LocalmapError("cannot tell which chunk is the first chunk (no allocation in "
                                "a chunk the trace did not create)", path)
        fc_base = cands[0]
        pcpu_base = (fc_base - to_first) & MASK64
        how = (f"lowest chunk address used without percpu_create_chunk in the first "
               f"{len(prefix)} events")
    res_base = pcpu_base + (s_al & ~(ps - 1)) if geo.reserved_size else None
    per_cpu_start = (ptr_delta + pcpu_base) & MASK64
    return {"pcpu_base_addr": pcpu_base, "first_chunk_base": fc_base,
            "reserved_chunk_base": res_base, "per_cpu_start": per_cpu_start,
            "first_chunk_found_by": how, "ptr_delta": ptr_delta,
            "kallsyms_per_cpu_start": kb[0] if kb else None, "notes": notes}


# ---------------------------------------------------------------------------------------------
# the replay engine
# ---------------------------------------------------------------------------------------------

def _untraced_starts(records) -> dict[int, list[int]]:
    """Offsets (in 4-byte units) that ``records`` free before ever allocating them, per
    base_addr of a chunk they do not create: each starts an area allocated before tracing, and
    bounds the area before it."""
    created: set[int] = set()
    allocated: set[tuple[int, int]] = set()
    out: dict[int, list[int]] = {}
    for rec in records:
        kind, base = rec[R_KIND], rec[R_BASE]
        if kind == CREATE:
            created.add(base)
        elif base in created:
            continue
        elif kind == ALLOC:
            allocated.add((base, rec[R_OFF]))
        elif kind == FREE and (base, rec[R_OFF]) not in allocated:
            out.setdefault(base, []).append(rec[R_OFF] // PCPU_MIN_ALLOC_SIZE)
    for v in out.values():
        v.sort()
    return out


def _key(chunk: PcpuChunk) -> tuple[int, bool]:
    """Identifies a chunk (the reserved and first chunk may share base_addr)."""
    return (chunk.base_addr, chunk.is_reserved)


def _task(rec: tuple) -> tuple[int, int]:
    """Who printed a record: (pid, cpu) for the per-CPU idle tasks (pid 0), (pid, -1) else."""
    h = rec[R_HEAD]
    return _task_of_head(h) if isinstance(h, str) else _task_of(h)


def _task_of(head: tuple) -> tuple[int, int]:
    _, pid, cpu, _ = head
    return (pid, cpu if pid == 0 else -1)


@functools.lru_cache(maxsize=1024)
def _task_of_head(head: str) -> tuple[int, int]:
    # (the look-ahead asks about the same few records again and again)
    return _task_of(parse_head(head))


class _Trial(Exception):
    """A trial order failed (raised inside a trial, never escapes the engine)."""


class _OpenLoop:
    """The allocator run on the model's own decisions from the first point where they differ
    from the kernel's (an allocation the model places elsewhere, racing events, a failure the
    model would have served): from there on the model places every allocation itself
    (:meth:`Percpu.alloc`: its own search, its own chunk creation when nothing fits), runs its
    own balance work, and takes from the trace only the requests (sizes and flags, which
    allocation each free releases) and, as the scoring does, the chunks the kernel creates
    and destroys. Events are taken in the order the trace prints them. Its population is what
    the model-fidelity meminfo check compares."""

    def __init__(self, eng: "_Engine"):
        p = eng.p
        listener, p.listener = p.listener, None
        try:
            self.p = copy.deepcopy(p)
        finally:
            p.listener = listener
        self.async_ts = eng.async_ts if eng.async_off else None
        self.where: dict[tuple[int, int], int] = {}   # kernel (base, off) -> the model's ptr
        self.pending_task = eng.pending_task
        self.history = list(eng.pop_history)
        self.last = self.p.nr_populated
        self.events = eng.nr_events
        self.counts: Counter = Counter()

    def feed(self, rec: tuple, before: bool = True, by_alloc: bool = False) -> None:
        """Apply one record the model's way (``before``: run the balance work first when the
        model would; ``by_alloc``: a chunk creation was ``pcpu_alloc``'s own)."""
        p = self.p
        kind = rec[R_KIND]
        self.events += 1
        if self.async_ts is not None and record_ts(rec) > self.async_ts:
            p.async_enabled = True
            self.async_ts = None
        if before and p.balance_pending and kind <= ALLOC_FAIL and (
                (kind != FREE and not rec[R_ATOMIC]) or _task(rec) != self.pending_task):
            self.balance()
        try:
            if kind == ALLOC:
                try:
                    self.where[(rec[R_BASE], rec[R_OFF])] = p.alloc(
                        rec[R_SIZE], rec[R_ALIGN], rec[R_RESERVED], rec[R_ATOMIC])
                except PcpuAllocError:
                    self.counts["allocations_it_could_not_place"] += 1
            elif kind == FREE:
                self._free(rec)
            elif kind == ALLOC_FAIL:
                try:
                    found = p.pcpu_alloc_search(rec[R_SIZE], rec[R_ALIGN], rec[R_RESERVED],
                                                rec[R_ATOMIC])
                except PcpuAllocError:
                    found = None
                if found is None:
                    p.alloc_failed(rec[R_ATOMIC])
            elif kind == CREATE:
                self._create(rec[R_BASE], by_alloc)
            else:
                self._destroy(rec[R_BASE])
        except LocalmapError:
            self.counts["events_it_could_not_apply"] += 1
        if p.balance_pending and self.pending_task is None:
            self.pending_task = _task(rec)
        if p.nr_populated != self.last:
            self.last = p.nr_populated
            self.history.append((self.events, rec[R_LINE], self.last))

    def _free(self, rec: tuple) -> None:
        p = self.p
        ptr = self.where.pop((rec[R_BASE], rec[R_OFF]), None)
        if ptr is not None:
            p.free(ptr)
            return
        # an area both held before the model went its own way
        c = p.chunks_by_base.get(rec[R_BASE]) or p.find_chunk(rec[R_BASE], rec[R_OFF])
        if c is None or not c.is_area_start(rec[R_OFF] >> 2):
            self.counts["frees_of_areas_it_does_not_hold"] += 1
        else:
            p.free_in_chunk(c, rec[R_OFF])

    def _create(self, base: int, by_alloc: bool) -> None:
        p = self.p
        if base in p.chunks_by_base:
            self.counts["chunk_creations_it_has_made_already"] += 1
            return
        if by_alloc:
            p.create_chunk(base)
            return
        made: list = []

        def create():
            if not made:
                made.append(p.create_chunk(base))
                return made[0]
            return None
        self.balance(create)
        if not made:
            p.create_chunk(base)

    def _destroy(self, base: int) -> None:
        c = self.p.chunks_by_base.get(base)
        if c is None or c.free_bytes != self.p.unit_size:
            self.counts["chunk_destructions_it_cannot_make"] += 1
            return
        self.balance(destroy=lambda ch: ch is c)
        if base in self.p.chunks_by_base:
            self.p.destroy_chunk(c)

    def balance(self, create=lambda: None, destroy=lambda c: False) -> None:
        self.p.balance(create=create, destroy=destroy)
        self.pending_task = None

    def end(self) -> None:
        if self.p.balance_pending:
            self.balance()
        if self.p.nr_populated != self.history[-1][2]:
            self.history.append((self.events, 0, self.p.nr_populated))


class _Engine:
    """One streaming pass: the model, the scoring, the reconstruction, the race trials."""

    def __init__(self, records: Iterator[tuple], geo: FirstChunkGeometry, bundle: Bundle, path: str,
                 listener=None, async_ts: float | None = None, learner: "_Engine | None" = None,
                 stats: dict | None = None):
        self.src = records
        self.stats = stats if stats is not None else {}     # what the reader learns as it reads
        self.learn_mode = False
        self.ahead: deque = deque()
        self.geo = geo
        self.path = path
        prefix = self._fill(PREFIX_EVENTS)
        while not any(r[R_KIND] in (ALLOC, FREE) for r in self.ahead):
            if not self._fill(len(self.ahead) + PREFIX_EVENTS):
                break
        if not self.ahead:
            raise LocalmapError("no percpu events found (expected percpu_alloc_percpu, "
                                "percpu_free_percpu, ... lines; was the percpu:* event "
                                "enabled?)", path)
        del prefix
        # (the scoring pass reads the same first records as the reconstruction pass)
        self.addr = learner.addr if learner is not None else \
            _addresses(list(self.ahead), geo, bundle, path)
        self.ptr_delta = self.addr["ptr_delta"]
        self.listener = listener
        self.p = p = _build_percpu(geo, self.addr["pcpu_base_addr"], self.addr["per_cpu_start"],
                                   listener, async_enabled=async_ts is None)
        self.async_ts = async_ts
        fc = p.first_chunk
        if fc.base_addr != self.addr["first_chunk_base"]:
            raise LocalmapError(f"first chunk base {fc.base_addr:#x} computed from the geometry "
                                f"differs from the trace's {self.addr['first_chunk_base']:#x}",
                                path)
        self.first_ts = record_ts(self.ahead[0])
        # reconstruction: per chunk older than the trace, bits the trace touched and bits
        # learned as allocated before tracing
        self.touched: dict[PcpuChunk, int] = {c: 0 for c in p.chunks}
        self.pre_bits: dict[tuple, int] = {}
        self.pre_starts: dict[tuple, set[int]] = {}
        self.learned: list[dict] = []
        self.partial_chunks: set[tuple] = set()
        self.pending_pretrace: dict[tuple, list[tuple[int, int]]] = {}
        self.untraced_starts: dict[int, list[int]] = {}
        self.learn_prefix_events = 0
        if learner is not None:             # start from what the reconstruction pass learned
            self.untraced_starts = learner.untraced_starts
            self.still_learnable = learner.still_learnable
            self.pre_bits = dict(learner.pre_bits)
            self.pre_starts = {k: set(v) for k, v in learner.pre_starts.items()}
            self.learned = list(learner.learned)
            # past the reconstruction pass's bound there may be more to learn, inline
            self.learn_prefix_events = learner.learn_prefix_events or (
                learner.nr_events if learner.still_learnable else 0)
            self.pending_pretrace = learner.learned_areas()
            for c in p.chunks:
                for bit_off, bits in self.pending_pretrace.pop(_key(c), ()):
                    self._force_area(c, bit_off, bits)
        # scoring
        self.decisions = Decisions()
        self.dec_base, self.dec_off = self.decisions.base, self.decisions.off
        self.disagreements: list[Disagreement] = []
        self.n_na = self.n_at = self.miss_na = self.miss_at = self.n_free = 0
        self.unit_size = p.unit_size
        self.async_off = async_ts is not None
        self.last_populated = p.nr_populated
        self.counts: Counter = Counter()
        self.timeline: list = []
        self.used = 0
        self.nr_events = 0
        # (events replayed, trace line, populated pages) at every change of the population
        self.pop_history: list[tuple[int, int, int]] = [(0, 0, p.nr_populated)]
        self.reorders: list[dict] = []
        self.work = Counter()
        self.destroyed_early: set[int] = set()
        # race trials: checkpoints of the allocator and the records applied since
        self.applied: list[tuple] = []           # (record, agreed) in applied order
        self.ckpts: list[tuple[int, dict]] = []  # (index into applied, snapshot)
        self.replaying = False
        self.slow = async_ts is not None    # every record through _step (see run)
        self.pending_task: tuple | None = None   # who scheduled the pending balance work
        self.shadow: _OpenLoop | None = None     # the model on its own, once it parts
        self.parted: dict | None = None           # where and why it parted
        self._barrier()

    @property
    def alloc_index(self) -> int:
        """Allocations replayed so far (each is counted as atomic or not)."""
        return self.n_na + self.n_at

    # -- the stream --
    def _fill(self, n: int) -> bool:
        """Read ahead until ``n`` records are buffered; False at the end of the trace."""
        ahead = self.ahead
        k = n - len(ahead)
        if k > 0:
            ahead.extend(itertools.islice(self.src, k))
            return len(ahead) >= n
        return True

    def _peek(self, k: int) -> tuple | None:
        if len(self.ahead) <= k and not self._fill(k + 1):
            return None
        return self.ahead[k]

    def run(self) -> None:
        """Replay every record. The loop handles the two hot cases itself (an allocation the
        model agrees with, a plain free, in a dynamic chunk born in the trace; a pending balance
        work decided first, as :meth:`_step` does), with its counters in locals; everything
        else goes through :meth:`_step` (and the other methods), the counters written back to
        the engine before and read after."""
        p = self.p
        by_base = p.chunks_by_base          # (updated in place by restore)
        search = p.pcpu_alloc_search
        commit = p.commit_alloc
        free_in = p.free_in_chunk
        add = self.applied.append           # (the list is cleared in place by _barrier)
        dec_base = self.dec_base.append
        dec_off = self.dec_off.append
        unit_size = self.unit_size
        delta = self.ptr_delta
        timeline = self.timeline
        pop_history = self.pop_history
        fc = p.first_chunk
        fc_base, fc_lo, fc_hi = fc.base_addr, fc.start_offset, \
            fc.nr_pages * p.page_size - fc.end_offset
        ahead, src = self.ahead, self.src
        islice = itertools.islice
        slow = shadow = touched = None

        def put() -> None:                  # locals -> engine, before a call out of the loop
            (self.nr_events, self.used, self.n_na, self.n_at, self.n_free, self.to_ckpt,
             self.last_populated) = nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop

        def get() -> tuple:                 # engine -> locals, after it
            return (self.nr_events, self.used, self.n_na, self.n_at, self.n_free, self.to_ckpt,
                    self.last_populated, self.slow, self.shadow, self.touched)

        nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, touched = get()
        while True:
            if not ahead:
                # read in batches: parsing a batch, then replaying it, runs faster than
                # parsing and replaying one record at a time
                ahead.extend(islice(src, READ_BATCH))
                if not ahead:
                    break
            rec = ahead.popleft()
            kind, line, base, off, size, align, reserved, atomic, ptr, _, _, _, _ = rec
            if shadow is not None and kind <= ALLOC_FAIL:
                shadow.feed(rec)
            chunk = by_base.get(base)
            if chunk is None and base == fc_base and fc_lo <= off < fc_hi and \
                    not reserved and fc not in touched:
                chunk = fc                 # (its reconstruction is complete: see _prune)
            if kind > FREE or chunk is None or slow or off >= unit_size or off & 3 or \
                    (ptr - base - off) & MASK64 != delta:
                put()
                self._step(rec)
                nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, \
                    touched = get()
                continue
            nr_events += 1
            if p.balance_pending:           # (as _step: does the pending work run first?)
                put()
                self._before(rec)
                nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, \
                    touched = get()
            if kind == ALLOC:
                try:
                    found = search(size, align, reserved, atomic)
                except PcpuAllocError as exc:
                    raise LocalmapError(exc.message, self.path, line) from None
                if found is not None and found[0] is chunk and found[1] << 2 == off:
                    commit(chunk, found[1], size, atomic)
                    used += (size + 3) & ~3
                    dec_base(base)
                    dec_off(off)
                    if atomic:
                        n_at += 1
                    else:
                        n_na += 1
                    add(rec)
                else:
                    put()
                    self._miss(rec, chunk, found)
                    nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, \
                        touched = get()
            else:
                try:
                    used -= free_in(chunk, off)
                except LocalmapError:
                    self._bad_free(rec)
                n_free += 1
                add(rec)
            if p.balance_pending:
                put()
                self._after(rec)
                nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, \
                    touched = get()
            if p.nr_populated != last_pop:
                last_pop = p.nr_populated
                pop_history.append((nr_events, line, last_pop))
            to_ckpt -= 1
            if not to_ckpt:
                put()
                self._checkpoint()
                nr_events, used, n_na, n_at, n_free, to_ckpt, last_pop, slow, shadow, \
                    touched = get()
            if not nr_events & 0x3F:
                timeline.append((record_ts(rec), n_na + n_at, used, p.nr_chunks, last_pop))
        put()
        self._end()

    def learn_prefix(self) -> list[tuple]:
        """The reconstruction pass: replay (applying the kernel's answers, scoring nothing)
        until no chunk older than the trace has free space no traced event touched (nothing
        left to learn) or LEARN_PREFIX records; returns the records it read, which the scoring
        pass replays again from the reconstructed start."""
        self.learn_mode = True
        self.p.listener = self.listener = None
        self.slow = True
        self._fill(LEARN_PREFIX)
        self.untraced_starts = _untraced_starts(self.ahead)
        step = self._step
        buf: list[tuple] = []
        for rec in self._records():
            buf.append(rec)
            step(rec)
            if not len(buf) & 0x1FF and (len(buf) >= LEARN_PREFIX or not self._learnable()):
                break
        self.still_learnable = len(buf) >= LEARN_PREFIX and self._learnable()
        return buf

    def _learnable(self) -> bool:
        """Whether a chunk older than the trace (not the reserved chunk: module loads come at
        any time, and are learned as they come) still has free space no event touched."""
        for chunk, t in self.touched.items():
            if chunk.is_reserved:
                continue
            if (~chunk.alloc_map & ((1 << chunk.map_bits) - 1)) & ~t:
                return True
        return False

    def _records(self) -> Iterator[tuple]:
        """The records in order: those read ahead first, then the stream."""
        ahead, src = self.ahead, self.src
        while True:
            while ahead:
                yield ahead.popleft()
            for rec in src:
                yield rec
                if ahead:
                    break
            else:
                return

    # -- checkpoints --
    def _barrier(self) -> None:
        """Forget the trial history: later trials cannot reorder across this point."""
        self.applied.clear()
        self.missed = set()
        self.ckpts = [(0, self._snap())]
        self.to_ckpt = CHECKPOINT_EVERY

    def _snap(self) -> tuple:
        return self.p.snapshot(), self.pending_task

    def _restore(self, snap: tuple, keep: bool = True) -> None:
        self.p.restore(snap[0], keep)
        self.pending_task = snap[1]

    def _prune(self) -> None:
        """A chunk older than the trace whose free space has all been touched by traced
        events has nothing left to reveal: stop tracking it."""
        for chunk, t in list(self.touched.items()):
            if chunk.is_reserved or chunk.free_bytes > chunk.map_bits * 4:
                continue             # (reserved: module loads may come at any time)
            mb = chunk.map_bits
            if not (~chunk.alloc_map & ((1 << mb) - 1)) & ~t:
                del self.touched[chunk]
                self.slow = bool(self.async_off or any(
                    _key(c) in self.partial_chunks for c in self.touched))

    def _checkpoint(self) -> None:
        """Every CHECKPOINT_EVERY records: a snapshot; the records before the older of the
        two kept are dropped."""
        self._prune()
        applied = self.applied
        if len(self.ckpts) >= 2:
            cut = self.ckpts[1][0]
            del applied[:cut]
            self.ckpts = [(i - cut, s) for i, s in self.ckpts[1:]]
            self.missed = {ln for ln in self.missed if ln >= applied[0][R_LINE]} \
                if applied else set()
        self.ckpts.append((len(applied), self._snap()))
        self.to_ckpt = CHECKPOINT_EVERY

    # -- one record --
    def _step(self, rec: tuple) -> None:
        kind = rec[R_KIND]
        p = self.p
        self.nr_events += 1
        if self.async_off and record_ts(rec) > self.async_ts:
            self._enable_async()
        if p.balance_pending and kind <= ALLOC_FAIL:
            self._before(rec)
        if kind == ALLOC:
            self._alloc(rec)
        elif kind == FREE:
            self._free(rec)
            self.applied.append(rec)
        elif kind == CREATE:
            self._create(rec)
        elif kind == DESTROY:
            self._destroy(rec)
        else:
            self._fail(rec)
            self.applied.append(rec)
        if p.balance_pending:
            self._after(rec)
        if p.nr_populated != self.last_populated:
            self.last_populated = p.nr_populated
            self.pop_history.append((self.nr_events, rec[R_LINE], p.nr_populated))
        self.to_ckpt -= 1
        if not self.to_ckpt:
            self._checkpoint()
        if not self.nr_events & 0x3F:
            self.timeline.append((record_ts(rec), self.alloc_index, self.used, p.nr_chunks,
                                  p.nr_populated))

    def _check_ptr(self, rec: tuple) -> None:
        if (rec[R_PTR] - rec[R_BASE] - rec[R_OFF]) & MASK64 != self.ptr_delta:
            raise LocalmapError(
                f"ptr={rec[R_PTR]:x} is not base_addr+off shifted by the same constant as "
                f"earlier events (expected "
                f"{(rec[R_BASE] + rec[R_OFF] + self.ptr_delta) & MASK64:x}); the trace mixes "
                "boots or pointers are corrupted", self.path, rec[R_LINE])

    def _chunk(self, rec: tuple, reserved: bool | None) -> PcpuChunk:
        p = self.p
        base, off = rec[R_BASE], rec[R_OFF]
        c = p.chunks_by_base.get(base)
        if c is None:
            c = p.find_chunk(base, off, reserved)
            if c is None:
                self._check_off(rec, None)
                c = self._adopt_chunk(base)
        if not 0 <= off < c.nr_pages * p.page_size or off % PCPU_MIN_ALLOC_SIZE:
            self._check_off(rec, c)
        return c

    def _check_off(self, rec: tuple, chunk: PcpuChunk | None) -> None:
        """An offset outside every chunk at that base_addr is corrupt input, not a new chunk."""
        p = self.p
        base, off = rec[R_BASE], rec[R_OFF]
        if chunk is None:
            for c in (p.first_chunk, p.reserved_chunk):
                if c is not None and c.base_addr == base:
                    raise LocalmapError(
                        f"off={off} is outside the {'reserved' if c.is_reserved else 'first'}"
                        f" chunk at base_addr={base:x} (it serves offsets "
                        f"{c.start_offset}..{c.nr_pages * p.page_size - c.end_offset})",
                        self.path, rec[R_LINE])
        elif not 0 <= off < chunk.nr_pages * p.page_size or off % PCPU_MIN_ALLOC_SIZE:
            raise LocalmapError(f"off={off} is not a 4-byte aligned offset inside the "
                                f"{p.unit_size}-byte chunk at base_addr={base:x}",
                                self.path, rec[R_LINE])

    def _adopt_chunk(self, base: int) -> PcpuChunk:
        """A dynamic chunk that existed before tracing started (partial replay)."""
        if self.replaying:
            raise _Trial()
        p = self.p
        chunk = p.create_chunk(base)
        p.populate(chunk, 0, chunk.nr_pages)
        self.partial_chunks.add(_key(chunk))
        self.touched[chunk] = 0
        for bit_off, bits in self.pending_pretrace.pop(_key(chunk), ()):
            self._force_area(chunk, bit_off, bits)
        self.slow = True            # events of adopted chunks feed the reconstruction
        self._barrier()
        return chunk

    # -- allocations --
    def _alloc(self, rec: tuple) -> None:
        _, line, base, off, size, align, reserved, atomic, ptr = rec[:9]
        p = self.p
        if (ptr - base - off) & MASK64 != self.ptr_delta:
            self._check_ptr(rec)
        chunk = p.chunks_by_base.get(base)
        if chunk is None or off >= self.unit_size or off & 3:
            chunk = self._chunk(rec, reserved)
        try:
            found = p.pcpu_alloc_search(size, align, reserved, atomic)
        except PcpuAllocError as exc:
            raise LocalmapError(exc.message, self.path, line) from None
        if found is not None and found[0] is chunk and found[1] << 2 == off:
            self._commit(rec, chunk, found[1], True)
            return
        if self.replaying:
            raise _Trial()
        self._miss(rec, chunk, found)

    def _commit(self, rec: tuple, chunk: PcpuChunk, bit_off: int, agreed: bool,
                reintegrate: bool = True) -> None:
        """Apply the kernel's answer (at ``bit_off``), score it, remember it for trials."""
        size = rec[R_SIZE]
        atomic = rec[R_ATOMIC]
        self.p.commit_alloc(chunk, bit_off, size, atomic, reintegrate)
        if self.replaying:
            return
        if self.touched:
            t = self.touched.get(chunk)
            if t is not None:
                self.touched[chunk] = t | (((1 << ((size + 3) >> 2)) - 1) << (rec[R_OFF] >> 2))
        self.used += (size + 3) & ~3
        if agreed:
            self.dec_base.append(chunk.base_addr)
            self.dec_off.append(rec[R_OFF])
        else:
            self.missed.add(rec[R_LINE])
        if atomic:
            self.n_at += 1
        else:
            self.n_na += 1
        self.applied.append(rec)

    def _predict(self, rec: tuple):
        try:
            return self.p.pcpu_alloc_search(rec[R_SIZE], rec[R_ALIGN], rec[R_RESERVED],
                                            rec[R_ATOMIC])
        except PcpuAllocError as exc:
            raise LocalmapError(exc.message, self.path, rec[R_LINE]) from None

    @staticmethod
    def _pred(found) -> tuple[int, int] | None:
        return None if found is None else (found[0].base_addr, found[1] << 2)

    def _miss(self, rec: tuple, chunk: PcpuChunk, found) -> None:
        """The model's search disagreed with the kernel. In a chunk older than the trace, while
        the reconstruction learns (its own pass, or past that pass's bound), learn what was
        allocated before tracing; when scoring, try the allocator's order for racing events;
        else score a miss and apply the kernel's answer. An answer no kernel can give (an area
        the trace allocated and has not freed) refuses the trace."""
        self._check_overlap(rec, chunk)
        kern = (rec[R_BASE], rec[R_OFF])
        learning = self.touched.get(chunk) is not None and (
            self.learn_mode or self.nr_events > self.learn_prefix_events > 0)
        if not self.learn_mode and self._try_next_first(rec, found):
            return
        if learning:
            n = 0
            while found is not None and n < 64 and self._pred(found) != kern and \
                    self._learn(rec, found):
                found = self._predict(rec)
                n += 1
            if found is not None and found[0] is chunk and self._pred(found) == kern:
                self._commit(rec, chunk, found[1], True)
                return
        if not self.learn_mode:
            self._part(rec, "the model placed an allocation elsewhere")
            if self._try_earlier(rec):
                return
            chunk = self._chunk(rec, rec[R_RESERVED])
            self._score_miss(rec, chunk, self._pred(found))
        if learning:
            self._carve_for(rec, chunk)
        self._force(rec, chunk)

    def _part(self, rec: tuple, why: str) -> None:
        """The model's own decision differs from the kernel's here: from now on, the open loop
        (:class:`_OpenLoop`) runs the model on its own; ``rec`` (whose balance-work check has
        run) is its first record."""
        if self.shadow is not None or self.learn_mode or self.replaying:
            return
        self.shadow = _OpenLoop(self)
        self.parted = {"line": rec[R_LINE], "why": why}
        self.shadow.feed(rec, before=False)

    def _check_overlap(self, rec: tuple, chunk: PcpuChunk) -> None:
        """The kernel's area must be free in the kernel: it may overlap only space the
        reconstruction guessed was used before tracing, never an area the trace allocated and
        did not free, nor the first chunk's static and reserved part (unless events were lost:
        then a free may be missing)."""
        off, size = rec[R_OFF], rec[R_SIZE]
        bit_off, bits = off >> 2, -(-size // PCPU_MIN_ALLOC_SIZE)
        if bit_off + bits > chunk.map_bits or chunk.range_is_free(bit_off, bits) or \
                self.stats.get("lost"):
            return
        pre = self.pre_bits.get(_key(chunk), 0)
        end_hidden = chunk.map_bits - chunk.end_offset // PCPU_MIN_ALLOC_SIZE
        for a_off, a_bits in chunk.areas():
            if a_off >= bit_off + bits or bit_off >= a_off + a_bits:
                continue
            hidden = bool(a_off == 0 and chunk.start_offset) or a_off >= end_hidden
            if not hidden and pre & (((1 << a_bits) - 1) << a_off):
                continue                   # a guess of the reconstruction: may be wrong
            if self.replaying:
                raise _Trial()
            what = ("the first chunk's static and reserved part" if hidden and a_off == 0 else
                    "the end of the first chunk" if hidden else
                    f"the live area at off={a_off * 4} ({a_bits * 4} bytes), which the trace "
                    "allocated and has not freed")
            raise LocalmapError(
                f"allocation of off={off} size={size} in chunk {rec[R_BASE]:x} overlaps {what}: "
                "no kernel does that; the trace is corrupt (a line repeated or altered?)",
                self.path, rec[R_LINE])

    def _score_miss(self, rec: tuple, chunk: PcpuChunk, pred) -> None:
        self.decisions.append(pred)
        if rec[R_ATOMIC]:
            self.miss_at += 1
        else:
            self.miss_na += 1
        p = self.p
        off, size = rec[R_OFF], rec[R_SIZE]
        kern = (rec[R_BASE], off)
        if _key(chunk) in self.partial_chunks:
            cause = "unknown-chunk"
        elif pred is None:
            cause = "no-space-in-model"
        elif not p.area_is_free(chunk, off, size):
            cause = "occupied-in-model"
            if self._overlaps_pretrace(_key(chunk), off, size):
                cause = "pre-trace-area"
        elif pred[0] != kern[0]:
            cause = "other-chunk"
        else:
            cause = "other-offset"
        self.disagreements.append(Disagreement(
            self.alloc_index, rec[R_LINE], cause, size, rec[R_ALIGN], rec[R_ATOMIC], kern, pred,
            rec[R_CALL_SITE]))

    def _overlaps_pretrace(self, key, off, size) -> bool:
        bits = self.pre_bits.get(key, 0)
        n = -(-size // PCPU_MIN_ALLOC_SIZE)
        return bool((bits >> (off // PCPU_MIN_ALLOC_SIZE)) & ((1 << n) - 1))

    def _force(self, rec: tuple, chunk: PcpuChunk) -> None:
        """Apply an answer the model did not predict. Model areas in the way are taken out
        (never the areas hiding the first chunk's start and end); a chunk the model has
        isolated stays isolated (the kernel cannot have taken the area from it, so the model's
        list state is what is wrong, not the chunk's isolation)."""
        p = self.p
        off, size = rec[R_OFF], rec[R_SIZE]
        bits = -(-size // PCPU_MIN_ALLOC_SIZE)
        if off + bits * PCPU_MIN_ALLOC_SIZE > chunk.map_bits * PCPU_MIN_ALLOC_SIZE:
            raise LocalmapError(f"off={off} size={size} does not fit chunk "
                                f"{chunk.base_addr:#x} of {p.unit_size} bytes", self.path,
                                rec[R_LINE])
        bit_off = off // PCPU_MIN_ALLOC_SIZE
        if not chunk.range_is_free(bit_off, bits):
            self._force_area(chunk, bit_off, bits)
            p.free_area(chunk, off)
        stay = chunk.isolated and chunk.slot == p.to_depopulate_slot
        self._commit(rec, chunk, bit_off, False, reintegrate=not stay)

    def _force_area(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        """Allocate exactly [bit_off, bit_off + bits), freeing any model area in the way (but
        never the areas that hide the first chunk's start and end)."""
        p = self.p
        if not chunk.range_is_free(bit_off, bits):
            end_hidden = chunk.map_bits - chunk.end_offset // PCPU_MIN_ALLOC_SIZE
            for a_off, a_bits in chunk.areas():
                hidden = (a_off == 0 and chunk.start_offset) or a_off >= end_hidden
                if a_off < bit_off + bits and bit_off < a_off + a_bits and not hidden:
                    p.free_area(chunk, a_off * PCPU_MIN_ALLOC_SIZE)
        p.alloc_area_commit(chunk, bit_off, bits)

    # -- race trials --
    def _begin_trial(self) -> dict:
        self.replaying = True
        self.p.listener = None
        return self._snap()

    def _end_trial(self, before: dict, accepted: bool) -> None:
        p = self.p
        self.replaying = False
        if not accepted:
            self._restore(before, keep=False)
            p.listener = self.listener
            return
        p.listener = self.listener
        if self.listener is not None:        # tell the listener what changed in population
            for obj, saved in before[0]["chunks"]:
                for i, (was, now) in enumerate(zip(saved[9], obj.populated)):
                    if was != now:
                        p.listener.pages_populated(obj, i, i + 1) if now else \
                            p.listener.pages_depopulated(obj, i, i + 1)

    def _replay_apply(self, rec: tuple, agreed: bool) -> None:
        """Re-apply an already scored record during a trial (no scoring)."""
        kind = rec[R_KIND]
        p = self.p
        if p.balance_pending:
            self._before(rec)
        if kind == ALLOC:
            reserved, atomic = rec[R_RESERVED], rec[R_ATOMIC]
            chunk = self._chunk(rec, reserved)
            found = p.pcpu_alloc_search(rec[R_SIZE], rec[R_ALIGN], reserved, atomic)
            if found is not None and found[0] is chunk and found[1] << 2 == rec[R_OFF]:
                p.commit_alloc(chunk, found[1], rec[R_SIZE], atomic)
            elif agreed:
                raise _Trial()
            else:
                self._check_overlap(rec, chunk)
                self._force(rec, chunk)
        elif kind == FREE:
            chunk = self._chunk(rec, None)
            bit = rec[R_OFF] >> 2
            if not chunk.is_area_start(bit):
                raise _Trial()
            p.free_in_chunk(chunk, rec[R_OFF])
        else:
            self._fail(rec)
        if p.balance_pending:
            self._after(rec)

    def _try_next_first(self, rec: tuple, found) -> bool:
        """The next allocation, by another task within the race window, is exactly the model's
        prediction: it took the lock first. Replay it, then this one."""
        if found is None:
            return False
        nxt = self._peek(0)
        if nxt is None or nxt[R_KIND] != ALLOC or \
                self._pred(found) != (nxt[R_BASE], nxt[R_OFF]) or \
                _task(nxt) == _task(rec) or record_ts(nxt) - record_ts(rec) > RACE_WINDOW_S:
            return False
        self._check_ptr(nxt)
        before = self._begin_trial()
        ok = False
        try:
            for r in (nxt, rec):
                if self.p.balance_pending:
                    self._before(r)
                c = self._chunk(r, r[R_RESERVED])
                f = self._predict(r)
                if f is None or f[0] is not c or f[1] << 2 != r[R_OFF]:
                    raise _Trial()
                self.p.commit_alloc(c, f[1], r[R_SIZE], r[R_ATOMIC])
                if self.p.balance_pending:
                    self._after(r)
            ok = True
        except _Trial:
            pass
        if not ok:
            self._end_trial(before, False)
            return False
        # accepted: redo it for real (scoring, listener) from the state before the trial
        self._end_trial(before, False)
        self._part(rec, "the model placed an allocation elsewhere (racing allocations)")
        self.ahead.popleft()
        if self.shadow is not None:
            self.shadow.feed(nxt)       # (an allocation)
        self.nr_events += 1
        for r in (nxt, rec):
            if self.p.balance_pending:
                self._before(r)
            c = self._chunk(r, r[R_RESERVED])
            f = self._predict(r)
            self._commit(r, c, f[1], True)
            if self.p.balance_pending:
                self._after(r)
        for arr in (self.dec_base, self.dec_off):       # decisions stay in file order
            arr[-2], arr[-1] = arr[-1], arr[-2]
        self._reordered(rec, nxt, "next allocation first")
        self._barrier()
        return True

    def _try_earlier(self, rec: tuple) -> bool:
        """This allocation took the lock before events printed just ahead of it by other
        tasks: re-run the events since the last checkpoint with it moved before them (nearest
        position first); keep the first order in which the model agrees on it and on every
        re-run allocation it agreed on."""
        applied = self.applied
        if not applied:
            return False
        me = _task(rec)
        ts = record_ts(rec)
        first = len(applied)
        while first > 0 and len(applied) - first < MAX_RACE_CANDIDATES:
            r = applied[first - 1]
            if r[R_KIND] not in (ALLOC, FREE) or _task(r) == me or \
                    ts - record_ts(r) > RACE_WINDOW_S:
                break
            first -= 1
        if first == len(applied):
            return False
        ck = max((c for c in self.ckpts if c[0] <= first), key=lambda c: c[0], default=None)
        if ck is None:
            return False
        before = self._begin_trial()
        p = self.p
        found_at = None
        try:
            self._restore(ck[1])
            missed = self.missed
            for r in applied[ck[0]:first]:
                self._replay_apply(r, r[R_LINE] not in missed)
            base = self._snap()
            for j in range(len(applied) - 1, first - 1, -1):
                self._restore(base)
                try:
                    for r in applied[first:j]:
                        self._replay_apply(r, r[R_LINE] not in missed)
                    if p.balance_pending:
                        self._before(rec)
                    c = self._chunk(rec, rec[R_RESERVED])
                    f = self._predict(rec)
                    if f is None or f[0] is not c or f[1] << 2 != rec[R_OFF]:
                        continue
                    p.commit_alloc(c, f[1], rec[R_SIZE], rec[R_ATOMIC])
                    if p.balance_pending:
                        self._after(rec)
                    for r in applied[j:]:
                        self._replay_apply(r, r[R_LINE] not in missed)
                except _Trial:
                    continue
                found_at = j
                break
        except _Trial:
            found_at = None
        if found_at is None:
            self._end_trial(before, False)
            return False
        self._end_trial(before, True)
        # score the allocation (its effects are in the state already)
        c = self._chunk(rec, rec[R_RESERVED])
        size = rec[R_SIZE]
        t = self.touched.get(c)
        if t is not None:
            self.touched[c] = t | (((1 << ((size + 3) >> 2)) - 1) << (rec[R_OFF] >> 2))
        self.used += (size + 3) & ~3
        self.decisions.append((c.base_addr, rec[R_OFF]))
        if rec[R_ATOMIC]:
            self.n_at += 1
        else:
            self.n_na += 1
        moved = applied[found_at:]
        self._reordered(rec, moved[0], "allocation before " + ", ".join(
            f"{'free' if r[R_KIND] == FREE else 'alloc'} line {r[R_LINE]}" for r in moved))
        self._barrier()
        return True

    def _reordered(self, rec: tuple, other: tuple, how: str) -> None:
        self.reorders.append({"line": rec[R_LINE], "other_line": other[R_LINE],
                              "index": len(self.dec_off) - 1 if other[R_KIND] != ALLOC or
                              other[R_LINE] < rec[R_LINE] else len(self.dec_off) - 2,
                              "how": how})

    # -- frees, failures --
    def _free(self, rec: tuple) -> None:
        _, line, base, off, _, _, _, _, ptr = rec[:9]
        p = self.p
        if (ptr - base - off) & MASK64 != self.ptr_delta:
            self._check_ptr(rec)
        self.n_free += 1
        chunk = p.chunks_by_base.get(base)
        if chunk is None or off >= self.unit_size or off & 3:
            chunk = self._chunk(rec, None)
        bit_off = off >> 2
        t = self.touched.get(chunk) if self.touched else None
        if t is None:
            if not chunk.is_area_start(bit_off):
                self._bad_free(rec)
            self.used -= p.free_in_chunk(chunk, off)
            return
        untraced = False
        if not chunk.is_area_start(bit_off):
            if (t >> bit_off) & 1:
                self._bad_free(rec)
            self._learn_free(chunk, bit_off)
            untraced = True
        elif (self.pre_bits.get(_key(chunk), 0) >> bit_off) & 1:
            untraced = True        # an area learned as used before tracing
        size = p.free_in_chunk(chunk, off)
        # an untraced area's extent is a guess: only its start is known for sure, so the
        # rest stays open to later evidence (an allocation that does not use it)
        n = 1 if untraced else size >> 2
        self.touched[chunk] = self.touched[chunk] | (((1 << n) - 1) << bit_off)
        if untraced:
            self._barrier()
        else:
            self.used -= size

    def _bad_free(self, rec: tuple) -> None:
        raise LocalmapError(
            f"free of base_addr={rec[R_BASE]:x} off={rec[R_OFF]}: no area was allocated "
            "there (never allocated in the trace, or freed twice)", self.path, rec[R_LINE])

    def _fail(self, rec: tuple) -> None:
        """``percpu_alloc_percpu_fail``: the search ran and found nothing (the model may
        disagree); an atomic failure sets the flag the balance work reads, and schedules it."""
        p = self.p
        if not self.replaying:
            self.counts["fail"] += 1
        try:
            found = p.pcpu_alloc_search(rec[R_SIZE], rec[R_ALIGN], rec[R_RESERVED],
                                        rec[R_ATOMIC])
        except PcpuAllocError:
            found = None
        if found is not None and not self.replaying:
            self.counts["fail_disagree"] += 1
            self._part(rec, "the model would have served a failed allocation")
        p.alloc_failed(rec[R_ATOMIC])

    # -- the balance work --
    def _kept(self, chunk: PcpuChunk) -> bool:
        """Chunks older than the trace look empty to the model (what they held before is
        unknown): the model never destroys them, only the trace does."""
        return _key(chunk) in self.partial_chunks

    def _before(self, rec: tuple) -> None:
        """The balance work is pending as ``rec`` comes: does it run first?"""
        if WORK_POLICY == "immediate":
            return
        kind = rec[R_KIND]
        if (kind == ALLOC or kind == ALLOC_FAIL) and not rec[R_ATOMIC]:
            self._work_point()            # rec needs the mutex: the worker was waiting for it
        elif WORK_POLICY == "task" and _task(rec) != self.pending_task:
            self._work_point()

    def _after(self, rec: tuple) -> None:
        """``rec`` left the balance work pending."""
        if self.pending_task is None:
            self.pending_task = _task(rec)
        if WORK_POLICY == "immediate":
            self._work_point()

    def _work_point(self) -> None:
        """A point where the pending balance work can take the mutex: it runs here unless
        the run would create or destroy a chunk (the trace would show that, and shows it
        elsewhere: the run happens there)."""
        p = self.p
        if p.balance_is_traced(self._kept):
            if not self.replaying:
                self.work["deferred_to_trace"] += 1
            return
        p.balance(create=lambda: None, destroy=lambda c: False)
        self.pending_task = None
        if not self.replaying:
            self.work["runs"] += 1

    def _enable_async(self) -> None:
        self.p.async_enabled = True
        self.async_off = False
        self.slow = bool(self.partial_chunks)

    def _create(self, rec: tuple) -> None:
        """``percpu_create_chunk``: by ``pcpu_alloc`` (its task's next allocation finds no
        space in the model without the chunk), else by the balance work, which then runs
        here."""
        p = self.p
        base = rec[R_BASE]
        self.counts["create"] += 1
        if base in p.chunks_by_base:
            raise LocalmapError(f"percpu_create_chunk of {base:#x}, which is already a live "
                                "chunk", self.path, rec[R_LINE])
        by_alloc = self._created_by_alloc(rec)
        if self.shadow is not None:
            self.shadow.feed(rec, by_alloc=by_alloc)
        if by_alloc:
            p.create_chunk(base)
            self.work["chunks_by_pcpu_alloc"] += 1
        else:
            self._enable_async()
            made: list = []

            def create():
                if made:
                    return None
                made.append(p.create_chunk(base))
                return made[0]
            if not p.balance_pending:
                self.work["unscheduled_runs_in_trace"] += 1
            p.balance(create=create, destroy=self._destroy_veto(rec))
            self.pending_task = None
            self.work["runs"] += 1
            self.work["chunks_by_work"] += 1
            if not made:
                p.create_chunk(base)
                self.counts["create_unexpected"] += 1
        self._barrier()

    def _created_by_alloc(self, rec: tuple) -> bool:
        me = _task(rec)
        k = 0
        while k < LOOKAHEAD:
            r = self._peek(k)
            if r is None:
                return False
            k += 1
            if r[R_KIND] == ALLOC and _task(r) == me:
                if r[R_ATOMIC] or r[R_RESERVED]:
                    return False
                p = self.p
                if p.slots[p.free_slot]:
                    return False
                snap = p.snapshot()
                p.listener = None
                try:
                    return p.pcpu_alloc_search(r[R_SIZE], r[R_ALIGN], False, False) is None
                except PcpuAllocError:
                    return False
                finally:
                    p.restore(snap, keep=False)
                    p.listener = self.listener
        return False

    def _destroy_veto(self, rec: tuple) -> Callable[[PcpuChunk], bool]:
        """The work run that printed ``rec`` destroys the chunks whose
        ``percpu_destroy_chunk`` the same task prints next (before anything else)."""
        me = _task(rec)
        allowed = {rec[R_BASE]} if rec[R_KIND] == DESTROY else set()
        k = 0
        while k < LOOKAHEAD:
            r = self._peek(k)
            k += 1
            if r is None:
                break
            if _task(r) != me:
                continue
            if r[R_KIND] != DESTROY:
                break
            allowed.add(r[R_BASE])

        def destroy(c: PcpuChunk) -> bool:
            if c.base_addr in allowed:
                if c.base_addr != rec[R_BASE] or rec[R_KIND] != DESTROY:
                    self.destroyed_early.add(c.base_addr)
                return True
            return False
        return destroy

    def _destroy(self, rec: tuple) -> None:
        """``percpu_destroy_chunk``: only the balance work destroys chunks, so it runs here
        (unless this is one of the chunks its run destroyed already)."""
        p = self.p
        base = rec[R_BASE]
        self.counts["destroy"] += 1
        if self.shadow is not None:
            self.shadow.feed(rec)
        if base in self.destroyed_early:
            self.destroyed_early.discard(base)
            return
        c = p.chunks_by_base.get(base)
        if c is None:
            what = ("the first or reserved chunk" if p.find_chunk(base)
                    else "not a live chunk")
            raise LocalmapError(f"percpu_destroy_chunk of {base:#x}, which is {what}",
                                self.path, rec[R_LINE])
        self._enable_async()
        if not p.balance_pending:
            self.work["unscheduled_runs_in_trace"] += 1
        p.balance(create=lambda: None, destroy=self._destroy_veto(rec))
        self.pending_task = None
        self.work["runs"] += 1
        if base in p.chunks_by_base:
            if c.free_bytes != p.unit_size:
                self.counts["destroy_not_free"] += 1
            self.counts["destroy_unexpected"] += 1
            p.destroy_chunk(c)
        self._barrier()

    def _end(self) -> None:
        p = self.p
        if p.balance_pending:
            if p.balance_is_traced(self._kept):
                self.work["pending_at_end"] += 1
            else:
                p.balance(create=lambda: None, destroy=lambda c: False)
                self.work["runs"] += 1
        if p.nr_populated != self.pop_history[-1][2]:
            self.pop_history.append((self.nr_events, 0, p.nr_populated))

    # -- reconstruction of what was allocated before tracing --
    def _record(self, chunk: PcpuChunk, bit_off: int, bits: int, why: str, line) -> None:
        key = _key(chunk)
        self.pre_bits[key] = self.pre_bits.get(key, 0) | (((1 << bits) - 1) << bit_off)
        self.pre_starts.setdefault(key, set()).add(bit_off)
        self.learned.append({"base_addr": f"{key[0]:x}", "reserved": key[1],
                             "off": bit_off * 4, "size": bits * 4, "evidence": why,
                             "line": line})

    def _learn(self, rec: tuple, found: tuple[PcpuChunk, int]) -> bool:
        """The kernel did not use the window the model would: part of it was used before
        tracing. Only space no traced event has touched, in a chunk older than the trace, can
        be that part; the correction is the smallest that reads as "the untraced areas next to
        it were shorter than guessed": the last untouched run of the window, extended up to
        the next allocated byte (or the kernel's own area). Returns whether it learned."""
        p = self.p
        chunk, m_off = found
        touched = self.touched.get(chunk)
        if touched is None:
            return False
        w_end = m_off + -(-rec[R_SIZE] // PCPU_MIN_ALLOC_SIZE)
        u = w_end - 1
        while u >= m_off and (touched >> u) & 1:
            u -= 1
        if u < m_off:
            return False
        end = chunk.next_allocated(u)
        if chunk.base_addr == rec[R_BASE] and chunk.is_reserved == rec[R_RESERVED] and \
                rec[R_OFF] // PCPU_MIN_ALLOC_SIZE > u:
            end = min(end, rec[R_OFF] // PCPU_MIN_ALLOC_SIZE)    # the kernel's area was free
        lo = u
        while lo > m_off and not (touched >> (lo - 1)) & 1:
            lo -= 1
        while lo > 0 and lo == m_off and not chunk.test_bit(lo - 1) and \
                not (touched >> (lo - 1)) & 1:
            lo -= 1
        hi = u + 1
        while hi < end and not (touched >> hi) & 1:
            hi += 1
        edges = [lo] + [x for x in self.untraced_starts.get(chunk.base_addr, ())
                        if lo < x < hi] + [hi]
        for a, b in zip(edges, edges[1:]):       # areas the trace frees start apart
            self._record(chunk, a, b - a, f"alloc at off={rec[R_OFF]} did not use it",
                         rec[R_LINE])
            p.alloc_area_commit(chunk, a, b - a)
        self._revised()
        return True

    def _carve_for(self, rec: tuple, chunk: PcpuChunk) -> bool:
        """The kernel allocated inside space learned as used before tracing: that space was
        free after all. Cut the window out of the learned areas."""
        bit_off = rec[R_OFF] // PCPU_MIN_ALLOC_SIZE
        bits = -(-rec[R_SIZE] // PCPU_MIN_ALLOC_SIZE)
        key = _key(chunk)
        pre = self.pre_bits.get(key, 0)
        mask = ((1 << bits) - 1) << bit_off
        if not pre & mask:
            return False
        overlap = chunk.alloc_map & mask
        touched = self.touched.get(chunk, 0)
        if overlap & ~pre or overlap & touched:
            return False                     # a traced area is in the way: real divergence
        p = self.p
        for a, n in chunk.areas():
            if a < bit_off + bits and bit_off < a + n:
                p.free_area(chunk, a * PCPU_MIN_ALLOC_SIZE)
                if a < bit_off:
                    p.alloc_area_commit(chunk, a, bit_off - a)
                if a + n > bit_off + bits:
                    p.alloc_area_commit(chunk, bit_off + bits, a + n - bit_off - bits)
                    self.pre_starts.setdefault(key, set()).add(bit_off + bits)
        # bits never seen by the trace were free from the start; bits the trace freed before
        # (an untraced area's start) stay part of the start state
        self.pre_bits[key] = pre & ~(mask & ~touched)
        self.learned.append({"base_addr": f"{chunk.base_addr:x}", "reserved": chunk.is_reserved,
                             "off": bit_off * 4, "size": -bits * 4,
                             "evidence": "allocated by the kernel: was free after all",
                             "line": rec[R_LINE]})
        self._revised()
        return True

    def _learn_free(self, chunk: PcpuChunk, bit_off: int) -> None:
        """A free of an untraced area: an area began there; it ends at the next known edge
        (the next offset the trace frees without allocating it, the next allocated or traced
        byte, the end of the chunk). Inside an area learned earlier, that area is split."""
        p = self.p
        key = _key(chunk)
        touched = self.touched.get(chunk, 0)
        cuts = [bit_off] + [u for u in self.untraced_starts.get(chunk.base_addr, ())
                            if u > bit_off]
        if chunk.test_bit(bit_off):
            start = bit_off
            while start > 0 and not (chunk.bmap[start >> chunk.block_shift] >>
                                     (start & (chunk.block_bits - 1))) & 1:
                start -= 1
            end = chunk.next_bound(bit_off + 1)
            p.free_area(chunk, start * PCPU_MIN_ALLOC_SIZE)
            edges = [start] + [c for c in cuts if start < c < end] + [end]
            for lo, hi in zip(edges, edges[1:]):
                p.alloc_area_commit(chunk, lo, hi - lo)
            self.pre_starts.setdefault(key, set()).update(edges[1:-1])
            self.learned.append({"base_addr": f"{chunk.base_addr:x}",
                                 "reserved": chunk.is_reserved, "off": bit_off * 4,
                                 "size": (edges[edges.index(bit_off) + 1] - bit_off) * 4,
                                 "evidence": "free of an area never allocated in the trace",
                                 "line": None})
            self._revised()
            return
        end = chunk.next_allocated(bit_off + 1)
        t_end = touched >> (bit_off + 1)
        if t_end:
            end = min(end, bit_off + 1 + (t_end & -t_end).bit_length() - 1)
        end = min(end, chunk.map_bits - chunk.end_offset // PCPU_MIN_ALLOC_SIZE)
        for c in cuts[1:]:
            if c < end:
                end = c
                break
        self._record(chunk, bit_off, end - bit_off,
                     "free of an area never allocated in the trace", None)
        p.alloc_area_commit(chunk, bit_off, end - bit_off)
        self._revised()

    def _revised(self) -> None:
        """The reconstruction changed: no race trial reorders across this point."""
        self._barrier()

    def learned_areas(self) -> dict[tuple, list[tuple[int, int]]]:
        """The reconstruction: runs of bits learned as used before tracing, split where the
        trace shows an area starting."""
        out = {}
        for key, bits in self.pre_bits.items():
            starts = self.pre_starts.get(key, set())
            areas = []
            n = bits.bit_length()
            i = 0
            while i < n:
                if not (bits >> i) & 1:
                    i += 1
                    continue
                j = i + 1
                while j < n and (bits >> j) & 1 and j not in starts:
                    j += 1
                areas.append((i, j - i))
                i = j
            out[key] = areas
        return out


def replay(source: Bundle | Path | str, *, listener=None, progress: Progress | None = None,
           page_size: int | None = None, nr_cpus: int | None = None) -> ReplayResult:
    """Replay a bundle (or a bare trace with its bundle files beside it). See module doc.

    ``progress`` hears one step, ``replaying NAME``, counted in bytes of the trace file read
    (the replay reads the file once, replaying as it reads)."""
    bundle = source if isinstance(source, Bundle) else load_bundle(source)
    path = str(bundle.trace_path)
    partial_reasons: list[str] = []
    t0 = time.perf_counter()
    geo = derive_geometry(bundle, page_size, nr_cpus)
    stats: dict = {}
    prog = as_progress(progress)
    started = []

    def report(done: int, total: int) -> None:
        if not started:
            prog.start(f"replaying {bundle.trace_path.name}", total=total)
            started.append(True)
        prog.update(done)
    possible, cpus_source = possible_cpus(bundle)
    records = iter_records(bundle.trace_path, stats, report,
                           cpus=(max(possible) + 1, cpus_source) if possible else None)
    async_ts = _async_enable_ts(bundle)
    learner = _Engine(records, geo, bundle, path, None, async_ts, stats=stats)
    prefix = learner.learn_prefix()
    rest = itertools.chain(prefix, list(learner.ahead), learner.src)
    del prefix
    eng = _Engine(rest, geo, bundle, path, listener, async_ts, learner=learner, stats=stats)
    eng.run()
    if eng.shadow is not None:
        eng.shadow.end()
    addr = eng.addr
    geo.notes.extend(addr["notes"])
    if possible is not None:
        stray = sorted(set(stats.get("cpus_seen", ())) - set(possible))
        if stray:
            raise LocalmapError(f"the trace has events of CPU {stray[0]}, which is not a "
                                f"possible CPU ({_cpulist(possible)}, from {cpus_source})", path)
    completeness = _completeness(bundle, stats, eng)
    partial_reasons = [e["detail"] for e in completeness if e["complete"] is False]
    pretrace = eng.learned_areas()
    recon = {
        "method": "emptiest start consistent with the trace: an area counts as allocated "
                  "before tracing only if the trace frees it without allocating it, or an "
                  "allocation landed above untouched free space the model would have used",
        "free_parameters": 0,
        "areas": eng.learned,
        "bytes_by_chunk": {f"{b:x}" + (" (reserved)" if r else ""): sum(n for _, n in v) * 4
                           for (b, r), v in pretrace.items()},
    }
    p = eng.p
    per_page = geo.page_size * p.ai.nr_units
    meminfo = _meminfo_check(bundle, eng.pop_history, p.nr_populated, per_page,
                             TRACE_COMPLETENESS)
    if eng.shadow is None:
        model_meminfo = [dict(m, tests=MODEL_FIDELITY) for m in meminfo]
        model_note = ("the model decided as the kernel did throughout (every allocation "
                      "where the kernel put it, in the printed order): its own state is the "
                      "replayed state")
    else:
        sh = eng.shadow
        model_meminfo = _meminfo_check(bundle, sh.history, sh.p.nr_populated, per_page,
                                       MODEL_FIDELITY)
        model_note = (f"the model on its own from line {eng.parted['line'] or 'end'} on "
                      f"({eng.parted['why']}): it placed every later allocation and ran the "
                      "balance work itself"
                      + "".join(f"; {n} {k.replace('_', ' ')}" for k, n in sh.counts.items()))
    balance = dict(eng.work)
    balance["percpu_enable_async_by"] = (
        "start of trace (no boot-log bound)" if async_ts is None else
        f"{async_ts:.6f} s ('clocksource: Switched to clocksource' in dmesg: all "
        "subsys_initcalls have run)")
    res = ReplayResult(
        source=str(bundle.path), geometry=geo, percpu=p, partial=bool(partial_reasons),
        partial_reasons=partial_reasons, nr_events=eng.nr_events,
        nr_allocs=eng.n_na + eng.n_at, nr_frees=eng.n_free,
        nr_creates=eng.counts["create"], nr_destroys=eng.counts["destroy"],
        nr_fails=eng.counts["fail"], nr_fail_disagree=eng.counts["fail_disagree"],
        agree=eng.n_na + eng.n_at - eng.miss_na - eng.miss_at,
        agree_nonatomic=eng.n_na - eng.miss_na, nr_nonatomic=eng.n_na,
        agree_atomic=eng.n_at - eng.miss_at, nr_atomic=eng.n_at, reorders=eng.reorders,
        disagreements=eng.disagreements, reconstruction=recon, decisions=eng.decisions,
        timeline=eng.timeline, meminfo_check=meminfo, vmalloc_check=_vmalloc_check(bundle, p),
        base_info={k: (f"{v:x}" if isinstance(v, int) else v) for k, v in addr.items()
                   if k not in ("ptr_delta", "notes")},
        balance=balance, seconds=time.perf_counter() - t0, completeness=completeness,
        model_meminfo_check=model_meminfo if bundle.meminfo else None,
        model_check_note=model_note)
    return res


def _completeness(bundle: Bundle, stats: dict, eng: "_Engine") -> list[dict]:
    """Is the trace the whole story from boot? Every piece of evidence the bundle holds, each
    with its verdict (``complete``: True, False, or None when the evidence is not there); the
    replay is partial when any says False."""
    out: list[dict] = []
    trace = str(bundle.trace_path)

    def ev(what: str, source: str, complete: bool | None, detail: str) -> None:
        out.append({"evidence": what, "source": source, "complete": complete,
                    "detail": detail})
    lost_markers = [d for d in stats.get("lost_detail", []) if "header" not in d]
    if "entries" in stats:
        where = f"{trace}:{stats['entries_line']}"
        header_lost = stats.get("header_lost", 0)
        if header_lost > 0:
            ev("ftrace header", where, False,
               f"{header_lost} events lost by the tracer (the ring buffer was overwritten: "
               "entries-in-buffer < entries-written)")
        elif stats["event_lines"] < stats["entries"]:
            ev("ftrace header", where, False,
               f"the file was cut short: it holds {stats['event_lines']} event lines, its header "
               f"counted {stats['entries']} in the buffer (entries-in-buffer)")
        else:
            ev("ftrace header", where, True,
               f"no event lost; {stats['event_lines']} event lines for {stats['entries']} "
               "entries in the buffer")
    else:
        ev("ftrace header", trace, None, "no entries-in-buffer/entries-written header")
    if lost_markers:
        ev("lost-event markers", trace, False, "events lost: " + "; ".join(lost_markers[:3]))
    if "cut" in stats:
        line, text = stats["cut"]
        ev("end of file", f"{trace}:{line}", False,
           f"the file was cut mid-line (line {line} has no end: {text[:60]!r}); that line is "
           "not replayed")
    else:
        ev("end of file", trace, True, "the last line is whole")
    if eng.partial_chunks:
        ev("chunks older than the trace", trace, False,
           f"{len(eng.partial_chunks)} chunk(s) existed before tracing started and were never "
           "created in the trace: their occupancy and population are reconstructed from the "
           "events only")
    else:
        ev("chunks older than the trace", trace, True,
           "every dynamic chunk the trace uses is created in it")
    cmd, cmd_src = bundle.cmdline, str(bundle.files.get("cmdline"))
    if cmd is None and bundle.dmesg_text is not None:
        from localmap.ingest.procfs import kernel_cmdline
        found = kernel_cmdline(bundle.dmesg_text)
        if found:
            cmd, cmd_src = found[0], f"{bundle.files['dmesg']}:{found[1]}"
    if cmd is None:
        ev("tracing from boot", trace, None, "no kernel command line (no cmdline, no boot log)")
    elif any(w.startswith("trace_event=") and "percpu" in w for w in cmd.split()):
        ev("tracing from boot", cmd_src, True, "the percpu events were enabled on the kernel "
           "command line (trace_event=)")
    else:
        ev("tracing from boot", cmd_src, False, "tracing was switched on after boot: the kernel "
           "command line does not enable the percpu events (trace_event=percpu:*)")
    if bundle.dmesg_text is not None:
        from localmap.ingest.procfs import init_started
        init = init_started(bundle.dmesg_text)
        src = f"{bundle.files['dmesg']}:{init[1]}" if init else str(bundle.files["dmesg"])
        if init is None:
            ev("first event vs boot", src, None, "the boot log does not say when init started")
        elif eng.first_ts > init[0]:
            ev("first event vs boot", src, False,
               f"the first event ({eng.first_ts:.6f} s) comes after init started "
               f"({init[0]:.6f} s): the events of the boot are missing")
        else:
            ev("first event vs boot", src, True,
               f"the first event ({eng.first_ts:.6f} s) precedes init ({init[0]:.6f} s)")
    return out


def _async_enable_ts(bundle: Bundle) -> float | None:
    """When ``percpu_enable_async`` (a ``subsys_initcall``) had run, on the trace's clock: the
    boot log's first line printed after every subsys_initcall, if the bundle has the log."""
    p = bundle.files.get("dmesg")
    if p is None:
        return None
    from localmap.ingest.procfs import subsys_initcalls_done_ts
    from localmap.ingest.textfile import read_text
    return subsys_initcalls_done_ts(read_text(p))


def _vmalloc_check(bundle: Bundle, p: Percpu) -> dict | None:
    """/proc/vmallocinfo was read at the end: its ``pcpu_get_vm_areas`` areas must be exactly
    the groups of the dynamic chunks the model still has (base_addr + group offset, size)."""
    areas = bundle.vmallocinfo
    if areas is None:
        return None
    from localmap.ingest.procfs import percpu_vm_areas
    kernel = sorted((a.start, a.end - a.start) for a in percpu_vm_areas(areas))
    model = sorted((c.base_addr + off, size) for c in p.chunks_by_base.values()
                   for off, size in zip(p.ai.group_offsets, p.ai.group_sizes))
    return {"kernel_areas": len(kernel), "model_areas": len(model), "ok": kernel == model,
            "tests": TRACE_COMPLETENESS,
            "only_kernel": [f"{a:x}+{n}" for a, n in sorted(set(kernel) - set(model))][:8],
            "only_model": [f"{a:x}+{n}" for a, n in sorted(set(model) - set(kernel))][:8]}


def _meminfo_check(bundle: Bundle, history: list[tuple[int, int, int]], final_pages: int,
                   per_page: int, tests: str) -> list[dict]:
    """/proc/meminfo's Percpu against a population history ``(events, line, pages)``.

    The phases were read in order, each at an unknown point of the trace: each must be reached
    after the one before it (the earliest point that fits is taken, which leaves the most room
    for the phases after it); the last phase was read after the workload, when the trace was
    complete, and must equal the final state."""
    out = []
    phases = bundle.meminfo
    pos = 0
    for i, (phase, val) in enumerate(phases):
        row = {"phase": phase, "meminfo_bytes": val, "tests": tests}
        if i == len(phases) - 1:
            model = final_pages * per_page
            row.update(model_bytes=model, kind="final state", ok=model == val, line=None)
        else:
            j = next((k for k in range(pos, len(history)) if history[k][2] * per_page == val),
                     None)
            if j is not None:
                pos = j
            row.update(model_bytes=val if j is not None else None,
                       kind="reached, after the phases before it", ok=j is not None,
                       line=history[j][1] or None if j is not None else None)
        out.append(row)
    return out
