"""A *bundle*: one capture of a kernel's percpu behaviour, laid out as in shared/data/README.md.

``trace[.gz|.xz]`` (percpu tracepoints), ``dmesg`` (first-chunk line), ``meminfo.<phase>``
(``Percpu:`` after boot and after each workload phase, phase order as in
:data:`MEMINFO_PHASES`, unknown phases after them in name order), ``vmallocinfo``,
``kallsyms``, ``config``, ``cpus``, ``uname``, ``cmdline``, ``event_format``. Every file may be
gzip- or xz-compressed. A bare trace file is accepted too, as a bundle with only a trace
(the replay then says what it cannot cross-check).

The same loader serves bundles from ``../shared/data``, from ``localmap lab capture`` and from
``localmap capture``, and the one shipped inside the package (:func:`default_bundle_path`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.ingest import kconfig, procfs
from localmap.ingest.textfile import open_text_stream, read_text

# the workload phases after which Percpu: is read, in the order the capture script runs them
MEMINFO_PHASES = ("boot", "memcg", "memcg_del", "fork", "modules", "modules_del", "workload")


def _find(folder: Path, name: str) -> Path | None:
    for cand in (name, name + ".gz", name + ".xz"):
        p = folder / cand
        if p.is_file():
            return p
    return None


@dataclass
class Bundle:
    path: Path
    trace_path: Path
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.name if self.path.is_dir() else self.path.stem

    @property
    def is_bare_trace(self) -> bool:
        return not self.path.is_dir()

    def file(self, name: str) -> Path | None:
        return self.files.get(name)

    def require(self, name: str, why: str) -> Path:
        p = self.files.get(name)
        if p is None:
            raise LocalmapError(f"bundle has no '{name}' file, needed for {why}", self.path)
        return p

    @cached_property
    def first_chunk(self) -> procfs.FirstChunkLine | None:
        p = self.files.get("dmesg")
        return procfs.read_first_chunk_line(p) if p else None

    @cached_property
    def config(self) -> kconfig.KConfig | None:
        p = self.files.get("config")
        return kconfig.read_config(p) if p else None

    @cached_property
    def cpus(self) -> dict[str, list[int]] | None:
        p = self.files.get("cpus")
        return procfs.parse_cpus_file(read_text(p), str(p)) if p else None

    @property
    def nr_possible_cpus(self) -> int | None:
        c = self.cpus
        return len(c["possible"]) if c else None

    @cached_property
    def meminfo(self) -> list[tuple[str, int]]:
        """``[(phase, Percpu bytes)]`` in capture order."""
        out = []
        for key in sorted(self.files):
            if key.startswith("meminfo."):
                phase = key.split(".", 1)[1]
                p = self.files[key]
                out.append((phase, procfs.parse_meminfo_percpu(read_text(p), str(p))))
        order = {ph: i for i, ph in enumerate(MEMINFO_PHASES)}
        out.sort(key=lambda t: (order.get(t[0], len(order)), t[0]))
        return out

    @cached_property
    def vmallocinfo(self) -> list[procfs.VmArea] | None:
        p = self.files.get("vmallocinfo")
        return procfs.parse_vmallocinfo(read_text(p), str(p)) if p else None

    @property
    def kallsyms_path(self) -> Path | None:
        return self.files.get("kallsyms")

    @cached_property
    def cmdline(self) -> str | None:
        p = self.files.get("cmdline")
        return read_text(p).strip() if p else None

    @cached_property
    def uname(self) -> str | None:
        p = self.files.get("uname")
        return read_text(p).strip() if p else None

    @cached_property
    def kallsyms_percpu_bounds(self) -> tuple[int, int] | None:
        """(``__per_cpu_start``, ``__per_cpu_end``) from kallsyms, when present."""
        p = self.files.get("kallsyms")
        if p is None:
            return None
        found: dict[bytes, int] = {}
        fh, raw, _ = open_text_stream(p)
        try:             # read (and decompress) only up to the two symbols
            buf = b""
            while len(found) < 2:
                block = fh.buffer.read(1 << 18)
                if not block:
                    break
                buf += block
                for key in (b"start", b"end"):
                    i = buf.find(b" __per_cpu_" + key + b"\n")
                    if i >= 0 and key not in found:
                        m = _PERCPU_BOUNDS_RE.match(buf, buf.rfind(b"\n", 0, i) + 1)
                        if m:
                            found[key] = int(m.group(1), 16)
                buf = buf[buf.rfind(b"\n") + 1:]
        except (EOFError, OSError):
            pass
        finally:
            fh.close()
            raw.close()
        start, end = found.get(b"start"), found.get(b"end")
        if start is None or end is None or start == 0:
            return None
        return start, end


_PERCPU_BOUNDS_RE = re.compile(rb"^([0-9a-fA-F]+) \S+ __per_cpu_(start|end)\r?$", re.MULTILINE)
_NAMES = ("trace", "dmesg", "vmallocinfo", "kallsyms", "config", "cpus", "uname", "cmdline",
          "event_format")


def load_bundle(path: Path | str, trace: Path | str | None = None) -> Bundle:
    """Open a bundle folder, or a bare trace file as a trace-only bundle. ``trace`` names the
    folder's trace when it is not called ``trace[.gz|.xz]``."""
    path = Path(path)
    if not path.exists():
        raise LocalmapError("no such bundle folder or trace file", path)
    if path.is_file():
        return Bundle(path=path, trace_path=path, files={"trace": path})
    files: dict[str, Path] = {}
    for name in _NAMES:
        p = _find(path, name)
        if p is not None:
            files[name] = p
    for p in sorted(path.iterdir()):
        if p.name.startswith("meminfo.") and p.is_file():
            phase = p.name.split(".", 1)[1]
            for ext in (".gz", ".xz"):
                if phase.endswith(ext):
                    phase = phase[: -len(ext)]
            files["meminfo." + phase] = p
    if trace is not None:
        files["trace"] = Path(trace)
    if "trace" not in files:
        raise LocalmapError("bundle has no trace file (expected trace, trace.gz or trace.xz; "
                            "see the bundle layout in docs/formats.md)", path)
    return Bundle(path=path, trace_path=files["trace"], files=files)


def default_bundle_path() -> Path:
    """The bundle shipped inside the package (a compressed copy of s1_612_4k_smp4)."""
    ref = resources.files("localmap") / "data" / "default_bundle"
    return Path(str(ref))
