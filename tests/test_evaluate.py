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
