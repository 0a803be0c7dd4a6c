"""Fast tests of the this_cpu site analysis (no network).

Fixtures are real bytes: two functions copied from Debian's 6.12.117 rt-arm64 Image
(linux-image-6.12.117+deb12-rt-arm64-unsigned, addresses from its -dbg System.map), plus
instructions encoded here from the ARM ARM's MRS/MSR field layout and checked with capstone.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import capstone
import numpy as np
import pytest

from localmap.errors import LocalmapError
from localmap.perf import image as image_mod
from localmap.perf.image import KernelImage, Symbols, load_image, read_symbol_file
from localmap.perf.sites import MRS_TPIDR_EL1, MRS_TPIDR_EL2, analyse, scan_words


# percpu_ref_get_many (static copy at 0xffff8000803febf0) and percpu_counter_add_batch
# (0xffff800080734ef8) of the rt-arm64 image: whole functions, up to the next symbol.
REF_GET = 0xFFFF8000803FEBF0
REF_GET_HEX = (
    "3f2303d5fd7bbea9fd030091f35301a9f40300aaf30301aad485f597800240f91f0440f281030054014138d5"
    "220840b942040011220800b982d038d50000028b047c5fc88400138b047c03c8a3ffff35200440f9000400d1"
    "200800b9e00000b5a4982b9451b2f597f35341a9fd7bc2a8bf2303d5c0035fd6200440f920ffffb44ab2f597"
    "f35341a9fd7bc2a8bf2303d5c0035fd6800640f9030000141f0033f8f1ffff17110080f9017c5fc82100138b"
    "017c02c8a2ffff35ebffff171f2003d5")
ADD_BATCH = 0xFFFF800080734EF8
ADD_BATCH_HEX = (
    "3f2303d5fd7bbca9034138d5fd030091f35301a9f40301aaf55b02a9f503022af76303a9f70300aa640840b9"
    "84040011640800b9001040f981d038d5136861b8600440f9000400d1600800b9200700b4600440f9e00600b4"
    "637e4093b37e4093640014ab805484da154138d57f0200eb2d0300541f2003d5a10a40b9f803032a21040011"
    "a10a00b9e21240f980d038d54200008b29000014447ca388f603032aa20640f9420400d1a20a00b9e20300b4"
    "a00640f9a00300b4c37e4093df02186b80020054840203ab805484da1f0013eb4bfdff54e00317aa0aeb1e94"
    "e30640f984d038d5e21240f9456864b88302038be10300aae00317aa63c0258be30600f9436864b86300054b"
    "436824b8d1ea1e94f35341a9f55b42a9f76343a9fd7bc4a8bf2303d5c0035fd6b0bf1e94e3ffff17aebf1e94"
    "c9ffff17637c4092510080f9567c5f88c002034a60000035447c008880ffff35d3ffff17")


def mrs(op0, op1, crn, crm, op2, rt):
    """MRS Xt, S<op0>_<op1>_C<n>_C<m>_<op2> per the Arm ARM (L=1, o0 = op0 - 2)."""
    return 0xD5300000 | ((op0 - 2) << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt


def fake_image(chunks: list[tuple[int, bytes, str]], config=None) -> KernelImage:
    """Place function byte strings at their addresses (gaps: zero words under a filler symbol)."""
    base = chunks[0][0]
    blob = bytearray()
    entries = [(base, "T", "_stext"), (base - 0x10000, "T", "_text")]
    for addr, code, name in chunks:
        if addr > base + len(blob):
            entries.append((base + len(blob), "t", "filler"))
            blob += bytes(addr - base - len(blob))
        entries.append((addr, "t", name))
        blob += code
    end = base + len(blob)
    entries.append((end, "D", "_etext"))
    syms = Symbols(source="test")
    syms.add_all(entries)
    return KernelImage(path=Path("fake"), kind="Image", text=bytes(blob), stext=base, etext=end,
                       symbols=syms, config=config if config is not None else {"CONFIG_PREEMPT_COUNT": "y"},
                       segments=[(base, bytes(blob))])


def test_encodings_match_capstone():
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    el1 = mrs(3, 0, 13, 0, 4, 3)
    el2 = mrs(3, 4, 13, 0, 2, 7)
    assert el1 == MRS_TPIDR_EL1 | 3 and el2 == MRS_TPIDR_EL2 | 7
    got = [(m, o) for _a, _s, m, o in md.disasm_lite(np.array([el1, el2], "<u4").tobytes(), 0)]
    assert got == [("mrs", "x3, tpidr_el1"), ("mrs", "x7, tpidr_el2")]


def test_scan_counts_only_aligned_el1_reads():
    words = [0xD503201F, mrs(3, 0, 13, 0, 4, 0), mrs(3, 4, 13, 0, 2, 1), mrs(3, 0, 13, 0, 4, 31),
             mrs(3, 0, 13, 0, 3, 2),  # tpidrro_el0 region neighbour: op2=3 is not TPIDR_EL1
             0xD518D080]  # msr tpidr_el1, x0: a write, not a read
    text = np.array(words, "<u4").tobytes()
    assert list(scan_words(text, MRS_TPIDR_EL1)) == [1, 3]
    assert list(scan_words(text, MRS_TPIDR_EL2)) == [2]
    shifted = b"\0\0" + text + b"\0\0"  # the same words at a 2-byte offset are not instructions
    assert len(scan_words(shifted, MRS_TPIDR_EL1)) == 0


def test_real_functions_classified():
    img = fake_image([(REF_GET, bytes.fromhex(REF_GET_HEX), "percpu_ref_get_many"),
                      (ADD_BATCH, bytes.fromhex(ADD_BATCH_HEX), "percpu_counter_add_batch")])
    rep = analyse(img)
    assert rep.sites == 4 and rep.el2_reads == 0
    s = {x.addr: x for x in rep.sites_list}
    # percpu_ref_get_many: this_cpu_add -> preempt++ ; mrs ; add ; ldxr/add/stxr/cbnz ; preempt-- ; cbnz ; bl
    ref = s[REF_GET + 0x38]
    assert (ref.function, ref.op, ref.form, ref.protection) == ("percpu_ref_get_many", "add", "llsc", "preempt")
    assert ref.replaceable and ref.preempt_inc == 3 and ref.removed_fast == 7 and ref.removed == 8
    # percpu_counter_add_batch: this_cpu_read, this_cpu_try_cmpxchg (static branch + cas), and a
    # __this_cpu access inside the caller's irq-disabled section
    read = s[ADD_BATCH + 0x38]
    assert (read.op, read.form, read.protection, read.removed_fast) == ("read", "plain", "preempt", 9)
    cas = s[ADD_BATCH + 0x8C]
    assert (cas.op, cas.form, cas.protection, cas.removed_fast) == ("cmpxchg", "lse", "preempt", 9)
    last = s[ADD_BATCH + 0xE0]
    assert last.protection == "caller" and not last.replaceable and last.removed == 0
    fn = {r["function"]: r for r in rep.functions()}
    assert fn["percpu_counter_add_batch"]["sites"] == 3 and fn["percpu_ref_get_many"]["removed_fast"] == 7


def test_without_preempt_count_nothing_is_removed():
    img = fake_image([(REF_GET, bytes.fromhex(REF_GET_HEX), "percpu_ref_get_many")],
                     config={"CONFIG_PREEMPT_VOLUNTARY": "y"})
    rep = analyse(img)
    assert rep.preempt_count is False and rep.preempt_model == "PREEMPT_VOLUNTARY"
    assert [x.protection for x in rep.sites_list] == ["no-preempt-count"]
    assert rep.totals()["removed_instructions"] == 0


def test_json_shape():
    img = fake_image([(REF_GET, bytes.fromhex(REF_GET_HEX), "percpu_ref_get_many")])
    d = json.loads(json.dumps(analyse(img).to_json(per_site=True)))
    assert d["text_bytes"] == len(REF_GET_HEX) // 2 and d["sites"] == 1
    assert d["functions"][0]["function"] == "percpu_ref_get_many" and len(d["site_list"]) == 1


def test_kallsyms_of_bundles_fit_text_range(shared_data, tmp_path):
    found = sorted(shared_data.glob("*/kallsyms.gz"))
    assert found, f"no kallsyms.gz in the shared captures under {shared_data}"
    for b in found:
        syms = read_symbol_file(b)
        stext, etext = syms.get("_stext"), syms.get("_etext")
        assert syms.get("_text") < stext < etext
        name, start = syms.lookup(syms.get("percpu_counter_add_batch") + 8)
        assert name == "percpu_counter_add_batch"
        s, e = syms.extent(start, etext)
        assert s == start and start < e < etext


def test_symbol_file_errors(tmp_path):
    bad = tmp_path / "map"
    bad.write_text("ffff800080000000 T _text\nnot a line\n")
    with pytest.raises(LocalmapError) as ei:
        read_symbol_file(bad)
    assert ei.value.line == 2
    stub = tmp_path / "System.map"
    stub.write_text("ffffffffffffffff B The real System.map is in the linux-image-<version>-dbg package\n")
    with pytest.raises(LocalmapError, match="-dbg"):
        read_symbol_file(stub)


def test_load_image_rejects_non_arm64(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"\0" * 128)
    with pytest.raises(LocalmapError, match="not an arm64"):
        load_image(f)


def synthetic_image(stext_off: int) -> tuple[bytes, bytes]:
    """An arm64 Image: the 64-byte header, zeros up to ``stext_off``, then a real function."""
    code = bytes.fromhex(REF_GET_HEX)
    header = bytearray(64)
    header[56:60] = image_mod.ARM64_IMAGE_MAGIC
    return bytes(header) + b"\0" * (stext_off - 64) + code, code


def symbols(text: int | None, stext: int, code: bytes) -> str:
    head = f"{text:016x} T _text\n" if text is not None else ""
    return (head + f"{stext:016x} T _stext\n{stext:016x} t percpu_ref_get_many\n"
            f"{stext + len(code):016x} D _etext\n")


def test_raw_image_roundtrip_gzip(tmp_path):
    """A tiny synthetic Image (arm64 header + code) with a System.map, raw and gzip-compressed."""
    text = 0xFFFF800080000000
    blob, code = synthetic_image(0x100)
    smap = tmp_path / "System.map"
    smap.write_text(symbols(text, text + 0x100, code))
    for name, data in (("Image", blob), ("Image.gz", gzip.compress(blob))):
        p = tmp_path / name
        p.write_bytes(data)
        img = load_image(p, smap)
        assert img.text == code and img.stext == text + 0x100
        rep = analyse(img)
        assert rep.sites == 1 and rep.sites_list[0].function == "percpu_ref_get_many"
        assert rep.preempt_count is None  # no config, no preempt_schedule_notrace symbol


def test_kallsyms_without_text_symbol(tmp_path):
    """Linux 6.1's kallsyms has no _text (a lab capture: _stext ffff800008010000 first); arm64
    puts .text at the first 64 KiB (SEGMENT_ALIGN) boundary after .head.text, so the Image starts
    64 KiB below _stext. Checked on the real 6.1.192 Image: 4348 sites, as objdump counts."""
    text = 0xFFFF800008000000
    blob, code = synthetic_image(0x10000)
    ks = tmp_path / "kallsyms"
    ks.write_text(symbols(None, text + 0x10000, code))
    p = tmp_path / "Image"
    p.write_bytes(blob)
    img = load_image(p, ks)
    assert img.text == code
    assert analyse(img).sites == 1


def test_cli_bad_image_is_one_line(tmp_path, capsys):
    from localmap.cli import main
    f = tmp_path / "junk"
    f.write_bytes(b"junk")
    assert main(["sites", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a kernel image" in err[0]
