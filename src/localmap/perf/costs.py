"""Cost models of one this_cpu operation, before and after the local mapping, per core.

What it models: the instruction sequences of FACTS.md §3 / DESIGN.md 12-13 priced with public
figures from ``localmap/data/costs.toml`` (each number carries its source there):

* before: ``[preempt_count++] mrs add <op> [preempt_count-- + resched check]``
* after:  ``mov #DELTA add <op>`` (DESIGN.md 13)

The saving is the preempt bracket only (it exists only with CONFIG_PREEMPT_COUNT). Its cycle cost
is given as a bracket, because an out-of-order core overlaps it with the surrounding work:
``low`` = its instructions divided by the decode width (fully overlapped), ``high`` = the
latency of its dependency chain (load->add->store, store-forwarded load->sub->store, compare,
re-read, compare), fully serial. The op itself (LSE or LL/SC) is priced with measured ns from the
linux-arm-kernel thread; it is the same before and after. Differs from the kernel: no cache
misses, no contention, no branch mispredictions, no resched slow path. The ``mrs``/``mov #DELTA``
+ ``add`` are priced as one ALU cycle each without a source (an assumption), and DELTA is taken as
one immediate although it is a boot-time value; :mod:`localmap.perf.mca` replaces these hand
figures with llvm-mca's models and the DELTA variants, for the sites a profile executed.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from localmap.errors import LocalmapError


@lru_cache(maxsize=1)
def load_costs() -> dict:
    """The parsed cost data file."""
    with resources.files("localmap.data").joinpath("costs.toml").open("rb") as fh:
        return tomllib.load(fh)


def _v(entry) -> tuple[float, str]:
    if isinstance(entry, dict):
        return float(entry["value"]), str(entry.get("source", "none"))
    return float(entry), "none"


@dataclass
class OpCost:
    core: str
    preempt_count: bool
    form: str  # lse / llsc
    before_low_ns: float
    before_high_ns: float
    after_ns: float
    saved_low_ns: float
    saved_high_ns: float
    saved_low_cycles: float
    saved_high_cycles: float
    assumed: list[str]  # names of numbers without a public source used here
    sources: list[str]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def cores() -> list[str]:
    return list(load_costs()["core"])


def op_cost(core: str, preempt_count: bool, form: str = "lse") -> OpCost:
    """Cost of one this_cpu RMW op on ``core`` before/after the local mapping."""
    data = load_costs()
    try:
        c = data["core"][core]
    except KeyError:
        raise LocalmapError(f"unknown core {core!r} (known: {', '.join(data['core'])})") from None
    arch = data["arch"][c["arch"]]
    used: dict[str, tuple[float, str]] = {}
    for key in ("ghz", "load_latency", "alu_latency", "branch_latency", "decode_width",
                "lse_op_ns" if form == "lse" else "llsc_op_ns"):
        used[key] = _v(c[key])
    ghz = used["ghz"][0]
    ld, alu, br, width = (used[k][0] for k in ("load_latency", "alu_latency", "branch_latency", "decode_width"))
    op_ns = used["lse_op_ns" if form == "lse" else "llsc_op_ns"][0]
    n_inc, n_dec = int(arch["preempt_inc"]), int(arch["preempt_dec_fast"])
    if preempt_count:
        # dependency chains: inc = ldr -> add -> str; dec = ldr(forwarded) -> sub -> str, cbz,
        # ldr (re-read) -> cbnz
        high_cyc = (ld + alu) + (ld + alu + br + ld + br)
        low_cyc = (n_inc + n_dec) / width
    else:
        high_cyc = low_cyc = 0.0
    addr_cyc = 2 * alu  # mrs (or mov #DELTA) + add: assumed one ALU cycle each, same before/after
    after_ns = addr_cyc / ghz + op_ns
    return OpCost(core=core, preempt_count=preempt_count, form=form,
                  before_low_ns=after_ns + low_cyc / ghz, before_high_ns=after_ns + high_cyc / ghz,
                  after_ns=after_ns, saved_low_ns=low_cyc / ghz, saved_high_ns=high_cyc / ghz,
                  saved_low_cycles=low_cyc, saved_high_cycles=high_cyc,
                  assumed=sorted(k for k, (_v_, s) in used.items() if s == "none"),
                  sources=sorted({s for _v_, s in used.values() if s != "none"}))


def cost_table(preempt_counts: tuple[bool, ...] = (False, True)) -> list[OpCost]:
    return [op_cost(core, pc, form) for core in cores() for pc in preempt_counts for form in ("lse", "llsc")]


def other_arches() -> list[dict]:
    """Instruction-sequence models of the other architectures (numbers only where public)."""
    data = load_costs()
    rows = []
    for name, a in data["arch"].items():
        rows.append({"arch": name, "before": a["before"], "after": a["after"],
                     "source": data["sources"].get(a["source"], a["source"]),
                     "cycles": a.get("cycles", "see entries")})
    return rows


def source_text(key: str) -> str:
    return load_costs()["sources"].get(key, key)
