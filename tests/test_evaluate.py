"""``localmap evaluate``: the main job from the command line, and its HTML in a real browser."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from localmap.cli import main


def test_evaluate_cli_on_a_shared_bundle(s2, tmp_path, capsys):
    assert main(["evaluate", str(s2), "--html", str(tmp_path / "r"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "percpu: 32 4K pages/cpu s101464 r8192 d21416" in out
    assert "2 possible, 2 online" in out
    page = (tmp_path / "r" / "index.html").read_text()
    assert 'id="sec-capture"' in page and 'data-figure="va-layout"' in page
    # page mode: the figure says where the first chunk lives
    assert "percpu_alloc=page" in page


def test_evaluate_bad_bundle_is_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such bundle" in err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no trace file" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(tmp_path, capsys):
    exe = _chromium()
    if exe is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("chromium missing and cannot apt-get install it (not root / no apt)")
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        exe = _chromium()
    assert main(["evaluate", "--html", str(tmp_path / "r"), "--no-progress"]) == 0
    capsys.readouterr()
    index = tmp_path / "r" / "index.html"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--dump-dom", index.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    assert "<svg" in dom, "chromium rendered nothing"
    from localmap.report.evaluate import SECTIONS

    ids = [builder.__name__.removeprefix("build_") for _, builder in SECTIONS]
    present = [sid for sid in ids if f'id="sec-{sid}"' in dom]
    assert {"capture", "layout", "tables"} <= set(present)
    figures = {"va-layout", "percpu-tables"}
    if "replay" in present:
        figures.add("percpu-usage")
    if "overhead" in present:
        figures |= {"pgtable-vs-cpus", "va-vs-cpus"}
    for fig in figures:
        assert f'data-figure="{fig}"' in dom, fig
    # the browser laid the figures out (a screenshot of the page is not blank)
    shot = tmp_path / "shot.png"
    subprocess.run([*cmd[:-2], f"--screenshot={shot}", "--window-size=1000,3000", index.as_uri()],
                   capture_output=True, timeout=180)
    assert shot.is_file() and shot.stat().st_size > 20_000


def test_wide_tables_split_by_columns_instead_of_cutting_cells():
    """A table wider than the terminal is printed in parts, each fitting the width, the first
    column repeated and every cell whole (no "…")."""
    import io

    from rich.console import Console

    from localmap.cli.report_view import column_groups, fitted_tables

    headers = ["workload"] + [f"column number {i}" for i in range(10)]
    rows = [[f"w{r}"] + [f"{r * 1000 + i:,}..{-r * 7 - i} %" for i in range(10)] for r in range(5)]
    groups = column_groups(headers, rows, 80)
    assert len(groups) > 1 and all(g[0] == 0 for g in groups)
    assert sorted(i for g in groups for i in g[1:]) == list(range(1, 11))
    out = io.StringIO()
    con = Console(file=out, width=80, color_system=None)
    for t in fitted_tables("wide", headers, rows, 80):
        con.print(t)
    text = out.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for row in rows:
        for cell in row:
            assert cell in text
    assert column_groups(headers[:3], [r[:3] for r in rows], 80) == [[0, 1, 2]]
