"""Slow: the replay streams. Its peak memory follows the allocator's live state, not the
length of the trace: the same synthetic workload replayed at 50,000 and at 400,000 events (64
CPUs) in fresh processes peaks within 25 % (plus the interpreter's own few MB), and the model
agrees with every decision of both."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from localmap.analysis.synthetic import make_synthetic_bundle

pytestmark = pytest.mark.slow

# VmHWM: the peak of this process since exec (ru_maxrss would count the pytest process the
# child was forked from)
CHILD = """
import json, sys
from localmap.analysis.replay import replay
r = replay(sys.argv[1])
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"rss_kb": hwm, "allocs": r.nr_allocs, "agreement": r.agreement}))
"""


def _replay_in_child(path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_peak_memory_does_not_grow_with_the_trace(tmp_path):
    small = make_synthetic_bundle(tmp_path / "small", nr_cpus=64, nr_events=50_000, seed=5)
    big = make_synthetic_bundle(tmp_path / "big", nr_cpus=64, nr_events=400_000, seed=5)
    a, b = _replay_in_child(small.path), _replay_in_child(big.path)
    assert a["agreement"] == 1.0 and b["agreement"] == 1.0
    assert b["allocs"] > 7 * a["allocs"]
    assert 20_000 < a["rss_kb"] < 200_000, a      # a replay's own size, not its parent's
    assert b["rss_kb"] <= a["rss_kb"] * 1.25 + 8 * 1024, (a, b)
