"""The one way tests find the real captures (``shared/data/bundles`` beside the clone).

Use the fixtures: ``shared_data`` (the bundles folder), ``s1`` and ``s2`` (the two captures),
``shared_bundle`` (parametrized over both). When the captures are missing a test that needs them
is skipped with the reason, except under CI (``CI=true``), where it fails: CI must run them.
``LOCALMAP_SHARED_DATA`` points elsewhere (the folder holding ``bundles/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LOCALMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARED_BUNDLES = ("s1_612_4k_smp4", "s2_612_4k_smp2_page")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def need_shared(name: str | None = None) -> Path:
    """The bundles folder, or bundle ``name`` in it; skip (fail under CI) when it is missing."""
    path = SHARED_DATA / "bundles" / (name or "")
    if not (path / "trace.gz").is_file() if name else not path.is_dir():
        why = (f"shared capture {name or 'folder'} not found at {path} (put shared/ beside the "
               "clone or set LOCALMAP_SHARED_DATA)")
        if in_ci():
            pytest.fail(why + "; CI must run the real-data tests", pytrace=False)
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the shared bundles."""
    return need_shared()


@pytest.fixture(scope="session")
def s1() -> Path:
    """``s1_612_4k_smp4``: 6.12 embed, 4 CPUs."""
    return need_shared("s1_612_4k_smp4")


@pytest.fixture(scope="session")
def s2() -> Path:
    """``s2_612_4k_smp2_page``: 6.12 page mode, 2 CPUs."""
    return need_shared("s2_612_4k_smp2_page")


@pytest.fixture(scope="session", params=SHARED_BUNDLES)
def shared_bundle(request) -> Path:
    """Each shared capture in turn."""
    return need_shared(request.param)


@pytest.fixture(autouse=True)
def _terminal_width_of_a_pipe(monkeypatch):
    """Commands print as into a pipe (the console's fixed width), whatever COLUMNS the shell or
    a test runner exports: a test that wants another width sets it itself."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
