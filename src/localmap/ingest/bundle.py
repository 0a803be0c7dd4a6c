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

import itertools
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

from localmap.errors import LocalmapError
from localmap.ingest import kconfig, procfs
from localmap.fileio import printable
from localmap.ingest.textfile import lines_ending_with, read_text

# the workload phases after which Percpu: is read, in the order the capture script runs them
MEMINFO_PHASES = ("boot", "memcg", "memcg_del", "fork", "modules", "modules_del", "workload")


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
    def dmesg_text(self) -> str | None:
        p = self.files.get("dmesg")
        return read_text(p) if p else None

    @cached_property
    def first_chunk(self) -> procfs.FirstChunkLine | None:
        p = self.files.get("dmesg")
        return procfs.parse_first_chunk_line(self.dmesg_text, str(p)) if p else None

    @cached_property
    def config(self) -> kconfig.KConfig | None:
        p = self.files.get("config")
        return kconfig.read_config(p) if p else None

    @cached_property
    def cpus(self) -> dict[str, list[int]] | None:
        p = self.files.get("cpus")
        return procfs.parse_cpus_file(read_text(p), str(p)) if p else None

    @property
    def cpus_source(self) -> str | None:
        """Where :attr:`cpus` comes from: the ``cpus`` file, or what :meth:`set_cpus` named."""
        return self.__dict__.get("_cpus_source") or (
            str(self.files["cpus"]) if "cpus" in self.files else None)

    def set_cpus(self, possible: list[int], source: str) -> None:
        """Possible (and online) CPUs given instead of the ``cpus`` file (e.g. by an option
        named ``source``)."""
        self.__dict__["cpus"] = {"possible": list(possible), "online": list(possible)}
        self.__dict__["_cpus_source"] = source

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
        """(``__per_cpu_start``, ``__per_cpu_end``) from kallsyms, when present (read and
        decompressed only up to the two symbols; a damaged file is refused)."""
        p = self.files.get("kallsyms")
        if p is None:
            return None
        found: dict[str, int] = {}
        names = (" __per_cpu_start", " __per_cpu_end")
        for k, (_, line) in enumerate(lines_ending_with(p, names, numbered=False)):
            m = _PERCPU_BOUNDS_RE.fullmatch(line.rstrip())
            if m is None:                   # (its line number: read again, counting)
                lineno = next(itertools.islice(lines_ending_with(p, names), k, None))[0]
                raise LocalmapError(f"not a kallsyms line: {printable(line, 80)!r} (expected "
                                    "'ADDRESS TYPE NAME' with a hexadecimal address)", p, lineno)
            found.setdefault(m.group(2), int(m.group(1), 16))
            if len(found) == 2:
                break
        start, end = found.get("start"), found.get("end")
        if start is None or end is None or start == 0:
            return None
        return start, end


_PERCPU_BOUNDS_RE = re.compile(r"([0-9a-fA-F]{1,16}) [A-Za-z] __per_cpu_(start|end)", re.ASCII)
_NAMES = ("trace", "dmesg", "vmallocinfo", "kallsyms", "config", "cpus", "uname", "cmdline",
          "event_format")


def load_bundle(path: Path | str, trace: Path | str | None = None) -> Bundle:
    """Open a bundle folder, or a bare trace file as a trace-only bundle. ``trace`` names the
    folder's trace when it is not called ``trace[.gz|.xz]``. Only regular files are taken; a
    name present twice (``config`` and ``config.gz``) is refused rather than guessed."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise LocalmapError("no such bundle folder or trace file", path) from None
    except OSError as exc:
        raise LocalmapError(f"cannot read: {exc.strerror}", path) from None
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise LocalmapError("is not a regular file nor a folder (a device, FIFO or "
                                "socket?); expected a bundle folder or a trace file", path)
        return Bundle(path=path, trace_path=path, files={"trace": path})
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError as exc:
        raise LocalmapError(f"cannot read the bundle folder: {exc.strerror}", path) from None
    by_stem: dict[str, list[os.DirEntry]] = {}
    for e in entries:
        stem = e.name
        for ext in (".gz", ".xz"):
            if stem.endswith(ext):
                stem = stem[: -len(ext)]
        if stem in _NAMES or stem.startswith("meminfo."):
            by_stem.setdefault(stem, []).append(e)
    files: dict[str, Path] = {}
    for stem, found in by_stem.items():
        if len(found) > 1:
            raise LocalmapError(f"holds {' and '.join(e.name for e in found)}: two copies of "
                                f"the bundle's {stem!r} file, keep one", path)
        e = found[0]
        try:
            regular = e.is_file()      # (follows a symbolic link, as reading does)
        except OSError:
            regular = False
        if not regular:
            raise LocalmapError("is not a regular file", Path(e.path))
        files[stem] = Path(e.path)
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
