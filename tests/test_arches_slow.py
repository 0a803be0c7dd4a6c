"""Slow tests on Debian's real kernels of every architecture (downloads ~360 MB once, cached).

Acceptance of the multi-architecture site analysis: for each architecture the sites equal, address
by address, an independent count by that architecture's binutils objdump of the same pattern over
the same text range; the amd64 bzImage is analysed alone (its text range is the ELF .text section
of its payload, read here with objdump -h); the embedded-kallsyms reader equals a captured
/proc/kallsyms; the shipped summary equals a fresh analysis. Binutils are apt-get installed when
missing and the tests run as root; otherwise they skip saying why -- under CI (CI=true) they fail.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from localmap.errors import LocalmapError

pytestmark = pytest.mark.slow

BUNDLES = Path("/work/shared/data/bundles")
if not BUNDLES.is_dir():
    BUNDLES = Path(__file__).resolve().parents[2] / "shared/data/bundles"

# objdump, its package, its arguments, and the pattern of a site on one line of its output
OBJDUMP = {
    "amd64": ("x86_64-linux-gnu-objdump", "binutils-x86-64-linux-gnu", ["-d"], r"%gs:"),
    "armhf": ("arm-linux-gnueabihf-objdump", "binutils-arm-linux-gnueabihf",
              ["-D", "-b", "binary", "-m", "arm"], r"\tmrc\t15, 0, \w+, cr13, cr0, \{4\}"),
    # paca_struct (Book3S-64): lppaca_ptr 8, paca_index + hw_cpu_id 2 + 2 (+4 padding),
    # kernel_toc 8, kernelbase 8, kernel_msr 8, emergency_sp 8 -> data_offset at 48
    "ppc64el": ("powerpc64le-linux-gnu-objdump", "binutils-powerpc64le-linux-gnu", ["-d"],
                r"\tld\s+r\d+,48\(r13\)$"),
    # thread_info: flags 8, preempt_count 4 (+4), kernel_sp 8, user_sp 8 -> cpu at 32
    "riscv64": ("riscv64-linux-gnu-objdump", "binutils-riscv64-linux-gnu",
                ["-D", "-b", "binary", "-m", "riscv:rv64"], r"\tlw\s+\w+,32\(tp\)"),
    # lowcore.percpu_offset at 0x3b8 = 952, base and index register 0: printed without parentheses
    "s390x": ("s390x-linux-gnu-objdump", "binutils-s390x-linux-gnu",
              ["-D", "-b", "binary", "-m", "s390:64-bit", "-EB"], r"[\t,]952(,|$)"),
}


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def _objdump(arch: str) -> str:
    tool, pkg, _args, _rx = OBJDUMP[arch]
    if shutil.which(tool) is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _missing(f"{tool} missing and not root on a Debian system to apt-get install {pkg}")
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", pkg],
                           capture_output=True, text=True)
        if r.returncode != 0 or shutil.which(tool) is None:
            _missing(f"cannot install {pkg}: {r.stderr.strip()[-200:]}")
    return tool


def _kernel(arch: str):
    from localmap.debian import debian_arch_kernel

    try:
        return debian_arch_kernel(arch)
    except LocalmapError as exc:
        _missing(f"cannot fetch Debian's {arch} kernel (apt/network): {exc}")


def _bz_payload(raw: bytes) -> bytes:
    """The ELF inside a bzImage, found from the boot protocol's header fields (setup_sects at 0x1f1,
    payload_offset/payload_length at 0x248) and decompressed with the zstd tool when present."""
    setup = (raw[0x1F1] or 4) + 1
    off, length = struct.unpack_from("<II", raw, 0x248)
    blob = raw[setup * 512 + off:setup * 512 + off + length]
    assert blob[:4] == b"\x28\xb5\x2f\xfd", "Debian's amd64 6.12 bzImage is zstd-compressed"
    if shutil.which("zstd"):
        return subprocess.run(["zstd", "-dcq"], input=blob[:-4], capture_output=True, check=True).stdout
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj().decompress(blob)


def _objdump_sites(arch: str, target: Path, start: int, stop: int, adjust: int | None) -> list[int]:
    tool, _pkg, args, rx = OBJDUMP[arch]
    cmd = [tool, *args, f"--start-address={start:#x}", f"--stop-address={stop:#x}", str(target)]
    if adjust is not None:
        cmd.insert(1 + len(args), f"--adjust-vma={adjust:#x}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pat = re.compile(rx)
    sites = []
    for line in out.splitlines():
        if pat.search(line):
            m = re.match(r"\s*([0-9a-f]+):", line)
            if m:
                sites.append(int(m.group(1), 16))
    return sites


@pytest.mark.parametrize("arch", list(OBJDUMP))
def test_sites_equal_objdump(arch, tmp_path, capsys):
    """Address by address against objdump; the analysis also equals the shipped summary. amd64
    goes through `localmap sites IMAGE --json` on the bzImage alone."""
    import json

    from localmap.cli import main
    from localmap.debian import ARCH_KERNELS
    from localmap.perf.arches import analyse_arch
    from localmap.perf.compare import load_arches_summary, summarize
    from localmap.perf.images import load_any

    tool = _objdump(arch)
    image, config = _kernel(arch)
    img = load_any(image, config=config)
    shipped = next(r for r in load_arches_summary()["arches"] if r["arch"] == arch)
    if arch == "amd64":
        assert main(["sites", str(image), "--json", "--per-site"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["kind"] == "bzImage" and "embedded kallsyms" in out["symbols"]
        assert out["preempt_model"] == "PREEMPT_DYNAMIC"  # from the config-* beside the image
        ours = [int(x["addr"], 16) for x in out["site_list"]]
        got = {"sites": out["sites"], "access": out["totals"]["access"],
               "removed_instructions": out["totals"]["removed_instructions"]}
    else:
        rep = analyse_arch(img)
        ours = [x.addr for x in rep.sites]
        got = summarize(rep, img, package=ARCH_KERNELS[arch][0], config_path=config)
    for key in ("sites", "access", "removed_instructions"):
        assert got[key] == shipped[key], (arch, key)
    base, blob = img.segments[0]
    if arch == "ppc64el":
        target, adjust = image, None
        assert shipped["params"]["data_offset"] == 48  # the layout written above
    elif arch == "amd64":
        target, adjust = tmp_path / "vmlinux", None
        target.write_bytes(_bz_payload(image.read_bytes()))
        # the text range is the payload's .text section, read independently
        head = subprocess.run([tool, "-h", str(target)], capture_output=True, text=True, check=True).stdout
        m = re.search(r"\s\.text\s+([0-9a-f]+)\s+([0-9a-f]+)", head)
        assert (img.stext, img.etext) == (int(m.group(2), 16), int(m.group(2), 16) + int(m.group(1), 16))
    else:
        target, adjust = tmp_path / "image.bin", base
        target.write_bytes(blob)
    theirs = _objdump_sites(arch, target, img.stext, img.etext, adjust)
    assert len(theirs) > 1000
    assert ours == theirs


def test_embedded_kallsyms_equal_the_captured_proc_kallsyms():
    """Debian's 6.12.117 arm64 Image read without any symbol file gives exactly the /proc/kallsyms
    the shared captures recorded from that kernel (KASLR off)."""
    from localmap.debian import debian_kernel
    from localmap.perf.images import load_any

    captured = BUNDLES / "s1_612_4k_smp4" / "kallsyms.gz"
    if not captured.is_file():
        _missing(f"missing shared capture {captured}")
    try:
        image, _stub = debian_kernel("arm64")
    except LocalmapError as exc:
        _missing(f"cannot fetch Debian's arm64 kernel (apt/network): {exc}")
    img = load_any(image)
    cap = {}
    for line in gzip.decompress(captured.read_bytes()).decode().splitlines():
        parts = line.split()
        if len(parts) == 3:
            cap.setdefault(parts[2], int(parts[0], 16))
    assert len(img.symbols.named) == len(cap) > 100_000
    assert all(img.symbols.named[n] == a for n, a in cap.items())
