"""The cross-architecture comparison and the talk's claims, from the shipped summary."""

from __future__ import annotations

import copy

from localmap.perf.compare import comparison, load_arches_summary, pgtable_curves, talk_claims


def _summ():
    return copy.deepcopy(load_arches_summary()["arches"])


def test_shipped_summary_covers_every_architecture():
    flavours = [s["flavour"] for s in _summ()]
    assert flavours == ["amd64", "arm64", "rt-arm64", "armhf", "ppc64el", "riscv64", "s390x"]
    for s in _summ():
        assert s["sites"] > 1000 and s["this_cpu_add_before"]


def test_claims_are_derived_from_the_counts():
    claims = {c["claim"].split(" ")[0]: c for c in talk_claims(_summ())}
    assert claims["x86"]["verdict"] == "holds"
    assert claims["arm64"]["verdict"] == "holds only with PREEMPT_COUNT"
    assert claims["s390"]["verdict"].startswith("partly")
    # change the evidence, the verdicts follow
    s = _summ()
    x86 = next(r for r in s if r["arch"] == "amd64")
    x86["single_instruction_rmw_unbracketed"] = x86["single_instruction_rmw"] // 2
    arm = next(r for r in s if r["flavour"] == "arm64")
    arm["own_bracket_sites"] = 10
    s390 = next(r for r in s if r["arch"] == "s390x")
    s390["own_bracket_sites"] = s390["sites"]
    claims = {c["claim"].split(" ")[0]: c for c in talk_claims(s)}
    assert claims["x86"]["verdict"] == "does not hold"
    assert claims["arm64"]["verdict"] == "holds"
    assert claims["s390"]["verdict"] == "holds"


def test_comparison_rows_and_page_table_curves():
    rows = {r["flavour"]: r for r in comparison(_summ())}
    assert rows["amd64"]["removed_per_image"] == 0 and rows["rt-arm64"]["removed_per_image"] > 0
    assert rows["armhf"]["cost_error"] and rows["armhf"]["beyond_nr_cpus"]
    assert rows["arm64"]["pgtable_extra_bytes"] == rows["amd64"]["pgtable_extra_bytes"] == 5_238_784
    curves = pgtable_curves()
    for arch, pts in curves.items():
        ys = [y for _x, y in pts]
        assert ys == sorted(ys), arch   # more CPUs never cost less
    assert max(x for x, _ in curves["armhf"]) < 160 < max(x for x, _ in curves["amd64"])


def test_report_sections_show_the_comparison_the_designs_and_text_replication():
    from localmap.report import html, sections
    from localmap.report.model import Report

    ctx = sections.Context(bundle=None)
    arches = sections.build_arches(ctx, "Other architectures")
    designs = sections.build_designs(ctx, "Three designs")
    ktr = sections.build_text_replication(ctx, "Kernel text replication")
    rows = {r["flavour"]: r for r in comparison(_summ())}
    fig = next(f for f in arches.figures if f.id == "arch-sites")
    assert fig.data["sites"] == {k: r["sites"] for k, r in rows.items()}
    assert [r[0] for r in arches.tables[0].rows] == list(rows)
    assert [r[1] for r in arches.tables[2].rows] == [c["verdict"] for c in talk_claims(_summ())]
    assert [r[1] for r in arches.tables[1].rows][:2] == ["5.0 MiB", "5.0 MiB"]
    assert [r[0].split(" ")[0] for r in designs.tables[0].rows] == ["today's", "local", "register"]
    assert ktr.tables[0].rows[2][:3] == ["node", "4", "3"]
    page = html.render(Report("t", "b", sections=[arches, designs, ktr]))
    assert 'data-figure="arch-sites"' in page and 'data-figure="arch-pgtables"' in page
    assert "<script" not in page
