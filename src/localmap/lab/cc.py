"""Compiling the lab's own small C programs once: the QEMU plugin and the workload program.

Models nothing of the kernel. The sources ship in the package; each is compiled on the user's
machine at first use (the system compiler for the plugin, the aarch64 cross compiler for the
static guest program) into the cache, named by a hash of everything that decides the result, so
a changed source or toolchain input builds a new file and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from localmap.errors import LocalmapError


def compile_cached(compiler: str, source: str, name: str, flags: list[str], cache: Path, *,
                   key_extra: str = "", what: str = "compiling") -> Path:
    """``cache/<name>-<hash>``: ``source`` (C text) compiled with ``compiler flags -o OUT SRC``,
    built the first time only. ``key_extra`` joins the source in the hash (e.g. the version of
    the headers compiled against). A failed compile raises with the compiler's first error."""
    stem, dot, suffix = name.partition(".")
    key = hashlib.sha256((source + "\0" + " ".join(flags) + "\0" + key_extra).encode()).hexdigest()[:16]
    out = cache / f"{stem}-{key}{dot}{suffix}"
    if out.is_file():
        return out
    work = Path(tempfile.mkdtemp(dir=cache, prefix=".cc-"))
    try:
        (work / f"{stem}.c").write_text(source)
        proc = subprocess.run([compiler, *flags, "-o", str(work / "out"), str(work / f"{stem}.c")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            lines = (proc.stderr or "").strip().splitlines()
            first = next((ln for ln in lines if "error" in ln), lines[0] if lines else "?")
            raise LocalmapError(f"{what} failed: {first.replace(str(work) + '/', '')}")
        os.replace(work / "out", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
