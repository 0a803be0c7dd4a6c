"""this_cpu sites of the other Debian architectures on small instruction streams (no network).

The streams are instructions as they appear in Debian's kernels (encodings copied from the
objdump listings of their percpu_counter_add_batch, a this_cpu_add under interrupts off), laid
out here around decoys; the expected classification is written down from the ISA manuals'
meaning of each instruction. The real images are checked against objdump in test_arches_slow.py.
"""

from __future__ import annotations

import json
import struct


from kallsyms_build import build
from localmap.perf.arches import analyse_arch, ppc_data_offset, ppc_soft_mask, riscv_starts, s390_starts
from localmap.perf.image import KernelImage, Symbols


def image(arch: str, text: bytes, funcs: list[tuple[int, str]], base: int, extra=()) -> KernelImage:
    syms = Symbols(source="test")
    entries = [(base, "T", "_stext"), (base + len(text), "T", "_etext")]
    entries += [(base + off, "T", name) for off, name in funcs] + list(extra)
    syms.add_all(entries)
    return KernelImage(path=f"test.{arch}", kind="test", text=text, stext=base, etext=base + len(text),
                       symbols=syms, arch=arch, segments=[(base, text)])


def le(*words: int) -> bytes:
    return b"".join(struct.pack("<I", w) for w in words)


# --------------------------------------------------------------------------- armhf

ARM_ADD = [0xE92D47F0,  # push {r4-r10, lr}
           0xE10FC000,  # mrs ip, CPSR
           0xF10C0080,  # cpsid i
           0xE5903018,  # ldr r3, [r0, #24]
           0xEE1D0F90,  # mrc p15, 0, r0, c13, c0, 4   <- site
           0xE7931000,  # ldr r1, [r3, r0]
           0xE0812002,  # add r2, r1, r2
           0xE7832000,  # str r2, [r3, r0]
           0xE121F00C,  # msr CPSR_c, ip
           0xE8BD87F0]  # pop {r4-r10, pc}
ARM_READ = [0xE92D4010, 0xEE1D3F90, 0xE7930002, 0xE8BD8010]  # push; mrc r3; ldr r0,[r3,r2]; pop


def test_armhf_irq_bracketed_add_and_plain_read():
    text = le(*ARM_ADD) + le(*ARM_READ) + le(0xEE1D0F90 & 0xFFFF0FFF | 0x1E1D0F90)  # mrc with cond NE: no site
    img = image("armhf", text, [(0, "add_fn"), (40, "read_fn"), (56, "tail")], 0xC0300000)
    rep = analyse_arch(img)
    assert [s.addr - img.stext for s in rep.sites] == [16, 44]
    add, read = rep.sites
    assert (add.function, add.access, add.protection, add.bracket) == ("add_fn", "rmw", "own", "irq")
    assert add.removed == 1       # mrs + cpsid + msr go, the ldrex/strex loop adds teq + bne
    assert (read.access, read.protection, read.removed) == ("read", "none", 0)


def test_armhf_bracket_around_two_sites_belongs_to_the_caller():
    body = ARM_ADD[:4] + [0xEE1D0F90, 0xE7931000, 0xEE1D0F90, 0xE7832000] + ARM_ADD[8:]
    img = image("armhf", le(*body), [(0, "f")], 0xC0300000)
    rep = analyse_arch(img)
    assert [s.protection for s in rep.sites] == ["caller", "caller"]
    assert rep.totals()["removed_instructions"] == 0


# --------------------------------------------------------------------------- ppc64el

PPC_BASE = 0xC000000000000000
PPC_ADD = [0x886D0932,  # lbz r3, 2354(r13)
           0x60690001,  # ori r9, r3, 1
           0x992D0932,  # stb r9, 2354(r13)
           0xE90D0030,  # ld r8, 48(r13)      <- site
           0xE93F0020,  # ld r9, 32(r31)
           0x7D49402E,  # lwzx r10, r9, r8
           0x7D4A2214,  # add r10, r10, r4
           0x7D49412E,  # stwx r10, r9, r8
           None,        # bl arch_local_irq_restore (filled in)
           0x60000000,  # nop
           0x4E800020]  # blr


def test_ppc64el_soft_mask_bracket_and_derived_offsets():
    words = list(PPC_ADD)
    restore_at = len(words) * 4
    words[8] = 0x48000001 | ((restore_at - 8 * 4) & 0x03FFFFFC)  # bl +offset
    words += [0x4E800020]  # arch_local_irq_restore: blr
    # a decoy: ld r8, 16(r13) feeding nothing
    words += [0xE90D0010, 0x4E800020]
    img = image("ppc64el", le(*words), [(0, "add_fn"), (restore_at, "arch_local_irq_restore"),
                                        (restore_at + 4, "other")], PPC_BASE)
    assert ppc_data_offset(img)[0] == 48 and ppc_soft_mask(img) == 2354
    rep = analyse_arch(img)
    assert [s.addr - PPC_BASE for s in rep.sites] == [12]  # the 16(r13) load is not a site
    s = rep.sites[0]
    assert (s.access, s.protection, s.bracket, s.bracket_insns) == ("rmw", "own", "softmask", 5)
    assert s.removed == 4         # lbz/ori/stb + bl/nop go, lwarx/stwcx. needs one more branch
    assert rep.params["data_offset"] == 48


# --------------------------------------------------------------------------- riscv64

RV_ADD = [(0x10017773, 4),  # csrrc a4, sstatus, 2
          (0x02022683, 4),  # lw a3, 32(tp)        <- site
          (0x711C, 2),      # c.ld a5, 32(a0)
          (0x068E, 2),      # c.slli a3, 3
          (0x9936, 2),      # c.add s2, a3
          (0x00093683, 4),  # ld a3, 0(s2)
          (0x8B09, 2),      # c.andi a4, 2
          (0x97B6, 2),      # c.add a5, a3
          (0x4394, 2),      # c.lw a3, 0(a5)
          (0x9EAD, 2),      # c.addw a3, a1
          (0xC394, 2),      # c.sw a3, 0(a5)
          (0x10072073, 4),  # csrs sstatus, a4
          (0x8082, 2)]      # ret
RV_CPU = [(0x02022783, 4), (0x8082, 2)]          # lw a5, 32(tp); ret: smp_processor_id()
RV_DECOY = [(0x20030013, 4), (0x0202, 2), (0x8082, 2)]  # bytes 03 20 02 02 straddle two instructions


def rv(seq) -> bytes:
    return b"".join(struct.pack("<I" if n == 4 else "<H", w) for w, n in seq)


def test_riscv_length_walk_matches_the_encodings():
    for seq in (RV_ADD, RV_CPU + RV_DECOY + RV_ADD):
        want, off = [], 0
        for _w, n in seq:
            want.append(off)
            off += n
        assert riscv_starts(rv(seq)).tolist() == want


def test_riscv_table_lookup_under_irq_off_and_cpu_number_reads():
    text = rv(RV_ADD) + rv(RV_CPU) + rv(RV_DECOY)
    a, b = len(rv(RV_ADD)), len(rv(RV_ADD)) + len(rv(RV_CPU))
    img = image("riscv64", text, [(0, "add_fn"), (a, "cpu_fn"), (b, "decoy")], 0xFFFFFFFF80002000)
    rep = analyse_arch(img)
    assert [s.addr - img.stext for s in rep.sites] == [4, a]  # the straddling bytes are no site
    add, cpu = rep.sites
    assert (add.access, add.protection, add.bracket) == ("rmw", "own", "irq")
    assert add.removed == 3 + 3 + 2   # slli/add/ld lookup, csrrc/andi/csrs, lw/addw/sw -> amoadd.w
    assert (cpu.access, cpu.removed) == ("cpu-number", 0)


# --------------------------------------------------------------------------- s390x

S390_SUB = bytes.fromhex("acfcf0a0"        # stnsm 160(%r15), 0xfc
                         "e310b0200004"    # lg %r1, 32(%r11)
                         "e31003b80008"    # ag %r1, 952          <- site
                         "58201000"        # l %r2, 0(%r1)
                         "1b2a"            # sr %r2, %r10
                         "50201000"        # st %r2, 0(%r1)
                         "ad03f0a0"        # stosm 160(%r15), 3
                         "07fe")           # br %r14
S390_OTHER = bytes.fromhex("e31103b80004"  # lg %r1, 952(%r1): index register 1 -> not the lowcore
                           "07fe")


def test_s390_length_walk_and_psw_bracket():
    assert s390_starts(S390_SUB).tolist() == [0, 4, 10, 16, 20, 22, 26, 30]
    img = image("s390x", S390_SUB + S390_OTHER, [(0, "sub_fn"), (len(S390_SUB), "other")], 0)
    rep = analyse_arch(img)
    assert [s.addr for s in rep.sites] == [10]
    s = rep.sites[0]
    assert (s.access, s.protection, s.bracket, s.removed) == ("rmw", "own", "psw", 2)


# --------------------------------------------------------------------------- amd64

X86 = bytes.fromhex("f30f1efa"                   # endbr64
                    + "650110"                   # add %edx, %gs:(%rax)      one-instruction RMW
                    + "65488b042528000000"       # mov %gs:0x28, %rax        stack canary
                    + "c4e27849c0"               # tilerelease (capstone 5 cannot decode it)
                    + "650110"                   # add %edx, %gs:(%rax)      found after the resync
                    + "fa"                       # cli
                    + "650110"                   # add %edx, %gs:(%rax)      after cli: caller's bracket
                    + "c3")                      # ret


def test_amd64_gs_operands_and_resync_after_undecodable_instructions():
    img = image("amd64", X86, [(0, "f")], 0xFFFFFFFF81000000)
    rep = analyse_arch(img)
    off = [s.addr - img.stext for s in rep.sites]
    assert off == [4, 7, 21, 25]
    assert [s.access for s in rep.sites] == ["atomic", "canary", "atomic", "atomic"]
    assert [s.protection for s in rep.sites] == ["none", "none", "none", "caller"]
    assert rep.totals()["removed_instructions"] == 0


# --------------------------------------------------------------------------- a whole image

def riscv_image() -> tuple[bytes, dict]:
    """A RISC-V Image: header with the magic, text, the kernel's own kallsyms tables."""
    base = 0xFFFFFFFF80000000
    head = bytearray(0x2000)
    head[0:2] = b"MZ"
    head[0x30:0x38] = b"RISCV\0\0\0"
    head[0x38:0x3C] = b"RSC\x05"
    text = rv(RV_ADD) + rv(RV_CPU) + rv(RV_DECOY)
    stext = base + len(head)
    syms = [(base, "T", "_start"), (stext, "T", "_stext"), (stext, "T", "add_fn"),
            (stext + len(rv(RV_ADD)), "T", "cpu_fn"), (stext + len(rv(RV_ADD)) + 6, "t", "decoy"),
            (stext + len(text), "T", "_etext"), (stext + len(text) + 8, "D", "data_0123456789")]
    body = bytes(head) + text
    body += bytes(-len(body) % 8)
    return body + build(syms, base=base) + bytes(64), {"stext": stext}


def test_sites_command_on_an_image_alone(tmp_path, capsys):
    from localmap.cli import main

    data, info = riscv_image()
    p = tmp_path / "vmlinux-riscv"
    p.write_bytes(data)
    assert main(["sites", str(p), "--json", "--per-site"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "riscv64" and out["sites"] == 2
    assert int(out["text_start"], 16) == info["stext"]
    assert [s["function"] for s in out["site_list"]] == ["add_fn", "cpu_fn"]
    assert out["totals"]["removed_instructions"] == 8
    assert "embedded kallsyms" in out["symbols"]


def test_sites_command_refuses_an_unknown_file(tmp_path, capsys):
    from localmap.cli import main

    p = tmp_path / "junk"
    p.write_bytes(b"\0" * 4096)
    assert main(["sites", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk" in err
