"""The bad-input catalogue (``tests/badinput.py``) in the test suite: every case, built from the
shared captures, run through the real command line in a child process limited to 1 GiB of
address space, two at a time.

Each case is refused (exit 2, one line ``localmap: FILE[:LINE]: ...`` naming its file and line)
or accepted with the right flag (its own check of the output); none prints a traceback or runs
out of memory. One test per case, so a failure names the case and says what went wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import badinput  # noqa: E402
from conftest import need_shared  # noqa: E402

NAMES = list(badinput.REGISTRY)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    shared = need_shared()
    for b in (badinput.S1, badinput.S2):
        need_shared(b)
    ctx = badinput.Ctx(shared, tmp_path_factory.mktemp("badinput"))
    cases = badinput.build(NAMES, ctx)
    done = badinput.run_all(cases, workers=2)
    return {c.name: (c, *done[c.name]) for c in cases}


def test_the_catalogue_is_large_and_has_both_outcomes(results):
    refused = [n for n, (c, _r, _p) in results.items() if c.accept is None]
    accepted = [n for n, (c, _r, _p) in results.items() if c.accept is not None]
    assert len(results) >= 60 and len(refused) >= 60 and len(accepted) >= 5
    # every refusal that has a line to name names one
    assert sum(":" in Path(results[n][0].where).name for n in refused if results[n][0].where
               and "/" in results[n][0].where) >= 30


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(results, name):
    case, result, problems = results[name]
    assert not problems, f"{name}: " + "; ".join(problems)
    if case.accept is None:                 # refused: the one line names the file (and line)
        assert result.rc == 2 and result.stderr.count("\n") == 1
        assert case.where and case.where in result.stderr
    else:
        assert result.rc == 0
