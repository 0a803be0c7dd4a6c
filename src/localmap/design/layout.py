"""Where the design puts things: split level, the global and local windows, DELTA.

Models DESIGN.md items 2-4. The split level is the level closest to the root whose entries are
smaller than the part of the kernel half that holds every non-linear mapping (the top
``2^(VA_BITS_MIN-1)`` bytes): at such a level a window of whole entries can be owned by the
local mapping alone. This rule reproduces every case DESIGN.md names (4K/48 and 64K/48/52: the
root; 16K/48: one below, 64 GB entries; 4K/52: one below, 512 GB entries) and extends it to the
other pairs (4K/39, 16K/36, 16K/47, 64K/42: the root; 16K/52: 64 GB entries).

Both windows are ``window_bytes`` (default one split-level entry) and aligned to the split-level
entry size; the global window is the highest aligned slot below VMALLOC_END, the local window the
slot right below it, so ``DELTA = -window_bytes`` (a multiple of the entry size, as required).
The layout is computed for the running VA width (``vabits_actual``); a 52-bit kernel that falls
back to 48/47 bits keeps the same split level number (its root then sits one level lower).
"""

from __future__ import annotations

from dataclasses import dataclass

from localmap.arch.arm64.memory import KernelLayout
from localmap.arch.arm64.pgtable import Geometry
from localmap.errors import LocalmapError


def split_level(geom: Geometry) -> int:
    """The level at which the local window owns whole entries (arm64 numbering)."""
    kernel_region = 1 << (geom.va_bits_min - 1)
    for level in range(geom.root_level, 4):
        if geom.entry_size(level) < kernel_region:
            return level
    raise LocalmapError(f"{geom.describe()}: no level can hold a dedicated window")  # unreachable


@dataclass(frozen=True)
class DesignLayout:
    geom: Geometry  # the geometry the CPU runs with (after any LPA2 fallback)
    config_geom: Geometry  # the configured geometry
    kernel: KernelLayout
    split_level: int
    window_bytes: int
    global_base: int
    local_base_window: int

    @property
    def delta(self) -> int:
        """DELTA as a signed integer: local address = global address + delta."""
        return self.local_base_window - self.global_base

    @property
    def global_window(self) -> tuple[int, int]:
        return self.global_base, self.global_base + self.window_bytes

    @property
    def local_window(self) -> tuple[int, int]:
        return self.local_base_window, self.local_base_window + self.window_bytes

    def in_local_window(self, va: int) -> bool:
        return self.local_base_window <= va < self.local_base_window + self.window_bytes

    def in_global_window(self, va: int) -> bool:
        return self.global_base <= va < self.global_base + self.window_bytes

    @property
    def split_entry_size(self) -> int:
        return self.geom.entry_size(self.split_level)


def design_layout(
    geom: Geometry, vabits_actual: int | None = None, window_bytes: int | None = None
) -> DesignLayout:
    kernel = KernelLayout.for_geometry(geom, vabits_actual)
    run_geom = Geometry(geom.page_size, kernel.vabits_actual) if kernel.vabits_actual != geom.va_bits else geom
    split = split_level(geom)
    entry = run_geom.entry_size(split)
    w = entry if window_bytes is None else int(window_bytes)
    if w <= 0 or w % entry:
        raise LocalmapError(
            f"window size {w} must be a positive multiple of the split-level entry ({entry} bytes)"
        )
    if split > run_geom.root_level and w > run_geom.entry_size(split - 1):
        raise LocalmapError(f"window size {w} exceeds one entry of the level above the split")
    top = kernel.vmalloc_end - kernel.vmalloc_end % entry
    global_base = top - w
    local_base = global_base - w
    if local_base < kernel.vmalloc_start:
        raise LocalmapError(
            f"{geom.describe()}: two {w}-byte windows do not fit in the vmalloc area "
            f"{kernel.vmalloc_start:#x}-{kernel.vmalloc_end:#x}"
        )
    return DesignLayout(run_geom, geom, kernel, split, w, global_base, local_base)
