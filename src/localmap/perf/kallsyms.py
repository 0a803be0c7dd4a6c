"""The symbol table a kernel image carries for itself (``CONFIG_KALLSYMS``), read without symbols.

What it models: the tables ``scripts/kallsyms`` emits into ``.rodata`` and ``kernel/kallsyms.c``
decodes at run time -- ``kallsyms_num_syms``, the token-compressed ``kallsyms_names`` (each entry
a ULEB128 length, then token indices; the first expanded character is the symbol type),
``kallsyms_markers`` (the names offset of every 256th symbol), ``kallsyms_token_table`` (256
NUL-terminated strings) and ``kallsyms_token_index`` (256 16-bit offsets into it), and the
addresses as 32-bit ``kallsyms_offsets`` from ``kallsyms_relative_base`` (negative offsets mean
"relative", non-negative "absolute" on kernels built with ``KALLSYMS_ABSOLUTE_PERCPU``).

How the tables are found in a raw image: every character that occurs in some symbol name is
its own one-character token, so the token table holds the ten strings ``"0" .. "9"`` back to
back. Their position fixes the table; the 16-bit index after it (in either byte order) must
point back at those strings; the markers end just before the token table and count the
symbols; ``kallsyms_num_syms`` is the 32-bit word before the names such that decoding that many
names ends at the markers and meets every marker. The offsets are looked for after the token
index (Linux >= 6.2 layout) and before ``kallsyms_num_syms`` (older layout); the candidate whose
addresses are non-decreasing wins.

Deliberate differences from the kernel: nothing is relocated -- addresses are link-time values
(``relative_base`` as stored in the image, or 0 when a relocatable build left it for the
loader), so only differences between addresses are meaningful until anchored at ``_text``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from localmap.errors import LocalmapError

DIGITS = b"".join(bytes([c]) + b"\0" for c in b"0123456789")


@dataclass
class Kallsyms:
    """Decoded symbols: parallel lists in the kernel's (address) order."""

    addrs: list[int]
    types: list[str]
    names: list[str]
    relative_base: int
    word_bits: int          # 32 or 64 (alignment of the tables)
    byte_order: str         # "little" or "big"
    layout: str             # "offsets-after-index" (>= 6.2) or "offsets-first"
    table_offset: int       # file offset of kallsyms_token_table in the image

    def entries(self) -> list[tuple[int, str, str]]:
        return list(zip(self.addrs, self.types, self.names))

    def get(self, name: str) -> int | None:
        try:
            return self.addrs[self.names.index(name)]
        except ValueError:
            return None


def _align(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _token_table(data: bytes, pos: int, order: str) -> tuple[int, list[bytes], int] | None:
    """Given the position of the "0".."9" tokens, (table start, tokens, index position) if the
    token index after the table agrees, else None."""
    # tokens 48..255 follow from ``pos``
    p = pos
    tail = []
    for _ in range(256 - 48):
        e = data.find(b"\0", p)
        if e < 0:
            return None
        tail.append(data[p:e])
        p = e + 1
    end = p
    fmt = "<" if order == "little" else ">"
    for algn in (8, 4):
        ip = _align(end, algn)
        if ip + 512 > len(data):
            continue
        index = struct.unpack_from(f"{fmt}256H", data, ip)
        if index[0] != 0:
            continue
        start = pos - index[48]
        if start < 0 or start + index[255] + len(tail[-1]) + 1 != end:
            continue
        tokens = []
        ok = True
        for i in range(256):
            a = start + index[i]
            e = data.find(b"\0", a)
            if e < 0 or (i < 255 and e + 1 != start + index[i + 1]):
                ok = False
                break
            tokens.append(data[a:e])
        if ok and tokens[48:] == tail:
            return start, tokens, ip
    return None


def _markers_ending_at(data: bytes, end: int, fmt: str, single: bool = False) -> tuple[int, list[int]] | None:
    """kallsyms_markers read backwards from ``end``: strictly decreasing down to a 0 (a lone 0,
    i.e. at most 256 symbols, only when ``single``)."""
    p = end - 4
    vals: list[int] = []
    while p >= 0:
        v = struct.unpack_from(fmt, data, p)[0]
        if vals and v >= vals[-1]:
            return None
        vals.append(v)
        if v == 0:
            vals.reverse()
            return (p, vals) if (len(vals) > 1 or single) else None
        p -= 4
        if len(vals) > 1 << 16:
            return None
    return None


def _markers(data: bytes, table_start: int, order: str):
    """Candidate (file offset, values) of kallsyms_markers. They end right before the token
    table (plus alignment), or -- on kernels that put ``kallsyms_seqs_of_names`` (3 bytes per
    symbol) between them -- that much earlier."""
    fmt = "<I" if order == "little" else ">I"
    for pad in (0, 4):
        got = _markers_ending_at(data, table_start - pad, fmt, single=True)
        if got is not None:
            yield got
    q = table_start - 8
    floor = max(0, table_start - 3 * (1 << 21))
    while q > floor:
        got = _markers_ending_at(data, q, fmt, single=table_start - q <= 3 * 256 + 8)
        if got is not None:
            m = len(got[1])
            gap = table_start - q
            if 3 * (256 * (m - 1) + 1) <= gap <= 3 * 256 * m + 8:
                yield got
        q -= 4


def _decode_names(data: bytes, start: int, count: int, tokens: list[bytes], limit: int,
                  markers: list[int]) -> tuple[list[str], list[str], int] | None:
    """Decode ``count`` names from ``start``; None if they overrun ``limit`` or miss a marker."""
    types, names = [], []
    p = start
    for i in range(count):
        if i % 256 == 0:
            if i // 256 >= len(markers) or markers[i // 256] != p - start:
                return None
        if p >= limit:
            return None
        n = data[p]
        p += 1
        if n & 0x80:
            n = (n & 0x7F) | (data[p] << 7)
            p += 1
        if n == 0 or p + n > limit:
            return None
        s = b"".join(tokens[b] for b in data[p:p + n])
        p += n
        if not s:
            return None
        text = s.decode("latin-1")
        types.append(text[0])
        names.append(text[1:])
    return types, names, p


def _offsets(data: bytes, pos: int, n: int, order: str) -> list[int]:
    fmt = ("<" if order == "little" else ">") + f"{n}i"
    return list(struct.unpack_from(fmt, data, pos))


def _addresses(offs: list[int], base: int) -> list[int]:
    """Addresses from kallsyms_offsets: non-negative = relative to base, or (absolute-percpu
    kernels, where every relative entry is negative) absolute / base - 1 - offset."""
    if any(o < 0 for o in offs):
        return [o if o >= 0 else base - 1 - o for o in offs]
    return [base + o for o in offs]


def _monotone(addrs: list[int]) -> float:
    if len(addrs) < 2:
        return 0.0
    good = sum(1 for a, b in zip(addrs, addrs[1:]) if b >= a)
    return good / (len(addrs) - 1)


def find_kallsyms(data: bytes, bits: int | None = None) -> Kallsyms:
    """Locate and decode the kallsyms tables of a decompressed kernel image (any architecture,
    either byte order; ``bits`` = 32 or 64 when known, else both are tried). Raises
    :class:`LocalmapError` when there are none."""
    start = 0
    tried = 0
    while True:
        pos = data.find(DIGITS, start)
        if pos < 0:
            break
        start = pos + 1
        tried += 1
        for order in ("little", "big"):
            tt = _token_table(data, pos, order)
            if tt is None:
                continue
            table_start, tokens, index_pos = tt
            res = None
            for markers_pos, markers in _markers(data, table_start, order):
                res = _find_names(data, markers_pos, markers, tokens, order, bits)
                if res is not None:
                    break
            if res is None:
                continue
            numsyms_pos, count, types, names, words = res
            algn = words // 8
            fmt = "<" if order == "little" else ">"
            ptr = "Q" if words == 64 else "I"
            candidates = []
            # >= 6.2: offsets after the token index, then relative_base (aligned)
            op = _align(index_pos + 512, algn)
            if op + 4 * count + words // 8 <= len(data):
                offs = _offsets(data, op, count, order)
                bp = _align(op + 4 * count, algn)
                base = struct.unpack_from(fmt + ptr, data, bp)[0]
                candidates.append(("offsets-after-index", offs, base))
            # older: offsets, relative_base, then num_syms
            bp = numsyms_pos - words // 8
            while bp > 0 and bp % algn:
                bp -= 1
            op = bp - 4 * count
            if op >= 0:
                op2 = op
                offs = _offsets(data, op2, count, order)
                base = struct.unpack_from(fmt + ptr, data, bp)[0]
                candidates.append(("offsets-first", offs, base))
                if count % 2 and algn == 8:  # padding word between the offsets and the base
                    offs = _offsets(data, op - 4, count, order)
                    candidates.append(("offsets-first", offs, base))
            best = None
            for layout, offs, base in candidates:
                addrs = _addresses(offs, base)
                score = _monotone(addrs)
                if best is None or score > best[0]:
                    best = (score, layout, addrs, base)
            if best is None or best[0] < 0.99:
                continue
            return Kallsyms(addrs=best[2], types=types, names=names, relative_base=best[3],
                            word_bits=words, byte_order=order, layout=best[1], table_offset=table_start)
    raise LocalmapError("no kallsyms tables found in the image (built without CONFIG_KALLSYMS?)"
                        + ("" if tried else ": no token table"))


def _find_names(data: bytes, markers_pos: int, markers: list[int], tokens: list[bytes], order: str,
                bits: int | None = None):
    """(num_syms position, count, types, names, word bits) for the names that end at the markers."""
    fmt = "<I" if order == "little" else ">I"
    m = len(markers)
    lo_count, hi_count = 256 * (m - 1) + 1, 256 * m
    # the names start at least markers[-1] bytes before the markers
    p = markers_pos - markers[-1] - 1
    p -= p % 4
    floor = max(0, p - 256 * 260 - 16)
    while p >= floor:
        n = struct.unpack_from(fmt, data, p)[0]
        if lo_count <= n <= hi_count:
            for words in ((64, 32) if bits is None else (bits,)):
                ns = _align(p + 4, words // 8)
                got = _decode_names(data, ns, n, tokens, markers_pos, markers)
                if got is None:
                    continue
                types, names, end = got
                if markers_pos - (words // 8) < end <= markers_pos:
                    return p, n, types, names, words
        p -= 4
    return None


__all__ = ["Kallsyms", "find_kallsyms"]
