"""Predict what the local mapping saves for a profiled workload, from the sites of a real image.

What it models: a ``perf report --stdio`` (or ``perf diff``) profile joined with the this_cpu
sites of a kernel image (:mod:`localmap.perf.sites`) and the per-op costs of
:mod:`localmap.perf.costs`. Every assumption is listed in :data:`ASSUMPTIONS` and printed.

Estimate for one profiled function ``f`` with overhead ``p`` percent:

    predicted change = -p * removed_fast(f) / instructions(f)

where ``removed_fast(f)`` is the number of fast-path instructions the local mapping removes from
``f`` (the preempt bracket of its protected, replaceable sites) and ``instructions(f)`` is its
static size. The sum of the changes over the profile is the predicted change of the profiled
CPU time in percentage points. Differs from reality: no execution counts (static shares stand
in for dynamic ones), no inlining differences between the profiled kernel and the analysed
image, and the profiled kernel (the talk's 7.1-rc1 Fedora build) is not the analysed one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.fileio import read_input_bytes

ASSUMPTIONS = [
    "P1 time inside a function is proportional to the instructions it executes, and each static "
    "instruction executes once per call (static share stands in for the dynamic one).",
    "P2 only the preempt bracket is removed (sites.py); mrs tpidr_el1 becomes one mov #DELTA "
    "(no saving); the LSE/LL-SC op itself costs the same before and after.",
    "P3 a profiled name that does not exist in the image is matched to its .part/.constprop/.isra "
    "clones, then to its '__'-prefixed variant; all copies of a static function are summed.",
    "P4 the profile's kernel is not the analysed image: the talk profiled 7.1-rc1 with Fedora's "
    "config on AmpereOne; Debian 6.12 images stand in for it and the inlining may differ.",
    "P5 the predicted change of a profiled workload is the sum of its functions' changes (functions "
    "not in the profile contribute nothing), in percentage points of the profiled CPU time; each "
    "'Profiling for' section of the profile is a separate workload.",
    "P6 saved/call = removable sites of one copy x the preempt bracket of costs.py on the chosen core "
    "(Neoverse N1 by default: fully overlapped .. serial), each removable site run once per call.",
]

_PERF = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+(?:([+-]\d+(?:\.\d+)?)%\s+)?(?:\d+(?:\.\d+)?%\s+)*"
                   r"(?:.*?)\[([k.])\]\s+(\S+)")
_CLONE = re.compile(r"\.(?:part|constprop|isra|cold|lto_priv|llvm)\.\d+.*$|\.cold$")


@dataclass
class ProfileEntry:
    symbol: str
    overhead: float
    delta: float | None  # perf diff's change, when the profile is a diff
    section: str = ""


def parse_profile(path: str | Path) -> list[ProfileEntry]:
    """Kernel entries (``[k]``) of a ``perf report --stdio`` or ``perf diff`` text file."""
    path = Path(path)
    text = read_input_bytes(path, 64 << 20, "profile").decode("utf-8", "replace")
    out: list[ProfileEntry] = []
    section = ""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            t = s.lstrip("#").strip()
            if t.lower().startswith("profiling for"):
                section = t[len("profiling for"):].strip()
            continue
        m = _PERF.match(line)
        if m and m.group(3) == "k":
            out.append(ProfileEntry(symbol=m.group(4), overhead=float(m.group(1)),
                                    delta=float(m.group(2)) if m.group(2) else None, section=section))
    if not out:
        raise LocalmapError("no kernel ([k]) entries: expected `perf report --stdio` output", path)
    return out


def talk_profile_path() -> Path:
    return Path(str(resources.files("localmap.data").joinpath("talk-backup-profile.txt")))


@dataclass
class FunctionFacts:
    """What the prediction needs to know about one function of one image."""

    name: str
    instructions: int
    sites: int
    protected: int
    replaceable: int
    removed_fast: int
    copies: int = 1
    removable: int = 0  # sites whose preempt bracket the local mapping removes


def function_facts(report, img=None) -> dict[str, FunctionFacts]:
    """Per-function facts from a :class:`SitesReport` (+ the image, for function sizes)."""
    facts: dict[str, FunctionFacts] = {}
    for row in report.functions():
        facts[row["function"]] = FunctionFacts(name=row["function"], instructions=0, sites=row["sites"],
                                               protected=row["protected"], replaceable=row["replaceable"],
                                               removed_fast=row["removed_fast"], removable=row["removable"])
    if img is not None:
        syms = img.symbols
        for i, (a, n) in enumerate(zip(syms.addrs, syms.names)):
            if not (img.stext <= a < img.etext):
                continue
            start, end = syms.extent(a, img.etext)
            size = max(0, (end - start) // 4)
            f = facts.get(n)
            if f is None:
                facts[n] = FunctionFacts(name=n, instructions=size, sites=0, protected=0, replaceable=0,
                                         removed_fast=0)
            elif f.instructions == 0:
                f.instructions = size
            else:  # another copy of a static function with the same name
                f.instructions += size
                f.copies += 1
    return facts


def _match(name: str, facts: dict[str, FunctionFacts]) -> tuple[list[str], str]:
    if name in facts:
        return [name], "exact"
    base = _CLONE.sub("", name)
    clones = [n for n in facts if _CLONE.sub("", n) == base]
    if clones:
        return clones, "clone"
    for alt in ("__" + base, base.lstrip("_")):
        if alt in facts:
            return [alt], f"variant {alt}"
    return [], "absent"


@dataclass
class Prediction:
    image: str
    preempt_model: str
    rows: list[dict] = field(default_factory=list)
    sections: dict = field(default_factory=dict)  # section -> {"model": points, "talk": points|None}
    image_static_share: float = 0.0
    assumptions: list[str] = field(default_factory=lambda: list(ASSUMPTIONS))

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def predict(profile: list[ProfileEntry], facts: dict[str, FunctionFacts], *, image: str,
            preempt_model: str, text_instructions: int, removed_fast_total: int,
            core: str = "neoverse-n1") -> Prediction:
    """Join ``profile`` with ``facts``; ``core`` prices the per-call saving (costs.toml)."""
    from localmap.perf.costs import op_cost

    pred = Prediction(image=image, preempt_model=preempt_model)
    per_op = op_cost(core, preempt_count=True)
    for e in profile:
        names, how = _match(e.symbol, facts)
        instr = sum(facts[n].instructions for n in names)
        removed = sum(facts[n].removed_fast for n in names)
        sites = sum(facts[n].sites for n in names)
        protected = sum(facts[n].protected for n in names)
        removable = sum(facts[n].removable for n in names)
        copies = max(1, sum(facts[n].copies for n in names))
        share = removed / instr if instr else 0.0
        change = -e.overhead * share
        pred.rows.append({"section": e.section, "symbol": e.symbol, "matched": ",".join(sorted(set(names))) or "-",
                          "match": how, "overhead": e.overhead, "measured_delta": e.delta,
                          "sites": sites, "protected": protected, "removed_fast": removed,
                          "instructions": instr, "predicted_delta": round(change, 4),
                          "removable_sites": removable,
                          "saved_per_call_ns": [round(removable / copies * per_op.saved_low_ns, 3),
                                                round(removable / copies * per_op.saved_high_ns, 3)],
                          "core": core})
        sec = pred.sections.setdefault(e.section, {"model": 0.0, "talk": None})
        sec["model"] = round(sec["model"] + change, 4)
        if e.delta is not None:
            sec["talk"] = round((sec["talk"] or 0.0) + e.delta, 4)
    pred.image_static_share = removed_fast_total / text_instructions if text_instructions else 0.0
    return pred


def load_summary() -> dict:
    """The site summary shipped with the package (made by bench/make_sites_summary.py)."""
    with resources.files("localmap.data").joinpath("sites-6.12.117-arm64.json").open() as fh:
        return json.load(fh)


def facts_from_summary(flavour: dict) -> dict[str, FunctionFacts]:
    return {n: FunctionFacts(**f) for n, f in flavour["function_facts"].items()}
