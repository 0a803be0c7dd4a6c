"""Loading arm64 kernel images and their symbols for the this_cpu site analysis.

What it models: the view of a kernel the boot loader and ``/proc/kallsyms`` give. Three inputs:

* a raw arm64 ``Image`` (Debian's ``vmlinuz`` for arm64 is one; gzip-compressed Images and EFI
  zboot images with a gzip payload are unpacked first). Its bytes start at ``_text``, so a
  virtual address ``va`` lives at file offset ``va - _text``; the symbols come from
  ``/proc/kallsyms`` (KASLR off, or any dump whose ``_text`` equals the link address) or from a
  ``System.map``;
* a ``vmlinux`` ELF, whose own symbol table is used (a separate symbol file may still be given).

The text range is ``[_stext, _etext)``, as the kernel's own ``is_kernel_text()`` uses it.
Deliberate differences from the kernel: symbol types are taken as printed (no re-derivation),
and a symbol's extent ends where the next text symbol starts (kallsyms has no sizes).
"""

from __future__ import annotations

import bisect
import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.fileio import MAX_IMAGE_BYTES, inflate, read_input_bytes

ARM64_IMAGE_MAGIC = b"ARM\x64"
ARM64_SEGMENT_ALIGN = 0x10000       # arch/arm64: SEGMENT_ALIGN = SZ_64K
TEXT_TYPES = frozenset("tTwW")


@dataclass
class Symbols:
    """Sorted text symbols: parallel lists of addresses and names, plus all named addresses."""

    addrs: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    named: dict[str, int] = field(default_factory=dict)  # every symbol (any type): first address
    source: str = ""

    def add_all(self, entries: list[tuple[int, str, str]]) -> None:
        text = sorted((a, n) for a, t, n in entries if t in TEXT_TYPES)
        self.addrs = [a for a, _ in text]
        self.names = [n for _, n in text]
        for a, _t, n in entries:
            self.named.setdefault(n, a)

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(function name, function start) of the text symbol covering ``addr``."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        return self.names[i], self.addrs[i]

    def extent(self, addr: int, limit: int) -> tuple[int, int]:
        """[start, end) of the text symbol covering ``addr`` (end: next symbol start or ``limit``)."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        start = self.addrs[i] if i >= 0 else addr
        j = bisect.bisect_right(self.addrs, start)
        while j < len(self.addrs) and self.addrs[j] <= start:
            j += 1
        end = self.addrs[j] if j < len(self.addrs) else limit
        return start, min(end, limit)

    def get(self, name: str) -> int | None:
        return self.named.get(name)


_SYM_LINE = re.compile(r"^([0-9a-fA-F]+)\s+(\S)\s+(\S+)(?:\s+\[(\S+)\])?\s*$")


def read_symbol_file(path: str | Path) -> Symbols:
    """Parse ``/proc/kallsyms`` or ``System.map`` (``ADDR TYPE NAME [MODULE]``, optionally gzip)."""
    path = Path(path)
    raw = read_input_bytes(path, MAX_IMAGE_BYTES, "symbol file")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = inflate(raw)
        except (OSError, EOFError) as exc:
            raise LocalmapError(f"corrupt gzip: {exc}", path) from None
    if b"The real System.map is in" in raw[:4096]:
        raise LocalmapError("this is Debian's stub System.map; the real one is in the "
                            "linux-image-<version>-dbg package", path)
    entries: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        m = _SYM_LINE.match(line)
        if not m:
            raise LocalmapError("not a kallsyms/System.map line", path, lineno)
        if m.group(4):  # module symbols are outside the core kernel text
            continue
        entries.append((int(m.group(1), 16), m.group(2), m.group(3)))
    if not entries:
        raise LocalmapError("empty symbol file", path)
    syms = Symbols(source=str(path))
    syms.add_all(entries)
    if syms.get("_stext") is None or syms.get("_etext") is None:
        hint = ""
        if len(entries) < 5:
            hint = " (Debian ships a stub System.map; the real one is in the -dbg package)"
        raise LocalmapError("symbol file has no _stext/_etext" + hint, path)
    if all(a == 0 for a in syms.addrs[:100]):
        raise LocalmapError("all addresses are 0 (read /proc/kallsyms as root)", path)
    return syms


@dataclass
class ImageFacts:
    """What a site report says of the image it read (the common head of every report)."""
    image: str
    kind: str
    symbols: str
    preempt_model: str
    preempt_count: bool | None
    text_start: int
    text_end: int
    text_bytes: int

    def facts_json(self) -> dict:
        return {"image": self.image, "kind": self.kind, "symbols": self.symbols,
                "preempt_model": self.preempt_model, "preempt_count": self.preempt_count,
                "text_start": hex(self.text_start), "text_end": hex(self.text_end),
                "text_bytes": self.text_bytes}


@dataclass
class KernelImage:
    """Kernel text bytes ``[_stext, _etext)`` with their symbols."""

    path: Path
    kind: str  # "Image" or "ELF"
    text: bytes  # the bytes of [stext, etext)
    stext: int
    etext: int
    symbols: Symbols
    config: dict[str, str] = field(default_factory=dict)
    image_bytes: int = 0
    segments: list[tuple[int, bytes]] = field(default_factory=list)  # (vaddr, bytes) of the image
    arch: str = "arm64"  # Debian architecture name (see localmap.perf.images for the others)
    notes: list[str] = field(default_factory=list)  # how the image was unpacked and located

    def read_va(self, va: int, size: int) -> bytes | None:
        """Bytes at any image address (text, rodata, ...), or None when not in the image."""
        for base, blob in self.segments:
            if base <= va and va + size <= base + len(blob):
                return blob[va - base:va - base + size]
        return None

    @property
    def text_bytes(self) -> int:
        return self.etext - self.stext

    def read(self, va: int, size: int) -> bytes:
        off = va - self.stext
        if off < 0 or off + size > len(self.text):
            raise LocalmapError(f"address {va:#x} outside the kernel text", self.path)
        return self.text[off:off + size]

    def preempt_count(self) -> bool | None:
        """Whether the kernel keeps a preempt count (None: unknown)."""
        if "CONFIG_PREEMPT_COUNT" in self.config:
            return self.config["CONFIG_PREEMPT_COUNT"] == "y"
        if self.config:
            return False
        if self.symbols.get("preempt_schedule_notrace") is not None:
            return True  # only built with CONFIG_PREEMPTION, which selects PREEMPT_COUNT
        return None

    def preempt_model(self) -> str:
        for key, name in (("CONFIG_PREEMPT_RT", "PREEMPT_RT"), ("CONFIG_PREEMPT_DYNAMIC", "PREEMPT_DYNAMIC"),
                          ("CONFIG_PREEMPT", "PREEMPT"), ("CONFIG_PREEMPT_VOLUNTARY", "PREEMPT_VOLUNTARY"),
                          ("CONFIG_PREEMPT_NONE", "PREEMPT_NONE")):
            if self.config.get(key) == "y":
                return name
        return "unknown"


def _unpack(raw: bytes, path: Path) -> bytes:
    """Raw Image bytes from a raw, gzip or EFI-zboot(gzip) file."""
    if raw[:2] == b"\x1f\x8b":
        try:
            return inflate(raw)
        except (OSError, EOFError) as exc:
            raise LocalmapError(f"corrupt gzip image: {exc}", path) from None
    if raw[:2] == b"MZ" and raw[4:8] == b"zimg":
        if len(raw) < 32:
            raise LocalmapError("EFI zboot header cut short", path)
        off, size = struct.unpack_from("<II", raw, 8)
        if not (0 < size and 32 <= off and off + size <= len(raw)):
            raise LocalmapError(f"EFI zboot header puts its payload at {off:#x}+{size:#x}, outside "
                                f"the {len(raw):#x}-byte file", path)
        comp = raw[24:32].rstrip(b"\0").decode("ascii", "replace")
        if comp != "gzip":
            raise LocalmapError(f"EFI zboot image compressed with {comp!r}: only gzip is supported; "
                                "decompress it first", path)
        return _unpack(raw[off:off + size], path)
    return raw


def parse_config(path: Path) -> dict[str, str]:
    cfg: dict[str, str] = {}
    raw = read_input_bytes(path, MAX_IMAGE_BYTES, "kernel config")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = inflate(raw, limit=64 << 20)
        except (OSError, EOFError) as exc:
            raise LocalmapError(f"corrupt gzip: {exc}", path) from None
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            cfg[k] = v.strip('"')
    return cfg


def _find_config(image: Path) -> Path | None:
    """A Debian ``config-VERSION`` next to ``vmlinuz-VERSION`` / ``vmlinux-VERSION``."""
    m = re.match(r"(?:vmlinuz|vmlinux|Image)-(.+)$", image.name)
    if m:
        cand = image.with_name("config-" + m.group(1))
        if cand.is_file():
            return cand
    cand = image.with_name(".config")
    return cand if cand.is_file() else None


def load_image(path: str | Path, symbols: str | Path | None = None,
               config: str | Path | None = None) -> KernelImage:
    """Load an arm64 kernel (raw/gzip/zboot ``Image`` or ``vmlinux`` ELF) with its symbols.

    ``symbols`` is a kallsyms or System.map file; it is required for a raw Image.
    ``config`` is the kernel's .config (default: Debian's ``config-VERSION`` beside the image).
    """
    path = Path(path)
    raw = read_input_bytes(path, MAX_IMAGE_BYTES, "kernel image")
    syms = read_symbol_file(symbols) if symbols is not None else None
    cfg_path = Path(config) if config is not None else _find_config(path)
    cfg = parse_config(cfg_path) if cfg_path is not None else {}
    if raw[:4] == b"\x7fELF":
        return _load_elf(path, raw, syms, cfg)
    data = _unpack(raw, path)
    if len(data) < 64 or data[56:60] != ARM64_IMAGE_MAGIC:
        raise LocalmapError("not an arm64 kernel Image (no ARM\\x64 magic) nor an ELF vmlinux", path)
    if data[24] & 1:
        raise LocalmapError("big-endian arm64 Image: not supported", path)
    if syms is None:
        raise LocalmapError("a raw Image carries no symbols: give --kallsyms or --system-map", path)
    text_base = syms.get("_text")
    stext, etext = syms.get("_stext"), syms.get("_etext")
    if stext is None or etext is None:
        raise LocalmapError("symbol file has no _stext/_etext (not a kernel's kallsyms or "
                            "System.map?)", syms.source)
    if text_base is None:
        # some kallsyms (e.g. Linux 6.1's) omit _text: on arm64 .text starts at the first
        # SEGMENT_ALIGN (64 KiB) boundary after .head.text, which is far smaller than 64 KiB
        text_base = stext - ARM64_SEGMENT_ALIGN
    lo, hi = stext - text_base, etext - text_base
    if not (0 <= lo < hi <= len(data)):
        raise LocalmapError(f"symbols do not fit this Image ([_stext, _etext) at file offsets "
                            f"{lo:#x}..{hi:#x}, image is {len(data):#x} bytes); "
                            "KASLR-shifted or other kernel's symbols?", syms.source)
    return KernelImage(path=path, kind="Image", text=bytes(data[lo:hi]), stext=stext, etext=etext,
                       symbols=syms, config=cfg, image_bytes=len(data),
                       segments=[(text_base, data)])


def _load_elf(path: Path, raw: bytes, syms: Symbols | None, cfg: dict[str, str]) -> KernelImage:
    try:
        from elftools.elf.elffile import ELFFile
        from elftools.common.exceptions import ELFError
    except ImportError:  # pragma: no cover - declared dependency
        raise LocalmapError("pyelftools is needed to read ELF vmlinux files") from None
    try:
        elf = ELFFile(io.BytesIO(raw))
        if elf["e_machine"] != "EM_AARCH64":
            raise LocalmapError(f"ELF for {elf['e_machine']}, not arm64", path)
        if syms is None:
            tab = elf.get_section_by_name(".symtab")
            if tab is None:
                raise LocalmapError("stripped vmlinux: give --kallsyms or --system-map", path)
            entries = []
            for s in tab.iter_symbols():
                if not s.name or s.name.startswith("$") or s["st_shndx"] == "SHN_UNDEF":
                    continue
                typ = s["st_info"]["type"]
                bind = s["st_info"]["bind"]
                sec = elf.get_section(s["st_shndx"]) if isinstance(s["st_shndx"], int) else None
                is_text = sec is not None and bool(sec["sh_flags"] & 0x4)  # SHF_EXECINSTR
                if typ == "STT_FUNC" or (typ == "STT_NOTYPE" and is_text):
                    t = "T" if bind == "STB_GLOBAL" else ("W" if bind == "STB_WEAK" else "t")
                else:
                    t = "D" if bind == "STB_GLOBAL" else "d"
                entries.append((s["st_value"], t, s.name))
            syms = Symbols(source=f"{path} (.symtab)")
            syms.add_all(entries)
        stext, etext = syms.get("_stext"), syms.get("_etext")
        if stext is None or etext is None:
            raise LocalmapError("no _stext/_etext symbols", syms.source)
        # lay the loadable segments out as `objcopy -O binary` (i.e. the Image) does: gaps are zeros
        loads = sorted((seg["p_vaddr"], seg["p_offset"], seg["p_filesz"])
                       for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD" and seg["p_filesz"])
        if loads:
            check_layout(loads, len(raw), path)
            lo = loads[0][0]
            flat = bytearray(max(v + n for v, _o, n in loads) - lo)
            for v, o, n in loads:
                flat[v - lo:v - lo + n] = raw[o:o + n]
            flat = bytes(flat)
            if lo <= stext and etext <= lo + len(flat):
                return KernelImage(path=path, kind="ELF", text=flat[stext - lo:etext - lo], stext=stext,
                                   etext=etext, symbols=syms, config=cfg, image_bytes=len(raw),
                                   segments=[(lo, flat)])
        raise LocalmapError("no loadable segment holds [_stext, _etext)", path)
    except ELFError as exc:
        raise LocalmapError(f"bad ELF: {exc}", path) from None


def check_layout(loads: list[tuple[int, int, int]], file_bytes: int, path) -> None:
    """Refuse an ELF whose loadable segments (``(vaddr, offset, filesz)``, sorted) lie outside
    the file or span more than :data:`~localmap.fileio.MAX_IMAGE_BYTES` once laid out: checked
    before the layout is allocated, so a tiny file cannot ask for gigabytes."""
    for v, o, n in loads:
        if o + n > file_bytes:
            raise LocalmapError(f"ELF segment at {v:#x} asks for {n} bytes at file offset {o:#x}, "
                                f"beyond the {file_bytes}-byte file", path)
    span = max(v + n for v, _o, n in loads) - loads[0][0]
    if span > MAX_IMAGE_BYTES:
        raise LocalmapError(f"ELF loadable segments span {span} bytes, more than the "
                            f"{MAX_IMAGE_BYTES >> 20} MiB a kernel image may be", path)
