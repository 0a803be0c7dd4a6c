"""Slow tests on Debian's real 6.12.117 arm64 and rt-arm64 images (download ~1.2 GB, cached).

They check the site analysis's acceptance criteria: ``sites`` equals an independent count by
``aarch64-linux-gnu-objdump`` over ``[_stext, _etext)``, and each site's function agrees with
kallsyms/System.map (attributed here with a separate, plain bisect).
"""

from __future__ import annotations

import bisect
import gzip
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from localmap.errors import LocalmapError

pytestmark = pytest.mark.slow

OBJDUMP = "aarch64-linux-gnu-objdump"


@pytest.fixture(scope="module")
def objdump() -> str:
    if shutil.which(OBJDUMP) is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip(f"{OBJDUMP} missing and not root on a Debian system to apt-get install it")
        subprocess.run(["apt-get", "update", "-q"], capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600",
                            "binutils-aarch64-linux-gnu"], capture_output=True, text=True)
        if r.returncode != 0 or shutil.which(OBJDUMP) is None:
            pytest.skip(f"cannot install binutils-aarch64-linux-gnu: {r.stderr.strip()[-200:]}")
    return OBJDUMP


def _kernel(flavour):
    from localmap.debian import debian_kernel, debian_system_map
    try:
        image, _stub = debian_kernel(flavour)
        return image, debian_system_map(flavour)
    except LocalmapError as exc:
        pytest.skip(f"cannot fetch Debian's {flavour} kernel (apt/network): {exc}")


def _plain_symbols(path: Path):
    """Independent reader: text symbols of a kallsyms/System.map, sorted."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    named, text = {}, []
    for line in raw.decode().splitlines():
        a, t, n = line.split()[:3]
        named.setdefault(n, int(a, 16))
        if t in "tTwW":
            text.append((int(a, 16), n))
    text.sort()
    return named, [a for a, _ in text], [n for _, n in text]


def _objdump_sites(objdump: str, image: Path, named: dict) -> list[int]:
    cmd = [objdump, "-D", "-b", "binary", "-m", "aarch64", f"--adjust-vma={named['_text']:#x}",
           f"--start-address={named['_stext']:#x}", f"--stop-address={named['_etext']:#x}", str(image)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    pat = re.compile(r"^\s*([0-9a-f]+):\s+[0-9a-f]{8}\s+mrs\s+x\d+, tpidr_el1\b", re.M)
    return [int(m.group(1), 16) for m in pat.finditer(out)]


@pytest.mark.parametrize("flavour", ["arm64", "rt-arm64"])
def test_sites_equal_objdump_and_attribution_agrees(flavour, objdump):
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    image, smap = _kernel(flavour)
    named, addrs, names = _plain_symbols(smap)
    ours = analyse(load_image(image, smap))
    theirs = _objdump_sites(objdump, image, named)
    assert ours.sites == len(theirs) > 1000
    assert [s.addr for s in ours.sites_list] == theirs
    want = Counter(names[bisect.bisect_right(addrs, a) - 1] for a in theirs)
    got = Counter(s.function for s in ours.sites_list)
    assert got == want
    if flavour == "arm64":
        assert ours.preempt_model == "PREEMPT_VOLUNTARY" and ours.totals()["removed_instructions"] == 0
    else:
        assert ours.preempt_model == "PREEMPT_RT" and ours.totals()["protection"]["preempt"] > 500


def test_capture_kallsyms_match_the_arm64_image(shared_data):
    """The bundles' /proc/kallsyms (KASLR off) give the same sites and functions as System.map."""
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    image, smap = _kernel("arm64")
    base = analyse(load_image(image, smap))
    found = sorted(shared_data.glob("*/kallsyms.gz"))
    assert found, f"no kallsyms.gz in the shared captures under {shared_data}"
    for ks in found:
        rep = analyse(load_image(image, ks))
        assert rep.sites == base.sites
        # same function start for every site (alias names at one address may be listed differently)
        assert [s.addr - s.func_offset for s in rep.sites_list] == [s.addr - s.func_offset for s in base.sites_list]
        assert sum(a.function == b.function for a, b in zip(rep.sites_list, base.sites_list)) / rep.sites > 0.99


def test_vmlinux_elf_matches_image():
    """rt-arm64's vmlinux (ELF, from the -dbg package) gives the Image's sites."""
    from localmap.debian import DEBIAN_KERNELS, extract_members, fetch_deb
    from localmap.perf.image import load_image
    from localmap.perf.sites import analyse

    image, smap = _kernel("rt-arm64")
    version = DEBIAN_KERNELS["rt-arm64"].split(":")[0].removeprefix("linux-image-").removesuffix("-unsigned")
    vmlinux = extract_members(fetch_deb(f"linux-image-{version}-dbg:arm64"),
                              [f"usr/lib/debug/boot/vmlinux-{version}"])[0]
    elf = load_image(vmlinux)
    img = load_image(image, smap)
    assert elf.kind == "ELF" and (elf.stext, elf.etext) == (img.stext, img.etext) and elf.text == img.text
    a, b = analyse(elf), analyse(img)
    assert a.sites == b.sites and [s.addr for s in a.sites_list] == [s.addr for s in b.sites_list]
    assert [s.op for s in a.sites_list] == [s.op for s in b.sites_list]
