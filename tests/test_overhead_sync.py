"""The sync's cost against CPU count and the preallocation alternative's memory, held against
independent derivations: real page tables built by the pgtable code, the design machine's own
counts, and the real captures' vmallocinfo."""

from __future__ import annotations

import json
import pytest

from localmap.analysis import overhead as ov
from localmap.arch.arm64.pgtable import Geometry, PageTable, TableRegistry, walk_path
from localmap.design.layout import design_layout
from localmap.ingest.procfs import VmArea
from localmap.mm.page_alloc import FrameAllocator
from localmap.mm.vmalloc import set_pte


def _built_preallocation(page: int, va_bits: int) -> dict[str, int]:
    """Independent count: build swapper-like tables with the pgtable code -- the copied path (one
    page in the local window), then one page in every split-level-entry-sized step of each
    growable region -- and count the entries that appear in the copied tables, besides the
    path's own and the windows'."""
    g = Geometry(page, va_bits)
    lay = design_layout(g)
    out = {}
    for name, (start, end) in ov.growable_regions(lay).items():
        fr = FrameAllocator(g.page_size)
        reg = TableRegistry()
        root = reg.add(PageTable(g.root_level, fr.alloc("pt"), g.page_size))

        def alloc(level):
            return reg.add(PageTable(level, fr.alloc("pt"), g.page_size))

        set_pte(g, reg, root, lay.local_window[0], fr.alloc(), alloc, [])
        set_pte(g, reg, root, lay.global_window[0], fr.alloc(), alloc, [])
        path = walk_path(g, reg, root.pa, lay.local_window[0])
        copied = [t for t in path if t.level <= lay.split_level]
        before = sum(len(t.entries) for t in copied)
        step = lay.split_entry_size
        va = start - (start - g.ttbr1_base) % step
        while va < end:
            a = max(va, start)
            if not (lay.local_window[0] <= a < lay.global_window[1]):
                set_pte(g, reg, root, a, fr.alloc(), alloc, [])
            va += step
        out[name] = sum(len(t.entries) for t in copied) - before
    return out


@pytest.mark.parametrize("page,va_bits", [(4096, 48), (16384, 48), (4096, 52), (65536, 42),
                                          (16384, 36), (64 * 1024, 48)])
def test_preallocation_counts_equal_real_tables(page, va_bits):
    r = ov.preallocation_cost(page, va_bits)
    built = _built_preallocation(page, va_bits)
    for name, n in built.items():
        assert r["regions"][name]["entries"] == n, name
        assert r["regions"][name]["bytes"] == n * page
    assert r["all_bytes"] == sum(built.values()) * page


def test_preallocation_worked_numbers():
    # 4K/48: split at the root, 512 GB entries; vmalloc spans ~124 TB -> 250 tables of 4K
    r = ov.preallocation_cost("4K", 48)
    assert (r["split_level"], r["split_entry_bytes"]) == (0, 512 << 30)
    assert r["regions"]["vmalloc"]["entries"] == 250 and r["vmalloc_bytes"] == 250 * 4096
    # 16K/48: the linear map sits in the other root entry: one table covers it all
    assert ov.preallocation_cost("16K", 48)["regions"]["linear map"]["entries"] == 1
    # every pair of the table is present
    assert len(ov.preallocation_table()) == len(Geometry.all_pairs())


@pytest.mark.parametrize("g", [Geometry(4096, 48), Geometry(16384, 48), Geometry(4096, 52)])
@pytest.mark.parametrize("cpus", [1, 2, 3, 5])
def test_sync_closed_form_equals_the_design_machine(g, cpus):
    lay = design_layout(g)
    sizes = [g.page_size * k for k in (1, 3, 1, 8, 2)] * 4
    m = ov.measured_sync(g, cpus, sizes)
    assert m["vmallocs"] == len(sizes) and m["tlbi"] == 0
    assert m["syncs"] >= 1
    per = ov.sync_entries(cpus)
    assert m["sync_entries"] == m["syncs"] * (per["add_entries"] - per["add_entries_today"])
    # the syncs the machine did = the copied-table entries its areas needed (profile method)
    mm = ov.DesignMachine(g, cpus, g.page_size)
    mm.create_chunk(first=True)
    for s in sizes:
        mm.vmalloc(s)
    areas = [VmArea(a.start, a.end, a.end - a.start, "vmalloc") for a, _ in mm.vm_areas.values()]
    prof = ov.vmalloc_sync_profile(areas, g.page_size, g.va_bits)
    assert prof["synced_entries"] == m["syncs"]
    assert lay.split_level >= g.root_level


def test_sync_cost_rows_scale_with_cpus():
    res = ov.sync_cost([1, 4, 160, 4096], "4K", 48)
    rows = {r["cpus"]: r for r in res["rows"]}
    assert rows[160]["extra_entries_per_sync"] == 159 and rows[4096]["add_tlbi"] == 0
    assert rows[4096]["remove_entries"] == 4096 and rows[4096]["remove_tlbi"] == 1


@pytest.mark.parametrize("name,areas,boot,synced", [("s1", 2643, 1, 1), ("s2", 532, 1, 1)])
def test_sync_profile_of_the_real_captures(name, areas, boot, synced, request):
    path = request.getfixturevalue(name)
    res = ov.sync_cost([4, 160], bundle=path, granule="4K", va_bits=52)
    prof = res["profile"]
    assert (prof["areas"], prof["boot_entries"], prof["synced_entries"]) == (areas, boot, synced)
    r160 = res["rows"][1]
    assert r160["extra_entries_per_vmalloc"] == pytest.approx(159 * synced / areas)


def test_cli_sync(capsys):
    from localmap.cli import main

    assert main(["overhead", "--sync", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"sync", "preallocation"} <= set(out)
    assert main(["overhead", "--sync", "--cpus", "8"]) == 0
    text = capsys.readouterr().out
    assert "preallocate" in text and "4K/48" in text and "64K/42" in text
