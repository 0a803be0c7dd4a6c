"""Reader for a kernel ``.config`` (plain, or ``/proc/config.gz``): what the model needs.

Page size, VA bits, page-table levels, NR_CPUS, the preemption model and whether PREEMPT_COUNT
is built in, plus the options that size the percpu first chunk (MODULES, MEM_ALLOC_PROFILING,
RANDOM_KMALLOC_CACHES, LOCKDEP). Only arm64 configs carry a page size symbol we know; other
architectures are refused with a clear message where the page size is needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.ingest.textfile import read_text

_PAGE_SYMBOLS = {
    "CONFIG_ARM64_4K_PAGES": 4096, "CONFIG_ARM64_16K_PAGES": 16384,
    "CONFIG_ARM64_64K_PAGES": 65536, "CONFIG_PAGE_SIZE_4KB": 4096,
    "CONFIG_PAGE_SIZE_16KB": 16384, "CONFIG_PAGE_SIZE_64KB": 65536,
}


# the numeric symbols the model reads, with the values a kernel accepts: checked as the config
# is read (plain ASCII decimal; a bad one is refused at its line, used or not)
_NUMBERS = {"CONFIG_ARM64_VA_BITS": (36, 52), "CONFIG_PGTABLE_LEVELS": (2, 5),
            "CONFIG_NR_CPUS": (1, 65536)}
_VERSION_RE = re.compile(r"^# Linux/\S+ (\d+)\.(\d+)(?:\.(\d+))?\S* Kernel Configuration")


@dataclass
class KConfig:
    path: str
    values: dict[str, str] = field(default_factory=dict)
    version: tuple[int, int, int] | None = None   # from the "# Linux/arm64 X.Y.Z" header

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def enabled(self, name: str) -> bool:
        return self.values.get(name) in ("y", "m")

    @property
    def page_size(self) -> int:
        for sym, size in _PAGE_SYMBOLS.items():
            if self.enabled(sym):
                return size
        raise LocalmapError("no page-size option (expected CONFIG_ARM64_{4K,16K,64K}_PAGES=y)",
                            self.path)

    @property
    def va_bits(self) -> int:
        v = self.get("CONFIG_ARM64_VA_BITS")
        if v is None:
            raise LocalmapError("no CONFIG_ARM64_VA_BITS (not an arm64 config?)", self.path)
        return int(v)       # (checked by parse_config)

    @property
    def pgtable_levels(self) -> int | None:
        v = self.get("CONFIG_PGTABLE_LEVELS")
        return int(v) if v else None

    @property
    def nr_cpus(self) -> int | None:
        v = self.get("CONFIG_NR_CPUS")
        return int(v) if v else None

    @property
    def preempt_model(self) -> str:
        for sym, name in (("CONFIG_PREEMPT_RT", "rt"), ("CONFIG_PREEMPT_DYNAMIC", "dynamic"),
                          ("CONFIG_PREEMPT", "full"), ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"),
                          ("CONFIG_PREEMPT_NONE", "none")):
            if self.enabled(sym):
                return name
        return "none"

    @property
    def preempt_count(self) -> bool:
        return self.enabled("CONFIG_PREEMPT_COUNT") or self.preempt_model in ("rt", "dynamic",
                                                                              "full")

    @property
    def modules(self) -> bool:
        return self.enabled("CONFIG_MODULES")

    # --- include/linux/percpu.h sizes -------------------------------------------------------
    @property
    def percpu_module_reserve(self) -> int:
        if not self.modules:
            return 0
        return 8 << 13 if self.enabled("CONFIG_MEM_ALLOC_PROFILING") else 8 << 10

    @property
    def percpu_dynamic_size_shift(self) -> int:
        if self.enabled("CONFIG_RANDOM_KMALLOC_CACHES"):
            if self.enabled("CONFIG_LOCKDEP") and self.page_size != 4096:
                return 13
            return 12
        return 10

    @property
    def percpu_dynamic_early_size(self) -> int:
        # 12K before Linux 6.2 (raised to 20K in the 6.2 merge window); a Linux 6.1 page-mode
        # boot prints d15128 = PFN_ALIGN(s87272 + r8192 + 12K) - s - r, which only 12K explains
        if self.version is not None and self.version < (6, 2, 0):
            return 12 << 10
        return 20 << self.percpu_dynamic_size_shift

    @property
    def percpu_dynamic_reserve(self) -> int:
        return 28 << self.percpu_dynamic_size_shift   # 64-bit


def parse_config(text: str, path: str = "<config>") -> KConfig:
    cfg = KConfig(path)
    values = cfg.values
    numbers = _NUMBERS
    version = _VERSION_RE.match
    for lineno, line in enumerate(text.splitlines(), 1):
        if line[:1] != "#":
            line = line.strip()
            k, eq, v = line.partition("=")
            if eq and line.startswith("CONFIG_"):
                v = v.strip('"')
                if k in numbers:
                    lo, hi = numbers[k]
                    if not (v.isascii() and v.isdigit() and len(v) <= 6 and lo <= int(v) <= hi):
                        raise LocalmapError(f"{k}={v[:40]!r} is not a whole number from {lo} to "
                                            f"{hi}", path, lineno)
                values[k] = v
                continue
            if line and line[0] != "#":
                raise LocalmapError(f"not a .config line: {line[:60]!r} (expected "
                                    "CONFIG_X=value)", path, lineno)
        if cfg.version is None:             # (a comment or a blank line)
            m = version(line.strip())
            if m:
                cfg.version = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if not values:
        raise LocalmapError("empty kernel config", path)
    return cfg


def read_config(path: Path) -> KConfig:
    return parse_config(read_text(path), str(path))
