"""The kallsyms reader against tables built by an independent encoder (tests/kallsyms_build.py),
in every layout, byte order and word size it must handle, hidden among decoys."""

from __future__ import annotations

import random

import pytest

from kallsyms_build import build
from localmap.errors import LocalmapError
from localmap.perf.kallsyms import DIGITS, find_kallsyms


def _symbols(n: int, base: int, seed: int) -> list[tuple[int, str, str]]:
    rnd = random.Random(seed)
    syms = [(base, "T", "_text"), (base + 0x10000, "T", "_stext")]
    a = base + 0x10000
    for i in range(n):
        a += rnd.choice((4, 16, 64, 256, 0))
        name = rnd.choice(("percpu_counter_add_batch", "do_syscall_64", "__this_cpu_preempt_check",
                           "rcu_note_context_switch", "x")) + f"_{i}"
        if i == 7:
            name = "very_long_" * 14 + "name"  # > 127 compressed bytes: two-byte ULEB128 length
        syms.append((a, rnd.choice("Tt"), name))
    syms.append((a + 0x1000, "T", "_etext"))
    syms.append((a + 0x2000, "D", "0123456789_all_digits"))
    return syms


@pytest.mark.parametrize("bits,order,layout,seqs_before", [
    (64, "little", "new", False), (32, "little", "new", False), (64, "big", "old", True),
    (64, "big", "old", False), (64, "little", "old", False), (32, "big", "new", True)])
@pytest.mark.parametrize("n", [5, 300, 1100])
def test_decodes_what_the_encoder_wrote(bits, order, layout, seqs_before, n):
    base = 0xC0000000 if bits == 32 else 0xFFFF800080000000
    syms = _symbols(n, base, seed=n)
    blob = build(syms, bits=bits, order=order, layout=layout, seqs_before_tokens=seqs_before)
    rnd = random.Random(1)
    # decoys: the digit run in unrelated data before the tables, and random bytes around them
    head = bytes(rnd.randrange(256) for _ in range(4093)) + DIGITS + b"abc" + bytes(38 + 6)
    assert len(head) % 8 == 0  # an image keeps .rodata aligned
    data = head + blob + bytes(rnd.randrange(256) for _ in range(999))
    ks = find_kallsyms(data, bits)
    want = sorted(syms)
    assert ks.names == [s[2] for s in want]
    assert ks.types == [s[1] for s in want]
    assert ks.addrs == [s[0] for s in want]
    assert ks.word_bits == bits and ks.byte_order == order
    assert ks.layout == ("offsets-after-index" if layout == "new" else "offsets-first")
    assert ks.get("_stext") == base + 0x10000


def test_absolute_percpu_offsets():
    """x86-64 style: per-CPU symbols absolute (non-negative), the rest base - 1 - offset."""
    base = 0xFFFFFFFF81000000
    syms = _symbols(40, base, seed=3) + [(0x28, "D", "fixed_percpu_data"), (0x20880, "D", "pcpu_hot")]
    blob = build(syms, absolute_percpu={"fixed_percpu_data", "pcpu_hot"}, base=base)
    ks = find_kallsyms(bytes(104) + blob, 64)
    got = dict(zip(ks.names, ks.addrs))
    assert got["pcpu_hot"] == 0x20880 and got["fixed_percpu_data"] == 0x28
    assert got["_stext"] == base + 0x10000


def test_no_tables_is_one_clear_error():
    with pytest.raises(LocalmapError, match="no kallsyms"):
        find_kallsyms(bytes(1000) + DIGITS + bytes(1000), 64)
