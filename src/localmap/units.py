"""Units: how localmap reads and writes sizes, counts and times, in one place.

Every byte size a command or report prints goes through :func:`fmt_bytes` (binary prefixes:
``384 B``, ``136 KiB``, ``1.5 MiB``), every count through :func:`fmt_count` (``18,523``) and
every duration through :func:`fmt_seconds`; sizes given on the command line are read by
:func:`parse_size` (``192K``, ``1M``, ``139264``), counts by :func:`parse_count` and addresses
by :func:`parse_hex`: plain ASCII digits only, bounded, so ``4_0``, ``+4`` or another script's
digits are refused rather than read as numbers. The constants name the multiples and the bounds
(:data:`MAX_CPUS`) once.

``/proc/meminfo`` calls its unit "kB" but means 1024 bytes; the report prints those values as
KiB like every other size.
"""

from __future__ import annotations

import re

from localmap.errors import LocalmapError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

MASK64 = (1 << 64) - 1          # a 64-bit register or unsigned long: arithmetic wraps here

# bounds on what an input may ask for (checked before anything is allocated for it)
MAX_CPUS = 65536                # CPUs of any machine a command reads, models or explores
MAX_SIZE = 1 << 48              # any size read from a command line

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


_SIZE_RE = re.compile(r"(0x[0-9a-f]+|[0-9]+)([kmgt]?)(?:i?b)?", re.ASCII | re.IGNORECASE)
_MULT = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB}


def parse_size(text: str | int, name: str | None = None, minimum: int = 1) -> int:
    """``192K``, ``192KiB``, ``1M``, ``0x22000``, ``139264`` -> bytes (binary multiples).

    Plain ASCII digits only (no sign, no ``_``, no other scripts' digits), from ``minimum``
    to :data:`MAX_SIZE`; ``name`` (an option, a file) is what an error names."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = _SIZE_RE.fullmatch(str(text).strip())
        if m is None or len(m.group(1)) > 20:
            raise LocalmapError(f"bad size {text!r} (e.g. 192K, 139264, 1M)", name)
        value = int(m.group(1), 0) * _MULT[m.group(2).lower()]
    if not minimum <= value <= MAX_SIZE:
        low = f"{minimum} bytes" if minimum != 1 else "1 byte"
        raise LocalmapError(f"size {text!r} is out of range ({low} to {fmt_bytes(MAX_SIZE)})",
                            name)
    return value


def parse_count(text: str, name: str | None = None, minimum: int = 0,
                maximum: int = 1 << 62) -> int:
    """A whole number written in plain ASCII decimal digits, ``minimum <= n <= maximum``."""
    t = str(text).strip()
    if not t.isascii() or not t.isdigit() or len(t) > 19:
        raise LocalmapError(f"expected a whole number, not {text!r}", name)
    n = int(t)
    if n < minimum:
        raise LocalmapError(f"{n} is too small (at least {minimum:,})", name)
    if n > maximum:
        raise LocalmapError(f"{n} is too large (at most {maximum:,})", name)
    return n


def parse_hex(text: str, name: str | None = None, bits: int = 64) -> int:
    """A hexadecimal number (optionally ``0x``-prefixed) of at most ``bits`` bits, plain ASCII."""
    t = str(text).strip()
    t = t[2:] if t[:2].lower() == "0x" else t
    if not t or len(t) > bits // 4 or not _HEX_RE.fullmatch(t):
        raise LocalmapError(f"expected a hexadecimal number of at most {bits} bits, not {text!r}",
                            name)
    return int(t, 16)


_HEX_RE = re.compile(r"[0-9a-fA-F]+", re.ASCII)
