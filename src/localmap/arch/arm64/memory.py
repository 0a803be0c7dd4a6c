"""arm64 kernel virtual-address layout, computed from the formulas of Linux 6.12
``arch/arm64/include/asm/memory.h`` and ``pgtable.h``.

The layout depends on the configured VA width and, for 52-bit kernels, on the width the CPU
actually runs with (``vabits_actual``: 52 with LPA2/LVA, else the 48/47-bit fallback): VMALLOC_END
moves up by the vmemmap pages the fallback leaves unused. Checked against the captures: with 4K
pages, VA_BITS=52 and LPA2 present (QEMU ``-cpu max``) VMALLOC_END is 0xffffc1ffbf800000, where
the first dynamic chunk of ``s1_612_4k_smp4`` ends.

Differences from the kernel: KASAN is not modelled (PAGE_END is always _PAGE_END(VA_BITS_MIN));
the kernel image size is not known here, so only the regions' bounds are given.
"""

from __future__ import annotations

from dataclasses import dataclass

from localmap.arch.arm64.pgtable import Geometry
from localmap.errors import LocalmapError
from localmap.units import MASK64

SZ_8M = 8 << 20
SZ_16M = 16 << 20
SZ_1G = 1 << 30
SZ_2G = 2 << 30
STRUCT_PAGE_SIZE = 64


def _neg(x: int) -> int:
    return (-x) & MASK64


@dataclass(frozen=True)
class KernelLayout:
    geom: Geometry
    vabits_actual: int

    @classmethod
    def for_geometry(cls, geom: Geometry, vabits_actual: int | None = None) -> "KernelLayout":
        actual = geom.va_bits if vabits_actual is None else vabits_actual
        if actual not in (geom.va_bits, geom.va_bits_min):
            allowed = sorted({geom.va_bits, geom.va_bits_min})
            raise LocalmapError(
                f"a {geom.describe()} kernel runs with "
                f"{' or '.join(str(a) for a in allowed)} VA bits, not {actual}"
            )
        return cls(geom, actual)

    # memory.h
    @property
    def page_offset(self) -> int:
        return _neg(1 << self.geom.va_bits)

    @staticmethod
    def _page_end(va: int) -> int:
        return _neg(1 << (va - 1))

    @property
    def page_end(self) -> int:
        return self._page_end(self.geom.va_bits_min)

    @property
    def modules_vaddr(self) -> int:
        return self.page_end

    @property
    def modules_end(self) -> int:
        return self.modules_vaddr + SZ_2G

    @property
    def kimage_vaddr(self) -> int:
        return self.modules_end

    @property
    def vmemmap_end(self) -> int:
        return _neg(SZ_1G)

    @property
    def vmemmap_size(self) -> int:
        return ((self.page_end - self.page_offset) >> self.geom.page_shift) * STRUCT_PAGE_SIZE

    @property
    def vmemmap_start(self) -> int:
        return self.vmemmap_end - self.vmemmap_size

    @property
    def pci_io_start(self) -> int:
        return self.vmemmap_end + SZ_8M

    @property
    def pci_io_end(self) -> int:
        return self.pci_io_start + SZ_16M

    @property
    def fixaddr_top(self) -> int:
        return _neg(SZ_8M)

    # pgtable.h
    @property
    def vmalloc_start(self) -> int:
        return self.modules_end

    @property
    def vmalloc_end(self) -> int:
        if self.geom.va_bits == self.geom.va_bits_min:
            return self.vmemmap_start - SZ_8M
        unused = (_neg(1 << self.vabits_actual) - self.page_offset) >> self.geom.page_shift
        return self.vmemmap_start + unused * STRUCT_PAGE_SIZE - SZ_8M

    def regions(self) -> list[tuple[str, int, int]]:
        return [
            ("linear map", _neg(1 << self.vabits_actual), self.page_end),
            ("modules", self.modules_vaddr, self.modules_end),
            ("vmalloc", self.vmalloc_start, self.vmalloc_end),
            ("vmemmap", self.vmemmap_start, self.vmemmap_end),
            ("PCI I/O", self.pci_io_start, self.pci_io_end),
            ("fixmap top", self.fixaddr_top, self.fixaddr_top),
        ]
