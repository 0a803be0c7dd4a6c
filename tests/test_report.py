"""The report: SVG drawing, HTML rendering, and the sections built from the real model state."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from localmap.report import html as html_mod
from localmap.report.model import Figure, Report, Section, Table
from localmap.report.svg import Canvas, line_chart
from localmap.units import fmt_bytes

SVG = "{http://www.w3.org/2000/svg}"


def test_line_chart_is_wellformed_and_maps_points_monotonically():
    pts = [(1, 10), (2, 20), (4, 40), (8, 80)]
    svg = line_chart("t", [("a", pts), ("b", [(1, 5), (8, 5)])], xlabel="x", ylabel="y",
                     xlog=True, ylog=True)
    root = ET.fromstring(svg)
    assert root.get("data-figure") == "t"
    lines = root.findall(f"{SVG}polyline")
    assert [ln.get("data-series") for ln in lines] == ["a", "b"]
    xy = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    # log-log: doubling x and y moves by the same distance each step
    dx = [xy[i + 1][0] - xy[i][0] for i in range(3)]
    dy = [xy[i + 1][1] - xy[i][1] for i in range(3)]
    assert all(math.isclose(d, dx[0], rel_tol=1e-3) for d in dx) and dx[0] > 0
    assert all(math.isclose(d, dy[0], rel_tol=1e-3) for d in dy) and dy[0] < 0  # y grows upwards
    with pytest.raises(ValueError):
        line_chart("e", [("a", [])], xlabel="x", ylabel="y")


def test_text_is_escaped_everywhere():
    c = Canvas("c<1>", 100, 100)
    c.box(0, 0, 10, 10, ["<script>alert(1)</script>"])
    root = ET.fromstring(c.svg())
    assert "<script>" in "".join(root.itertext())  # survives as text, not as an element
    assert root.find(f".//{SVG}script") is None


def test_fmt_bytes():
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(139264) == "136 KiB"
    assert fmt_bytes(549755813888) == "512 GiB"


class _Scan(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.ids, self.figures, self.urls = [], set(), [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "svg" and "data-figure" in a:
            self.figures.append(a["data-figure"])
        for k, v in a.items():
            if k in ("src", "href") and v and not v.startswith("#"):
                self.urls.append(v)


def test_html_is_self_contained():
    rep = Report("T", "b", sections=[Section("s1", "One", facts=[("k", "v<&>")],
                                             tables=[Table("t", ["a"], [["1"]])],
                                             figures=[Figure("f", "F", Canvas("f", 10, 10).svg())])],
                 omitted=[("Other", "not there")])
    page = html_mod.render(rep)
    scan = _Scan()
    scan.feed(page)
    assert {"sec-s1", "sec-omitted", "fig-f"} <= scan.ids
    assert scan.figures == ["f"]
    assert scan.urls == []  # nothing to fetch
    assert "script" not in scan.tags and "link" not in scan.tags and "img" not in scan.tags
    assert "v&lt;&amp;&gt;" in page


@pytest.fixture(scope="module")
def default_report():
    from localmap.report.evaluate import evaluate

    return evaluate(None, progress=False)


def test_evaluate_default_bundle_sections(default_report):
    from localmap.ingest.bundle import default_bundle_path, load_bundle

    rep = default_report
    b = load_bundle(default_bundle_path())
    ids = [s.id for s in rep.sections]
    assert ids[0] == "capture" and "layout" in ids and "tables" in ids
    cap = dict(rep.section("capture").facts)
    assert cap["first chunk"] == b.first_chunk.text.split("] ", 1)[1]
    assert cap["CPUs"] == "4 possible, 4 online"
    for title, reason in rep.omitted:  # a missing part is said, never faked
        assert "not in the tree" in reason or "bundle" in reason, (title, reason)


def test_layout_section_matches_design_md(default_report):
    # DESIGN.md item 4: 4K/52 (LPA2) splits one level below the root, at 512 GB entries; both
    # windows default to one entry, are entry-aligned and the local one holds only local slices.
    lay = dict(default_report.section("layout").facts)
    assert lay["split level"] == "0 (512 GiB entries)"
    g_lo, g_hi = (int(x, 16) for x in lay["global window"].split(" (")[0].split(" - "))
    l_lo, l_hi = (int(x, 16) for x in lay["local window"].split(" (")[0].split(" - "))
    entry = 512 << 30
    assert g_hi - g_lo == l_hi - l_lo == entry
    assert g_lo % entry == 0 and l_lo % entry == 0
    delta = int(lay["DELTA"], 16)
    assert delta % entry == 0 and l_lo == g_lo + delta
    v_lo, v_hi = (int(x, 16) for x in lay["vmalloc"].split(" - "))
    assert v_lo <= l_lo and g_hi <= v_hi
    fig = default_report.section("layout").figures[0]
    root = ET.fromstring(fig.svg)
    kinds = [r.get("data-kind") for r in root.iter(f"{SVG}rect")]
    assert kinds.count("local-window") == 1 and kinds.count("global-window") == 1
    assert f"{g_lo:#018x} - {g_hi:#018x}" in "".join(root.itertext())


def test_tables_figure_draws_every_cpu(default_report):
    fig = default_report.section("tables").figures[0]
    root = ET.fromstring(fig.svg)
    kinds = [r.get("data-kind") for r in root.iter(f"{SVG}rect")]
    assert kinds.count("cpu-before") == kinds.count("cpu-after") == 4
    assert kinds.count("root-shared") == 1 and kinds.count("root-after") == 4


def test_replay_usage_plot_ends_at_meminfo(default_report):
    sec = default_report.section("replay")
    if sec is None:
        pytest.skip("replay section not available: " + dict(default_report.omitted).get("Allocator replay", ""))
    from localmap.ingest.bundle import default_bundle_path, load_bundle

    b = load_bundle(default_bundle_path())
    fig = next(f for f in sec.figures if f.id == "percpu-usage")
    pop = fig.data["populated pages"]
    units = len(b.cpus["possible"])
    # populated pages per unit x units at the end of the trace == /proc/meminfo Percpu at the end
    assert pop[-1][1] * units == b.meminfo[-1][1]
    assert [p[0] for p in pop] == sorted(p[0] for p in pop)


def test_overhead_plots_cover_three_granules(default_report):
    sec = default_report.section("overhead")
    if sec is None:
        pytest.skip("overhead section not available")
    fig = next(f for f in sec.figures if f.id == "pgtable-vs-cpus")
    assert set(fig.data) == {"4K/48", "16K/48", "64K/48"}
    for pts in fig.data.values():
        ys = [y for _, y in pts]
        assert ys == sorted(ys) and ys[-1] > ys[0]  # more CPUs, more private tables
    va = next(f for f in sec.figures if f.id == "va-vs-cpus")
    for name, pts in va.data.items():
        assert len({y for _, y in pts}) == 1, name  # VA does not depend on the CPU count
