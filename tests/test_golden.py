"""Golden test: every command's JSON on the default bundle, and the structure and figure data of
the main job's report, equal a recorded copy.

The recorded copy (``tests/golden/default_bundle.json``) was made before the command layer was
reorganised; a refactoring that changes a number, drops a key, or makes a report section vanish
fails here. Timings and this clone's paths are left out. After a deliberate change of a result,
regenerate it with ``.venv/bin/python tests/test_golden.py --update`` and review the diff.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import localmap
from localmap.cli import main

GOLDEN = Path(__file__).resolve().parent / "golden" / "default_bundle.json"
PKG = str(Path(localmap.__file__).resolve().parent)
VOLATILE = {"seconds", "parse_seconds", "states_per_second"}


def _default_bundle() -> str:
    return str(Path(PKG) / "data" / "default_bundle")


def _commands() -> dict[str, list[str]]:
    b = _default_bundle()
    return {
        "replay": ["replay", b, "--json"],
        "overhead-bundle": ["overhead", b, "--cpus", "4", "--json"],
        "overhead-synthetic": ["overhead", "--granule", "4K", "--va-bits", "48", "--cpus", "160",
                               "--unit-size", "192K", "--chunks", "5", "--json"],
        "check": ["check", "--json"],
        "check-all-mmu": ["check", "all", "--mmu", "--json"],
        "predict": ["predict", "--json"],
    }


def _clean(x):
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items() if k not in VOLATILE}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, str):
        return x.replace(_default_bundle(), "<default bundle>").replace(PKG, "<package>")
    return x


def run_json(argv: list[str]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    assert status == 0, f"localmap {' '.join(argv)} exited {status}"
    return _clean(json.loads(out.getvalue()))


def report_outline() -> dict:
    """What ``make run`` shows, independent of how sizes are spelled: the sections in order,
    their fact names, table titles, headers and row counts, figures and the numbers drawn
    (from ``localmap evaluate --json``; recorded through the report API before that existed)."""
    rep = run_json(["evaluate", "--json", "--no-progress"])
    return {
        "sections": [{
            "id": s["id"], "title": s["title"], "facts": [k for k, _ in s["facts"]],
            "tables": [{"title": t["title"], "headers": t["headers"], "rows": len(t["rows"])}
                       for t in s["tables"]],
            "figures": [{"id": f["id"], "title": f["title"], "data": f["data"]} for f in s["figures"]],
            "notes": len(s["notes"]),
        } for s in rep["sections"]],
        "omitted": [t for t, _ in rep["omitted"]],
    }


def collect() -> dict:
    out = {name: run_json(argv) for name, argv in _commands().items()}
    out["evaluate"] = report_outline()
    return out


def test_commands_and_report_match_the_recorded_output():
    want = json.loads(GOLDEN.read_text())
    got = collect()
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name}: output differs from {GOLDEN.name}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: tests/test_golden.py --update")
    GOLDEN.write_text(json.dumps(collect(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
