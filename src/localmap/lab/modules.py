"""Kernel modules for the lab's module phase: pick them with their dependencies, unpacked.

Models what ``modprobe`` does before it calls ``init_module``: it finds each requested module,
orders it after every module it needs and decompresses the ``.ko.xz``/``.ko.gz`` files. The guest
then loads them with busybox ``insmod`` in that order and unloads them with ``rmmod`` in the
reverse order. A module's static per-CPU variables (its ``.data..percpu`` section) are what the
kernel places in the first chunk's *reserved* region (``reserved=1`` allocations), so this phase
is how a capture exercises the reserved chunk; :func:`percpu_section_size` reads that section's
size from the ELF.

Deliberate differences from modprobe: Debian's kernel packages ship no ``modules.dep`` (``depmod``
writes it at install time), so the dependencies come from each module's own ``.modinfo``
``depends=`` field, the same data depmod starts from (a ``modules.dep`` is used when present);
no ``softdep``/alias/blacklist handling, no module parameters; a name built into the kernel
(``modules.builtin``) is an error rather than a silent no-op; the name given to ``rmmod`` is the
file name with ``-`` turned into ``_`` (which is how Kbuild names modules).
"""

from __future__ import annotations

import gzip
import io
import lzma
from dataclasses import dataclass
from pathlib import Path

from localmap.errors import LocalmapError

LIST_FILE = "lib/modules/localmap.list"  # in the initramfs: one "FILE NAME" line per module


@dataclass(frozen=True)
class Module:
    name: str  # Kbuild module name, e.g. nf_conntrack
    path: str  # path under lib/modules/VERSION/, e.g. kernel/net/netfilter/nf_conntrack.ko.xz
    requested: bool  # asked for by the user (False: pulled in as a dependency)


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.gz", ".ko.zst", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str, source: str = "modules.dep") -> dict[str, list[str]]:
    """``{module path: [dependency paths in modules.dep order]}``."""
    deps: dict[str, list[str]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        head, sep, tail = line.partition(":")
        if not sep:
            raise LocalmapError("not a modules.dep line (no ':')", source, lineno)
        deps[head.strip()] = tail.split()
    return deps


def load_order(deps: dict[str, list[str]], names: list[str], builtin: set[str] | None = None) -> list[Module]:
    """Modules to load, dependencies first, each once, for the requested ``names``."""
    by_name = {module_name(p): p for p in deps}
    builtin = builtin or set()
    order: list[Module] = []
    seen: set[str] = set()
    for raw in names:
        want = raw.strip().replace("-", "_")
        if not want:
            continue
        if want not in by_name:
            if want in builtin:
                raise LocalmapError(f"module {raw!r} is built into this kernel, not a loadable module")
            raise LocalmapError(f"no module {raw!r} in this kernel's modules.dep")
        path = by_name[want]
        # modules.dep lists dependencies so that loading them last-to-first works
        for dep in reversed(deps[path]):
            if dep not in seen:
                if dep not in deps:
                    raise LocalmapError(f"modules.dep names {dep} as a dependency of {path} but has "
                                        "no line for it")
                seen.add(dep)
                order.append(Module(module_name(dep), dep, False))
        if path in seen:
            order = [Module(m.name, m.path, m.requested or m.path == path) for m in order]
        else:
            seen.add(path)
            order.append(Module(want, path, True))
    return order


def decompress(path: Path) -> bytes:
    data = Path(path).read_bytes()
    name = str(path)
    try:
        if name.endswith(".xz"):
            return lzma.decompress(data)
        if name.endswith(".gz"):
            return gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise LocalmapError(f"cannot decompress module: {exc}", path) from None
    if name.endswith(".zst"):
        raise LocalmapError("zstd-compressed modules are not supported (no zstd in the standard "
                            "library)", path)
    return data


def percpu_section_size(ko: bytes) -> int:
    """Size of the module's ``.data..percpu`` section (0 when it has none)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        sec = ELFFile(io.BytesIO(ko)).get_section_by_name(".data..percpu")
    except ELFError as exc:
        raise LocalmapError(f"module is not an ELF file: {exc}") from None
    return 0 if sec is None else sec.data_size


@dataclass
class ModuleSet:
    modules: list[Module]
    blobs: dict[str, bytes]  # name -> uncompressed .ko
    percpu: dict[str, int]  # name -> .data..percpu bytes

    def initramfs_entries(self, unload: bool = True, net_up: bool = False):
        """``lib/modules/NAME.ko`` files and the list the guest script reads; flag files ask
        it to unload the modules again and to set the network interfaces up after loading."""
        import stat

        from localmap.lab.initramfs import Entry

        d = stat.S_IFDIR | 0o755
        ents = [Entry("lib", d), Entry("lib/modules", d)]
        lines = []
        for m in self.modules:
            ents.append(Entry(f"lib/modules/{m.name}.ko", stat.S_IFREG | 0o644, self.blobs[m.name]))
            lines.append(f"{m.name}.ko {m.name}\n")
        ents.append(Entry(LIST_FILE, stat.S_IFREG | 0o644, "".join(lines).encode()))
        if unload:
            ents.append(Entry("lib/modules/localmap.unload", stat.S_IFREG | 0o644, b""))
        if net_up:
            ents.append(Entry("lib/modules/localmap.net", stat.S_IFREG | 0o644, b""))
        return ents


def modinfo(ko: bytes) -> dict[str, list[str]]:
    """The ``.modinfo`` section: ``key=value`` strings, NUL-separated (repeatable keys)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        sec = ELFFile(io.BytesIO(ko)).get_section_by_name(".modinfo")
    except ELFError as exc:
        raise LocalmapError(f"module is not an ELF file: {exc}") from None
    out: dict[str, list[str]] = {}
    if sec is None:
        return out
    for item in sec.data().split(b"\0"):
        k, sep, v = item.decode(errors="replace").partition("=")
        if sep:
            out.setdefault(k, []).append(v)
    return out


def depends(ko: bytes) -> list[str]:
    return [d for v in modinfo(ko).get("depends", []) for d in v.split(",") if d]


def resolve(tree: Path, version: str, names: list[str], optional: list[str] = ()) -> ModuleSet:
    """Resolve ``names`` against an extracted kernel package ``tree`` (``lib/modules/VERSION``).

    ``optional`` names are loaded after them when they are modules and skipped when they are
    built into the kernel (e.g. ``virtio_pci``: a module in 6.1, built in in 6.12)."""
    base = None
    for cand in (Path(tree) / "lib" / "modules" / version, Path(tree) / "usr" / "lib" / "modules" / version):
        if (cand / "kernel").is_dir():
            base = cand
            break
    if base is None:
        raise LocalmapError(f"the kernel package has no lib/modules/{version}/kernel", tree)
    builtin = set()
    if (base / "modules.builtin").is_file():
        builtin = {module_name(p) for p in (base / "modules.builtin").read_text().split()}
    names = [*names, *(n for n in optional if n.replace("-", "_") not in builtin)]
    if (base / "modules.dep").is_file():
        deps = parse_modules_dep((base / "modules.dep").read_text(), str(base / "modules.dep"))
        order = load_order(deps, names, builtin)
        blobs = {m.name: decompress(base / m.path) for m in order}
    else:
        paths = {}
        for p in sorted((base / "kernel").rglob("*.ko*")):
            paths.setdefault(module_name(p.name), p.relative_to(base).as_posix())
        blobs = {}
        order = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(name: str, requested: bool, chain: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                if requested:
                    order[:] = [Module(m.name, m.path, m.requested or m.name == name) for m in order]
                return
            if state.get(name) == 1:
                raise LocalmapError("module dependency cycle: " + " -> ".join((*chain, name)))
            if name not in paths:
                if name in builtin:
                    if requested:
                        raise LocalmapError(f"module {name!r} is built into this kernel, not a "
                                            "loadable module")
                    return
                raise LocalmapError(f"no module {name!r} in the kernel package"
                                    + (f" (needed by {chain[-1]})" if chain else ""))
            state[name] = 1
            blobs[name] = decompress(base / paths[name])
            for dep in depends(blobs[name]):
                visit(dep.replace("-", "_"), False, (*chain, name))
            state[name] = 2
            order.append(Module(name, paths[name], requested))

        for raw in names:
            if raw.strip():
                visit(raw.strip().replace("-", "_"), True, ())
    return ModuleSet(order, blobs, {n: percpu_section_size(b) for n, b in blobs.items()})
