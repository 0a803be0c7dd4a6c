"""The TTBR1 audit of Linux 6.12: the table against the real source, and against the checker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from localmap.check.explore import explore
from localmap.check.scenarios import ALL_SCENARIOS
from localmap.design.ttbr1_audit import AUDIT, PATTERNS, TARBALL, audit_table, kernel_source, scan


def test_rows_are_unique_and_name_known_kinds():
    keys = [(r.file, r.function) for r in AUDIT]
    assert len(keys) == len(set(keys))
    for r in AUDIT:
        assert r.kinds and set(r.kinds) <= set(PATTERNS)
        assert r.loads and r.design
        assert r.scenario or r.why, r  # a scenario, or the reason there is none


def test_the_paths_the_issue_names_are_audited():
    names = {r.function for r in AUDIT}
    for fn in ("cpu_enable_swapper_cnp", "__cpu_replace_ttbr1", "paging_init", "kasan_init_shadow",
               "secondary_startup", "cpu_resume", "swsusp_arch_resume",
               "arm64_relocate_new_kernel", "arch_remove_memory"):
        assert fn in names, fn


@pytest.mark.parametrize("scenario", sorted({r.scenario for r in AUDIT if r.scenario}))
def test_each_audited_hazard_is_unsafe_and_has_a_safe_twin(scenario):
    sc = ALL_SCENARIOS[scenario]
    assert explore(sc).verdict == "unsafe"
    assert sc.twin and explore(ALL_SCENARIOS[sc.twin]).verdict == "safe"


def test_table_rows_are_plain_data():
    rows = audit_table()
    assert len(rows) == len(AUDIT) and {"file", "function", "scenario"} <= set(rows[0])


def test_scanner_finds_functions_macros_symbols_and_ignores_comments(tmp_path):
    # a miniature tree written for this test (not kernel text)
    d = tmp_path / "arch/arm64/kernel"
    d.mkdir(parents=True)
    (d / "a.c").write_text(
        "/* swapper_pg_dir in a comment */\n"
        "static void foo(int x)\n{\n\tbar(swapper_pg_dir);\n}\n"
        "// cpu_replace_ttbr1(x) in a comment\n"
        "void baz(void);\nextern pgd_t swapper_pg_dir[];\n"
        "int qux(void)\n{\n\tcpu_replace_ttbr1(p);\n\treturn 0;\n}\n")
    (d / "b.S").write_text(
        "SYM_FUNC_START(entry_thing)\n\tadrp x1, swapper_pg_dir\n\tmsr ttbr1_el1, x1\n"
        "SYM_FUNC_END(entry_thing)\n\t.macro mac, t\n\tsub \\t, \\t, #TRAMP_SWAPPER_OFFSET\n"
        "\t.endm\n")
    hits = {(h.file.split("/")[-1], h.function, h.kind) for h in scan(tmp_path)}
    assert hits == {("a.c", "foo", "uses swapper_pg_dir"),
                    ("a.c", "swapper_pg_dir", "uses swapper_pg_dir"),
                    ("a.c", "qux", "writes TTBR1"),
                    ("b.S", "entry_thing", "uses swapper_pg_dir"),
                    ("b.S", "entry_thing", "writes TTBR1"),
                    ("b.S", "mac", "offset from the TTBR1 root")}


@pytest.mark.slow
def test_the_table_is_exactly_what_linux_6_12_contains():
    if not Path(TARBALL).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{TARBALL} missing (apt-get install linux-source-6.12)")
        pytest.skip(f"{TARBALL} not installed")
    root = kernel_source()
    found: dict = {}
    for h in scan(root):
        found.setdefault((h.file, h.function), set()).add(h.kind)
    table = {(r.file, r.function): set(r.kinds) for r in AUDIT}
    assert set(found) - set(table) == set(), "places in the source missing from the audit"
    assert set(table) - set(found) == set(), "audit rows the source does not have"
    assert found == table


def test_the_documented_table_is_the_audit():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "checker.md").read_text()
    for r in AUDIT:
        short = r.file.replace("arch/arm64/", "a/")
        line = next((ln for ln in doc.splitlines()
                     if ln.startswith(f"| `{short}` | `{r.function}` |")), None)
        assert line is not None, (r.file, r.function)
        assert r.loads in line and r.design in line
        assert (f"`{r.scenario}`" in line) if r.scenario else ("| none" in line)
