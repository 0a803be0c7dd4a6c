"""A catalogue of bad input, built from the shared bundles, run through the real command line.

Each case is a command line of ``localmap`` on a damaged copy of a shared capture (or an odd
option, a device, a bomb). It runs in a child process whose address space is limited to
:data:`MEMORY_LIMIT` and is held to the command line's promise:

* **refused**: exit status 2 and exactly one line on stderr, ``localmap: ...``, naming the file
  (and the line, where there is one) given by the case, never a traceback and never running out
  of memory;
* or **accepted with the right flag**: exit status 0, and the case's own check of the output
  (for instance ``partial`` set, with the evidence named) holds.

Run it alone to see every case (``.venv/bin/python tests/badinput.py [-k NAME] [--keep]``);
``tests/test_bad_input.py`` runs it in the test suite. A new case is a function decorated with
:func:`case` that builds its input with the helpers of :class:`Ctx` and returns a :class:`Case`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import json
import lzma
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 1 << 30          # bytes of address space a case may use
TIMEOUT = 120.0                 # seconds a case may run

S1, S2 = "s1_612_4k_smp4", "s2_612_4k_smp2_page"


@dataclass
class Case:
    argv: list[str]                       # arguments of ``localmap``
    where: str | None = None              # refused: the error line names this (FILE or FILE:LINE)
    accept: Callable[[str], str | None] | None = None   # accepted: stdout -> problem or None
    stdin: bytes | None = None
    timeout: float = TIMEOUT
    name: str = ""
    about: str = ""


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float


REGISTRY: dict[str, Callable[["Ctx"], Case]] = {}


def case(name: str):
    """Register a case builder under ``name``."""
    def deco(fn):
        if name in REGISTRY:
            raise ValueError(f"duplicate case {name}")
        REGISTRY[name] = fn
        return fn
    return deco


@dataclass
class Ctx:
    """Where the shared bundles are and where a case may write."""

    shared: Path                 # the folder holding the bundles
    work: Path                   # scratch space of this run
    _traces: dict = field(default_factory=dict)

    def bundle(self, name: str) -> Path:
        return self.shared / name

    def copy(self, tag: str, base: str = S2, drop: tuple[str, ...] = (),
             files: dict[str, bytes | str] | None = None) -> Path:
        """A bundle ``tag``: the files of shared bundle ``base`` (symbolic links to them, so
        nothing big is copied), minus ``drop``, with ``files`` written over them."""
        out = self.work / tag
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        files = files or {}
        stems = {_stem(n) for n in files} | set(drop)
        for src in sorted(self.bundle(base).iterdir()):
            if _stem(src.name) in stems:
                continue
            (out / src.name).symlink_to(src)
        for name, data in files.items():
            (out / name).write_bytes(data.encode() if isinstance(data, str) else data)
        return out

    def text(self, base: str, name: str) -> str:
        """The (decompressed) text of file ``name`` of a shared bundle."""
        key = (base, name)
        if key not in self._traces:
            folder = self.bundle(base)
            for cand in (name, name + ".gz"):
                p = folder / cand
                if p.is_file():
                    raw = p.read_bytes()
                    if raw[:2] == b"\x1f\x8b":
                        raw = gzip.decompress(raw)
                    self._traces[key] = raw.decode()
                    break
            else:
                raise FileNotFoundError(folder / name)
        return self._traces[key]

    def lines(self, base: str = S2, name: str = "trace") -> list[str]:
        return self.text(base, name).splitlines(keepends=True)

    def trace_edit(self, tag: str, edit: Callable[[list[str]], list[str]], base: str = S2,
                   **kw) -> tuple[Path, str]:
        """A bundle whose trace is ``edit(lines)`` (plain text); returns (bundle, trace path)."""
        text = "".join(edit(list(self.lines(base))))
        files = dict(kw.pop("files", {}), trace=text)
        b = self.copy(tag, base, files=files, **kw)
        return b, str(b / "trace")

    def path(self, name: str) -> Path:
        p = self.work / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def _stem(name: str) -> str:
    for ext in (".gz", ".xz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def first_index(lines: list[str], needle: str, start: int = 0) -> int:
    for i in range(start, len(lines)):
        if needle in lines[i]:
            return i
    raise ValueError(needle)


def gzip_bomb(unit: bytes, copies: int) -> bytes:
    """A gzip stream of ``copies`` members, each ``unit`` compressed: it inflates to
    ``len(unit) * copies`` bytes from a file about ``copies`` times the member's size."""
    return gzip.compress(unit, compresslevel=9, mtime=0) * copies


# --- checks of accepted output ----------------------------------------------------------------

def replay_json(check: Callable[[dict], str | None]) -> Callable[[str], str | None]:
    def run(stdout: str) -> str | None:
        try:
            d = json.loads(stdout)
        except ValueError:
            return "stdout is not JSON"
        return check(d)
    return run


def partial_with(word: str) -> Callable[[str], str | None]:
    """The replay is flagged partial and its evidence mentions ``word``."""
    def check(d: dict) -> str | None:
        if not d.get("partial"):
            return "not flagged partial"
        if not any(word in r for r in d.get("partial_reasons", [])):
            return f"no partial reason mentions {word!r}: {d.get('partial_reasons')}"
        return None
    return replay_json(check)


def no_escapes(*visible: str) -> Callable[[str], str | None]:
    """The terminal output holds no control character and shows ``visible`` as text."""
    def check(stdout: str) -> str | None:
        bad = sorted({c for c in stdout if (ord(c) < 32 and c not in "\n") or 0x7f <= ord(c) < 0xa0})
        if bad:
            return f"control characters in the output: {bad!r}"
        for v in visible:
            if v not in stdout:
                return f"{v!r} not shown as text"
        return None
    return check


# ================================================================================================
# the cases
# ================================================================================================

# --- the source itself --------------------------------------------------------------------------

@case("source-missing")
def _(c: Ctx) -> Case:
    p = c.path("nothing-here")
    return Case(["replay", str(p)], where=str(p))


@case("source-dev-null")
def _(c: Ctx) -> Case:
    return Case(["replay", "/dev/null"], where="/dev/null")


@case("source-fifo")
def _(c: Ctx) -> Case:
    p = c.path("fifo")
    if not p.exists():
        os.mkfifo(p)
    return Case(["replay", str(p)], where=str(p), timeout=30)


@case("source-empty-folder")
def _(c: Ctx) -> Case:
    p = c.path("empty")
    p.mkdir(exist_ok=True)
    return Case(["replay", str(p)], where=str(p))


@case("source-empty-file")
def _(c: Ctx) -> Case:
    p = c.path("empty.trace")
    p.write_bytes(b"")
    return Case(["replay", str(p)], where=str(p))


@case("source-binary-file")
def _(c: Ctx) -> Case:
    p = c.path("random.bin")
    p.write_bytes(bytes(range(256)) * 64)
    return Case(["replay", str(p)], where=str(p))


@case("trace-is-a-folder")
def _(c: Ctx) -> Case:
    b = c.copy("trace-folder", drop=("trace",))
    (b / "trace").mkdir()
    return Case(["replay", str(b)], where=str(b / "trace"))


@case("bundle-path-with-markup")
def _(c: Ctx) -> Case:
    b = c.copy("odd[/]name[link=http://example.invalid]x")     # (a path writes it http:/)
    return Case(["replay", str(b)], accept=no_escapes(str(b)))


# --- compression -------------------------------------------------------------------------------

@case("trace-gzip-truncated")
def _(c: Ctx) -> Case:
    raw = (c.bundle(S2) / "trace.gz").read_bytes()
    b = c.copy("trace-gz-cut", files={"trace.gz": raw[: len(raw) // 2]})
    return Case(["replay", str(b)], where=str(b / "trace.gz"))


@case("trace-gzip-crc")
def _(c: Ctx) -> Case:
    raw = bytearray((c.bundle(S2) / "trace.gz").read_bytes())
    raw[-8] ^= 0xFF                       # the CRC32 of the member
    b = c.copy("trace-gz-crc", files={"trace.gz": bytes(raw)})
    return Case(["replay", str(b)], where=str(b / "trace.gz"))


@case("trace-gzip-garbage-inside")
def _(c: Ctx) -> Case:
    raw = bytearray((c.bundle(S2) / "trace.gz").read_bytes())
    for i in range(2000, 2064):
        raw[i] ^= 0x5A
    b = c.copy("trace-gz-garbage", files={"trace.gz": bytes(raw)})
    return Case(["replay", str(b)], where=str(b / "trace.gz"))


@case("trace-xz-truncated")
def _(c: Ctx) -> Case:
    raw = lzma.compress(c.text(S2, "trace").encode())
    b = c.copy("trace-xz-cut", files={"trace.xz": raw[: len(raw) * 2 // 3]})
    return Case(["replay", str(b)], where=str(b / "trace.xz"))


@case("config-gzip-corrupt")
def _(c: Ctx) -> Case:
    raw = bytearray((c.bundle(S2) / "config.gz").read_bytes())
    for i in range(100, 400):
        raw[i] ^= 0xA5
    b = c.copy("config-gz-bad", files={"config.gz": bytes(raw)})
    return Case(["replay", str(b)], where=str(b / "config.gz"))


@case("config-xz-corrupt")
def _(c: Ctx) -> Case:
    raw = bytearray(lzma.compress(c.text(S2, "config").encode()))
    for i in range(60, 200):
        raw[i] ^= 0xA5
    b = c.copy("config-xz-bad", files={"config.xz": bytes(raw)})
    return Case(["overhead", str(b), "--cpus", "8"], where=str(b / "config.xz"))


@case("config-gzip-truncated-overhead")
def _(c: Ctx) -> Case:
    raw = (c.bundle(S2) / "config.gz").read_bytes()
    b = c.copy("config-gz-cut", files={"config.gz": raw[:3000]})
    return Case(["overhead", str(b), "--cpus", "8"], where=str(b / "config.gz"))


@case("kallsyms-gzip-truncated")
def _(c: Ctx) -> Case:
    raw = (c.bundle(S2) / "kallsyms.gz").read_bytes()
    b = c.copy("kallsyms-gz-cut", files={"kallsyms.gz": raw[:5000]})
    return Case(["replay", str(b)], where=str(b / "kallsyms.gz"))


@case("kallsyms-percpu-bound-malformed")
def _(c: Ctx) -> Case:
    # __per_cpu_end's address made non-hex: refused at its own line, found again (the search
    # for the two symbols does not count lines until it has to name one)
    lines = c.text(S2, "kallsyms").splitlines(keepends=True)
    i = next(k for k, ln in enumerate(lines) if ln.rstrip().endswith(" __per_cpu_end"))
    lines[i] = "zz" + lines[i][2:]
    b = c.copy("kallsyms-bound-bad", drop=("kallsyms.gz",), files={"kallsyms": "".join(lines)})
    return Case(["replay", str(b)], where=f"{b / 'kallsyms'}:{i + 1}")


@case("kallsyms-xz-corrupt")
def _(c: Ctx) -> Case:
    raw = bytearray(lzma.compress(b"ffff800080000000 T _text\n" * 1000))
    raw[40:80] = b"\0" * 40
    b = c.copy("kallsyms-xz-bad", files={"kallsyms.xz": bytes(raw)})
    return Case(["replay", str(b)], where=str(b / "kallsyms.xz"))


@case("dmesg-gzip-corrupt")
def _(c: Ctx) -> Case:
    raw = bytearray(gzip.compress(c.text(S2, "dmesg").encode()))
    raw[-5] ^= 0xFF                       # the size field
    b = c.copy("dmesg-gz-bad", files={"dmesg.gz": bytes(raw)})
    return Case(["replay", str(b)], where=str(b / "dmesg.gz"))


@case("vmallocinfo-gzip-truncated")
def _(c: Ctx) -> Case:
    raw = (c.bundle(S2) / "vmallocinfo.gz").read_bytes()
    b = c.copy("vmalloc-gz-cut", files={"vmallocinfo.gz": raw[: len(raw) // 2]})
    return Case(["replay", str(b)], where=str(b / "vmallocinfo.gz"))


@case("config-gzip-bomb")
def _(c: Ctx) -> Case:
    unit = b"CONFIG_LOCALMAP_FILLER=y\n" * (1 << 20)          # 25 MiB
    b = c.copy("config-bomb", files={"config.gz": gzip_bomb(unit, 160)})   # 4 GiB inflated
    return Case(["replay", str(b)], where=str(b / "config.gz"))


@case("dmesg-gzip-bomb-no-newline")
def _(c: Ctx) -> Case:
    b = c.copy("dmesg-bomb", files={"dmesg.gz": gzip_bomb(b"A" * (32 << 20), 64)})  # 2 GiB line
    return Case(["replay", str(b)], where=str(b / "dmesg.gz"))


@case("kallsyms-gzip-bomb-no-newline")
def _(c: Ctx) -> Case:
    b = c.copy("kallsyms-bomb", files={"kallsyms.gz": gzip_bomb(b"f" * (32 << 20), 64)})
    return Case(["replay", str(b)], where=str(b / "kallsyms.gz"))


@case("trace-one-gigabyte-line")
def _(c: Ctx) -> Case:
    head = "".join(c.lines()[:14]).encode()
    data = gzip.compress(head, mtime=0) + gzip_bomb(b"x" * (32 << 20), 32)
    b = c.copy("trace-long-line", files={"trace.gz": data})
    return Case(["replay", str(b)], where=str(b / "trace.gz") + ":15")


# --- trace lines -------------------------------------------------------------------------------

def _alloc_line(c: Ctx, base: str = S2) -> int:
    return first_index(c.lines(base), "percpu_alloc_percpu:")


def _replace_in(lines: list[str], i: int, old: str, new: str) -> list[str]:
    assert old in lines[i], (old, lines[i])
    lines[i] = lines[i].replace(old, new, 1)
    return lines


def _field_case(tag: str, old: str, new: str, needle: str = "percpu_alloc_percpu:",
                nth: int = 0):
    """A case that changes ``old`` into ``new`` in the nth line holding ``needle``."""
    def build(c: Ctx) -> Case:
        lines = c.lines()
        i = first_index(lines, needle)
        for _ in range(nth):
            i = first_index(lines, needle, i + 1)
        _, tpath = c.trace_edit(tag, lambda ls: _replace_in(ls, i, old, new))
        return Case(["replay", str(Path(tpath).parent)], where=f"{tpath}:{i + 1}")
    return build


for _tag, _old, _new in [
    ("size-negative", "size=4 ", "size=-4 "),
    ("size-zero", "size=4 ", "size=0 "),
    ("size-underscore", "size=4 ", "size=4_0 "),
    ("size-unicode-digit", "size=4 ", "size=\u0664 "),
    ("size-hex-prefix", "size=4 ", "size=0x4 "),
    ("size-plus", "size=4 ", "size=+4 "),
    ("size-huge", "size=4 ", "size=99999999999999999999 "),
    ("align-not-power-of-two", "align=4 ", "align=12 "),
    ("align-zero", "align=4 ", "align=0 "),
    ("reserved-two", "reserved=0 ", "reserved=2 "),
    ("atomic-word", "is_atomic=0 ", "is_atomic=yes "),
    ("off-huge", "off=5512 ", "off=184467440737095516150 "),
    ("off-negative", "off=5512 ", "off=-8 "),
    ("off-unaligned", "off=5512 ", "off=5513 "),
    ("base-not-hex", "base_addr=ffff800082b4b000", "base_addr=ffff80008zb4b000"),
    ("base-too-long", "base_addr=ffff800082b4b000", "base_addr=1ffff800082b4b000"),
    ("ptr-hashed", "ptr=ffff800081f6d588", "ptr=(____ptrval____)"),
    ("bytes-alloc-word", "bytes_alloc=16 ", "bytes_alloc=sixteen "),
]:
    case("field-" + _tag)(_field_case("field-" + _tag, _old, _new))


@case("field-free-off-word")
def _(c: Ctx) -> Case:
    return _field_case("free-off-word", "off=", "off=x", needle="percpu_free_percpu:")(c)


@case("field-timestamp-garbage")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = _alloc_line(c) + 5
    old = lines[i].split("]")[1].split(":")[0].split()[-1]
    return _field_case("ts-garbage", old + ":", "1.2.3:", nth=5)(c)


@case("line-unknown-percpu-event")
def _(c: Ctx) -> Case:
    return _field_case("unknown-event", "percpu_alloc_percpu:", "percpu_alloc_sideways:")(c)


@case("line-truncated-in-the-middle")
def _(c: Ctx) -> Case:
    i = _alloc_line(c) + 40
    _, t = c.trace_edit("cut-middle", lambda ls: ls[:i] + [ls[i][:80] + "\n"] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


@case("line-junk")
def _(c: Ctx) -> Case:
    i = _alloc_line(c) + 7
    _, t = c.trace_edit("junk-line", lambda ls: ls[:i] + ["hello world\n"] + ls[i:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


@case("line-nul-bytes")
def _(c: Ctx) -> Case:
    i = _alloc_line(c) + 3
    _, t = c.trace_edit("nul-line", lambda ls: ls[:i] + ["\0" * 200 + "\n"] + ls[i:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


@case("trace-cut-mid-line-after-fields")
def _(c: Ctx) -> Case:
    # the last line keeps every required field but loses its tail and its newline
    def edit(ls):
        ls = ls[: len(ls) // 2]
        last = ls[-1].rstrip("\n")
        return ls[:-1] + [last[: last.index(" gfp_flags=") if " gfp_flags=" in last else -3]]
    b, _ = c.trace_edit("cut-mid-line", edit)
    return Case(["replay", str(b), "--json"], accept=partial_with("cut"))


@case("trace-cut-at-a-line")
def _(c: Ctx) -> Case:
    b, _ = c.trace_edit("cut-at-line", lambda ls: ls[: len(ls) // 3])
    return Case(["replay", str(b), "--json"], accept=partial_with("entries-in-buffer"))


@case("trace-lost-events-header")
def _(c: Ctx) -> Case:
    def edit(ls):
        i = first_index(ls, "entries-in-buffer")
        return _replace_in(ls, i, "6751/6751", "6751/7000")
    b, _ = c.trace_edit("lost-header", edit)
    return Case(["replay", str(b), "--json"], accept=partial_with("lost"))


@case("trace-started-late")
def _(c: Ctx) -> Case:
    # tracing switched on after boot: the first 60 % of the events are missing
    def edit(ls):
        head = [ln for ln in ls if ln.startswith("#") and "entries-in-buffer" not in ln]
        body = [ln for ln in ls if not ln.startswith("#")]
        return head + body[len(body) * 3 // 5:]
    b, _ = c.trace_edit("started-late", edit, files={
        "cmdline": c.text(S2, "cmdline").replace("trace_event=percpu:* ", "")})
    return Case(["replay", str(b), "--json"], accept=partial_with("boot"))


@case("timestamps-out-of-order")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "[000]", _alloc_line(c) + 3000)
    j = first_index(lines, "[000]", i + 1)

    def edit(ls):
        ls[i], ls[j] = ls[j], ls[i]
        return ls
    _, t = c.trace_edit("ts-order", edit)
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{j + 1}")


@case("timestamp-backwards-one-cpu")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "[001]", _alloc_line(c) + 2000)
    ts = lines[i].split("]")[1].split(":")[0].split()[-1]
    _, t = c.trace_edit("ts-back", lambda ls: _replace_in(ls, i, ts + ":", "0.000001:"))
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


@case("cpu-beyond-possible")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "[001]", _alloc_line(c) + 100)
    _, t = c.trace_edit("cpu-9", lambda ls: _replace_in(ls, i, "[001]", "[009]"))
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


# --- corrupt event sequences -------------------------------------------------------------------

@case("duplicate-allocation")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_alloc_percpu:", _alloc_line(c) + 1500)
    _, t = c.trace_edit("dup-alloc", lambda ls: ls[: i + 1] + [ls[i]] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("duplicate-allocation-first-chunk")
def _(c: Ctx) -> Case:
    i = _alloc_line(c) + 20
    _, t = c.trace_edit("dup-alloc-fc", lambda ls: ls[: i + 1] + [ls[i]] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("overlapping-allocation")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_alloc_percpu:", _alloc_line(c) + 2500)
    while "size=4 " in lines[i] or "size=8 " in lines[i]:
        i = first_index(lines, "percpu_alloc_percpu:", i + 1)
    ln = lines[i]
    off = int(ln.split(" off=")[1].split()[0])
    ptr = int(ln.split(" ptr=")[1].split()[0], 16)
    new = ln.replace(f" off={off} ", f" off={off + 4} ").replace(f" ptr={ptr:x}", f" ptr={ptr + 4:x}")
    _, t = c.trace_edit("overlap-alloc", lambda ls: ls[: i + 1] + [new] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("free-never-allocated-in-traced-chunk")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_create_chunk:")
    base = lines[i].split("base_addr=")[1].split()[0]
    j = first_index(lines, f"base_addr={base} off=", i + 1)
    head = lines[j].split(": percpu_")[0]
    ptr_delta_src = lines[j]
    off = int(ptr_delta_src.split(" off=")[1].split()[0])
    ptr = int(ptr_delta_src.split(" ptr=")[1].split()[0], 16)
    bad = f"{head}: percpu_free_percpu: base_addr={base} off={off + 4096} ptr={ptr + 4096:x}\n"
    _, t = c.trace_edit("free-never", lambda ls: ls[: j + 1] + [bad] + ls[j + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{j + 2}")


@case("double-free")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_free_percpu:", _alloc_line(c) + 2000)
    _, t = c.trace_edit("double-free", lambda ls: ls[: i + 1] + [ls[i]] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("create-live-chunk-twice")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_create_chunk:")
    _, t = c.trace_edit("create-twice", lambda ls: ls[: i + 1] + [ls[i]] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("destroy-unknown-chunk")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_create_chunk:")
    bad = lines[i].replace("percpu_create_chunk", "percpu_destroy_chunk").replace(
        "base_addr=ffff", "base_addr=eeee")
    _, t = c.trace_edit("destroy-unknown", lambda ls: ls[: i + 1] + [bad] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 2}")


@case("ptr-from-another-boot")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_alloc_percpu:", _alloc_line(c) + 300)
    ptr = lines[i].split(" ptr=")[1].split()[0]
    new = f"{int(ptr, 16) + 0x200000:x}"
    _, t = c.trace_edit("ptr-boot", lambda ls: _replace_in(ls, i, "ptr=" + ptr, "ptr=" + new))
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


@case("allocation-outside-the-unit")
def _(c: Ctx) -> Case:
    lines = c.lines()
    i = first_index(lines, "percpu_alloc_percpu:", _alloc_line(c) + 2500)
    ln = lines[i]
    off = ln.split(" off=")[1].split()[0]
    ptr = int(ln.split(" ptr=")[1].split()[0], 16)
    new = ln.replace(f" off={off} ", f" off={int(off) + (1 << 24)} ").replace(
        f"ptr={ptr:x}", f"ptr={ptr + (1 << 24):x}")
    _, t = c.trace_edit("off-outside", lambda ls: ls[:i] + [new] + ls[i + 1:])
    return Case(["replay", str(Path(t).parent)], where=f"{t}:{i + 1}")


# --- the other files of a bundle ---------------------------------------------------------------

@case("dmesg-two-first-chunk-lines")
def _(c: Ctx) -> Case:
    d = c.text(S2, "dmesg").splitlines(keepends=True)
    i = first_index(d, "percpu: ")
    extra = d[i].replace("s101464", "s99999")
    b = c.copy("dmesg-two", files={"dmesg": "".join(d[:i] + [extra] + d[i:])})
    return Case(["replay", str(b)], where=f"{b / 'dmesg'}:{i + 2}")


@case("dmesg-no-first-chunk-line")
def _(c: Ctx) -> Case:
    d = "".join(ln for ln in c.text(S2, "dmesg").splitlines(keepends=True) if "percpu: " not in ln)
    b = c.copy("dmesg-none", files={"dmesg": d})
    return Case(["replay", str(b)], where=str(b / "dmesg"))


@case("dmesg-giant-first-chunk")
def _(c: Ctx) -> Case:
    d = c.text(S2, "dmesg").splitlines(keepends=True)
    i = first_index(d, "percpu: ")
    d[i] = d[i].replace("32 4K pages/cpu s101464", "999999999 4K pages/cpu s99999999999")
    b = c.copy("dmesg-giant", files={"dmesg": "".join(d)})
    return Case(["replay", str(b)], where=f"{b / 'dmesg'}:{i + 1}")


@case("dmesg-pcpu-alloc-contradicts-cpus")
def _(c: Ctx) -> Case:
    d = c.text(S2, "dmesg").splitlines(keepends=True)
    i = first_index(d, "pcpu-alloc: [0]")
    d[i] = d[i].rstrip("\n").rstrip() + " [0] 2 [0] 3 \n"
    b = c.copy("dmesg-4cpus", files={"dmesg": "".join(d)})
    return Case(["replay", str(b)], where=str(b / "cpus"))


@case("cpus-contradicts-trace")
def _(c: Ctx) -> Case:
    b = c.copy("cpus-one", base=S1, files={"cpus": "possible 0-1\nonline 0-1\n"})
    return Case(["replay", str(b)], where=str(b / "cpus"))


@case("cpus-hundred-million")
def _(c: Ctx) -> Case:
    b = c.copy("cpus-huge", files={"cpus": "possible 0-99999999\nonline 0-1\n"})
    return Case(["replay", str(b)], where=f"{b / 'cpus'}:1")


@case("cpus-garbage")
def _(c: Ctx) -> Case:
    b = c.copy("cpus-garbage", files={"cpus": "possible 0-x\n"})
    return Case(["replay", str(b)], where=f"{b / 'cpus'}:1")


@case("cpus-reversed-range")
def _(c: Ctx) -> Case:
    b = c.copy("cpus-reversed", files={"cpus": "possible 3-0\nonline 0-1\n"})
    return Case(["replay", str(b)], where=f"{b / 'cpus'}:1")


@case("cpus-empty-file")
def _(c: Ctx) -> Case:
    b = c.copy("cpus-empty", files={"cpus": ""})
    return Case(["replay", str(b)], where=str(b / "cpus"))


@case("config-va-bits-word-overhead")
def _(c: Ctx) -> Case:
    cfg = c.text(S2, "config").splitlines(keepends=True)
    i = first_index(cfg, "CONFIG_ARM64_VA_BITS=")
    cfg[i] = "CONFIG_ARM64_VA_BITS=lots\n"
    b = c.copy("va-bits-word", files={"config": "".join(cfg)})
    return Case(["overhead", str(b), "--cpus", "8"], where=f"{b / 'config'}:{i + 1}")


@case("config-va-bits-word-evaluate")
def _(c: Ctx) -> Case:
    cfg = c.text(S2, "config").splitlines(keepends=True)
    i = first_index(cfg, "CONFIG_ARM64_VA_BITS=")
    cfg[i] = "CONFIG_ARM64_VA_BITS=4_8\n"
    b = c.copy("va-bits-underscore", files={"config": "".join(cfg)})
    return Case(["evaluate", str(b)], where=f"{b / 'config'}:{i + 1}")


@case("config-nr-cpus-word")
def _(c: Ctx) -> Case:
    cfg = c.text(S2, "config").splitlines(keepends=True)
    i = first_index(cfg, "CONFIG_NR_CPUS=")
    cfg[i] = "CONFIG_NR_CPUS=many\n"
    b = c.copy("nr-cpus-word", files={"config": "".join(cfg)})
    return Case(["evaluate", str(b)], where=f"{b / 'config'}:{i + 1}")


@case("config-not-a-config")
def _(c: Ctx) -> Case:
    b = c.copy("config-prose", files={"config": "this is not a kernel configuration\n"})
    return Case(["replay", str(b)], where=f"{b / 'config'}:1")


@case("meminfo-percpu-word")
def _(c: Ctx) -> Case:
    m = c.text(S2, "meminfo.boot").splitlines(keepends=True)
    i = first_index(m, "Percpu:")
    m[i] = "Percpu:          lots kB\n"
    b = c.copy("meminfo-word", files={"meminfo.boot": "".join(m)})
    return Case(["replay", str(b)], where=f"{b / 'meminfo.boot'}:{i + 1}")


@case("meminfo-percpu-unicode")
def _(c: Ctx) -> Case:
    m = c.text(S2, "meminfo.boot").splitlines(keepends=True)
    i = first_index(m, "Percpu:")
    m[i] = "Percpu:          \u0661\u0662 kB\n"
    b = c.copy("meminfo-unicode", files={"meminfo.boot": "".join(m)})
    return Case(["replay", str(b)], where=f"{b / 'meminfo.boot'}:{i + 1}")


@case("vmallocinfo-bad-line")
def _(c: Ctx) -> Case:
    v = c.text(S2, "vmallocinfo").splitlines(keepends=True)
    v[3] = "0xffff-0xzzzz 4096 x\n"
    b = c.copy("vmalloc-bad", files={"vmallocinfo": "".join(v)})
    return Case(["replay", str(b)], where=f"{b / 'vmallocinfo'}:4")


@case("kallsyms-non-hex-address")
def _(c: Ctx) -> Case:
    k = c.text(S2, "kallsyms").splitlines(keepends=True)
    i = first_index(k, " __per_cpu_start")
    k[i] = "ffff8000zz000000 D __per_cpu_start\n"
    b = c.copy("kallsyms-nonhex", files={"kallsyms": "".join(k)})
    return Case(["replay", str(b)], where=f"{b / 'kallsyms'}:{i + 1}")


@case("kallsyms-from-another-boot")
def _(c: Ctx) -> Case:
    k = c.text(S2, "kallsyms").splitlines(keepends=True)
    shifted = []
    for ln in k:
        a, rest = ln.split(" ", 1)
        shifted.append(f"{int(a, 16) + 0x1000000:016x} {rest}")
    b = c.copy("kallsyms-kaslr", files={"kallsyms": "".join(shifted)})
    return Case(["replay", str(b)], where=str(b / "kallsyms"))


@case("uname-with-markup-and-escapes")
def _(c: Ctx) -> Case:
    evil = "Linux [link=http://example.invalid]click[/link] \x1b]8;;http://x\x1b\\y\x1b[31mred [/] \x07"
    b = c.copy("uname-evil", files={"uname": evil + "\n"})
    return Case(["evaluate", str(b)], accept=no_escapes("[link=http://example.invalid]click[/link]"))


@case("call-site-with-markup")
def _(c: Ctx) -> Case:
    # a disagreement (the allocation moved to a free offset) whose call_site holds markup
    lines = c.lines()
    i = first_index(lines, "percpu_alloc_percpu:", _alloc_line(c) + 4000)
    cs = lines[i].split("call_site=")[1].split()[0]
    _, t = c.trace_edit("cs-markup", lambda ls: _replace_in(ls, i, "call_site=" + cs,
                                                            "call_site=[/][link=x]evil\x1b[2J"))
    return Case(["replay", str(Path(t).parent)], accept=no_escapes())


# --- command lines -----------------------------------------------------------------------------

@case("replay-possible-cpus-1e9")
def _(c: Ctx) -> Case:
    return Case(["replay", str(c.bundle(S2)), "--possible-cpus", "1000000000"],
                where="--possible-cpus")


@case("replay-possible-cpus-list-huge")
def _(c: Ctx) -> Case:
    return Case(["replay", str(c.bundle(S2)), "--possible-cpus", "0-99999999"],
                where="--possible-cpus")


@case("replay-possible-cpus-contradicts")
def _(c: Ctx) -> Case:
    return Case(["replay", str(c.bundle(S1)), "--possible-cpus", "2"], where="--possible-cpus")


@case("replay-dmesg-dev-null")
def _(c: Ctx) -> Case:
    return Case(["replay", str(c.bundle(S2)), "--dmesg", "/dev/null"], where="/dev/null")


@case("replay-config-folder")
def _(c: Ctx) -> Case:
    return Case(["replay", str(c.bundle(S2)), "--config", str(c.work)], where=str(c.work))


@case("replay-decisions-no-folder")
def _(c: Ctx) -> Case:
    p = c.path("no/such/folder/decisions.tsv")
    p.parent.parent.rmdir() if p.parent.parent.exists() and not any(p.parent.parent.iterdir()) else None
    target = c.work / "missing-dir" / "x.tsv"
    return Case(["replay", str(c.bundle(S2)), "--decisions", str(target)], where=str(target))


@case("overhead-cpus-1e9")
def _(c: Ctx) -> Case:
    return Case(["overhead", str(c.bundle(S2)), "--cpus", "1000000000"], where="--cpus")


@case("overhead-cpus-float")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "1e9", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "192K", "--chunks", "5"], where="--cpus")


@case("overhead-chunks-hundred-million")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "192K", "--chunks", "100000000"], where="--chunks")


@case("overhead-unit-size-terabyte")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "1024G", "--chunks", "2"], where="--unit-size")


@case("overhead-unit-size-negative")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "-192K", "--chunks", "2"], where="--unit-size")


@case("overhead-window-bytes-word")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "192K", "--chunks", "2", "--window-bytes", "big"],
                where="--window-bytes")


@case("overhead-granule-odd")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "3K", "--va-bits", "48",
                 "--unit-size", "192K", "--chunks", "2"], where="--granule")


@case("overhead-vabits-actual-huge")
def _(c: Ctx) -> Case:
    return Case(["overhead", "--cpus", "4", "--granule", "4K", "--va-bits", "48",
                 "--unit-size", "192K", "--chunks", "2", "--vabits-actual", "4000"],
                where="--vabits-actual")


@case("check-cpus-huge")
def _(c: Ctx) -> Case:
    return Case(["check", "--cpus", "100000"], where="--cpus")


@case("check-unknown-scenario")
def _(c: Ctx) -> Case:
    return Case(["check", "no-such-scenario"], where="no-such-scenario")


@case("check-load-syntax-error")
def _(c: Ctx) -> Case:
    p = c.path("broken_scenarios.py")
    p.write_text("def oops(:\n")
    return Case(["check", "--load", str(p), "--list"], where=f"{p}:1")


@case("check-load-missing")
def _(c: Ctx) -> Case:
    p = c.work / "absent.py"
    return Case(["check", "--load", str(p)], where=str(p))


@case("sites-dev-null")
def _(c: Ctx) -> Case:
    return Case(["sites", "/dev/null"], where="/dev/null")


@case("sites-random-bytes")
def _(c: Ctx) -> Case:
    p = c.path("random.img")
    p.write_bytes(os.urandom(4096))
    return Case(["sites", str(p)], where=str(p))


@case("sites-elf-asking-40-gib")
def _(c: Ctx) -> Case:
    p = c.path("tiny.elf")
    p.write_bytes(_tiny_elf(40 << 30))
    k = c.path("tiny.kallsyms")
    k.write_text("ffff800080010000 T _stext\nffff800080020000 T _etext\n"
                 "ffff800080010000 T _text\n")
    return Case(["sites", str(p), "--kallsyms", str(k)], where=str(p))


@case("sites-image-gzip-bomb")
def _(c: Ctx) -> Case:
    p = c.path("bomb.img.gz")
    p.write_bytes(gzip_bomb(b"\0" * (32 << 20), 64))
    return Case(["sites", str(p)], where=str(p))


@case("sites-kallsyms-non-hex")
def _(c: Ctx) -> Case:
    img = c.path("fake.Image")
    hdr = bytearray(64)
    hdr[56:60] = b"ARM\x64"
    img.write_bytes(bytes(hdr) + b"\0" * 4096)
    k = c.path("nonhex.kallsyms")
    k.write_text("ffff800080000000 T _text\nzzzz800080010000 T _stext\n")
    return Case(["sites", str(img), "--kallsyms", str(k)], where=f"{k}:2")


@case("sites-kallsyms-gzip-corrupt")
def _(c: Ctx) -> Case:
    raw = bytearray((c.bundle(S2) / "kallsyms.gz").read_bytes()[:20000])
    img = c.path("fake2.Image")
    hdr = bytearray(64)
    hdr[56:60] = b"ARM\x64"
    img.write_bytes(bytes(hdr) + b"\0" * 4096)
    k = c.path("cut.kallsyms.gz")
    k.write_bytes(bytes(raw))
    return Case(["sites", str(img), "--kallsyms", str(k)], where=str(k))


@case("sites-config-gzip-corrupt")
def _(c: Ctx) -> Case:
    img = c.path("fake3.Image")
    hdr = bytearray(64)
    hdr[56:60] = b"ARM\x64"
    img.write_bytes(bytes(hdr) + b"\0" * 4096)
    cfg = c.path("bad.config.gz")
    cfg.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(500))
    k = c.path("ok.kallsyms")
    k.write_text("ffff800080000000 T _text\nffff800080000010 T _stext\nffff800080000020 T _etext\n")
    return Case(["sites", str(img), "--kallsyms", str(k), "--config", str(cfg)], where=str(cfg))


@case("sites-zboot-out-of-range")
def _(c: Ctx) -> Case:
    p = c.path("zboot.efi")
    hdr = bytearray(64)
    hdr[0:2] = b"MZ"
    hdr[4:8] = b"zimg"
    struct.pack_into("<II", hdr, 8, 1 << 30, 1 << 30)
    hdr[24:28] = b"gzip"
    p.write_bytes(bytes(hdr))
    return Case(["sites", str(p)], where=str(p))


@case("sites-unknown-debian-flavour")
def _(c: Ctx) -> Case:
    return Case(["sites", "debian:sparc"], where="debian:sparc")


@case("predict-profile-binary")
def _(c: Ctx) -> Case:
    p = c.path("profile.bin")
    p.write_bytes(os.urandom(2048))
    return Case(["predict", "--profile", str(p)], where=str(p))


@case("predict-profile-fifo")
def _(c: Ctx) -> Case:
    p = c.path("profile.fifo")
    if not p.exists():
        os.mkfifo(p)
    return Case(["predict", "--profile", str(p)], where=str(p), timeout=30)


@case("evaluate-html-through-symlink")
def _(c: Ctx) -> Case:
    out = c.path("html-out")
    out.mkdir(exist_ok=True)
    victim = c.path("victim.txt")
    victim.write_text("keep me\n")
    link = out / "index.html"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(victim)

    def check(stdout: str) -> str | None:
        if victim.read_text() != "keep me\n":
            return "the symlink's target was overwritten"
        if link.is_symlink() or "<html" not in link.read_text()[:200]:
            return "index.html was not written in place of the link"
        return None
    return Case(["evaluate", str(c.bundle(S2)), "--html", str(out)], accept=check)


@case("evaluate-html-is-a-file")
def _(c: Ctx) -> Case:
    p = c.path("html-file")
    p.write_text("x")
    return Case(["evaluate", str(c.bundle(S2)), "--html", str(p)], where=str(p))


@case("lab-capture-cpus-huge")
def _(c: Ctx) -> Case:
    return Case(["lab", "capture", "--cpus", "1000000", "-o", str(c.work / "cap")],
                where="--cpus")


@case("lab-profile-cpus-huge")
def _(c: Ctx) -> Case:
    return Case(["lab", "profile", "fork", "--cpus", "100000", "--no-build"], where="--cpus")


@case("lab-profile-rounds-word")
def _(c: Ctx) -> Case:
    return Case(["lab", "profile", "fork=many", "--no-build"], where="fork=many")


@case("lab-prototype-cpus-huge")
def _(c: Ctx) -> Case:
    return Case(["lab", "prototype", "--cpus", "1,100000", "--no-build"], where="--cpus")


@case("lab-prototype-cpus-word")
def _(c: Ctx) -> Case:
    return Case(["lab", "prototype", "--cpus", "2,lots", "--no-build"], where="--cpus")


@case("lab-prototype-patches-not-a-folder")
def _(c: Ctx) -> Case:
    p = c.path("patches.txt")
    p.write_text("not a series\n")
    return Case(["lab", "prototype", "--check-series", "--patches", str(p), "--no-build"],
                where=str(p))


# --- the fleet ---------------------------------------------------------------------------------

@case("fleet-cpus-1e9")
def _(c: Ctx) -> Case:
    return Case(["fleet", str(c.bundle(S2)), "--cpus", "own,1000000000", "--workers", "1",
                 "--results", str(c.work / "fleet-res-cpus")], where="--cpus")


@case("fleet-manifest-binary")
def _(c: Ctx) -> Case:
    p = c.path("fleet-bin.json")
    p.write_bytes(b"\x00\xff[{" + os.urandom(200))
    return Case(["fleet", str(p), "--workers", "1", "--results", str(c.work / "fleet-res-bin")],
                where=str(p))


@case("fleet-manifest-fifo")
def _(c: Ctx) -> Case:
    p = c.path("fleet.csv")
    if not p.exists():
        os.mkfifo(p)
    return Case(["fleet", str(p), "--workers", "1", "--results", str(c.work / "fleet-res-fifo")],
                where=str(p), timeout=30)


@case("fleet-results-is-a-file")
def _(c: Ctx) -> Case:
    p = c.path("fleet-results-file")
    p.write_text("x")
    return Case(["fleet", str(c.bundle(S2)), "--workers", "1", "--results", str(p)], where=str(p))


def _tiny_elf(filesz: int) -> bytes:
    """A 64-bit little-endian AArch64 ELF header with one PT_LOAD of ``filesz`` bytes."""
    eh = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                     2, 183, 1, 0xffff800080010000, 64, 0, 0, 64, 56, 1, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0xffff800080000000, 0xffff800080000000,
                     filesz, filesz, 0x10000)
    blob = eh + ph
    return blob + b"\0" * (192 - len(blob))


# ================================================================================================
# running
# ================================================================================================

def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run(c: Case) -> Result:
    env = dict(os.environ, COLUMNS="160", PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "localmap", "--no-progress", *c.argv],
                              input=c.stdin, capture_output=True, timeout=c.timeout,
                              preexec_fn=_limit, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired as exc:
        return Result(-1, (exc.stdout or b"").decode("utf-8", "replace"),
                      f"timed out after {c.timeout:.0f} s", time.perf_counter() - t)
    return Result(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                  proc.stderr.decode("utf-8", "replace"), time.perf_counter() - t)


def problems(c: Case, r: Result) -> list[str]:
    """What is wrong with how the command line handled the case (empty: nothing)."""
    out: list[str] = []
    err = r.stderr
    if r.rc == -1:
        return [err]
    if "Traceback" in err or "Traceback" in r.stdout:
        out.append("printed a traceback")
    if "MemoryError" in err or "out of memory" in err:
        out.append(f"ran out of its {MEMORY_LIMIT >> 20} MiB")
    if c.accept is not None:
        if r.rc != 0:
            out.append(f"exit status {r.rc}, expected 0 (accepted): {err.strip()[:300]}")
        else:
            why = c.accept(r.stdout)
            if why:
                out.append(why)
        return out
    lines = err.splitlines()
    if r.rc != 2:
        out.append(f"exit status {r.rc}, expected 2")
    if len(lines) != 1:
        out.append(f"{len(lines)} lines on stderr, expected 1")
    if not err.startswith("localmap: "):
        out.append("stderr does not start with 'localmap: '")
    if c.where and c.where not in (lines[0] if lines else ""):
        out.append(f"the error does not name {c.where}")
    if out:
        out.append("stderr: " + err.strip()[-600:])
    return out


def build(names: list[str], ctx: Ctx) -> list[Case]:
    cases = []
    for n in names:
        c = REGISTRY[n](ctx)
        c.name = n
        cases.append(c)
    return cases


def run_all(cases: list[Case], workers: int = 2) -> dict[str, tuple[Result, list[str]]]:
    out = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for c, r in zip(cases, pool.map(run, cases)):
            out[c.name] = (r, problems(c, r))
    return out


def default_shared() -> Path:
    return Path(os.environ.get("LOCALMAP_SHARED_DATA", ROOT.parent / "shared" / "data")) / "bundles"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--shared", type=Path, default=default_shared())
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("-v", action="store_true", help="print every error line")
    args = ap.parse_args(argv)
    names = [n for n in REGISTRY if args.k in n]
    work = Path(tempfile.mkdtemp(prefix="localmap-badinput-"))
    try:
        ctx = Ctx(args.shared, work)
        cases = build(names, ctx)
        results = run_all(cases)
        bad = 0
        for c in cases:
            r, probs = results[c.name]
            bad += bool(probs)
            mark = "FAIL" if probs else "ok  "
            print(f"{mark} {c.name:45s} rc={r.rc:<3d} {r.seconds:5.1f}s  "
                  + (r.stderr.strip().splitlines()[-1][:150] if r.stderr.strip() and (args.v or probs) else ""))
            for p in probs:
                print(f"       - {p[:900]}")
        print(f"{len(cases)} cases, {bad} failing")
        return 1 if bad else 0
    finally:
        if args.keep:
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
