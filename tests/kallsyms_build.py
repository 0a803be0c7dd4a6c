"""Test helper: an independent encoder of the kallsyms tables, written from the format description
(scripts/kallsyms output: ``kallsyms_num_syms``, ULEB128-length token-compressed names whose first
character is the type, markers every 256 symbols, 256 NUL-terminated tokens and their 16-bit
offsets, 32-bit offsets from ``kallsyms_relative_base``, 3-byte ``kallsyms_seqs_of_names``), in both
layouts the decoder must handle: Linux >= 6.2 and the older one (offsets and base first)."""

from __future__ import annotations

import struct

MULTI = ["per", "cpu", "_c", "ad", "st", "text", "__"]


def _tokens(names: list[str]) -> list[bytes]:
    used = sorted({c for n in names for c in n.encode("latin-1")})
    table = [b""] * 256
    for c in used:
        table[c] = bytes([c])
    free = [i for i in range(256) if not table[i] and i not in (0,)]
    for tok, i in zip(MULTI, free):
        table[i] = tok.encode()
    return table


def _compress(text: bytes, table: list[bytes]) -> bytes:
    multi = sorted(((t, i) for i, t in enumerate(table) if len(t) > 1), key=lambda x: -len(x[0]))
    out = bytearray()
    i = 0
    while i < len(text):
        for t, code in multi:
            if text.startswith(t, i):
                out.append(code)
                i += len(t)
                break
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def build(symbols: list[tuple[int, str, str]], *, bits: int = 64, order: str = "little",
          layout: str = "new", base: int | None = None, seqs_before_tokens: bool = False,
          absolute_percpu: set[str] = frozenset()) -> bytes:
    """The tables for ``symbols`` (address, type, name), sorted by address as the kernel emits."""
    e = "<" if order == "little" else ">"
    algn = bits // 8
    symbols = sorted(symbols)
    names = [t + n for _a, t, n in symbols]
    table = _tokens(names)
    base = min(a for a, _t, n in symbols if n not in absolute_percpu) if base is None else base
    out = bytearray()

    def align():
        while len(out) % algn:
            out.append(0)

    def u32(v):
        out.extend(struct.pack(e + "I", v))

    def ptr(v):
        out.extend(struct.pack(e + ("Q" if bits == 64 else "I"), v))

    def offsets():
        align()
        for a, _t, n in symbols:
            if absolute_percpu and n in absolute_percpu:
                v = a
            elif absolute_percpu:
                v = base - a - 1
            else:
                v = a - base
            out.extend(struct.pack(e + "i", v))
        align()
        ptr(base)

    def seqs():
        align()
        order_by_name = sorted(range(len(names)), key=lambda i: (names[i][1:], symbols[i][0]))
        for i in order_by_name:
            out.extend(bytes([(i >> 16) & 255, (i >> 8) & 255, i & 255]))

    if layout == "old":
        offsets()
    align()
    u32(len(symbols))
    align()
    markers = []
    start = len(out)
    for i, n in enumerate(names):
        if i % 256 == 0:
            markers.append(len(out) - start)
        comp = _compress(n.encode("latin-1"), table)
        if len(comp) > 0x7F:
            out.extend(bytes([(len(comp) & 0x7F) | 0x80, len(comp) >> 7]))
        else:
            out.append(len(comp))
        out.extend(comp)
    align()
    for m in markers:
        u32(m)
    if seqs_before_tokens:
        seqs()
    align()
    idx = []
    tstart = len(out)
    for t in table:
        idx.append(len(out) - tstart)
        out.extend(t + b"\0")
    align()
    for v in idx:
        out.extend(struct.pack(e + "H", v))
    if layout == "new":
        offsets()
        if not seqs_before_tokens:
            seqs()
    return bytes(out)
