"""The package layering of docs/architecture.md, checked on the source (every import, also the
ones inside functions): no import cycle between packages, every import points down the layers,
and only the command layer (``localmap.cli``) imports ``rich`` or ``argparse``."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "localmap"

# Lower rank = lower layer. A package may import itself and packages of a strictly lower rank;
# packages of equal rank are independent of each other.
RANK = {
    "__init__": 0, "errors": 0,
    "units": 1, "progress": 1, "fileio": 1,
    "arch": 2, "ingest": 2, "debian": 2,
    "mm": 3,
    "design": 4,
    "analysis": 5, "check": 5, "perf": 5, "lab": 5,
    "fleet": 6,
    "report": 7,
    "cli": 8,
    "__main__": 9,
}
PRESENTATION = {"rich", "argparse"}
MAY_PRESENT = {"cli", "__main__"}


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, src: Path = SRC) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
    rel = path.relative_to(src.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from localmap import cli`
    return out


def part_of(path: Path, src: Path = SRC) -> str:
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


@functools.lru_cache(maxsize=None)
def package_graph(src: Path = SRC) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(part -> localmap parts it imports, part -> third-party top-level modules it imports)."""
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    parts = {part_of(p, src) for p in src.rglob("*.py")}
    for path in sorted(src.rglob("*.py")):
        me = part_of(path, src)
        internal.setdefault(me, set())
        external.setdefault(me, set())
        for name in imports_of(path, src):
            bits = name.split(".")
            if bits[0] == src.name:
                if len(bits) > 1 and bits[1] in parts and bits[1] != me:
                    internal[me].add(bits[1])
            elif bits[0]:
                external[me].add(bits[0])
    return internal, external


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def violations(internal: dict[str, set[str]], external: dict[str, set[str]]) -> list[str]:
    out = []
    for part in sorted(internal):
        if part not in RANK:
            out.append(f"{part}: not placed in a layer (add it to RANK and docs/architecture.md)")
            continue
        for dep in sorted(internal[part]):
            if RANK.get(dep, 99) >= RANK[part]:
                out.append(f"{part} imports {dep}: not a lower layer")
        if part not in MAY_PRESENT:
            for mod in sorted(external[part] & PRESENTATION):
                out.append(f"{part} imports {mod}: presentation belongs to localmap.cli")
    return out


def test_no_cycle_between_packages():
    internal, _ = package_graph()
    assert find_cycle(internal) is None, " -> ".join(find_cycle(internal))


def test_imports_follow_the_layers_and_models_do_not_present():
    internal, external = package_graph()
    assert "cli" in internal and "mm" in internal      # the walk saw the tree
    assert violations(internal, external) == []


def test_every_command_lives_in_the_command_layer():
    from localmap.cli import COMMANDS

    assert all(name.startswith("localmap.cli.") for name in COMMANDS)
    stray = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if part_of(p) not in MAY_PRESENT and ("add_parser(" in p.read_text()
                                                   or "set_defaults(func" in p.read_text())]
    assert stray == []


# the checker itself must be able to fail: a tree with a cycle and a model importing rich

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "localmap"
    for name, text in files.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return src


def test_checker_finds_a_cycle_and_a_presenting_model(tmp_path):
    src = _tree(tmp_path, {
        "mm/__init__.py": "",
        "mm/percpu.py": "def f():\n    from localmap.arch.arm64 import pgtable\n",
        "arch/__init__.py": "",
        "arch/arm64/pgtable.py": "from localmap.mm import percpu\nimport rich.table\n",
        "cli/__init__.py": "import argparse\nfrom ..mm import percpu\n",
    })
    internal, external = package_graph(src)
    assert internal == {"mm": {"arch"}, "arch": {"mm"}, "cli": {"mm"}}
    assert find_cycle(internal) in (["arch", "mm", "arch"], ["mm", "arch", "mm"])
    v = violations(internal, external)
    assert "arch imports mm: not a lower layer" in v
    assert "arch imports rich: presentation belongs to localmap.cli" in v
    assert not any(s.startswith("cli") for s in v)


@pytest.mark.parametrize("text", ["if TYPE_CHECKING:\n    from localmap.cli import main\n"])
def test_type_checking_imports_do_not_count(tmp_path, text):
    src = _tree(tmp_path, {"mm/__init__.py": text, "cli/__init__.py": ""})
    internal, _ = package_graph(src)
    assert internal["mm"] == set()
