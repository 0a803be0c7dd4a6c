"""check: exhaustive explicit-state checking of this_cpu safety and the page-table lifecycle.

What it models: small systems (CPUs, tasks, interrupts, TLBs and walk caches, per-CPU page
tables, kernel workers) running the this_cpu sequences of :mod:`localmap.arch.arm64.thiscpu`;
every interleaving is explored breadth-first (see :mod:`localmap.check.explore`). The public
API is :func:`run_checks` and :func:`list_scenarios`; new scenarios are written with
:mod:`localmap.check.api`; the command is ``localmap check`` (:mod:`localmap.cli.check`).
Deliberate differences from the kernel are listed in :mod:`localmap.check.model`; the TTBR1
audit of Linux 6.12 that the TTBR1 scenarios come from is :mod:`localmap.design.ttbr1_audit`.
"""

from __future__ import annotations


def run_checks(scenarios=None, cpus=None, tasks=None, progress=None, mmu=False,
               symmetry=True, evictions=False) -> list[dict]:
    """Explore ``scenarios`` (names or :class:`Scenario` objects; default: the named set) and
    return one dict each:
    ``scenario``, ``verdict`` ("safe"/"unsafe"), ``states``, ``seconds``, ``counterexample``
    (list of step dicts or None) plus ``cpus``, ``tasks``, ``transitions``,
    ``states_per_second``, ``property``, ``violation``. ``progress`` is an optional callable
    ``progress(name)`` called before each scenario. With ``mmu=True`` each unsafe
    counterexample that is a this_cpu-op schedule is re-executed through the MMU model of
    ``localmap.design`` and ``mmu_replay`` gives ``{"property", "step", "message"}`` (else
    None). ``symmetry=False`` switches the symmetry reduction off; ``evictions=True`` also
    explores TLB and walk-cache evictions (neither changes a verdict)."""
    from localmap.check.explore import explore
    from localmap.check.scenarios import resolve

    out = []
    for sc in resolve(scenarios):
        if progress is not None:
            progress(sc.name)
        r = explore(sc, cpus, tasks, symmetry=symmetry, evictions=evictions)
        d = r.as_dict()
        if mmu:
            d["mmu_replay"] = None
            if r.actions is not None:
                from localmap.check.mmu_replay import replay_through_mmu, supported

                if supported(sc, r.actions):
                    mr = replay_through_mmu(sc, r.actions, r.cpus, r.tasks)
                    d["mmu_replay"] = {"property": mr.prop, "step": mr.step,
                                       "message": mr.message}
        out.append(d)
    return out


def list_scenarios(progress=None) -> list[dict]:
    """Every named scenario with its verdict at its default size, derived by exploring it:
    ``name``, ``extra`` (not in the default set), ``summary``, ``twin``, ``mechanism``,
    ``family``, ``mechanisms`` (switched on), ``verdict``, ``property``, ``states``."""
    from localmap.check.explore import explore
    from localmap.check.scenarios import ALL_SCENARIOS, DEFAULT_SET

    out = []
    for name, sc in ALL_SCENARIOS.items():
        if progress is not None:
            progress(name)
        r = explore(sc)
        out.append({"name": name, "extra": name not in DEFAULT_SET, "summary": sc.summary,
                    "twin": sc.twin, "mechanism": sc.mechanism, "family": sc.family,
                    "mechanisms": sorted(sc.on), "verdict": r.verdict, "property": r.prop,
                    "states": r.states})
    return out


__all__ = ["list_scenarios", "run_checks"]
