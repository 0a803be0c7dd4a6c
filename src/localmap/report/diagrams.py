"""The talk's "Before/After" figures, drawn from the model's state rather than by hand.

Models the kernel VA layout of arm64 (``localmap.arch.arm64.memory.KernelLayout``) and the
design's windows (``localmap.design.layout``) as two columns of address ranges, high addresses on
top, and the translation-table topology of every CPU's TTBR1 before (one shared swapper root) and
after (CPU 0 on swapper, every other CPU on its own root copy whose local-window entries lead to
private tables). Deliberately not to scale: the ranges span 2^21 to 2^51 bytes, so every range
gets a box with its exact bounds and size written in it.
"""

from __future__ import annotations

from localmap.design.layout import DesignLayout
from localmap.report.svg import Canvas
from localmap.units import fmt_bytes

GLOBAL_FILL, LOCAL_FILL, VMALLOC_FILL, OTHER_FILL = "#cfe3f7", "#f9d4c8", "#e7f2e1", "#f1f1f1"


def _regions_before(d: DesignLayout) -> list[tuple[str, int, int, str]]:
    out = []
    for name, lo, hi in d.kernel.regions():
        if hi <= lo:
            continue
        out.append((name, lo, hi, VMALLOC_FILL if name == "vmalloc" else OTHER_FILL))
    return out


def _regions_after(d: DesignLayout) -> list[tuple[str, int, int, str]]:
    out = []
    g_lo, g_hi = d.global_window
    l_lo, l_hi = d.local_window
    for name, lo, hi, fill in _regions_before(d):
        if name != "vmalloc":
            out.append((name, lo, hi, fill))
            continue
        if lo < l_lo:
            out.append(("vmalloc", lo, l_lo, VMALLOC_FILL))
        out.append(("local window", l_lo, l_hi, LOCAL_FILL))
        out.append(("global window", g_lo, g_hi, GLOBAL_FILL))
        if g_hi < hi:
            out.append(("vmalloc (top)", g_hi, hi, VMALLOC_FILL))
    return out


def va_layout_figure(d: DesignLayout, first_chunk_mode: str | None, live_chunks: int | None,
                     unit_size: int | None, chunk_span: int | None) -> str:
    """Two columns (before / after) of the kernel VA ranges, with the percpu chunks marked."""
    before, after = _regions_before(d), _regions_after(d)
    rows = max(len(before), len(after))
    bh, gap, top = 46, 6, 40
    width = 900
    c = Canvas("va-layout", width, top + rows * (bh + gap) + 70)
    colx, colw = (20, 470), 410
    c.text(colx[0], 22, "Before: today's arm64 kernel VA layout", size=13, weight="bold")
    c.text(colx[1], 22, "After: dedicated global and local percpu windows", size=13, weight="bold")
    for col, regs in zip(colx, (before, after)):
        for i, (name, lo, hi, fill) in enumerate(sorted(regs, key=lambda r: -r[1])):
            y = top + i * (bh + gap)
            lines = [name, f"{lo:#018x} - {hi:#018x}", fmt_bytes(hi - lo)]
            kind = name.replace(" ", "-")
            c.box(col, y, colw, bh, lines, fill=fill, kind=kind)
    y0 = top + rows * (bh + gap) + 14
    fc = {"embed": "the first chunk is embedded in the linear map",
          "page": "the first chunk is mapped in vmalloc space (percpu_alloc=page)"}.get(
        first_chunk_mode or "", "first-chunk mode unknown")
    c.text(colx[0], y0, f"Before: {fc}; dynamic chunks come from the top of vmalloc.", size=11)
    if live_chunks is not None and unit_size and chunk_span:
        c.text(colx[0], y0 + 16, f"After: {live_chunks} live chunks of {fmt_bytes(chunk_span)} in the "
                                 f"global window, each with a {fmt_bytes(unit_size)} slice in the local "
                                 f"window (the model's final state).", size=11)
    c.text(colx[0], y0 + 32, f"DELTA = {d.delta:#x} ({'-' if d.delta < 0 else ''}"
                             f"{fmt_bytes(abs(d.delta))}); split level {d.split_level}, "
                             f"entry {fmt_bytes(d.split_entry_size)}", size=11)
    return c.svg()


def tables_figure(d: DesignLayout, online_cpus: int, private_tables: dict[int, int] | None,
                  root_copy_bytes: int | None) -> str:
    """TTBR1 topology per CPU before and after; ``private_tables`` maps level -> tables per CPU."""
    shown = min(online_cpus, 4)
    width, height = 960, 150 + shown * 70
    c = Canvas("percpu-tables", width, height)
    c.text(20, 22, "Before: every CPU's TTBR1 -> swapper_pg_dir", size=13, weight="bold")
    c.text(470, 22, "After: per-CPU roots, private tables for the local window", size=13, weight="bold")
    lvl = d.split_level
    top = 44
    # before: all CPUs point at one root, which leads to one set of shared tables
    root_y = top + (shown * 70 - 50) / 2
    for i in range(shown):
        y = top + i * 70
        c.box(20, y, 80, 40, [f"CPU {i if i < shown - 1 or shown == online_cpus else online_cpus - 1}",
                              "TTBR1"], kind="cpu-before")
        c.arrow(100, y + 20, 160, root_y + 25)
    c.box(160, root_y, 120, 50, ["swapper_pg_dir", f"level {d.geom.root_level} root"],
          fill=GLOBAL_FILL, kind="root-shared")
    c.arrow(280, root_y + 25, 320, root_y + 25)
    c.box(320, root_y - 10, 120, 70, ["shared tables", "vmalloc, chunks,", "linear map, ..."],
          fill=OTHER_FILL, kind="shared-tables")
    # after: CPU -> root (swapper or copy) [-> copied levels down to the split] -> private tables
    copied = d.split_level - d.geom.root_level  # table levels copied per CPU below the root
    priv = " ".join(f"L{k}:{v}" for k, v in sorted(private_tables.items())) if private_tables else "private"
    for i in range(shown):
        cpu = i if i < shown - 1 or shown == online_cpus else online_cpus - 1
        y = top + i * 70
        c.box(470, y, 60, 40, [f"CPU {cpu}", "TTBR1"], kind="cpu-after")
        c.arrow(530, y + 20, 545, y + 20)
        root = "swapper_pg_dir" if cpu == 0 else f"root copy {cpu}"
        c.box(545, y, 95, 40, [root, f"level {d.geom.root_level}"],
              fill=GLOBAL_FILL if cpu == 0 else LOCAL_FILL, kind="root-after")
        x = 640
        if copied:
            c.arrow(x, y + 20, x + 12, y + 20)
            c.box(x + 12, y, 58, 40, ["swapper's" if cpu == 0 else "copy of", f"L{d.geom.root_level + 1}" + (
                f"..L{d.split_level}" if copied > 1 else "")], fill=GLOBAL_FILL if cpu == 0 else LOCAL_FILL,
                  size=10, kind="copied-level")
            x += 70
        c.arrow(x, y + 12, 850, root_y + 25, dash=True)
        c.arrow(x, y + 30, x + 12, y + 30)
        c.box(x + 12, y + 18, 78, 22, priv, fill=LOCAL_FILL, size=9, kind="private-tables")
    c.box(850, root_y - 10, 100, 70, ["shared tables", "(identical for", "all CPUs)"],
          fill=OTHER_FILL, kind="shared-tables")
    c.text(470, top + shown * 70 + 2, "private tables per CPU below the split level, "
           "for the local window only" + ("" if private_tables else " (counts not available)"), size=10)
    y0 = top + shown * 70 + 20
    if online_cpus > shown:
        c.text(20, y0, f"({online_cpus - shown} more CPUs like CPU 1)", size=11)
    rc = f"root copy {fmt_bytes(root_copy_bytes)} each" if root_copy_bytes else ""
    c.text(20, y0 + 18, f"Split level {lvl} (entries of {fmt_bytes(d.split_entry_size)}); "
                        f"{online_cpus - 1} root copies; {rc}", size=11)
    return c.svg()
