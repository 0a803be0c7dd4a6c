"""check: exhaustive explicit-state checking of this_cpu safety and the page-table lifecycle.

What it models: small systems (CPUs, SMT pairs, tasks, interrupts, TLBs, per-CPU page tables,
a kernel worker) running the this_cpu sequences of :mod:`localmap.arch.arm64.thiscpu`; every
interleaving is explored breadth-first (see :mod:`localmap.check.explore`). The public API is
:func:`run_checks`; the command is ``localmap check`` (:mod:`localmap.cli.check`).
Deliberate differences from the kernel are listed in :mod:`localmap.check.model`.
"""

from __future__ import annotations


def run_checks(scenarios=None, cpus=None, tasks=None, progress=None, mmu=False) -> list[dict]:
    """Explore ``scenarios`` (names; default: the default set) and return one dict each:
    ``scenario``, ``verdict`` ("safe"/"unsafe"), ``states``, ``seconds``, ``counterexample``
    (list of step dicts or None) plus ``cpus``, ``tasks``, ``transitions``,
    ``states_per_second``, ``property``, ``violation``. ``progress`` is an optional callable
    ``progress(name)`` called before each scenario. With ``mmu=True`` each unsafe
    counterexample that is a this_cpu-op schedule is re-executed through the MMU model of
    ``localmap.design`` and ``mmu_replay`` gives ``{"property", "step", "message"}`` (else
    None)."""
    from localmap.check.explore import explore
    from localmap.check.scenarios import resolve

    out = []
    for sc in resolve(scenarios):
        if progress is not None:
            progress(sc.name)
        r = explore(sc, cpus, tasks)
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


__all__ = ["run_checks"]
