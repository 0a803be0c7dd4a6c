"""Replay of a real percpu trace through the allocator model, predicting every decision.

Steps, in order (each is reported):

1. **Geometry.** The first chunk's static/reserved/dynamic split and unit size are derived from
   the kernel config (PERCPU_MODULE_RESERVE, PERCPU_DYNAMIC_RESERVE/EARLY_SIZE), the static
   size and the possible CPU count, by :func:`~localmap.mm.percpu.first_chunk_alloc_info`, and
   compared with the dmesg first-chunk line. The kernel's own line wins if they differ (and the
   difference is reported).
2. **Addresses.** The first chunk is the lowest chunk address the trace uses without a
   ``percpu_create_chunk`` (embed: linear map; page: near VMALLOC_START; dynamic chunks are
   placed top-down from VMALLOC_END). ``pcpu_base_addr`` follows from the geometry and
   ``__per_cpu_start`` from any event's ``ptr`` (checked against kallsyms when present).
3. **Starting occupancy.** Allocations made before tracing started never appear. The model
   starts from the emptiest state consistent with the trace: an area is assumed allocated
   before tracing only when (a) the trace frees an offset it never allocated (an area starts
   there), or (b) the kernel placed an allocation above free space the model would have used
   first, and that space is untouched by any earlier traced event. Learned in a first pass over
   the trace (kernel answers applied, no scoring); the second pass scores predictions from the
   reconstructed start. No other free parameter.
4. **Replay.** Chunk creation and destruction come from the trace (the balance work is
   asynchronous); the balance work itself runs as an explicit step when the model schedules it
   and whenever the trace shows it ran. For each ``percpu_alloc_percpu`` the model predicts
   (chunk, offset) first, then applies the kernel's answer so it stays in step.
5. **Races.** The allocation tracepoint fires after the allocator drops its lock and ftrace
   orders events by timestamp, so an allocation can be printed after events that happened
   after it took its area: another task's allocation, or frees (softirq, or PREEMPT_RT's
   ``rcuc`` threads preempting the allocating task). When a prediction misses, the replay tries
   the allocator's order on a snapshot — the next allocation first (another task, within
   :data:`RACE_WINDOW_S`, exactly the model's prediction), or this allocation before the frees
   of other tasks printed within :data:`RACE_WINDOW_S` whose space the model would reuse — and
   keeps it only if the model then agrees; such reorderings are counted (``race_swaps``).

Deliberate differences: the model cannot see when the kernel's balance work really ran; it
runs it right after the event that scheduled it (and when the trace shows a chunk created or
destroyed by it).
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.ingest.bundle import Bundle, load_bundle
from localmap.ingest.trace import ALLOC, ALLOC_FAIL, CREATE, DESTROY, FREE, PcpuEvent, read_trace
from localmap.mm.percpu import (MASK64, PAGE_SIZES, PCPU_MIN_ALLOC_SIZE, Percpu, PcpuAllocError, PcpuChunk,
                                find_next_bit, first_chunk_alloc_info,
                                pcpu_build_alloc_info)
from localmap.progress import Progress, as_progress

RACE_WINDOW_S = 0.010

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
    swaps: int
    disagreements: list[Disagreement]
    reconstruction: dict
    decisions: list[tuple[int, int | None, int | None]]
    timeline: list[tuple[float, int, int, int, int]]   # ts, alloc index, used bytes, chunks, populated pages
    meminfo_check: list[dict]
    vmalloc_check: dict | None
    base_info: dict
    seconds: float
    parse_seconds: float

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

    def final_state(self) -> dict:
        p = self.percpu
        chunks = []
        for c in p.chunks:
            areas = c.areas()
            hidden = (1 if c.start_offset else 0) + (1 if c.end_offset else 0)
            free_runs = _free_runs(c)
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
            "disagreements": [d.as_dict() for d in self.disagreements],
            "disagreement_causes": dict(self.causes()),
            "reconstruction": self.reconstruction,
            "final_state": self.final_state(),
            "meminfo_check": self.meminfo_check,
            "vmalloc_check": self.vmalloc_check,
            "seconds": self.seconds, "parse_seconds": self.parse_seconds,
        }

    def write_decisions(self, path: Path | str) -> None:
        with open(path, "w") as fh:
            for idx, base, off in self.decisions:
                if base is None:
                    fh.write(f"{idx}\tnone\t-1\n")
                else:
                    fh.write(f"{idx}\t{base:x}\t{off}\n")


def _free_runs(c: PcpuChunk) -> list[int]:
    runs = []
    m = c.alloc_map
    bits = c.map_bits
    i = 0
    from localmap.mm.percpu import find_next_zero_bit
    i = find_next_zero_bit(m, bits, 0)
    while i < bits:
        j = find_next_bit(m, bits, i)
        runs.append(j - i)
        i = find_next_zero_bit(m, bits, j)
    return runs


# ---------------------------------------------------------------------------------------------
# geometry and addresses
# ---------------------------------------------------------------------------------------------

def derive_geometry(bundle: Bundle, page_size: int | None = None,
                    nr_cpus: int | None = None) -> FirstChunkGeometry:
    fc = bundle.first_chunk
    cfg = bundle.config
    notes: list[str] = []
    if nr_cpus is None:
        nr_cpus = bundle.nr_possible_cpus
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
    static = fc.static_size
    kb = bundle.kallsyms_percpu_bounds
    if kb is None and bundle.kallsyms_path is not None:
        notes.append(f"{bundle.kallsyms_path}: no __per_cpu_start/__per_cpu_end (not a "
                     "kallsyms of this kernel, or read without root): chunks located without it")
    if kb is not None and kb[1] - kb[0] != static:
        notes.append(f"kallsyms gives a static size of {kb[1] - kb[0]}, dmesg {static}")
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
                    page_size, nr_cpus, fc.text, derived or {}, matches, notes)


def _build_percpu(geo: FirstChunkGeometry, pcpu_base: int, per_cpu_start: int,
                  listener=None) -> Percpu:
    """The model machine with the kernel's printed split (equal to the derived one when the
    config allowed a derivation)."""
    ai = pcpu_build_alloc_info(geo.static_size, geo.reserved_size, geo.dyn_size, geo.page_size,
                               geo.nr_cpus, geo.page_size, None, dynamic_early_size=0)
    if ai.unit_size != geo.unit_size or ai.dyn_size != geo.dyn_size:
        raise LocalmapError(f"the kernel's first chunk (s{geo.static_size} r{geo.reserved_size} "
                            f"d{geo.dyn_size} u{geo.unit_size}) is not a geometry "
                            f"pcpu_build_alloc_info can produce for {geo.nr_cpus} CPUs and "
                            f"{geo.page_size // 1024}K pages")
    return Percpu(ai, mode=geo.mode, base_addr=pcpu_base, per_cpu_start=per_cpu_start,
                  listener=listener)


def _addresses(events: list[PcpuEvent], geo: FirstChunkGeometry, bundle: Bundle, path: str) -> dict:
    created = set()
    uncreated: dict[int, PcpuEvent] = {}
    nonreserved_bases = set()
    ptr_delta = None
    for e in events:
        if e.kind == CREATE:
            created.add(e.base_addr)
        elif e.kind in (ALLOC, FREE):
            if e.base_addr not in created and e.base_addr not in uncreated:
                uncreated[e.base_addr] = e
            if e.kind == ALLOC and not e.reserved and e.base_addr not in created:
                nonreserved_bases.add(e.base_addr)
            d = (e.ptr - e.base_addr - e.off) & MASK64
            if ptr_delta is None:
                ptr_delta = d
            elif d != ptr_delta:
                raise LocalmapError(
                    f"ptr={e.ptr:x} is not base_addr+off shifted by the same constant as "
                    f"earlier events (expected {(e.base_addr + e.off + ptr_delta) & MASK64:x}); the trace "
                    "mixes boots or pointers are corrupted", path, e.line)
    if ptr_delta is None:
        raise LocalmapError("trace has no allocation or free to locate the chunks", path)
    ps = geo.page_size
    s_al = (geo.static_size + PCPU_MIN_ALLOC_SIZE - 1) & ~(PCPU_MIN_ALLOC_SIZE - 1)
    kb = bundle.kallsyms_percpu_bounds
    fc_base = None
    how = ""
    if kb is not None:
        pcpu_base = (kb[0] - ptr_delta) & MASK64
        fc_base = pcpu_base + ((s_al + geo.reserved_size) & ~(ps - 1))
        how = "kallsyms __per_cpu_start and the events' ptr"
    else:
        # (with 16K/64K pages the reserved and first chunks share one base_addr)
        cands = sorted(b for b in uncreated if b in nonreserved_bases) or sorted(uncreated)
        if not cands:
            raise LocalmapError("cannot tell which chunk is the first chunk (no allocation in "
                                "a chunk the trace did not create)", path)
        fc_base = cands[0]
        pcpu_base = fc_base - ((s_al + geo.reserved_size) & ~(ps - 1))
        how = "lowest chunk address used without percpu_create_chunk"
    res_base = pcpu_base + (s_al & ~(ps - 1)) if geo.reserved_size else None
    per_cpu_start = (ptr_delta + pcpu_base) & MASK64
    return {"pcpu_base_addr": pcpu_base, "first_chunk_base": fc_base,
            "reserved_chunk_base": res_base, "per_cpu_start": per_cpu_start,
            "first_chunk_found_by": how, "uncreated": sorted(uncreated),
            "kallsyms_per_cpu_start": kb[0] if kb else None}


# ---------------------------------------------------------------------------------------------
# the replay engine
# ---------------------------------------------------------------------------------------------

def _key(chunk: PcpuChunk) -> tuple[int, bool]:
    """Identifies a chunk across passes (the reserved and first chunk may share base_addr)."""
    return (chunk.base_addr, chunk.is_reserved)


class _Engine:
    """One pass over the events. ``learn`` = reconstruction pass (no scoring, learns areas)."""

    def __init__(self, events, geo, addr, path, learn: bool, pretrace: dict, listener=None,
                 progress=None):
        self.events = events
        self.geo = geo
        self.addr = addr
        self.path = path
        self.learn = learn
        self.pretrace = pretrace            # chunk key -> sorted list of (bit_off, bits)
        self.p = _build_percpu(geo, addr["pcpu_base_addr"], addr["per_cpu_start"], listener)
        self.touched: dict[tuple, int] = {}  # chunk key -> bitmap of 4-byte units seen in trace
        self.partial_chunks: set[tuple] = set()
        self.untraced_starts: dict[int, list[int]] = {}
        self.pre_bits: dict[tuple, int] = {}
        self.stopped_at: int | None = None
        self.recent_frees: deque = deque(maxlen=8)
        self._pos = 0
        self.pre_starts: dict[tuple, set[int]] = {}
        self.progress = progress
        fc = self.p.first_chunk
        if fc.base_addr != addr["first_chunk_base"]:
            raise LocalmapError(f"first chunk base {fc.base_addr:#x} computed from the geometry "
                                f"differs from the trace's {addr['first_chunk_base']:#x}", path)
        # pre-trace areas
        # pre-trace areas of the first/reserved chunk now; those of chunks that existed before
        # tracing but appear later are forced when the trace first shows them (as in the
        # reconstruction pass)
        self._pending_pretrace = dict(pretrace)
        for c in self.p.chunks:
            for bit_off, bits in self._pending_pretrace.pop(_key(c), ()):
                self._force_area(c, bit_off, bits)
        # results
        self.decisions: list = []
        self.disagreements: list[Disagreement] = []
        self.agree = self.agree_na = self.n_na = self.agree_at = self.n_at = 0
        self.swaps = 0
        self.counts = Counter()
        self.timeline: list = []
        self.used = 0
        self.learned: list[dict] = []
        self.last_populated = self.p.nr_populated
        self.populated_seen = {self.p.nr_populated}

    # -- helpers --
    def _adopt_chunk(self, base: int) -> PcpuChunk:
        """A dynamic chunk that existed before tracing started (partial replay)."""
        p = self.p
        chunk = p.create_chunk(base)
        p.populate(chunk, 0, chunk.nr_pages)
        self.partial_chunks.add(_key(chunk))
        for bit_off, bits in self._pending_pretrace.pop(_key(chunk), ()):
            self._force_area(chunk, bit_off, bits)
        return chunk

    def _force_area(self, chunk: PcpuChunk, bit_off: int, bits: int) -> None:
        """Allocate exactly [bit_off, bit_off + bits), freeing any model area in the way (but
        never the areas that hide the first chunk's start and end)."""
        p = self.p
        if (chunk.alloc_map >> bit_off) & ((1 << bits) - 1):
            end_hidden = chunk.map_bits - chunk.end_offset // PCPU_MIN_ALLOC_SIZE
            for a_off, a_bits in chunk.areas():
                hidden = (a_off == 0 and chunk.start_offset) or a_off >= end_hidden
                if a_off < bit_off + bits and bit_off < a_off + a_bits and not hidden:
                    p.free_area(chunk, a_off * PCPU_MIN_ALLOC_SIZE)
        p.alloc_area_commit(chunk, bit_off, bits)

    def _touch(self, key: tuple, off: int, size: int) -> None:
        """Mark bytes as seen in the trace."""
        n = -(-size // PCPU_MIN_ALLOC_SIZE)
        self.touched[key] = self.touched.get(key, 0) | (((1 << n) - 1) << (off // 4))

    def _check_off(self, e: PcpuEvent, chunk: PcpuChunk | None) -> None:
        """An offset outside every chunk at that base_addr is corrupt input, not a new chunk."""
        p = self.p
        if chunk is None:
            for c in (p.first_chunk, p.reserved_chunk):
                if c is not None and c.base_addr == e.base_addr:
                    raise LocalmapError(
                        f"off={e.off} is outside the {'reserved' if c.is_reserved else 'first'}"
                        f" chunk at base_addr={e.base_addr:x} (it serves offsets "
                        f"{c.start_offset}..{c.nr_pages * p.page_size - c.end_offset})",
                        self.path, e.line)
        elif not 0 <= e.off < chunk.nr_pages * p.page_size or e.off % PCPU_MIN_ALLOC_SIZE:
            raise LocalmapError(f"off={e.off} is not a 4-byte aligned offset inside the "
                                f"{p.unit_size}-byte chunk at base_addr={e.base_addr:x}",
                                self.path, e.line)

    def _chunk(self, e: PcpuEvent) -> PcpuChunk:
        c = self.p.find_chunk(e.base_addr, e.off, e.reserved if e.kind == ALLOC else None)
        self._check_off(e, c)
        if c is None:
            c = self._adopt_chunk(e.base_addr)
        return c

    def _run_balance(self, create_base: int | None = None) -> PcpuChunk | None:
        """Run the balance work. It creates a chunk only with the trace's base address, and
        destroys a chunk only if the next event of the trace about that chunk is its
        ``percpu_destroy_chunk`` (the kernel frees spare chunks before it reclaims and
        populates, so the destruction must happen here, in its place)."""
        made = []

        def create():
            if create_base is not None and not made:
                c = self.p.create_chunk(create_base)
                made.append(c)
                return c
            return None

        def destroy(c: PcpuChunk) -> bool:
            idx = self.touches.get(c.base_addr, ())
            k = bisect.bisect_right(idx, self._cur)
            if k < len(idx) and self.events[idx[k]].kind == DESTROY:
                self.destroyed_early.add(c.base_addr)
                return True
            return False
        self.p.balance(create=create, destroy=destroy)
        return made[0] if made else None

    def _destroy(self, e: PcpuEvent) -> None:
        """``percpu_destroy_chunk``: the model's balance work may have done it already."""
        p = self.p
        if e.base_addr in self.destroyed_early:
            self.destroyed_early.discard(e.base_addr)
            return
        c = p.chunks_by_base.get(e.base_addr)
        if c is None:
            what = ("the first or reserved chunk" if p.find_chunk(e.base_addr)
                    else "not a live chunk")
            raise LocalmapError(f"percpu_destroy_chunk of {e.base_addr:#x}, which is {what}",
                                self.path, e.line)
        if p.balance_pending:
            self._run_balance()
        if e.base_addr in self.destroyed_early:
            self.destroyed_early.discard(e.base_addr)
            return
        if c.free_bytes != p.unit_size:
            self.counts["destroy_not_free"] += 1
        p.destroy_chunk(c)

    # -- events --
    def _prescan_untraced_frees(self) -> None:
        """Offsets freed before the trace ever allocated them, per base_addr: each starts an
        area allocated before tracing, and bounds the area freed before it."""
        created: set[int] = set()
        allocated: set[tuple[int, int]] = set()
        self.untraced_starts = {}
        for e in self.events:
            if e.kind == CREATE:
                created.add(e.base_addr)
            elif e.base_addr in created:
                continue
            elif e.kind == ALLOC:
                allocated.add((e.base_addr, e.off))
            elif e.kind == FREE and (e.base_addr, e.off) not in allocated:
                self.untraced_starts.setdefault(e.base_addr, []).append(
                    e.off // PCPU_MIN_ALLOC_SIZE)
        for v in self.untraced_starts.values():
            v.sort()

    def _predict_in(self, chunk: PcpuChunk, bits: int, bit_align: int, atomic: bool):
        p = self.p
        off = p.find_block_fit(chunk, bits, bit_align, atomic)
        if off < 0:
            return None
        off = p.alloc_area_search(chunk, bits, bit_align, off)
        return None if off < 0 else off

    def _learnable(self) -> bool:
        """Whether any chunk whose life began before tracing still has untouched free space
        (only there can the trace still reveal pre-trace areas)."""
        p = self.p
        if self._pos <= self.last_adoption:
            return True
        for c in p.chunks:
            key = _key(c)
            if not (c.is_first or c.is_reserved or key in self.partial_chunks):
                continue
            if c.is_reserved and self._pos > self.last_reserved_alloc:
                continue                     # no reserved allocation left to reveal anything
            free = ~c.alloc_map & ((1 << c.map_bits) - 1)
            if free & ~self.touched.get(key, 0):
                return True
        return False

    def run(self) -> None:
        """One pass. The reconstruction pass (``learn``) applies the kernel's answers,
        learns pre-trace areas and stops as soon as nothing is left to learn."""
        if self.learn:
            self._prescan_untraced_frees()
            self.last_reserved_alloc = max(
                (i for i, e in enumerate(self.events) if e.kind == ALLOC and e.reserved),
                default=-1)
            # chunks older than the trace that first show up later can still teach something
            created, first_seen = set(), {}
            for i, e in enumerate(self.events):
                if e.kind == CREATE:
                    created.add(e.base_addr)
                elif e.kind in (ALLOC, FREE) and e.base_addr not in created:
                    first_seen.setdefault(e.base_addr, i)
            self.last_adoption = max(first_seen.values(), default=-1)
        events = self.events
        n = len(events)
        i = 0
        alloc_index = 0
        p = self.p
        self.touches: dict[int, list[int]] = {}
        for j, ev in enumerate(events):
            if ev.kind != ALLOC_FAIL:
                self.touches.setdefault(ev.base_addr, []).append(j)
        self.destroyed_early: set[int] = set()
        while i < n:
            e = events[i]
            k = e.kind
            self._cur = i
            if k == ALLOC:
                nxt = None
                if self.learn and not (i & 0x1FF) and i:
                    self._pos = i
                    if not self._learnable():
                        self.stopped_at = i
                        break
                if not self.learn:
                    # look ahead for a racing allocation printed in the other order
                    j = i + 1
                    if j < n and events[j].kind == ALLOC and \
                            (events[j].cpu, events[j].pid) != (e.cpu, e.pid) and \
                            events[j].ts - e.ts <= RACE_WINDOW_S:
                        nxt = events[j]
                consumed = self._alloc(e, alloc_index, nxt, alloc_index + 1)
                alloc_index += consumed
                i += consumed
                if p.balance_pending:
                    self._run_balance()
                if p.nr_populated != self.last_populated:
                    self.last_populated = p.nr_populated
                    self.populated_seen.add(p.nr_populated)
                if self.progress and not (i & 0x3FF):
                    self.progress(i)
                continue
            if k == FREE:
                self._free(e)
            elif k == CREATE:
                self.counts["create"] += 1
                if e.base_addr in p.chunks_by_base:
                    raise LocalmapError(f"percpu_create_chunk of {e.base_addr:#x}, which is "
                                        "already a live chunk", self.path, e.line)
                c = self._run_balance(create_base=e.base_addr)
                if c is None:
                    p.create_chunk(e.base_addr)
                    self.counts["create_unexpected"] += 1
            elif k == DESTROY:
                self.counts["destroy"] += 1
                self._destroy(e)
            elif k == ALLOC_FAIL:
                self.counts["fail"] += 1
                try:
                    found = p.pcpu_alloc_search(e.size, e.align, e.reserved, e.is_atomic)
                except PcpuAllocError:
                    found = None
                if found is not None and not self.learn:
                    self.counts["fail_disagree"] += 1
            if p.balance_pending:
                self._run_balance()
            if p.nr_populated != self.last_populated:
                self.last_populated = p.nr_populated
                self.populated_seen.add(p.nr_populated)
            i += 1
        if self.progress:
            self.progress(n)

    def _predict(self, e: PcpuEvent):
        p = self.p
        try:
            found = p.pcpu_alloc_search(e.size, e.align, e.reserved, e.is_atomic)
        except PcpuAllocError as exc:
            raise LocalmapError(exc.message, self.path, e.line) from None
        return found

    def _alloc(self, e: PcpuEvent, idx: int, nxt: PcpuEvent | None, nidx: int) -> int:
        chunk = self._chunk(e)
        found = self._predict(e)
        pred = None if found is None else (found[0].base_addr, found[1] * PCPU_MIN_ALLOC_SIZE)
        kern = (e.base_addr, e.off)
        if self.learn:
            n = 0
            while pred != kern and found is not None and n < 64 and self._learn(e, found):
                found = self._predict(e)
                pred = None if found is None else (found[0].base_addr,
                                                   found[1] * PCPU_MIN_ALLOC_SIZE)
                n += 1
        if pred != kern and nxt is not None and pred == (nxt.base_addr, nxt.off):
            # racing pair printed in the other order: replay nxt first, then e
            if self._try_swap(e, nxt, idx, nidx):
                return 2
            chunk = self._chunk(e)
        if pred != kern and found is not None and not self.learn:
            # an allocation that took the lock before a free printed ahead of it
            if self._try_before_frees(e, idx, found):
                return 1
            chunk = self._chunk(e)
        self._score(e, idx, pred, kern, chunk)
        self._apply(e, chunk, found if pred == kern else None)
        return 1

    def _by_key(self, key: tuple[int, bool]) -> PcpuChunk | None:
        return self.p.find_chunk(key[0], reserved=key[1])

    def _trial(self, steps) -> bool:
        """Run ``steps`` (callables returning True when the model agrees) on a snapshot that is
        always restored: trials never reach the listener."""
        p = self.p
        snap = p.snapshot()
        try:
            return all(step() for step in steps)
        finally:
            p.restore(snap)

    def _matches(self, e: PcpuEvent) -> bool:
        f = self._predict(e)
        if f is None or (f[0].base_addr, f[1] * PCPU_MIN_ALLOC_SIZE) != (e.base_addr, e.off):
            return False
        self.p.alloc_area_commit(f[0], f[1], -(-e.size // PCPU_MIN_ALLOC_SIZE))
        return True

    def _try_swap(self, e, nxt, idx, nidx) -> bool:
        """Two allocations from different CPUs printed in the other order than taken."""
        if not self._trial([lambda: self._matches(nxt), lambda: self._matches(e)]):
            return False
        for ev, i in ((nxt, nidx), (e, idx)):
            c = self._chunk(ev)
            f = self._predict(ev)
            self._score(ev, i, (f[0].base_addr, f[1] * PCPU_MIN_ALLOC_SIZE),
                        (ev.base_addr, ev.off), c)
            self._apply(ev, c, f)
        self.swaps += 1
        return True

    def _try_before_frees(self, e: PcpuEvent, idx: int, found) -> bool:
        """Frees printed just before ``e`` from other CPUs may have happened after it took the
        allocator lock (the allocation's tracepoint fires after the lock is dropped). While the
        model would reuse space such a free released, take that free back; if the model then
        agrees, replay the allocation first and those frees after it."""
        p = self.p
        bits = -(-e.size // PCPU_MIN_ALLOC_SIZE)
        window = [f for f in self.recent_frees
                  if f[1] != (e.cpu, e.pid) and 0 <= e.ts - f[0] <= RACE_WINDOW_S]
        if not window:
            return False
        taken: list = []

        def search() -> bool:
            f = found
            for _ in range(len(window) + 1):
                if f is None:
                    return False
                if (f[0].base_addr, f[1] * PCPU_MIN_ALLOC_SIZE) == (e.base_addr, e.off):
                    return bool(taken)
                hit = [fr for fr in window if fr not in taken and self._by_key(fr[2]) is f[0]
                       and fr[3] < f[1] + bits and f[1] < fr[3] + fr[4]]
                if not hit:
                    return False
                for fr in hit:
                    c = self._by_key(fr[2])
                    if not p.area_is_free(c, fr[3] * PCPU_MIN_ALLOC_SIZE,
                                          fr[4] * PCPU_MIN_ALLOC_SIZE):
                        return False
                    p.alloc_area_commit(c, fr[3], fr[4])
                    taken.append(fr)
                f = self._predict(e)
            return False
        if not self._trial([search]):
            return False
        for fr in taken:
            p.alloc_area_commit(self._by_key(fr[2]), fr[3], fr[4])
        c = self._chunk(e)
        f = self._predict(e)
        self._score(e, idx, (f[0].base_addr, f[1] * PCPU_MIN_ALLOC_SIZE), (e.base_addr, e.off), c)
        self._apply(e, c, f)
        for fr in taken:
            p.free_in_chunk(self._by_key(fr[2]), fr[3] * PCPU_MIN_ALLOC_SIZE)
            self.recent_frees.remove(fr)
        self.swaps += 1
        return True

    def _score(self, e, idx, pred, kern, chunk) -> None:
        if self.learn:
            return
        self.decisions.append((idx, None if pred is None else pred[0],
                               None if pred is None else pred[1]))
        ok = pred == kern
        if e.is_atomic:
            self.n_at += 1
            self.agree_at += ok
        else:
            self.n_na += 1
            self.agree_na += ok
        self.agree += ok
        if ok:
            return
        p = self.p
        if _key(chunk) in self.partial_chunks:
            cause = "unknown-chunk"
        elif pred is None:
            cause = "no-space-in-model"
        elif not p.area_is_free(chunk, e.off, e.size):
            cause = "occupied-in-model"
            if self._overlaps_pretrace(_key(chunk), e.off, e.size):
                cause = "pre-trace-area"
        elif pred[0] != kern[0]:
            cause = "other-chunk"
        else:
            cause = "other-offset"
        self.disagreements.append(Disagreement(idx, e.line, cause, e.size, e.align,
                                               e.is_atomic, kern, pred, e.call_site))

    def _overlaps_pretrace(self, key, off, size) -> bool:
        for a, bits in self.pretrace.get(key, ()):
            if a * 4 < off + size and off < (a + bits) * 4:
                return True
        return False

    def _apply(self, e: PcpuEvent, chunk: PcpuChunk, found) -> None:
        """Apply the kernel's answer (``found`` = the model's matching search result)."""
        p = self.p
        bits = -(-e.size // PCPU_MIN_ALLOC_SIZE)
        if e.off % PCPU_MIN_ALLOC_SIZE or e.off < 0 or \
                e.off + bits * PCPU_MIN_ALLOC_SIZE > chunk.map_bits * PCPU_MIN_ALLOC_SIZE:
            raise LocalmapError(f"off={e.off} size={e.size} does not fit chunk "
                                f"{chunk.base_addr:#x} of {p.unit_size} bytes", self.path, e.line)
        if found is None:
            bit_off = e.off // PCPU_MIN_ALLOC_SIZE
            if not p.area_is_free(chunk, e.off, e.size):
                if not (self.learn and self._carve(chunk, bit_off, bits)):
                    self._force_area(chunk, bit_off, bits)
                    p.free_area(chunk, e.off)
        else:
            bit_off = found[1]
        self._touch(_key(chunk), e.off, e.size)
        p.commit_alloc(chunk, bit_off, e.size, e.is_atomic)
        self.used += bits * PCPU_MIN_ALLOC_SIZE
        self.counts["alloc"] += 1
        if not self.learn and not (self.counts["alloc"] & 0x3F):
            self.timeline.append((e.ts, self.counts["alloc"], self.used, p.nr_chunks,
                                  p.nr_populated))

    def _free(self, e: PcpuEvent) -> None:
        p = self.p
        self.counts["free"] += 1
        chunk = self.p.find_chunk(e.base_addr, e.off)
        self._check_off(e, chunk)
        if chunk is None:
            chunk = self._adopt_chunk(e.base_addr)
            self._check_off(e, chunk)
        bit_off = e.off // PCPU_MIN_ALLOC_SIZE
        untraced = False
        is_start = (chunk.bound_map >> bit_off) & 1 and (chunk.alloc_map >> bit_off) & 1
        if not is_start or e.off % PCPU_MIN_ALLOC_SIZE:
            known = (_key(chunk) in self.partial_chunks or chunk.is_first or chunk.is_reserved)
            untouched = not ((self.touched.get(_key(chunk), 0) >> bit_off) & 1)
            if self.learn and known and untouched:
                self._learn_free(chunk, bit_off)
                untraced = True
            else:
                raise LocalmapError(
                    f"free of base_addr={e.base_addr:x} off={e.off}: no area was allocated "
                    "there (never allocated in the trace, or freed twice)", self.path, e.line)
        if self.learn and (self.pre_bits.get(_key(chunk), 0) >> bit_off) & 1:
            untraced = True        # an area learned as used before tracing
        size = p.free_in_chunk(chunk, e.off)
        if not self.learn:
            self.recent_frees.append((e.ts, (e.cpu, e.pid), _key(chunk),
                                      bit_off, size // PCPU_MIN_ALLOC_SIZE))
        # an untraced area's extent is a guess: only its start is known for sure, so the rest
        # stays open to later evidence (an allocation that does not use it)
        self._touch(_key(chunk), e.off, PCPU_MIN_ALLOC_SIZE if untraced else size)
        self.used -= size
        if not self.learn and not (self.counts["free"] & 0x3F):
            self.timeline.append((e.ts, self.counts["alloc"], self.used, p.nr_chunks,
                                  p.nr_populated))

    # -- reconstruction (learn pass) --
    def _record(self, key, bit_off, bits, why, line):
        self.pre_bits[key] = self.pre_bits.get(key, 0) | (((1 << bits) - 1) << bit_off)
        self.pre_starts.setdefault(key, set()).add(bit_off)
        self.learned.append({"base_addr": f"{key[0]:x}", "reserved": key[1],
                             "off": bit_off * 4, "size": bits * 4, "evidence": why,
                             "line": line})

    def _learn(self, e: PcpuEvent, found: tuple[PcpuChunk, int]) -> bool:
        """The kernel did not use the window the model would: part of it was used before
        tracing. Only space no traced event has touched, in a chunk older than the trace, can
        be that part; the correction is the smallest that reads as "the untraced areas next to
        it were shorter than guessed": the last untouched run of the window, extended up to
        the next allocated byte (or the kernel's own area). Returns whether it learned."""
        p = self.p
        chunk, m_off = found
        key = _key(chunk)
        if not (chunk.is_first or chunk.is_reserved or key in self.partial_chunks):
            return False
        touched = self.touched.get(key, 0)
        w_end = m_off + -(-e.size // PCPU_MIN_ALLOC_SIZE)
        u = w_end - 1
        while u >= m_off and (touched >> u) & 1:
            u -= 1
        if u < m_off:
            return False
        end = find_next_bit(chunk.alloc_map, chunk.map_bits, u)
        if chunk.base_addr == e.base_addr and chunk.is_reserved == e.reserved and \
                e.off // PCPU_MIN_ALLOC_SIZE > u:
            end = min(end, e.off // PCPU_MIN_ALLOC_SIZE)    # the kernel's area was free
        lo = u
        while lo > m_off and not (touched >> (lo - 1)) & 1:
            lo -= 1
        while lo > 0 and lo == m_off and not (chunk.alloc_map >> (lo - 1)) & 1 and \
                not (touched >> (lo - 1)) & 1:
            lo -= 1
        hi = u + 1
        while hi < end and not (touched >> hi) & 1:
            hi += 1
        edges = [lo] + [x for x in self.untraced_starts.get(chunk.base_addr, ())
                        if lo < x < hi] + [hi]
        for a, b in zip(edges, edges[1:]):       # areas the trace frees start apart
            self._record(key, a, b - a, f"alloc at off={e.off} did not use it", e.line)
            p.alloc_area_commit(chunk, a, b - a)
        return True

    def _carve(self, chunk: PcpuChunk, bit_off: int, bits: int) -> bool:
        """The kernel allocated inside space learned as used before tracing: that space was
        free after all. Cut the window out of the learned areas (reconstruction pass only)."""
        key = _key(chunk)
        mask = ((1 << bits) - 1) << bit_off
        pre = self.pre_bits.get(key, 0)
        overlap = chunk.alloc_map & mask
        if overlap & ~pre or overlap & self.touched.get(key, 0):
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
        self.pre_bits[key] = pre & ~(mask & ~self.touched.get(key, 0))
        self.learned.append({"base_addr": f"{chunk.base_addr:x}", "reserved": chunk.is_reserved,
                             "off": bit_off * 4, "size": -bits * 4,
                             "evidence": "allocated by the kernel: was free after all",
                             "line": None})
        return True

    def _learn_free(self, chunk: PcpuChunk, bit_off: int) -> None:
        """A free of an untraced area: an area began there; it ends at the next known edge
        (the next offset the trace frees without allocating it, the next allocated or traced
        byte, the end of the chunk)."""
        p = self.p
        key = _key(chunk)
        cuts = [bit_off] + [u for u in self.untraced_starts.get(
            chunk.base_addr, ()) if u > bit_off]
        if (chunk.alloc_map >> bit_off) & 1:
            # inside an area learned earlier: split it at bit_off and at later untraced starts
            start = bit_off
            while start > 0 and not (chunk.bound_map >> start) & 1:
                start -= 1
            end = find_next_bit(chunk.bound_map, chunk.map_bits + 1, bit_off + 1)
            p.free_area(chunk, start * PCPU_MIN_ALLOC_SIZE)
            edges = [start] + [c for c in cuts if start < c < end] + [end]
            for lo, hi in zip(edges, edges[1:]):
                p.alloc_area_commit(chunk, lo, hi - lo)
            self.learned.append({"base_addr": f"{chunk.base_addr:x}",
                                 "reserved": chunk.is_reserved, "off": bit_off * 4,
                                 "size": (edges[edges.index(bit_off) + 1] - bit_off) * 4,
                                 "evidence": "free of an area never allocated in the trace",
                                 "line": None})
            self._split_pretrace(key, edges[1:-1])
            return
        end = find_next_bit(chunk.alloc_map | self.touched.get(key, 0), chunk.map_bits,
                            bit_off + 1)
        end = min(end, chunk.map_bits - chunk.end_offset // PCPU_MIN_ALLOC_SIZE)
        for c in cuts[1:]:
            if c < end:
                end = c
                break
        self._record(key, bit_off, end - bit_off,
                     "free of an area never allocated in the trace", None)
        p.alloc_area_commit(chunk, bit_off, end - bit_off)

    def _split_pretrace(self, key, cuts: list[int]) -> None:
        self.pre_starts.setdefault(key, set()).update(cuts)

    def learned_areas(self) -> dict[tuple, list[tuple[int, int]]]:
        """The reconstruction: runs of bits learned as used before tracing, split where the
        trace shows an area starting."""
        out = {}
        for key, bits in self.pre_bits.items():
            starts = self.pre_starts.get(key, set())
            areas = []
            i = find_next_bit(bits, bits.bit_length(), 0)
            n = bits.bit_length()
            while i < n:
                j = i + 1
                while j < n and (bits >> j) & 1 and j not in starts:
                    j += 1
                areas.append((i, j - i))
                i = find_next_bit(bits, n, j)
            out[key] = areas
        return out


def replay(source: Bundle | Path | str, *, listener=None, progress: Progress | None = None,
           page_size: int | None = None, nr_cpus: int | None = None) -> ReplayResult:
    """Replay a bundle (or a bare trace with its bundle files beside it). See module doc."""
    bundle = source if isinstance(source, Bundle) else load_bundle(source)
    path = str(bundle.trace_path)
    partial_reasons: list[str] = []
    t0 = time.perf_counter()
    prog = _Progress(progress, bundle.trace_path)
    with prog:
        trace = read_trace(bundle.trace_path, progress=prog.parse_update)
        t_parse = time.perf_counter() - t0
        if trace.lost_events:
            partial_reasons.append(f"{trace.lost_events} events lost by the tracer: "
                                   + "; ".join(trace.lost_detail[:3]))
        geo = derive_geometry(bundle, page_size, nr_cpus)
        events = trace.events
        addr = _addresses(events, geo, bundle, path)
        if addr["kallsyms_per_cpu_start"] is not None and \
                addr["kallsyms_per_cpu_start"] != addr["per_cpu_start"]:
            geo.notes.append("kallsyms __per_cpu_start differs from the trace's pointers")
        prog.phase("reconstructing pre-trace occupancy", len(events))
        learn = _Engine(events, geo, addr, path, learn=True, pretrace={},
                        progress=prog.replay_update)
        learn.run()
        pretrace = learn.learned_areas()
        prog.phase("replaying", len(events))
        eng = _Engine(events, geo, addr, path, learn=False, pretrace=pretrace, listener=listener,
                      progress=prog.replay_update)
        eng.run()
    eng.decisions.sort(key=lambda t: t[0])
    if eng.partial_chunks:
        partial_reasons.append(
            f"{len(eng.partial_chunks)} chunk(s) existed before tracing started and were never "
            "created in the trace: their occupancy and population are reconstructed from the "
            "events only")
    first_ts = events[0].ts if events else 0.0
    if first_ts > 5.0:
        partial_reasons.append(f"trace starts {first_ts:.1f}s after boot")
    recon = {
        "method": "emptiest start consistent with the trace: an area counts as allocated "
                  "before tracing only if the trace frees it without allocating it, or an "
                  "allocation landed above untouched free space the model would have used",
        "free_parameters": 0,
        "areas": learn.learned,
        "bytes_by_chunk": {f"{b:x}" + (" (reserved)" if r else ""): sum(n for _, n in v) * 4
                           for (b, r), v in pretrace.items()},
    }
    p = eng.p
    meminfo = _meminfo_check(bundle, p, eng.populated_seen, geo)
    res = ReplayResult(
        source=str(bundle.path), geometry=geo, percpu=p, partial=bool(partial_reasons),
        partial_reasons=partial_reasons, nr_events=len(events),
        nr_allocs=eng.n_na + eng.n_at, nr_frees=eng.counts["free"],
        nr_creates=eng.counts["create"], nr_destroys=eng.counts["destroy"],
        nr_fails=eng.counts["fail"], nr_fail_disagree=eng.counts["fail_disagree"], agree=eng.agree, agree_nonatomic=eng.agree_na,
        nr_nonatomic=eng.n_na, agree_atomic=eng.agree_at, nr_atomic=eng.n_at,
        swaps=eng.swaps, disagreements=eng.disagreements, reconstruction=recon,
        decisions=eng.decisions, timeline=eng.timeline, meminfo_check=meminfo,
        vmalloc_check=_vmalloc_check(bundle, p),
        base_info={k: (f"{v:x}" if isinstance(v, int) else v) for k, v in addr.items()
                   if k != "uncreated"},
        seconds=time.perf_counter() - t0, parse_seconds=t_parse)
    return res


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
            "only_kernel": [f"{a:x}+{n}" for a, n in sorted(set(kernel) - set(model))][:8],
            "only_model": [f"{a:x}+{n}" for a, n in sorted(set(model) - set(kernel))][:8]}


def _meminfo_check(bundle: Bundle, p: Percpu, populated_seen: set[int],
                   geo: FirstChunkGeometry) -> list[dict]:
    """Compare /proc/meminfo Percpu with the model's populated pages.

    The last phase was read after the workload, when the trace was complete: the model's final
    populated bytes must equal it. Earlier phases were read at unknown points of the trace: the
    check reports whether the model's populated count passed through that value.
    """
    out = []
    phases = bundle.meminfo
    if not phases:
        return out
    per_page = geo.page_size * p.ai.nr_units
    seen = {n * per_page for n in populated_seen}
    for i, (phase, val) in enumerate(phases):
        last = i == len(phases) - 1
        model = p.populated_bytes if last else None
        out.append({
            "phase": phase, "meminfo_bytes": val,
            "model_bytes": model,
            "kind": "final state" if last else "reached during the trace",
            "ok": (model == val) if last else (val in seen or val == p.populated_bytes),
        })
    return out


class _Progress:
    """Reports the parse and the two passes to a :class:`~localmap.progress.Progress`."""

    def __init__(self, progress: Progress | None, path):
        self._p = as_progress(progress)
        self.path = Path(path)

    def __enter__(self):
        total = None
        try:
            if self.path.suffix == ".gz":
                with open(self.path, "rb") as fh:
                    fh.seek(-4, 2)
                    total = int.from_bytes(fh.read(4), "little")
            else:
                total = self.path.stat().st_size
        except OSError:
            total = None
        self._p.start(f"parsing {self.path.name}", total=total)
        return self

    def __exit__(self, *exc):
        pass

    def parse_update(self, nbytes: int) -> None:
        self._p.update(nbytes)

    def phase(self, name: str, total: int) -> None:
        self._p.start(name, total=total)

    def replay_update(self, i: int) -> None:
        self._p.update(i)
