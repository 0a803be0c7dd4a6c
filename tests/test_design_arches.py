"""The design's page-table cost on other architectures' tables, against independent arithmetic
and against arm64's own closed form."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localmap.analysis.overhead import closed_form
from localmap.arch.arm64.pgtable import Geometry
from localmap.arch.percpu import MODULES, pgtable_geometry, this_cpu_path
from localmap.design.arches import arch_cost, design_cost

K, M, G = 1 << 10, 1 << 20, 1 << 30


@settings(max_examples=30, deadline=None)
@given(cpus=st.integers(1, 4096), units=st.integers(1, 64), chunks=st.integers(1, 32))
def test_arm64_record_equals_the_arm64_closed_form(cpus, units, chunks):
    unit = units * 4096
    want = closed_form(Geometry(4096, 48), cpus, unit, chunks)
    got = design_cost(pgtable_geometry("arm64"), cpus, unit, chunks)
    assert got["pgtable_extra_bytes"] == want["pgtable_extra_bytes"]
    assert got["local_va_bytes"] == want["local_va_bytes"]
    assert list(got["private_tables_per_cpu"].values()) == list(want["private_tables_per_cpu"].values())


def test_s390_splits_below_its_4tib_root_entries_by_hand():
    # 160 CPUs x 192 KiB = 30 MiB per chunk, 5 chunks: 150 MiB. A 4 TiB root entry is larger than
    # half of the 512 GiB vmalloc area, a 2 GiB region-third entry is not: split there.
    d = arch_cost("s390x", 160, 192 * K, 5)
    assert d["split_level"] == "region-third" and d["window_bytes"] == 2 * G
    # per CPU but the first: a 16 KiB region-second copy + the 16 KiB region-third table; every
    # CPU: one 16 KiB segment table (all slices within one 2 GiB entry) and five 2 KiB page tables
    # (each 192 KiB slice starts on a 30 MiB boundary, inside one 1 MiB segment)
    assert d["private_tables_per_cpu"] == {"segment": 1, "page": 5}
    assert d["pgtable_extra_bytes"] == 159 * (16 * K + 16 * K) + 160 * (16 * K + 5 * 2 * K) == 9_469_952


def test_ppc64_radix_charges_page_table_fragments():
    d = arch_cost("ppc64el", 160, 192 * K, 5)
    # root copies of 64 KiB, 4 KiB pud and pmd, 256-byte pte fragments (one per slice: 192K < 2M)
    assert d["split_level"] == "pgd"
    assert d["pgtable_extra_bytes"] == 159 * 64 * K + 160 * (4 * K + 4 * K + 5 * 256) == 11_935_744


def test_armhf_does_not_fit_at_160_cpus_but_does_at_its_nr_cpus():
    assert "do not fit" in arch_cost("armhf", 160, 192 * K, 5)["error"]
    d = arch_cost("armhf", 8, 192 * K, 5)
    # 16 KiB pgd copies; 8 x 192 KiB = 1.5 MiB chunks in 2 MiB pgd entries: 4 pte pages per CPU
    assert d["window_bytes"] == 8 * M and d["private_tables_per_cpu"] == {"pte": 4}
    assert d["pgtable_extra_bytes"] == 7 * 16 * K + 8 * 4 * 4 * K


@pytest.mark.parametrize("arch", list(MODULES))
def test_every_architecture_is_described(arch):
    p, g = this_cpu_path(arch), pgtable_geometry(arch)
    assert p.arch == arch and p.before["this_cpu_add"] and p.after["this_cpu_add"]
    spans = [lvl.entry_span for lvl in g.levels]
    assert spans == sorted(spans, reverse=True) and spans[-1] == g.page_size
    assert all(a % b == 0 for a, b in zip(spans, spans[1:]))
