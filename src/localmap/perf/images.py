"""Kernel images of every Debian architecture, unpacked down to their text and symbols.

What it models: what each architecture's boot loader is handed, and how to get from it to the
kernel text ``[_stext, _etext)`` and its symbols without any separate symbol file:

* ``amd64``: a bzImage. The setup header (``HdrS``) gives the offset and length of the
  compressed payload, which is the ELF ``vmlinux`` itself (stripped of symbols but with its
  section headers); the ``.text`` section gives the text range, the kernel's own kallsyms
  tables (in ``.rodata``) the function names;
* ``arm64``: a raw ``Image`` (``ARM\\x64`` magic; gzip or EFI-zboot wrapped ones are unpacked);
  the file starts at ``_text``;
* ``armhf``: a zImage (magic ``0x016f2818`` at byte 0x24): a self-decompressor followed by the
  compressed raw Image, which starts at ``PAGE_OFFSET + TEXT_OFFSET`` (``TEXT_OFFSET`` is
  0x8000 unless a platform in the ``.config`` moves it, as ``arch/arm/Makefile`` does);
* ``ppc64el``: an ELF ``vmlinux`` (not stripped: ``.symtab``);
* ``riscv64``: a raw ``Image`` (``RISCV`` / ``RSC\\x05`` magic, the EFI ``MZ`` stub in front),
  starting at the first kallsyms symbol (``_start``);
* ``s390x``: an IPL-able image (an IPL PSW and two CCWs at its start) whose decompressor carries
  the compressed raw binary of ``vmlinux``, starting at ``_text``.

Compressed payloads (gzip, xz, zstd) are found by their magic; every candidate position is
tried and the longest complete stream wins (decompressors embed the same magic as data).

Deliberate differences from a boot: nothing is relocated or patched (alternatives, static keys
and KASLR are left as linked), and only the text is kept as bytes.
"""

from __future__ import annotations

import io
import lzma
import struct
import zlib
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.fileio import (MAX_IMAGE_BYTES, InflateTooBig, inflate, open_input,
                              read_input_bytes)
from localmap.perf.image import (ARM64_IMAGE_MAGIC, check_layout, KernelImage, Symbols, _find_config, load_image,
                                 parse_config, read_symbol_file)

ARCHES = ("amd64", "arm64", "armhf", "ppc64el", "riscv64", "s390x")
WORD_BITS = {"amd64": 64, "arm64": 64, "armhf": 32, "ppc64el": 64, "riscv64": 64, "s390x": 64}
BYTE_ORDER = {"amd64": "little", "arm64": "little", "armhf": "little", "ppc64el": "little",
              "riscv64": "little", "s390x": "big"}
ELF_MACHINES = {"EM_X86_64": "amd64", "EM_AARCH64": "arm64", "EM_ARM": "armhf", "EM_PPC64": "ppc64el",
                "EM_RISCV": "riscv64", "EM_S390": "s390x"}

ZIMAGE_MAGIC = 0x016F2818
S390_IPL_CCWS = bytes.fromhex("0200001860000050")
RISCV_MAGIC = b"RISCV\0\0\0"
RISCV_MAGIC2 = b"RSC\x05"
_MAGICS = {"gzip": b"\x1f\x8b\x08", "xz": b"\xfd7zXZ\x00", "zstd": b"\x28\xb5\x2f\xfd"}

# arch/arm/Makefile: TEXT_OFFSET is 0x8000 unless one of these platforms is configured (the last
# one listed that is enabled wins, as with make's repeated assignments).
ARM_TEXT_OFFSETS = (("CONFIG_ARCH_REALTEK", 0x108000), ("CONFIG_SA1111", 0x208000),
                    ("CONFIG_ARCH_QCOM_RESERVE_SMEM", 0x208000), ("CONFIG_ARCH_MESON", 0x208000),
                    ("CONFIG_ARCH_AXXIA", 0x308000))


def detect(raw: bytes) -> tuple[str, str]:
    """(Debian architecture, container) of a kernel file; LocalmapError if unknown."""
    if raw[:4] == b"\x7fELF":
        return _elf_arch(raw), "ELF"
    if len(raw) > 0x210 and raw[0x202:0x206] == b"HdrS":
        return "amd64", "bzImage"
    if len(raw) > 0x28 and struct.unpack_from("<I", raw, 0x24)[0] == ZIMAGE_MAGIC:
        return "armhf", "zImage"
    if raw[:4] == b"\x00\x08\x00\x00" and raw[8:16] == S390_IPL_CCWS:
        return "s390x", "s390 image"
    if raw[0x30:0x38] == RISCV_MAGIC or raw[0x38:0x3C] == RISCV_MAGIC2:
        return "riscv64", "Image"
    if raw[56:60] == ARM64_IMAGE_MAGIC:
        return "arm64", "Image"
    if raw[:2] == b"\x1f\x8b" or (raw[:2] == b"MZ" and raw[4:8] == b"zimg"):
        return "arm64", "Image"  # compressed arm64 Image / EFI zboot, unpacked by perf.image
    raise LocalmapError("not a kernel image this tool knows (bzImage, zImage, s390 image, "
                        "arm64/riscv Image, ELF vmlinux)")


def detect_file(path: str | Path) -> str:
    """The Debian architecture of the kernel file at ``path`` (reads its first 64 KiB only)."""
    path = Path(path)
    with open_input(path, "kernel image") as fh:
        try:
            head = fh.read(1 << 16)
        except OSError as exc:
            raise LocalmapError(f"cannot read kernel image: {exc.strerror}", path) from None
    if head[:4] == b"\x7fELF":
        from elftools.elf.elffile import ELFFile
        from elftools.common.exceptions import ELFError
        try:
            with path.open("rb") as fh:
                m = ELFFile(fh)["e_machine"]
        except ELFError as exc:
            raise LocalmapError(f"bad ELF: {exc}", path) from None
        if m not in ELF_MACHINES:
            raise LocalmapError(f"ELF for {m}: no Debian kernel architecture", path)
        return ELF_MACHINES[m]
    try:
        return detect(head)[0]
    except LocalmapError as exc:
        raise LocalmapError(exc.message, path) from None


def _elf_arch(raw: bytes) -> str:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        m = ELFFile(io.BytesIO(raw))["e_machine"]
    except ELFError as exc:
        raise LocalmapError(f"bad ELF: {exc}") from None
    if m not in ELF_MACHINES:
        raise LocalmapError(f"ELF for {m}: no Debian kernel architecture")
    return ELF_MACHINES[m]


def _decompress(kind: str, blob: bytes) -> bytes:
    """The compressed stream ``blob`` starts with (what follows it is the rest of the image)."""
    if kind in ("gzip", "xz"):
        try:
            return inflate(blob, kind, MAX_IMAGE_BYTES, first_stream=True)
        except InflateTooBig:
            raise LocalmapError(f"compressed payload inflates to more than "
                                f"{MAX_IMAGE_BYTES >> 20} MiB") from None
    try:
        import zstandard
    except ImportError:  # pragma: no cover - declared dependency
        raise LocalmapError("the zstandard package is needed for zstd-compressed kernels") from None
    d = zstandard.ZstdDecompressor().decompressobj()
    out = d.decompress(blob)
    if not d.eof:
        raise ValueError("truncated zstd stream")
    return out


def find_payload(raw: bytes, path: Path | str = "", start: int = 0, end: int | None = None) -> tuple[str, int, bytes]:
    """(compression, offset, decompressed bytes) of the longest complete compressed stream in
    ``raw[start:end]``."""
    end = len(raw) if end is None else end
    best: tuple[str, int, bytes] | None = None
    for kind, magic in _MAGICS.items():
        pos = raw.find(magic, start, end)
        while pos >= 0:
            try:
                out = _decompress(kind, raw[pos:end])
            except (ValueError, OSError, EOFError, lzma.LZMAError, zlib.error):
                out = b""
            except Exception as exc:  # zstandard raises its own ZstdError
                if type(exc).__name__ != "ZstdError":
                    raise
                out = b""
            if out and (best is None or len(out) > len(best[2])):
                best = (kind, pos, out)
            pos = raw.find(magic, pos + 1, end)
    if best is None:
        raise LocalmapError("no complete gzip, xz or zstd stream in the image (other compressions "
                            "are not supported: decompress it first)", path)
    return best


def _kallsyms_symbols(data: bytes, arch: str, path) -> tuple[Symbols, "object"]:
    from localmap.perf.kallsyms import find_kallsyms

    ks = find_kallsyms(data, WORD_BITS[arch])
    syms = Symbols(source=f"{path} (embedded kallsyms, {len(ks.names)} symbols)")
    syms.add_all(ks.entries())
    return syms, ks


def _flatten_elf(raw: bytes, path) -> tuple[object, int, bytes]:
    """(ELFFile, lowest vaddr, the PT_LOAD segments laid out as one blob, gaps zero)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(raw))
        segs = [(seg["p_vaddr"], seg["p_offset"], seg["p_filesz"], seg["p_flags"])
                for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]]
    except ELFError as exc:
        raise LocalmapError(f"bad ELF: {exc}", path) from None
    code = [s for s in segs if s[3] & 1]  # PF_X
    if not code:
        raise LocalmapError("ELF has no loadable code segment", path)
    # keep the segments near the code (x86-64 links its per-CPU section at address 0)
    anchor = code[0][0]
    loads = sorted((v, o, n) for v, o, n, _f in segs if abs(v - anchor) < 1 << 32)
    check_layout(loads, len(raw), path)
    lo = loads[0][0]
    flat = bytearray(max(v + n for v, _o, n in loads) - lo)
    for v, o, n in loads:
        flat[v - lo:v - lo + n] = raw[o:o + n]
    return elf, lo, bytes(flat)


def _elf_symtab(elf, path) -> Symbols | None:
    """Symbols of an ELF ``.symtab`` (read as one numpy record array: kernels have 10^5+)."""
    import numpy as np

    tab = elf.get_section_by_name(".symtab")
    strtab = elf.get_section_by_name(".strtab")
    if tab is None or strtab is None or elf.elfclass != 64:
        return None
    end = "<" if elf.little_endian else ">"
    dt = np.dtype([("name", end + "u4"), ("info", "u1"), ("other", "u1"), ("shndx", end + "u2"),
                   ("value", end + "u8"), ("size", end + "u8")])
    recs = np.frombuffer(tab.data(), dtype=dt)
    strs = strtab.data()
    exec_secs = {i for i, sec in enumerate(elf.iter_sections()) if sec["sh_flags"] & 0x4}
    entries = []
    for name_off, info, shndx, value in zip(recs["name"].tolist(), recs["info"].tolist(),
                                             recs["shndx"].tolist(), recs["value"].tolist()):
        if not name_off or shndx == 0:
            continue
        name = strs[name_off:strs.index(b"\0", name_off)].decode("latin-1")
        if name.startswith("$"):
            continue
        typ, bind = info & 0xF, info >> 4
        is_text = shndx in exec_secs
        if typ == 2 or (typ == 0 and is_text):  # STT_FUNC, or STT_NOTYPE in code
            t = "T" if bind == 1 else ("W" if bind == 2 else "t")
        else:
            t = "D" if bind == 1 else "d"
        entries.append((value, t, name))
    if not entries:
        return None
    syms = Symbols(source=f"{path} (.symtab)")
    syms.add_all(entries)
    return syms


def _rebase_arm64(syms: Symbols, cfg: dict[str, str], ks) -> Symbols:
    """arm64 Images leave ``kallsyms_relative_base`` to the boot-time relocator: place ``_text``
    at the link address KIMAGE_VADDR of the configured VA size (arch/arm64 memory layout)."""
    from localmap.arch.arm64.memory import KernelLayout
    from localmap.arch.arm64.pgtable import Geometry

    page = 4096
    for key, size in (("CONFIG_ARM64_16K_PAGES", 16384), ("CONFIG_ARM64_64K_PAGES", 65536)):
        if cfg.get(key) == "y":
            page = size
    va = int(cfg.get("CONFIG_ARM64_VA_BITS", "48"))
    base = KernelLayout.for_geometry(Geometry(page, va)).kimage_vaddr
    out = Symbols(source=syms.source + f", rebased to {base:#x}")
    out.add_all([(a + base, t, n) for a, t, n in ks.entries()])
    return out


def _arm_text_offset(cfg: dict[str, str]) -> int:
    off = 0x8000
    for key, value in ARM_TEXT_OFFSETS:
        if cfg.get(key) == "y":
            off = value
    return off


def _prologue_votes(data: bytes, syms: Symbols, base: int) -> int:
    """How many of (up to) 400 text symbols start with an ARM push/stmdb-to-sp at ``base``."""
    n = 0
    for a in syms.addrs[1000:1400]:
        o = a - base
        if 0 <= o <= len(data) - 4:
            w = struct.unpack_from("<I", data, o)[0]
            n += (w & 0xFFFF0000) == 0xE92D0000 or w == 0xE52DE004
    return n


def load_any(path: str | Path, symbols: str | Path | None = None,
             config: str | Path | None = None) -> KernelImage:
    """Load a kernel image of any Debian architecture (see the module docstring) with its text
    range and symbols (from ``symbols`` if given, else from the image itself)."""
    path = Path(path)
    raw = read_input_bytes(path, MAX_IMAGE_BYTES, "kernel image")
    try:
        arch, container = detect(raw)
    except LocalmapError as exc:
        raise LocalmapError(exc.message, path) from None
    if arch == "arm64" and container != "ELF" and symbols is not None:
        return load_image(path, symbols, config)
    cfg_path = Path(config) if config is not None else _find_config(path)
    cfg = parse_config(cfg_path) if cfg_path is not None else {}
    given = read_symbol_file(symbols) if symbols is not None else None
    notes: list[str] = []
    section_text: tuple[int, int] | None = None

    if container in ("ELF", "bzImage"):
        if container == "bzImage":
            setup_sects = raw[0x1F1] or 4
            pm = (setup_sects + 1) * 512
            off, length = struct.unpack_from("<II", raw, 0x248)
            kind, _pos, payload = find_payload(raw, path, pm + off, pm + off + length)
            if payload[:4] != b"\x7fELF":
                raise LocalmapError("bzImage payload is not an ELF vmlinux", path)
            notes.append(f"bzImage payload: {kind}, {length} bytes at {pm + off:#x} -> "
                         f"{len(payload)}-byte ELF vmlinux")
            raw_elf = payload
        else:
            raw_elf = raw
        elf, base, flat = _flatten_elf(raw_elf, path)
        arch = ELF_MACHINES.get(elf["e_machine"], arch)
        sec = elf.get_section_by_name(".text")
        if sec is not None:
            section_text = (sec["sh_addr"], sec["sh_addr"] + sec["sh_size"])
        syms = given or _elf_symtab(elf, path)
        if syms is None:
            syms, _ks = _kallsyms_symbols(flat, arch, path)
    else:
        if container == "zImage":
            kind, pos, data = find_payload(raw, path)
            notes.append(f"zImage payload: {kind} at {pos:#x} -> {len(data)}-byte Image")
        elif container == "s390 image":
            kind, pos, data = find_payload(raw, path)
            notes.append(f"s390 image payload: {kind} at {pos:#x} -> {len(data)}-byte vmlinux binary")
        else:  # riscv64 Image (raw or gzip), arm64 Image without a symbol file
            data = raw
            if raw[:2] == b"\x1f\x8b":
                try:
                    data = inflate(raw)
                except (OSError, EOFError) as exc:
                    raise LocalmapError(f"corrupt gzip image: {exc}", path) from None
            if arch == "arm64":
                from localmap.perf.image import _unpack

                data = _unpack(raw, path)
        if given is not None:
            syms = given
        else:
            syms, ks = _kallsyms_symbols(data, arch, path)
            if arch == "arm64" and ks.relative_base == 0 and syms.get("_text") == 0:
                syms = _rebase_arm64(syms, cfg, ks)
                notes.append(f"kallsyms rebased to KIMAGE_VADDR {syms.get('_text'):#x} (the raw Image "
                             "leaves relative_base to the relocator)")
        if arch == "armhf":
            page_offset = int(cfg.get("CONFIG_PAGE_OFFSET", "0xC0000000"), 16)
            base = page_offset + _arm_text_offset(cfg)
            notes.append(f"Image starts at PAGE_OFFSET + TEXT_OFFSET = {base:#x}"
                         + ("" if cfg else " (no .config: defaults assumed)"))
        elif arch == "riscv64":
            base = syms.get("_start") if syms.get("_start") is not None else min(syms.named.values())
        else:
            base = syms.get("_text")
            if base is None:
                base = syms.get("_stext")
        if base is None:
            raise LocalmapError("cannot place the image: no _text/_start symbol", path)
        flat = data
    stext, etext = syms.get("_stext"), syms.get("_etext")
    if section_text is not None and arch == "amd64":
        if (stext, etext) != section_text and stext is not None:
            notes.append(f"kallsyms [_stext, _etext) = [{stext:#x}, {etext:#x}) differs from .text")
        stext, etext = section_text
        notes.append(f"text range from the ELF .text section [{stext:#x}, {etext:#x})")
    if stext is None or etext is None:
        raise LocalmapError("no _stext/_etext symbols", syms.source)
    lo, hi = stext - base, etext - base
    if not (0 <= lo < hi <= len(flat)):
        raise LocalmapError(f"[_stext, _etext) at offsets {lo:#x}..{hi:#x} lies outside the "
                            f"{len(flat):#x}-byte image", path)
    return KernelImage(path=path, kind=container, text=bytes(flat[lo:hi]), stext=stext, etext=etext,
                       symbols=syms, config=cfg, image_bytes=len(raw), segments=[(base, flat)],
                       arch=arch, notes=notes)


__all__ = ["ARCHES", "detect", "detect_file", "find_payload", "load_any"]
