"""The replay's cross-checks say what they test, and the model-dependent one fails when the
model is wrong while the trace-completeness ones (which a model predicting nothing passes) do
not; ``partial`` comes from evidence that is listed, not from a time threshold."""

from __future__ import annotations

import gzip

from localmap.analysis import replay as R
from localmap.mm.percpu import Percpu

LABELS = {"model fidelity", "trace completeness"}


def _by_label(res) -> dict[str, list[bool]]:
    out: dict[str, list[bool]] = {}
    for c in res.checks():
        out.setdefault(c["tests"], []).append(c["ok"])
    return out


def test_every_check_is_labelled_and_a_real_capture_passes_them(s1):
    r = R.replay(s1)
    checks = r.checks()
    assert {c["tests"] for c in checks} == LABELS
    assert all(c["ok"] for c in checks)
    assert [m["tests"] for m in r.meminfo_check] == ["trace completeness"] * len(r.meminfo_check)
    assert [m["tests"] for m in r.model_meminfo_check] == ["model fidelity"] * len(r.meminfo_check)
    assert r.vmalloc_check["tests"] == "trace completeness"


def test_a_wrong_model_fails_the_model_checks_not_the_completeness_ones(s1, monkeypatch):
    search = Percpu.pcpu_alloc_search

    def oversized(self, size, align, reserved, atomic):     # a model that asks for too much
        return search(self, min(size * 16, 32768), align, reserved, atomic)

    monkeypatch.setattr(Percpu, "pcpu_alloc_search", oversized)
    r = R.replay(s1)
    by = _by_label(r)
    assert all(by["trace completeness"])            # the kernel's answers drive that state
    assert by["model fidelity"].count(False) == 2   # placements, and meminfo on its own
    assert not all(m["ok"] for m in r.model_meminfo_check)
    assert all(m["ok"] for m in r.meminfo_check)


def _cut(src, dst, keep_header: bool, seconds: float, mid_line: bool = False):
    dst.mkdir()
    for f in src.iterdir():
        if not f.name.startswith("trace"):
            (dst / f.name).symlink_to(f)
    lines = gzip.decompress((src / "trace.gz").read_bytes()).decode().splitlines(keepends=True)
    out = [ln for ln in lines if ln.startswith("#") and (keep_header or "entries-in" not in ln)]
    ev = [ln for ln in lines if not ln.startswith("#")]
    import re
    ts = re.compile(r" (\d+\.\d+): percpu_")
    body = [ln for ln in ev if float(ts.search(ln).group(1)) < seconds]
    text = "".join(out + body)
    if mid_line:
        nxt = ev[len(body)]
        text += nxt[: nxt.index(" off=") + 12]      # the required fields, then the end
    (dst / "trace").write_text(text)
    return dst


def test_a_trace_cut_at_one_second_is_partial_with_its_evidence(s2, tmp_path):
    r = R.replay(_cut(s2, tmp_path / "cut", keep_header=True, seconds=1.0))
    assert r.partial
    ev = {e["evidence"]: e for e in r.completeness}
    assert ev["ftrace header"]["complete"] is False
    assert any("entries" in x or "lost" in x for x in r.partial_reasons)
    assert ev["ftrace header"]["source"].endswith("trace:3")


def test_a_trace_cut_mid_line_after_its_fields_is_partial(s2, tmp_path):
    r = R.replay(_cut(s2, tmp_path / "mid", keep_header=False, seconds=1.0, mid_line=True))
    assert r.partial
    ev = {e["evidence"]: e for e in r.completeness}
    assert ev["end of file"]["complete"] is False


def test_a_whole_capture_is_complete_on_every_evidence(s2):
    r = R.replay(s2)
    assert not r.partial and r.partial_reasons == []
    assert r.completeness and all(e["complete"] is not False for e in r.completeness)


def test_the_terminal_view_shows_each_check_with_its_label_and_the_evidence(s2, tmp_path):
    """`localmap replay` prints every cross-check beside what it tests, and the completeness
    evidence with its verdict (a cut trace shows PARTIAL on the ftrace header's row)."""
    import io

    from rich.console import Console

    from localmap.cli.replay_view import print_replay

    def text(res) -> str:
        out = io.StringIO()
        print_replay(res, console=Console(file=out, width=250, color_system=None))
        return out.getvalue()

    whole = R.replay(s2)
    page = text(whole)
    for c in whole.checks():
        row = next(ln for ln in page.splitlines() if c["check"][:40] in ln)
        assert c["tests"] in row and ("ok" in row) == c["ok"]
    assert "PARTIAL" not in page
    cut = text(R.replay(_cut(s2, tmp_path / "cut", keep_header=True, seconds=1.0)))
    row = next(ln for ln in cut.splitlines() if "ftrace header" in ln and "trace:3" in ln)
    assert "PARTIAL" in row
