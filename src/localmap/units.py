"""Units: how localmap reads and writes sizes, counts and times, in one place.

Every byte size a command or report prints goes through :func:`fmt_bytes` (binary prefixes:
``384 B``, ``136 KiB``, ``1.5 MiB``), every count through :func:`fmt_count` (``18,523``) and
every duration through :func:`fmt_seconds`; sizes given on the command line are read by
:func:`parse_size` (``192K``, ``1M``, ``139264``). The constants name the multiples once.

``/proc/meminfo`` calls its unit "kB" but means 1024 bytes; the report prints those values as
KiB like every other size.
"""

from __future__ import annotations

from localmap.errors import LocalmapError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

MASK64 = (1 << 64) - 1          # a 64-bit register or unsigned long: arithmetic wraps here

_PREFIXES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def fmt_bytes(n: float | None) -> str:
    """``384 B``, ``136 KiB``, ``1.5 MiB``: whole multiples without decimals, else one decimal;
    ``-`` for None. Negative sizes keep their sign."""
    if n is None:
        return "-"
    v = float(n)
    for unit in _PREFIXES:
        if abs(v) < 1024 or unit == _PREFIXES[-1]:
            break
        v /= 1024
    if unit == "B" or v == int(v):
        return f"{v:.0f} {unit}"
    return f"{v:.1f} {unit}"


def fmt_count(n: int | None) -> str:
    """``18,523``; ``-`` for None."""
    return "-" if n is None else f"{n:,}"


def fmt_seconds(s: float | None, digits: int = 2) -> str:
    """``0.81 s``; ``-`` for None."""
    return "-" if s is None else f"{s:.{digits}f} s"


def fmt_percent(fraction: float | None, digits: int = 2) -> str:
    """``99.50 %`` from 0.995; ``-`` for None."""
    return "-" if fraction is None else f"{100 * fraction:.{digits}f} %"


def parse_size(text: str | int) -> int:
    """``192K``, ``192KiB``, ``1M``, ``0x22000``, ``139264`` -> bytes (binary multiples)."""
    if isinstance(text, int):
        return text
    t = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    for suffix, m in (("K", KiB), ("M", MiB), ("G", GiB)):
        if t.endswith(suffix):
            t, mult = t[:-1], m
            break
    try:
        value = int(t, 0) * mult
    except ValueError:
        raise LocalmapError(f"bad size {text!r} (e.g. 192K, 139264, 1M)") from None
    return value
