"""The lab's QEMU TCG plugin: counts this_cpu site executions and kernel instructions.

What it models: nothing of the kernel; it is instrumentation. The plugin (``plugin/thiscpu.c``,
ours) is built with the system C compiler at run time into the cache. Debian's QEMU 7.2 packages
do not ship ``qemu-plugin.h``; the header is taken from the source of the *installed* QEMU
(``apt-get source --download-only qemu=<installed version>``, Debian's own client; only the one
header is unpacked, into the cache, never into the tree). The header is GPL-2.0-or-later like QEMU,
which loads the plugin; nothing of it is committed or redistributed. ``apt-get source`` needs
``deb-src`` lines: they are derived from the system's own ``deb`` sources into a private apt
state directory under the cache, so the system's apt configuration is left untouched.

Counting (see ``plugin/thiscpu.c``): every executed ``mrs xN, tpidr_el1`` (and ``tpidr_el2``, the
VHE form) at a kernel address gets its own inline counter, keyed by address; every kernel
translation block adds its instruction count inline when it starts executing and counts its own
executions keyed by (address, length), so executed instructions can be attributed to functions (a
block left early by an exception is counted whole: a documented over-count, rare in kernel mode). A user-mode
marker instruction (``movk xzr, #imm``: architecturally a no-op) makes the plugin write a snapshot
of all counters with ``imm`` to its output file, which is how the workloads delimit their phases.
QEMU runs with ``-accel tcg,thread=single`` so the inline counters are exact (no races between
vCPU threads).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.lab.cc import compile_cached
from localmap.progress import Progress, as_progress

MARKER_BASE = 0xF2800000 | 31  # movk xzr, #imm16 (sf=1, opc=11, hw=0): 0xf280001f | imm16 << 5


def marker_word(imm: int) -> int:
    """The 32-bit encoding of the marker ``movk xzr, #imm``."""
    if not 0 <= imm < 1 << 16:
        raise ValueError("marker immediate is 16 bits")
    return 0xF280001F | (imm << 5)


def _cache() -> Path:
    from localmap import debian

    p = debian.cache_dir() / "tcgplugin"
    p.mkdir(parents=True, exist_ok=True)
    return p


def qemu_version() -> str:
    """The installed ``qemu-system-arm`` package's *source* version (the header must match; binNMU suffixes dropped)."""
    proc = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-system-arm"],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise LocalmapError("qemu-system-arm is not installed (apt-get install qemu-system-arm)")
    return proc.stdout.strip()


def _deb_src_lines() -> list[str]:
    """``deb-src`` lines mirroring the system's ``deb`` sources (one-line and deb822 forms)."""
    out: list[str] = []
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*.list"))
    for f in files:
        if not f.is_file():
            continue
        for line in f.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("deb "):
                out.append("deb-src " + line[4:])
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", f.read_text(errors="replace")):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            opts = f"[signed-by={fields['signed-by']}] " if fields.get("signed-by", "").startswith("/") else ""
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    out.append(f"deb-src {opts}{uri} {suite} {fields.get('components', 'main')}")
    return out


def plugin_header(progress: Progress | None = None) -> Path:
    """``qemu-plugin.h`` of the installed QEMU, fetched once into the cache (see module doc)."""
    version = qemu_version()
    dest = _cache() / f"include-{re.sub(r'[^A-Za-z0-9.+-]', '_', version)}"
    hdr = dest / "qemu-plugin.h"
    if hdr.is_file():
        return hdr
    for tool in ("apt-get", "tar", "dpkg-query"):
        if shutil.which(tool) is None:
            raise LocalmapError(f"{tool} not found: the QEMU plugin header comes from Debian's source package")
    srcs = _deb_src_lines()
    if not srcs:
        raise LocalmapError("no apt 'deb' sources found to derive deb-src lines from")
    apt = _cache() / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "parts").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text("\n".join(srcs) + "\n")
    opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", f"Dir::Etc::SourceParts={apt / 'parts'}",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-q"]
    prog = as_progress(progress)
    prog.start("fetching QEMU's source index (for the plugin header)")
    proc = subprocess.run(["apt-get", *opts, "update"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalmapError("apt-get update (deb-src, private lists) failed: "
                            + ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1])
    work = Path(tempfile.mkdtemp(dir=_cache(), prefix=".src-"))
    try:
        prog.update(description=f"apt-get source qemu={version}")
        proc = subprocess.run(["apt-get", *opts, "source", "--download-only", f"qemu={version}"],
                              cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise LocalmapError(f"apt-get source --download-only qemu={version} failed: "
                                + ((proc.stderr or proc.stdout).strip().splitlines() or ["?"])[-1])
        origs = sorted(work.glob("qemu_*.orig.tar.*"))
        if not origs:
            raise LocalmapError("apt-get source gave no qemu_*.orig.tar.*")
        proc = subprocess.run(["tar", "-xf", str(origs[0]), "-C", str(work), "--wildcards",
                               "*/include/qemu/qemu-plugin.h"], capture_output=True, text=True)
        got = sorted(work.glob("*/include/qemu/qemu-plugin.h"))
        if proc.returncode != 0 or not got:
            raise LocalmapError("QEMU's source has no include/qemu/qemu-plugin.h", origs[0])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(got[0], hdr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return hdr


def plugin_source() -> str:
    return resources.files("localmap.lab").joinpath("plugin/thiscpu.c").read_text()


def build_plugin(progress: Progress | None = None) -> Path:
    """Compile ``plugin/thiscpu.c`` against the installed QEMU's header (cached by content)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise LocalmapError("a C compiler is needed to build the QEMU plugin (apt-get install gcc)")
    hdr = plugin_header(progress)
    return compile_cached(cc, plugin_source(), "thiscpu.so",
                          ["-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-I", str(hdr.parent)],
                          _cache(), key_extra=qemu_version(), what="building the QEMU plugin")


def parse_output(text: str) -> list[dict]:
    """The plugin's output file -> snapshots ``[{"marker": imm, "kernel_insns": n, "user_insns": n,
    "sites": {addr: count}, "blocks": {(addr, insns): count}}]`` in the order they were taken (the last one is the exit snapshot,
    marker -1)."""
    snaps: list[dict] = []
    cur: dict | None = None
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "M":
            cur = {"marker": int(parts[1]), "kernel_insns": int(parts[2]), "user_insns": int(parts[3]),
                   "sites": {}, "blocks": {}}
            snaps.append(cur)
        elif parts[0] == "S" and cur is not None:
            cur["sites"][int(parts[1], 16)] = int(parts[2])
        elif parts[0] == "T" and cur is not None:
            cur["blocks"][(int(parts[1], 16), int(parts[2]))] = int(parts[3])
        elif parts[0] == "E":
            continue
        else:
            raise LocalmapError(f"plugin output line {ln}: unexpected {line[:40]!r}")
    return snaps
