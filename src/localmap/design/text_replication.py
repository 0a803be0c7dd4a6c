"""Kernel text replication on the per-CPU kernel page tables: what it costs.

What it models: the talk's "future use case". With per-CPU roots (DESIGN.md items 5-6) each CPU
can map the kernel image's text and read-only data to a copy in its own NUMA node's memory
(``per="node"``; ``per="cpu"`` gives every CPU its own copy). The root entry that covers the
kernel image (arm64 4K/48: the 512 GiB entry holding the modules area, the image and the start
of vmalloc) then points, per replica, to a private table subtree down to the leaves of the
image range; every other entry of those private tables must stay identical to swapper's (the
"sync" of DESIGN.md item 6, now also one level down, for the vmalloc and module mappings that
share the replicated tables). Module text may be replicated too (its pages copied per replica
and its leaf tables private), or shared (only the shared tables are synced).

Every code patch -- boot-time alternatives, static keys, ftrace, kprobes, all of which go through
``aarch64_insn_patch_text*`` -> ``__aarch64_insn_write`` -- must then write every copy, each
through a temporary alias of that copy's physical page (the text VA resolves to the patching
CPU's own copy only), clean the D-cache and invalidate the I-cache of each copy, and make every
CPU execute a context-synchronisation event; :mod:`localmap.check.ktr` checks why each step is
needed.

Deliberate simplifications: the image range is ``[_stext, __end_rodata)`` (``.init`` is freed,
``.data`` stays single); one root entry covers it (true on arm64 for every granule/VA pair);
leaves are pages (``mapping="pte"``) or blocks of the level above (``"block"``, arm64's
``map_kernel_segment`` where alignment allows); the original copy (node 0 / CPU 0) costs nothing.
"""

from __future__ import annotations

from localmap.arch.arm64.memory import KernelLayout
from localmap.arch.arm64.pgtable import Geometry
from localmap.errors import LocalmapError

# Debian 6.12.117 arm64 (the kernel of the shared captures), from s1_612_4k_smp4's kallsyms:
# _stext, _etext / __start_rodata, __end_rodata (tests read them from the capture again).
DEBIAN_612_ARM64 = {"stext": 0xFFFF800080010000, "etext": 0xFFFF800080F50000,
                    "start_rodata": 0xFFFF800080F50000, "end_rodata": 0xFFFF800081CEF000}


def _regions(lo: int, hi: int, size: int) -> int:
    """How many ``size``-aligned regions ``[lo, hi)`` touches."""
    return 0 if hi <= lo else (hi - 1) // size - lo // size + 1


def text_replication_cost(nodes: int, cpus: int, *, per: str = "node", geom: Geometry | None = None,
                          image_range: tuple[int, int] | None = None,
                          text_bytes: int | None = None, rodata_bytes: int | None = None,
                          modules_bytes: int = 0, replicate_modules: bool = False,
                          mapping: str = "pte", with_design: bool = True) -> dict:
    """Memory, page tables and patching work of text replication (plain data).

    ``image_range`` is the replicated VA range (default: Debian 6.12.117 arm64's
    ``[_stext, __end_rodata)``); ``text_bytes``/``rodata_bytes`` only label it. ``with_design``:
    the per-CPU roots already exist (the local-mapping design); otherwise their copies are
    charged here too."""
    if nodes < 1 or cpus < 1:
        raise LocalmapError("--nodes and --cpus must be at least 1")
    if cpus < nodes:
        raise LocalmapError(f"{cpus} CPUs cannot populate {nodes} NUMA nodes")
    if per not in ("node", "cpu"):
        raise LocalmapError(f"replication per {per!r}: choose node or cpu")
    if mapping not in ("pte", "block"):
        raise LocalmapError(f"mapping {mapping!r}: choose pte or block")
    if modules_bytes < 0:
        raise LocalmapError("module text size must not be negative")
    g = geom or Geometry(4096, 48)
    lay = KernelLayout.for_geometry(g)
    d = DEBIAN_612_ARM64
    lo, hi = image_range or (d["stext"], d["end_rodata"])
    if text_bytes is None and image_range is None:
        text_bytes, rodata_bytes = d["etext"] - d["stext"], d["end_rodata"] - d["start_rodata"]
    image_bytes = hi - lo
    if image_bytes <= 0:
        raise LocalmapError("empty image range")
    root_lvl = g.root_level
    if lo // g.entry_size(root_lvl) != (hi - 1) // g.entry_size(root_lvl):
        raise LocalmapError("the image range spans two root entries")
    replicas = (nodes if per == "node" else cpus) - 1
    leaf = 3 if mapping == "pte" else 2
    # private tables of one replica: one table per distinct region of the parent entry's span,
    # from the level below the root down to the leaf level
    tables: dict[int, int] = {}
    for level in range(root_lvl + 1, leaf + 1):
        tables[level] = _regions(lo, hi, g.entry_size(level - 1))
    mod_tables: dict[int, int] = {}
    if replicate_modules and modules_bytes:
        m_lo = lay.modules_vaddr
        m_hi = m_lo + modules_bytes  # module text packed from the start of the modules area
        for level in range(root_lvl + 2, 4):  # the level below the root is already private
            mod_tables[level] = _regions(m_lo, m_hi, g.entry_size(level - 1))
    per_replica_tables = sum(tables.values()) + sum(mod_tables.values())
    pgtable_bytes = replicas * per_replica_tables * g.page_size
    root_copies = 0 if with_design else (cpus - 1) * g.root_alloc_bytes
    memory = replicas * (image_bytes + (modules_bytes if replicate_modules else 0))
    copies = replicas + 1
    # tables that cover the replicated root entry but not the image: their entries are shared
    # mappings (modules, vmalloc) and every change must be written into each replica's copy
    shared_entries = g.ptrs_per_table(root_lvl + 1) - _regions(lo, hi, g.entry_size(root_lvl + 1))
    return {
        "nodes": nodes, "cpus": cpus, "per": per, "replicas": replicas, "copies": copies,
        "granule": g.page_size, "va_bits": g.va_bits, "mapping": mapping,
        "image_range": [hex(lo), hex(hi)], "image_bytes": image_bytes,
        "text_bytes": text_bytes, "rodata_bytes": rodata_bytes,
        "modules_bytes": modules_bytes, "replicate_modules": replicate_modules,
        "memory_bytes": memory,
        "private_tables_per_replica": {f"L{k}": v for k, v in tables.items()},
        "module_tables_per_replica": {f"L{k}": v for k, v in mod_tables.items()},
        "pgtable_bytes": pgtable_bytes, "root_copy_bytes": root_copies,
        "total_bytes": memory + pgtable_bytes + root_copies,
        "synced_entries_per_replica": shared_entries,
        "per_patch": {
            "copies_written": copies,
            "alias_pte_writes": 2 * copies,     # map and unmap the poke alias of each copy
            "local_tlbi": copies,               # after each unmap, before the next copy's alias
            "dcache_clean_lines": copies,       # per patched cache line
            "icache_invalidate_lines": copies,  # by each copy's alias: the I-cache is PIPT
            "cross_cpu_isb": cpus,              # every CPU executes a context synchronisation
            "today": {"copies_written": 1, "alias_pte_writes": 2, "local_tlbi": 1,
                      "dcache_clean_lines": 1, "icache_invalidate_lines": 1, "cross_cpu_isb": cpus},
        },
    }


def text_replication_table(nodes_list=(1, 2, 4, 8), cpus: int = 160, **kw) -> list[dict]:
    """Rows across NUMA node counts, per node and per CPU."""
    rows = []
    for per in ("node", "cpu"):
        for n in nodes_list:
            if per == "cpu" and n != nodes_list[0]:
                continue  # per-CPU replication does not depend on the node count
            rows.append(text_replication_cost(n, cpus, per=per, **kw))
    return rows


__all__ = ["DEBIAN_612_ARM64", "text_replication_cost", "text_replication_table"]
