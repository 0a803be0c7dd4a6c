"""The design in a real kernel: the prototype patch series, built, booted and checked.

What it models: nothing; it drives the real thing and compares it with the model. The patch
series under ``kernel/`` in the repository (``kernel/series`` lists it in order) implements the
design on Debian's Linux 6.12.117 for arm64 with 4K pages and 48-bit VA: per-CPU kernel roots,
the percpu windows, the page-mode first chunk, the local mapping, this_cpu operations through it
and a built-in self-check that reports through ``/sys/kernel/debug/percpu_local/``.

This module

* checks that the source the lab builds from is the version the series is for, and that the
  series applies (:func:`check_series`);
* builds the unpatched and the patched kernel with the same config (:mod:`localmap.lab.kernel`,
  cached by config, source and patches; :func:`builds`);
* boots each under ``qemu-system-aarch64 -M virt`` from a busybox initramfs whose ``/init`` is
  ``guest/prototype.sh`` (self-check, stress, CPU hotplug cycles, the memcg and fork workloads of
  the shared captures; :func:`boot`), and parses what the guest prints;
* replays the chunks read from the running kernel (``layout``) on the model's design machine
  (:class:`localmap.design.machine.DesignMachine`) and puts its per-CPU page-table pages beside
  the ones the kernel walked (``tables``; :func:`model_pgtables`, :func:`compare_pgtables`);
* profiles both kernels with :mod:`localmap.lab.profile` and puts the kernel instructions per
  workload operation removed by the patches beside the model's prediction (:func:`instructions`;
  the prediction comes from an ``analyse`` function given by the caller, the site analysis of
  :func:`localmap.perf.dynamic.measured_profile`, which the lab layer does not import).

Deliberate differences from the kernel: the model is given the kernel's chunk addresses (gaps
that the kernel's lazily purged vmap areas leave in the global window are reserved in the model
so that its top-down placement lands on the same addresses, and reported as ``holes``).

API::

    data = run_prototype(cpus=(1, 2, 4, 8))       # plain data, see run_prototype()
    series()                                      # the patch files, in order
    check_series()                                # version check + patches apply
    b = boot(image, cpus=4)                       # one boot, parsed
    cmp = compare_pgtables(b["layout"], b["tables"])
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Callable

from localmap.errors import LocalmapError
from localmap.fileio import sha256_file
from localmap.progress import Progress, as_progress

SERIES_VERSION = "6.12.117"  # the kernel the patch series is written against
FLAVOUR = "dynamic"          # the talk's preemption setting (PREEMPT_DYNAMIC: preempt count on)
GRANULE = 4096
VA_BITS = 48
MARK = "@@LM"
QEMU = "qemu-system-aarch64"


# --- the series --------------------------------------------------------------------------------

def patches_dir(path: str | Path | None = None) -> Path:
    """The folder of the series: ``path``, else ``$LOCALMAP_KERNEL_PATCHES``, else ``kernel/``
    of the source checkout this package runs from."""
    if path is None:
        path = os.environ.get("LOCALMAP_KERNEL_PATCHES")
    if path is None:
        for parent in Path(__file__).resolve().parents:
            if (parent / "kernel" / "series").is_file() and (parent / "pyproject.toml").is_file():
                path = parent / "kernel"
                break
    if path is None:
        raise LocalmapError("the prototype patch series (kernel/series) was not found: run from a "
                            "source checkout or set LOCALMAP_KERNEL_PATCHES=DIR")
    p = Path(path)
    if not (p / "series").is_file():
        raise LocalmapError("no series file in the patch folder", p)
    return p


def series(path: str | Path | None = None) -> list[Path]:
    """The patch files named by ``series`` (one per line, ``#`` comments), in order."""
    d = patches_dir(path)
    out = []
    for lineno, line in enumerate((d / "series").read_text().splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        f = d / name
        if not f.is_file():
            raise LocalmapError(f"{d / 'series'}:{lineno}: no such patch {name}")
        out.append(f)
    if not out:
        raise LocalmapError("the series file lists no patch", d / "series")
    return out


def check_version(version: str, where: str = "the kernel source") -> None:
    """Refuse any source but the one the series is written against."""
    if version != SERIES_VERSION:
        raise LocalmapError(f"the prototype patches are for Linux {SERIES_VERSION}, but {where} is "
                            f"{version}: install Debian's linux-source-6.12 ({SERIES_VERSION}) "
                            f"or port the series")


def check_series(progress: Progress | None = None, path: str | Path | None = None,
                 tarball: Path | None = None) -> dict:
    """Unpack the lab's source (cached), check its version and apply the whole series."""
    from localmap.lab import kernel as kb

    prog = as_progress(progress)
    patches = series(path)
    tarball = Path(tarball) if tarball else kb.SOURCE_TARBALL
    pristine = kb.pristine_source(tarball, progress=prog)
    version = kb.source_version(pristine)
    check_version(version, str(tarball))
    tree = kb.patched_source(pristine, patches, progress=prog)
    return {"version": version, "patches": [p.name for p in patches], "tree": str(tree)}


def builds(build: bool = True, progress: Progress | None = None, path: str | Path | None = None):
    """(baseline, patched) :class:`~localmap.lab.kernel.KernelBuild` of the same config; from the
    cache, built first when ``build``."""
    from localmap.lab import kernel as kb

    patches = series(path)
    out = []
    for label, pset in (("baseline", []), ("patched", patches)):
        found = find_build(pset)
        if found is None:
            if not build:
                raise LocalmapError(f"no cached {label} kernel; build it with: {build_command(label)}")
            if pset:
                check_series(progress=progress, path=path)
            found = kb.build_kernel(FLAVOUR, pset, progress=progress)
        check_version(found.version, f"the cached {label} build")
        out.append(found)
    return out[0], out[1]


def find_build(patches: list[Path]):
    """The newest cached build of :data:`FLAVOUR` made with exactly these patch contents (a build
    of older versions of the same files does not count), or None."""
    import json

    from localmap.lab import kernel as kb

    want = [sha256_file(p) for p in patches]
    hits = []
    for k in kb.cached_kernels():
        if k.flavour != FLAVOUR:
            continue
        try:
            meta = json.loads((k.dir / "build.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("patch_sha256", []) == want:
            hits.append(k)
    hits.sort(key=lambda k: k.image.stat().st_mtime)
    return hits[-1] if hits else None


def build_command(which: str = "patched") -> str:
    """The shell command that builds (and caches) a kernel the prototype needs."""
    if which == "baseline":
        return f"localmap lab kernel --flavour {FLAVOUR}"
    return "localmap lab prototype --build-only"


# --- one boot ----------------------------------------------------------------------------------

def guest_script() -> bytes:
    return (resources.files("localmap.lab") / "guest" / "prototype.sh").read_bytes()


def kernel_cmdline(stress_ms: int, cycles: int, memcgs: int, dels: int, forks: int,
                   extra: str = "") -> str:
    parts = ["console=ttyAMA0", "nokaslr", "no_hash_pointers", f"lmstress={stress_ms}",
             f"lmcycles={cycles}", f"lmmemcg={memcgs}", f"lmdel={dels}", f"lmfork={forks}"]
    return " ".join(parts + ([extra] if extra else []))


def qemu_command(image: Path, initrd: Path, cpus: int, append: str, cpu_model: str = "max",
                 memory: str = "2G") -> list[str]:
    return [QEMU, "-M", "virt", "-cpu", cpu_model, "-smp", str(cpus), "-m", memory, "-nographic",
            "-no-reboot", "-net", "none", "-kernel", str(image), "-initrd", str(initrd),
            "-append", append]


def parse_console(lines) -> dict:
    """The guest's records: ``info``, ``sections`` (name -> text), ``results``, ``phases``,
    ``done``."""
    info: dict[str, str] = {}
    sections: dict[str, str] = {}
    results: dict[str, dict] = {}
    phases: list[str] = []
    done = False
    cur: str | None = None
    buf: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        pos = line.find(MARK + " ")
        if pos < 0:
            if cur is not None:
                buf.append(line)
            continue
        words = line[pos + len(MARK) + 1:].split()
        if not words:
            continue
        kind, rest = words[0], words[1:]
        if kind == "begin" and rest:
            cur, buf = rest[0], []
        elif kind == "end" and rest and cur == rest[0]:
            sections[cur] = "\n".join(buf) + ("\n" if buf else "")
            cur = None
        elif kind == "info":
            info.update(_kv(rest))
        elif kind == "phase" and rest:
            phases.append(rest[0])
        elif kind == "result" and len(rest) >= 2:
            results[rest[0]] = {"ok": rest[1] == "ok", **_kv(rest[2:])}
        elif kind == "done":
            done = True
    return {"info": info, "sections": sections, "results": results, "phases": phases, "done": done}


def _kv(words) -> dict[str, str]:
    out = {}
    for w in words:
        k, sep, v = w.partition("=")
        if sep:
            out[k] = v
    return out


def _int(v: str) -> int:
    return int(v, 16) if v.startswith("0x") else int(v)


def parse_layout(text: str) -> dict:
    """``percpu_local/layout``: windows, constants, geometry, and every chunk with its populated
    pages (the first chunk's area is always fully mapped)."""
    out: dict = {"chunks": []}
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        kv = {k: v for k, v in _kv(words[1:]).items()}
        try:
            if words[0] in ("window", "geometry", "first_area"):
                out[words[0]] = {k: _int(v) for k, v in kv.items()}
            elif words[0].startswith("delta="):
                out["constants"] = {k: _int(v) for k, v in _kv(words).items()}
            elif words[0] == "chunk":
                out["chunks"].append({"kind": kv["kind"], "base": _int(kv["base"]),
                                      "nr_pages": int(kv["nr_pages"]),
                                      "populated": _ranges(kv["populated"])})
        except (KeyError, ValueError) as exc:
            raise LocalmapError(f"percpu_local/layout:{lineno}: cannot parse {line!r} ({exc})") from None
    for key in ("window", "geometry", "first_area", "constants"):
        if key not in out:
            raise LocalmapError(f"percpu_local/layout: no {key} line")
    return out


def _ranges(s: str) -> list[int]:
    if s in ("", "-"):
        return []
    out: list[int] = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def parse_tables(text: str) -> dict:
    """``percpu_local/tables``: per CPU its root and private table pages per level."""
    out: dict = {"cpus": {}}
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        try:
            if words[0].startswith("cpu="):
                kv = _kv(words)
                cpu = int(kv.pop("cpu"))
                root = kv.pop("root")
                row = {k: int(v) for k, v in kv.items()}
                row["root"] = root
                out["cpus"][cpu] = row
            elif words[0] in ("total", "roots", "sync"):
                out[words[0]] = {k: int(v) for k, v in _kv(words[1:]).items()}
        except (KeyError, ValueError) as exc:
            raise LocalmapError(f"percpu_local/tables:{lineno}: cannot parse {line!r} ({exc})") from None
    for key in ("total", "roots", "sync"):
        if key not in out:
            raise LocalmapError(f"percpu_local/tables: no {key} line")
    return out


def parse_check(text: str) -> dict:
    """``percpu_local/check``: the summary line and every failure line."""
    fails = [ln[5:] for ln in text.splitlines() if ln.startswith("fail ")]
    summary = [ln for ln in text.splitlines() if ln.startswith("check ")]
    sync = [ln for ln in text.splitlines() if ln.startswith("sync ")]
    if not summary:
        return {"ran": False, "failures": max(1, len(fails)), "fail": fails or ["no summary line"]}
    kv = {k: int(v) for k, v in _kv(summary[-1].split()[1:]).items()}
    out = {"ran": True, **kv, "fail": fails}
    if sync:
        out["sync_region"] = _int(_kv(sync[-1].split()[1:])["region"])
    if len(fails) > kv.get("failures", 0):
        out["failures"] = len(fails)  # never fewer than the lines that say so
    return out


def parse_stress(text: str) -> dict:
    line = next((ln for ln in text.splitlines() if ln.startswith("stress ")), None)
    if line is None:
        return {"ran": False, "failures": 1}
    return {"ran": True, **{k: int(v) for k, v in _kv(line.split()[1:]).items()}}


def boot(image: Path, cpus: int, *, stress_ms: int = 1000, cycles: int = 2, memcgs: int = 200,
         dels: int = 100, forks: int = 200, cpu_model: str = "max", extra_append: str = "",
         timeout: float = 900.0, console_log: Path | None = None,
         progress: Progress | None = None) -> dict:
    """Boot ``image`` on ``cpus`` vCPUs with the prototype's ``/init``; the parsed records plus
    ``seconds`` and ``booted`` (the guest reached ``done``)."""
    from localmap.lab.initramfs import busybox_initramfs
    from localmap.lab.qemu import busybox_binary

    if shutil.which(QEMU) is None:
        raise LocalmapError(f"{QEMU} not found: apt-get install qemu-system-arm")
    prog = as_progress(progress)
    initrd_bytes = busybox_initramfs(busybox_binary().read_bytes(), guest_script())
    with tempfile.TemporaryDirectory(prefix="localmap-proto-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initrd_bytes)
        append = kernel_cmdline(stress_ms, cycles, memcgs, dels, forks, extra_append)
        cmd = qemu_command(Path(image), initrd, cpus, append, cpu_model)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        timer = threading.Timer(timeout, lambda: _kill(proc))
        timer.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if MARK + " phase " in line:
                    phase = line.split(MARK + ' phase ', 1)[1].strip()
                    prog.update(description=f"{cpus} CPUs (-cpu {cpu_model}): {phase}")
        finally:
            timer.cancel()
            _kill(proc)
        seconds = time.monotonic() - t0
    if console_log is not None:
        Path(console_log).write_text("".join(lines))
    rec = parse_console(lines)
    rec["seconds"] = round(seconds, 1)
    rec["booted"] = rec["done"]
    rec["cpus"] = cpus
    rec["cpu_model"] = cpu_model
    if not rec["done"]:
        tail = [ln.strip() for ln in lines if ln.strip()][-3:]
        rec["error"] = ("timed out" if seconds >= timeout else "the guest stopped early") + \
            (": " + " | ".join(tail) if tail else "")
    return rec


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# --- the model beside the measurement ----------------------------------------------------------

def model_pgtables(layout: dict, online: list[int], kpti: bool = True) -> dict:
    """Replay the kernel's chunks (``layout``) on the model's design machine with ``online``
    CPUs and return its extra page-table pages: per CPU by level, roots, totals."""
    from localmap.arch.arm64.pgtable import Geometry
    from localmap.design.machine import DesignMachine

    geo = layout["geometry"]
    page = geo["page_size"]
    possible = geo["possible"]
    unit = geo["unit_size"]
    if geo["nr_units"] != possible or geo["nr_groups"] != 1:
        raise LocalmapError(f"the model replays one group of one unit per CPU; the kernel has "
                            f"{geo['nr_groups']} groups of {geo['nr_units']} units for {possible} CPUs")
    m = DesignMachine(Geometry(page, VA_BITS), possible, unit, online=sorted(online), kpti=kpti,
                      map_global=False)
    lay = m.layout
    win = layout["window"]
    mismatch = []
    if (lay.local_window[0], lay.global_window[0]) != (win["local_start"], win["global_start"]):
        mismatch.append(f"windows: model local {lay.local_window[0]:#x} global "
                        f"{lay.global_window[0]:#x}, kernel {win['local_start']:#x} "
                        f"{win['global_start']:#x}")
    span = possible * unit
    first = m.create_chunk("first", first=True)
    if first.base != layout["first_area"]["base"]:
        mismatch.append(f"first chunk: model {first.base:#x}, kernel {layout['first_area']['base']:#x}")
    m.populate(first, 0, first.nr_pages)
    holes = []
    prev = first.base
    dyn = sorted((c for c in layout["chunks"] if c["kind"] == "dynamic"), key=lambda c: -c["base"])
    for i, c in enumerate(dyn):
        if c["base"] + span < prev:  # a gap the kernel left (area freed, not yet reused)
            m.window_vmap.reserve(c["base"] + span, prev - c["base"] - span, "hole")
            holes.append({"start": c["base"] + span, "bytes": prev - c["base"] - span})
        mc = m.create_chunk(("dynamic", i))
        if mc.base != c["base"]:
            mismatch.append(f"chunk {i}: model {mc.base:#x}, kernel {c['base']:#x}")
        for s, e in _runs(c["populated"]):
            m.populate(mc, s, e)
        prev = mc.base
    ex = m.extra_pgtable()
    per_cpu = {cpu: {"pud": t.get(1, 0), "pmd": t.get(2, 0), "pte": t.get(3, 0)}
               for cpu, t in ex["private_tables_per_cpu"].items()}
    root_pages = (ex["root_copy_bytes"] + ex["copied_level_bytes"]) // page
    block_pages = root_pages + ex["kpti_block_bytes"] // page
    private = sum(sum(v.values()) for v in per_cpu.values())
    return {"per_cpu": per_cpu, "root_pages": root_pages, "block_pages": block_pages,
            "private_pages": private, "pgtable_pages": block_pages + private,
            "pgtable_bytes": (block_pages + private) * page, "holes": holes,
            "placement_mismatch": mismatch, "chunks": 1 + len(dyn)}


def _runs(pages: list[int]):
    pages = sorted(pages)
    i = 0
    while i < len(pages):
        j = i
        while j + 1 < len(pages) and pages[j + 1] == pages[j] + 1:
            j += 1
        yield pages[i], pages[j] + 1
        i = j + 1


def measured_pgtables(tables: dict) -> dict:
    per_cpu = {cpu: {k: row[k] for k in ("pud", "pmd", "pte")} for cpu, row in tables["cpus"].items()}
    private = sum(sum(v.values()) for v in per_cpu.values())
    block = tables["roots"]["block_pages"]
    return {"per_cpu": per_cpu, "block_pages": block, "root_copies": tables["roots"]["copies"],
            "private_pages": private, "pgtable_pages": block + private}


def compare_pgtables(layout: dict, tables: dict, kpti: bool = True) -> dict:
    """Measured (kernel walk) beside model (same chunks, same online CPUs), with every
    difference listed."""
    online = sorted(c for c, row in tables["cpus"].items() if row["online"])
    meas = measured_pgtables(tables)
    mod = model_pgtables(layout, online, kpti=kpti)
    diffs = list(mod["placement_mismatch"])
    for cpu in sorted(set(meas["per_cpu"]) | set(mod["per_cpu"])):
        a = meas["per_cpu"].get(cpu)
        b = mod["per_cpu"].get(cpu, {"pud": 0, "pmd": 0, "pte": 0})
        if a != b:
            diffs.append(f"cpu {cpu}: kernel {a}, model {b}")
    if meas["block_pages"] != mod["block_pages"]:
        diffs.append(f"root blocks: kernel {meas['block_pages']} pages, model {mod['block_pages']}")
    return {"online": online, "measured": meas, "model": mod, "differences": diffs,
            "equal": not diffs}


# --- instructions per operation ------------------------------------------------------------------

INSTRUCTION_WORKLOADS = (("fork", 300), ("memcg", 300), ("page-fault", 20), ("mmapfork", 40),
                         ("exec-io", 60))
REPEATS = 5  # boots per kernel: the per-operation counts vary from boot to boot by ~1-2 %
# Virtual time advances one nanosecond per instruction: timer interrupts per operation then depend
# on what the guest executes, not on how loaded the host is (without it two runs of the same
# kernel differ by several percent).
ICOUNT = ["-icount", "shift=0"]


def instructions(baseline, patched, analyse: Callable, workloads=INSTRUCTION_WORKLOADS,
                 cpus: int = 2, repeats: int = REPEATS, progress: Progress | None = None,
                 timeout: float = 3600.0) -> dict:
    """Kernel instructions per workload operation on both kernels (:mod:`localmap.lab.profile`,
    ``-icount``, ``repeats`` boots each), the difference, and the model's prediction from the
    baseline's executed this_cpu sites: ``analyse(run, progress=)`` turns a baseline run into its
    profile (:func:`localmap.perf.dynamic.measured_profile`), whose ``removed_instructions`` are
    the preempt brackets the local mapping removes and ``net_removed`` the same net of
    materialising DELTA (``load``: one more instruction per site, as the patches do; ``hoisted``:
    once per function)."""
    from localmap.lab import profile as prof

    def pk(b, label):
        return prof.ProfiledKernel(image=b.image, label=label, vmlinux=b.vmlinux,
                                   system_map=b.system_map, config=b.config, preempt_model=FLAVOUR)

    wl = list(workloads)
    bases, runs = [], []
    for _ in range(repeats):
        run = prof.run_profile(pk(baseline, "baseline"), wl, cpus, progress=progress,
                               timeout=timeout, qemu_extra=ICOUNT)
        bases.append(analyse(run, progress=progress))
        runs.append(prof.run_profile(pk(patched, "patched"), wl, cpus, progress=progress,
                                     timeout=timeout, qemu_extra=ICOUNT))
    return compare_instructions(bases, runs, cpus)


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def compare_instructions(bases: list[dict], runs: list, cpus: int) -> dict:
    """The baseline's analysed profiles beside the patched kernel's runs, per workload: means
    over the boots and every boot's value."""
    rows = []
    for idx, w in enumerate(bases[0]["workloads"]):
        name = w["workload"]
        before = [b["workloads"][idx]["kernel_instructions"] for b in bases]
        after = [r.workloads[name].kernel_instructions / r.workloads[name].ops for r in runs]
        tp = [sum(r.workloads[name].sites.values()) / r.workloads[name].ops for r in runs]
        nets = [b["workloads"][idx]["net_removed"] for b in bases]
        mb, ma = _mean(before), _mean(after)
        rows.append({
            "workload": name, "op": w["op"], "ops": w["ops"],
            "before": round(mb, 1), "after": round(ma, 1),
            "before_runs": [round(x, 1) for x in before], "after_runs": [round(x, 1) for x in after],
            "measured_removed": round(mb - ma, 1),
            "measured_share": round((mb - ma) / mb, 5) if mb else 0.0,
            "model_removed": round(_mean([b["workloads"][idx]["removed_instructions"] for b in bases]), 1),
            "model_net_removed": {v: round(_mean([n[v] for n in nets]), 1) for v in nets[0]},
            "this_cpu_executions_before": round(_mean([b["workloads"][idx]["this_cpu_executions"]
                                                       for b in bases]), 1),
            "tpidr_reads_after": round(_mean(tp), 1),
        })
    return {"cpus": cpus, "qemu": ICOUNT, "repeats": len(runs), "workloads": rows,
            "baseline_kernel": bases[0]["kernel"], "assumptions": bases[0].get("assumptions", [])}


# --- everything ---------------------------------------------------------------------------------

def summarize_boot(rec: dict, kernel: str) -> dict:
    """One boot's plain-data summary: health, self-check failures, page tables vs model."""
    s = rec["sections"]
    out = {"kernel": kernel, "cpus": rec["cpus"], "cpu_model": rec["cpu_model"],
           "booted": rec["booted"], "seconds": rec["seconds"],
           "results": {k: v["ok"] for k, v in rec["results"].items()},
           "kernel_errors": [ln for ln in s.get("kernel_errors", "").splitlines() if ln.strip()]}
    if "error" in rec:
        out["error"] = rec["error"]
    if kernel == "baseline":
        return out
    checks = {name: parse_check(text) for name, text in s.items() if name.startswith("check_")}
    stresses = {name: parse_stress(text) for name, text in s.items() if name.startswith("stress")}
    out["checks"] = len(checks)
    out["failures"] = sum(c["failures"] for c in checks.values()) + \
        sum(st.get("failures", 1) for st in stresses.values())
    if not checks:
        out["failures"] += 1
    out["fail"] = [f"{n}: {f}" for n, c in checks.items() for f in c["fail"]][:20]
    out["stress"] = stresses
    if "layout_final" in s and "tables_final" in s:
        cmp = compare_pgtables(parse_layout(s["layout_final"]), parse_tables(s["tables_final"]))
        out["measured_pgtable_pages"] = cmp["measured"]["pgtable_pages"]
        out["model_pgtable_pages"] = cmp["model"]["pgtable_pages"]
        out["pgtables"] = cmp
        tab = parse_tables(s["tables_final"])
        out["sync"] = tab["sync"]
    if "tables_workload" in s and "layout_workload" in s:
        cmp = compare_pgtables(parse_layout(s["layout_workload"]), parse_tables(s["tables_workload"]))
        out["pgtables_before_final_cycle"] = {
            "measured": cmp["measured"]["pgtable_pages"], "model": cmp["model"]["pgtable_pages"],
            "differences": cmp["differences"]}
    return out


# Extra boots of the patched kernel besides -cpu max: (QEMU CPU, vCPUs, command line). Cortex-A57
# has no LSE atomics, so this_cpu operations run as LL/SC loops; kpti=1 forces the KPTI
# trampoline, which finds its tables at fixed offsets from each CPU's own root.
EXTRA_BOOTS = (("cortex-a57", 2, ""), ("max", 2, "kpti=1"))
APPEND = "preempt=full"  # kernel preemption on (PREEMPT_DYNAMIC boots voluntary by default)


def run_prototype(cpus=(1, 2, 4, 8), *, build: bool = True, profile: bool = True,
                  stress_ms: int = 1000, cycles: int = 2, memcgs: int = 200, dels: int = 100,
                  forks: int = 200, extra_boots: tuple = EXTRA_BOOTS, append: str = APPEND,
                  analyse: Callable | None = None, progress: Progress | None = None,
                  path: str | Path | None = None, timeout: float = 900.0) -> dict:
    """Build (cached) the baseline and the patched kernel, boot both on every CPU count, check,
    compare with the model, and (``profile``, with ``analyse`` as in :func:`instructions`)
    measure instructions per operation.

    Returns ``version``, ``flavour``, ``patches``, ``kernels`` (cache folders), ``boots`` (one
    :func:`summarize_boot` per boot: ``kernel``, ``cpus``, ``booted``, ``failures``,
    ``measured_pgtable_pages``, ``model_pgtable_pages``, ...) and ``instructions``."""
    prog = as_progress(progress)
    base, patched = builds(build=build, progress=prog, path=path)
    boots = []
    plan = [(n, "max", "", ("baseline", "patched")) for n in cpus] + \
        [(n, model, extra, ("patched",)) for model, n, extra in extra_boots]
    kernels = {"baseline": base, "patched": patched}
    for n, model, extra, which in plan:
        for label in which:
            line = " ".join(x for x in (append, extra) if x)
            prog.start(f"{label} kernel on {n} CPUs (-cpu {model}{', ' + extra if extra else ''})")
            rec = boot(kernels[label].image, n, stress_ms=stress_ms, cycles=cycles, memcgs=memcgs,
                       dels=dels, forks=forks, cpu_model=model, extra_append=line,
                       timeout=timeout, progress=prog)
            row = summarize_boot(rec, label)
            row["append"] = line
            boots.append(row)
    out = {"version": SERIES_VERSION, "flavour": FLAVOUR,
           "patches": [p.name for p in series(path)],
           "kernels": {"baseline": str(base.dir), "patched": str(patched.dir)},
           "boots": boots}
    if profile:
        if analyse is None:
            raise LocalmapError("profiling needs the site analysis (analyse=measured_profile)")
        out["instructions"] = instructions(base, patched, analyse, progress=prog)
    return out
