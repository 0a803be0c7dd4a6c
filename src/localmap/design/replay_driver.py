"""The design machine driven by the percpu allocator: the listener that feeds a replay's chunk
and page events to a :class:`~localmap.design.machine.DesignMachine` (or today's
:class:`~localmap.design.machine.BaselineMachine`).

Models the design's side of ``pcpu_create_chunk``/``pcpu_populate_chunk`` and their inverses: a
dynamic chunk is re-placed top-down in the global window and its pages are mapped in every
CPU's local window as the allocator populates them. Differs from the kernel in that the design's
first chunk is mapped in the global window and fully populated at boot (no embed mode).
"""

from __future__ import annotations

from typing import Any

from localmap.arch.arm64.pgtable import Geometry
from localmap.design.machine import DesignMachine
from localmap.errors import LocalmapError


class ReplayDriver:
    """A percpu-allocator listener that drives a DesignMachine of ``cpus`` CPUs.

    The design machine is built on the first event (the unit size comes from the allocator's
    chunks). The first chunk of the design is mapped in the global window and fully populated at
    boot (no embed mode); the allocator's first and reserved chunks live inside it, so their
    events change nothing. Dynamic chunks are re-placed top-down in the global window: the
    allocation history's addresses were the kernel's, for its own CPU count.

    When the design's granule is larger than the replay's page size (a 4K capture evaluated with
    16K or 64K pages), the unit is rounded up to the granule and a design page is populated while
    any of the replay pages it contains is populated."""

    def __init__(self, geom: Geometry, cpus: int, *, src_page_size: int | None = None,
                 vabits_actual: int | None = None, checked: bool = False, kpti: bool = False,
                 map_global: bool = True, unit_size: int | None = None, machine_cls: type = DesignMachine):
        self.machine_cls = machine_cls
        self.geom = geom
        self.cpus = cpus
        self.src_page = src_page_size or geom.page_size
        if geom.page_size % self.src_page:
            raise LocalmapError(f"cannot evaluate a {self.src_page}-byte-page history with smaller "
                                f"{geom.page_size}-byte pages")
        self.scale = geom.page_size // self.src_page
        self.kw = dict(vabits_actual=vabits_actual, checked=checked, kpti=kpti, map_global=map_global)
        self.machine: DesignMachine | None = None
        self.map: dict[int, Any] = {}
        self.src_populated: dict[int, set[int]] = {}
        self.events = 0
        if unit_size is not None:
            self._build(unit_size)

    def _build(self, src_unit_size: int) -> DesignMachine:
        g = self.geom.page_size
        m = self.machine_cls(self.geom, self.cpus, -(-src_unit_size // g) * g, **self.kw)
        first = m.create_chunk(key="first", first=True)
        m.populate(first, 0, first.nr_pages)
        self.machine = m
        return m

    def _m(self, chunk: Any) -> DesignMachine:
        if self.machine is None:
            return self._build(chunk.nr_pages * self.src_page)
        return self.machine

    def _is_first(self, chunk: Any) -> bool:
        return bool(getattr(chunk, "is_first", False) or getattr(chunk, "is_reserved", False))

    def chunk_created(self, chunk: Any) -> None:
        m = self._m(chunk)
        self.events += 1
        if self._is_first(chunk):
            return
        self.map[id(chunk)] = (chunk, m.create_chunk(key=("dyn", id(chunk))))
        self.src_populated[id(chunk)] = set()

    def chunk_destroyed(self, chunk: Any) -> None:
        m = self._m(chunk)
        self.events += 1
        if self._is_first(chunk):
            return
        _, c = self.map.pop(id(chunk))
        self.src_populated.pop(id(chunk), None)
        m.destroy_chunk(c)

    def _chunk(self, chunk: Any):
        m = self._m(chunk)
        if self._is_first(chunk):
            return m, None
        entry = self.map.get(id(chunk))
        if entry is None:  # a chunk the allocator had before we were attached
            self.chunk_created(chunk)
            entry = self.map[id(chunk)]
        return m, entry[1]

    def _pages(self, chunk: Any):
        """(design machine, design chunk, the replay pages populated) for a page event, or
        None when the event is about the first chunk (always populated in the design)."""
        self.events += 1
        m, c = self._chunk(chunk)
        return None if c is None else (m, c, self.src_populated[id(chunk)])

    def pages_populated(self, chunk: Any, page_start: int, page_end: int) -> None:
        if (target := self._pages(chunk)) is None:
            return
        m, c, pop = target
        pop.update(range(page_start, page_end))
        lo, hi = page_start // self.scale, -(-page_end // self.scale)
        m.populate(c, lo, hi)  # already-populated design pages are left alone

    def pages_depopulated(self, chunk: Any, page_start: int, page_end: int) -> None:
        if (target := self._pages(chunk)) is None:
            return
        m, c, pop = target
        pop.difference_update(range(page_start, page_end))
        sc = self.scale
        empty = [gp for gp in range(page_start // sc, -(-page_end // sc))
                 if c.populated[gp] and not any(p in pop for p in range(gp * sc, gp * sc + sc))]
        runs: list[list[int]] = []
        for gp in empty:
            if runs and runs[-1][1] == gp:
                runs[-1][1] = gp + 1
            else:
                runs.append([gp, gp + 1])
        for lo, hi in runs:
            m.depopulate(c, lo, hi)

    def tlb_flushed(self, chunk: Any, page_start: int, page_end: int) -> None:
        pass  # the design machine invalidates in depopulate


class Tee:
    """Forwards every listener event to several listeners (design and baseline side by side)."""

    def __init__(self, *listeners: Any):
        self.listeners = listeners

    def __getattr__(self, name: str):
        fns = [getattr(lst, name) for lst in self.listeners if hasattr(lst, name)]

        def call(*args: Any) -> None:
            for fn in fns:
                fn(*args)

        return call
