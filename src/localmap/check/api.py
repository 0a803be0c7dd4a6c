"""The public scenario API: everything needed to write a new checker scenario in one place.

What it models: nothing itself; it gathers the pieces of :mod:`localmap.check.model` (items,
steps, the :class:`Ctx` a step sees, the address constants of the abstract machine) and of
:mod:`localmap.check.library` (families, reusable steps and guards) so that a new kind of
access, kernel-side mechanism or fault is written as data and small functions, without
touching the explorer. ``docs/checker.md`` has a worked example.

    from localmap.check.api import Item, Step, Scenario, register, explore
    sc = register(Scenario("my-scenario", "what it shows", script=(Item("local-lse", "add"),),
                           workers=((Step("a kernel step", lambda ctx: ...),),)))
    explore(sc).verdict

:func:`load` imports a Python file that registers scenarios (``localmap check --load FILE``).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from localmap.check.explore import Result, explore, replay
from localmap.check.library import (
    FAMILIES,
    LOCAL_IRQ,
    OFFSET_IRQ,
    Family,
    build_local_tables,
    family,
    offline_cpu,
    publish,
    raise_flag,
    scenario,
    sync_slot,
    when_idle,
    when_tasks_past,
)
from localmap.check.model import (
    G_BASE,
    HOT_SLOT,
    HOT_VA,
    LOCAL_PAGE,
    LOCAL_SLOT,
    OBJ_PA_PAGE,
    OBJ_SLOT,
    OBJ_VA,
    PAGE,
    PTR,
    SLOT_SHIFT,
    T_GLOBAL,
    T_LOCAL,
    T_OBJ,
    VAR_OFF,
    Ctx,
    Item,
    Scenario,
    Step,
    Violation,
    unit_page,
)
from localmap.check.scenarios import ALL_SCENARIOS, register
from localmap.errors import LocalmapError


def load(path: str | Path) -> list[Scenario]:
    """Import the Python file ``path``; return the scenarios it registered."""
    from localmap.check import scenarios as _sc

    p = Path(path)
    if not p.is_file():
        raise LocalmapError("no such scenario file", p)
    before = set(_sc.REGISTERED)
    name = f"localmap_user_scenarios_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:
        raise LocalmapError("not a Python file", p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except LocalmapError:
        raise
    except Exception as exc:  # a user's file: report it in one line
        line = None
        if isinstance(exc, SyntaxError) and exc.filename == str(p):
            line = exc.lineno
            exc = SyntaxError(exc.msg)          # (its text names the file and line again)
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == str(p):
                line = tb.tb_lineno
            tb = tb.tb_next
        raise LocalmapError(f"{type(exc).__name__}: {exc}", p, line) from None
    return [_sc.REGISTERED[n] for n in _sc.REGISTERED if n not in before]


__all__ = [
    "ALL_SCENARIOS", "FAMILIES", "G_BASE", "HOT_SLOT", "HOT_VA", "LOCAL_IRQ", "LOCAL_PAGE",
    "LOCAL_SLOT", "OBJ_PA_PAGE", "OBJ_SLOT", "OBJ_VA", "OFFSET_IRQ", "PAGE", "PTR", "SLOT_SHIFT",
    "T_GLOBAL", "T_LOCAL", "T_OBJ", "VAR_OFF", "Ctx", "Family", "Item", "Result", "Scenario",
    "Step", "Violation", "build_local_tables", "explore", "family", "load", "offline_cpu",
    "publish", "raise_flag", "register", "replay", "scenario", "sync_slot", "unit_page",
    "when_idle", "when_tasks_past",
]
