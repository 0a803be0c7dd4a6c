"""The public scenario API: the worked example of docs/checker.md, run verbatim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "checker.md"


def _example() -> str:
    text = DOC.read_text()
    part = text.split("Worked example", 1)[1]
    return re.search(r"```python\n(.*?)```", part, re.S).group(1)


@pytest.fixture
def clean_registry():
    from localmap.check import scenarios

    before = dict(scenarios.ALL_SCENARIOS)
    yield
    scenarios.ALL_SCENARIOS.clear()
    scenarios.ALL_SCENARIOS.update(before)
    scenarios.REGISTERED.clear()


def test_worked_example_runs_as_documented(clean_registry, capsys):
    exec(compile(_example(), str(DOC), "exec"), {})
    out = capsys.readouterr().out.split("\n")
    assert out[0] == "unsafe missing-mapping" and out[1] == "safe"


def test_worked_example_through_the_cli(clean_registry, tmp_path, capsys):
    from localmap.cli import main

    f = tmp_path / "sync_online.py"
    f.write_text(_example())
    assert main(["check", "--load", str(f), "--json", "sync-vs-online", "sync-vs-online-locked"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out[out.index("["):])
    assert [(r["scenario"], r["verdict"]) for r in res] == [("sync-vs-online", "unsafe"),
                                                            ("sync-vs-online-locked", "safe")]
    steps = [s["action"] for s in res[0]["counterexample"]]
    assert steps.index("bring-up: copy swapper's root for CPU k") < \
        steps.index("sync into the online CPUs' copies") < steps.index("CPU k online")


def test_bad_scenario_files_are_one_line_errors(clean_registry, tmp_path, capsys):
    from localmap.cli import main

    f = tmp_path / "broken.py"
    f.write_text("x = 1\nraise ValueError('no good')\n")
    assert main(["check", "--load", str(f), "--list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken.py:2" in err and "no good" in err
    assert main(["check", "--load", str(tmp_path / "missing.py")]) == 2
    from localmap.check.api import Scenario, register
    from localmap.errors import LocalmapError

    with pytest.raises(LocalmapError):
        register(Scenario("local-lse", "clash"))
