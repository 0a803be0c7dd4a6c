"""The shipped dynamic profiles reach `localmap evaluate` (the main job) with the same figures."""

from __future__ import annotations

import json
from importlib import resources

from localmap.perf import mca
from localmap.perf.summary import load_profiles
from localmap.perf.talk import NOT_COMPARABLE
from localmap.report.sections import Context, build_perf
from localmap.units import fmt_count


def _shipped():
    return [json.loads(f.read_text()) for f in resources.files("localmap.data").iterdir()
            if f.name.startswith("profile-") and f.name.endswith(".json")]


def test_a_talk_matching_and_a_debian_profile_are_shipped():
    profs = load_profiles()
    assert len(profs) == len(_shipped()) >= 2
    talk, debian = profs[0], profs[-1]
    assert talk["comparable_to_talk"] and talk["kernel"]["preempt_count"] is True
    assert talk["kernel"]["preempt_model"] == "PREEMPT_DYNAMIC"
    assert not debian["comparable_to_talk"] and debian["label"] == NOT_COMPARABLE
    names = {w["workload"] for w in talk["workloads"]}
    assert {"page-fault", "fork", "mmapfork", "memcg", "vm"} <= names
    for w in talk["workloads"]:
        assert set(w["saved_cycles"]) == set(mca.CORES)
        assert w["removed_instructions"] > 0 and 0 < w["removed_share"] < 1
        assert w["removed_instructions"] == round(w["removed_share"] * w["kernel_instructions"], 2) or \
            abs(w["removed_instructions"] - w["removed_share"] * w["kernel_instructions"]) < 0.01 * w["removed_instructions"]
    for w in debian["workloads"]:
        assert w["removed_instructions"] == 0


def test_evaluate_shows_the_measured_figures():
    sec = build_perf(Context(bundle=None), "this_cpu performance")
    tables = {t.title: t for t in sec.tables}
    for prof in load_profiles():
        k = prof["kernel"]
        title = next(t for t in tables if t.startswith(f"Measured per operation: {k['label']}"))
        rows = {r[0].split(" ")[0]: r for r in tables[title].rows}
        col = tables[title].headers.index("cycles saved neoverse-v2")
        for w in prof["workloads"]:
            r = rows[w["workload"]]
            assert r[1] == fmt_count(w["ops"]) and r[2] == fmt_count(round(w["kernel_instructions"]))
            assert r[5] == f"{w['removed_instructions']:.1f}"
            assert r[col] == "{:.0f}..{:.0f}".format(*w["saved_cycles"]["neoverse-v2"][prof["headline_variant"]])
        if not prof["comparable_to_talk"]:
            assert NOT_COMPARABLE in title and all("(not comparable)" in r[0] for r in tables[title].rows)
    assert any(t.startswith("Prediction against the talk") for t in tables)
    static = tables["this_cpu sites in the kernel image and what the local mapping removes"]
    assert any(NOT_COMPARABLE in r[0] for r in static.rows if r[1] == "PREEMPT_VOLUNTARY")
