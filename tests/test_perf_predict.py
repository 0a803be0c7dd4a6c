"""Cost data, profile parsing, prediction and the shipped summary (fast, offline)."""

from __future__ import annotations

import json
import numbers

import pytest

from localmap.errors import LocalmapError
from localmap.perf import costs, predict
from localmap.cli.predict import render_performance
from localmap.perf.summary import performance_summary


def _numbers(node, path=""):
    if isinstance(node, dict):
        if "value" in node:
            yield path, node
        else:
            for k, v in node.items():
                yield from _numbers(v, f"{path}.{k}")


def test_every_number_has_a_known_source():
    data = costs.load_costs()
    seen = 0
    for section in ("core", "arch"):
        for path, entry in _numbers(data[section], section):
            seen += 1
            assert isinstance(entry["value"], numbers.Number), path
            assert entry["source"] == "none" or entry["source"] in data["sources"], path
        # bare numbers (no source) are not allowed except instruction counts of [arch.*]
        for name, tbl in data[section].items():
            for k, v in tbl.items():
                if isinstance(v, numbers.Number):
                    assert section == "arch" and k in ("preempt_inc", "preempt_dec_fast", "offset", "op"), (name, k)
    assert seen >= 20
    assert {"neoverse-n1", "neoverse-v2", "ampereone"} <= set(data["core"])
    assert {"arm64", "x86-64", "s390", "powerpc64", "riscv"} <= set(data["arch"])


def test_op_cost_brackets():
    for core in costs.cores():
        for form in ("lse", "llsc"):
            off = costs.op_cost(core, preempt_count=False, form=form)
            assert off.saved_low_ns == off.saved_high_ns == 0 and off.before_high_ns == off.after_ns
            on = costs.op_cost(core, preempt_count=True, form=form)
            assert 0 < on.saved_low_cycles < on.saved_high_cycles
            assert on.after_ns < on.before_low_ns < on.before_high_ns
    # AmpereOne has no public optimisation guide: its numbers are flagged as assumed
    assert "load_latency" in costs.op_cost("ampereone", True).assumed
    assert costs.op_cost("neoverse-n1", True).assumed == []
    # the measured V2 LSE per-CPU atomic dominates: the bracket is a small fraction of it
    v2 = costs.op_cost("neoverse-v2", True, "lse")
    assert v2.saved_high_ns / v2.before_high_ns < 0.15
    with pytest.raises(LocalmapError):
        costs.op_cost("pentium", True)


def test_parse_talk_profile():
    prof = predict.parse_profile(predict.talk_profile_path())
    assert [(e.symbol, e.overhead, e.delta) for e in prof][:2] == [
        ("mod_memcg_lruvec_state", 5.91, -1.82), ("percpu_counter_add_batch", 2.84, -1.30)]
    assert len(prof) == 6 and prof[0].section == "page_fault3_processes" and prof[-1].section == "memcg creation"


def test_parse_perf_report(tmp_path):
    f = tmp_path / "perf.txt"
    f.write_text("# Samples: 1K of event 'cycles'\n#\n# Overhead  Command  Shared Object  Symbol\n"
                 "    12.50%  cc1      cc1                [.] ggc_internal_alloc\n"
                 "     3.25%  cc1      [kernel.kallsyms]  [k] clear_page\n"
                 "            |\n            ---clear_page\n"
                 "     1.00%  make     [kernel.kallsyms]  [k] percpu_counter_add_batch\n")
    prof = predict.parse_profile(f)
    assert [(e.symbol, e.overhead, e.delta) for e in prof] == [
        ("clear_page", 3.25, None), ("percpu_counter_add_batch", 1.0, None)]
    f.write_text("# nothing\n")
    with pytest.raises(LocalmapError, match=r"\[k\]"):
        predict.parse_profile(f)


def test_prediction_arithmetic():
    facts = {"f": predict.FunctionFacts("f", instructions=100, sites=2, protected=2, replaceable=2, removed_fast=14),
             "__g": predict.FunctionFacts("__g", instructions=50, sites=1, protected=0, replaceable=1, removed_fast=0),
             "h.part.0": predict.FunctionFacts("h.part.0", instructions=10, sites=1, protected=1, replaceable=1,
                                               removed_fast=5)}
    prof = [predict.ProfileEntry("f", 10.0, -2.0, "w"), predict.ProfileEntry("g", 4.0, -1.0, "w"),
            predict.ProfileEntry("h", 1.0, None, "w"), predict.ProfileEntry("zz", 3.0, None, "w")]
    p = predict.predict(prof, facts, image="x", preempt_model="PREEMPT", text_instructions=1000,
                        removed_fast_total=19)
    rows = {r["symbol"]: r for r in p.rows}
    assert rows["f"]["predicted_delta"] == pytest.approx(-1.4)
    assert rows["g"]["match"] == "variant __g" and rows["g"]["predicted_delta"] == 0
    assert rows["h"]["match"] == "clone" and rows["h"]["predicted_delta"] == pytest.approx(-0.5)
    assert rows["zz"]["match"] == "absent"
    from localmap.perf.costs import op_cost
    n1 = op_cost("neoverse-n1", True)
    assert rows["f"]["saved_per_call_ns"] == [0, 0]  # removable sites unknown (0) in this fixture
    facts["f"].removable, facts["f"].copies = 2, 2  # two copies of a static function, one site each
    p2 = predict.predict(prof[:1], facts, image="x", preempt_model="PREEMPT", text_instructions=1000,
                         removed_fast_total=19)
    assert p2.rows[0]["saved_per_call_ns"] == [pytest.approx(n1.saved_low_ns, abs=1e-3),
                                               pytest.approx(n1.saved_high_ns, abs=1e-3)]
    assert p.sections["w"] == {"model": pytest.approx(-1.9), "talk": -3.0}
    assert p.image_static_share == pytest.approx(0.019)


def test_shipped_summary_compares_flavours():
    data = predict.load_summary()
    fl = {f["flavour"]: f for f in data["flavours"]}
    assert set(fl) == {"arm64", "rt-arm64"}
    vol, rt = fl["arm64"], fl["rt-arm64"]
    assert vol["preempt_model"] == "PREEMPT_VOLUNTARY" and vol["preempt_count"] is False
    assert rt["preempt_model"] == "PREEMPT_RT" and rt["preempt_count"] is True
    # without a preempt count nothing around the op can be removed; with one, the bracket goes
    assert vol["totals"]["removed_instructions"] == 0 and rt["totals"]["removed_instructions"] > 0
    for f in (vol, rt):
        t = f["totals"]
        assert f["sites"] == sum(t["ops"].values()) == sum(t["protection"].values())
        assert t["replaceable"] <= f["sites"] and f["text_bytes"] > 10 << 20
        assert sum(r["sites"] for r in f["top_functions"]) <= f["sites"]
    # the prediction has the talk's functions and says how each was matched
    assert "percpu_counter_add_batch" in rt["function_facts"]


def test_performance_summary_offline_and_render():
    from rich.console import Console
    s = performance_summary()
    assert s["source"].startswith("shipped summary") and len(s["predictions"]) == 2
    vol, rt = s["predictions"]
    assert all(r["predicted_delta"] == 0 for r in vol["rows"])
    assert any(r["predicted_delta"] < 0 for r in rt["rows"])
    con = Console(record=True, width=200)
    render_performance(s, console=con)
    out = con.export_text()
    assert "percpu_counter_add_batch" in out and "P1" in out and "talk" in out
    json.dumps(s, default=str)


def test_cli_predict_offline(capsys):
    from localmap.cli import main
    assert main(["predict", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert len(d["predictions"]) == 2 and d["prediction_assumptions"]
