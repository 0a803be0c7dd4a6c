"""The shared-data fixture: a missing capture skips locally and fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["LOCALMAP_SHARED_DATA"] = str(tmp_path / "nowhere")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{HERE / 'test_replay.py'}::test_trace_file_inside_a_bundle_and_json"],
                          cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci,status,word", [(None, 0, "skipped"), ("true", 1, "CI must run")])
def test_missing_captures_skip_locally_and_fail_under_ci(tmp_path, ci, status, word):
    r = _run(tmp_path, ci)
    assert r.returncode == status and word in r.stdout, r.stdout[-2000:]
