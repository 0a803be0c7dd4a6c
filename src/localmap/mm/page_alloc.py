"""Physical page frames and their contents.

Models the buddy allocator only as far as this project needs: order-0 frames (and physically
contiguous runs for the KPTI ``{tramp, reserved, root}`` blocks), handed out from a bump pointer
with a free list, plus byte-addressable contents so that loads and stores through the MMU model
read and write real data. Frames are counted by owner so page-table memory can be accounted.

Differences from the kernel: no zones, orders, migrate types or NUMA; contents are created on
first write (an untouched frame reads as zeroes, as a freshly zeroed page would); a freed frame
is poisoned in the model (its contents dropped, its number recorded) so stale accesses are caught.
"""

from __future__ import annotations

from collections import Counter

from localmap.errors import LocalmapError

PHYS_BASE = 0x4000_0000  # QEMU virt's RAM starts at 1 GiB


class FrameAllocator:
    def __init__(self, page_size: int, base: int = PHYS_BASE):
        self.page_size = page_size
        self.base = base
        self._next = base
        self._free: list[int] = []
        self.owner: dict[int, str] = {}
        self.data: dict[int, bytearray] = {}
        self.freed: set[int] = set()
        self.by_kind: Counter[str] = Counter()

    def alloc(self, kind: str = "data") -> int:
        if self._free:
            pa = self._free.pop()
        else:
            pa = self._next
            self._next += self.page_size
        self.owner[pa] = kind
        self.freed.discard(pa)
        self.by_kind[kind] += 1
        return pa

    def alloc_contig(self, nr: int, kind: str = "data") -> int:
        """``nr`` physically contiguous frames (always fresh, never from the free list)."""
        pa = self._next
        self._next += nr * self.page_size
        for i in range(nr):
            self.owner[pa + i * self.page_size] = kind
            self.by_kind[kind] += 1
        return pa

    def free(self, pa: int) -> None:
        kind = self.owner.pop(pa, None)
        if kind is None:
            raise LocalmapError(f"freeing frame {pa:#x} that is not allocated")
        self.by_kind[kind] -= 1
        self.data.pop(pa, None)
        self.freed.add(pa)
        self._free.append(pa)

    def is_allocated(self, pa: int) -> bool:
        return (pa - pa % self.page_size) in self.owner

    @property
    def nr_allocated(self) -> int:
        return len(self.owner)

    # --- contents -------------------------------------------------------------------------
    def _frame(self, pa: int, create: bool) -> bytearray | None:
        frame = pa - pa % self.page_size
        if frame not in self.owner:
            raise LocalmapError(f"access to physical address {pa:#x}, which is not an allocated frame")
        buf = self.data.get(frame)
        if buf is None and create:
            buf = self.data[frame] = bytearray(self.page_size)
        return buf

    def load(self, pa: int, size: int) -> int:
        off = pa % self.page_size
        if off + size > self.page_size:
            raise LocalmapError(f"access at {pa:#x} of {size} bytes crosses a page")
        buf = self._frame(pa, create=False)
        if buf is None:
            return 0
        return int.from_bytes(buf[off : off + size], "little")

    def store(self, pa: int, size: int, value: int) -> None:
        off = pa % self.page_size
        if off + size > self.page_size:
            raise LocalmapError(f"access at {pa:#x} of {size} bytes crosses a page")
        buf = self._frame(pa, create=True)
        assert buf is not None
        buf[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
