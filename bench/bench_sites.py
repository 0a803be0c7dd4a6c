"""Whole-image this_cpu site analysis vs `objdump -D | grep`, side by side in one run.

For Debian's 6.12.117 arm64 and rt-arm64 Images (fetched and cached by localmap.debian):
  A  aarch64-linux-gnu-objdump -D over [_stext, _etext) piped to grep -c 'mrs.*tpidr_el1'
  B  localmap: load Image + System.map, scan, capstone on windows, classify every site
  C  localmap: the pre-filter scan alone (numpy over the aligned words)
Each is run REPEAT times; the minimum and median wall times are printed, with the counts (which
must agree between A and B).

    .venv/bin/python bench/bench_sites.py [REPEAT]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

from localmap.debian import debian_kernel, debian_system_map
from localmap.perf.image import load_image, read_symbol_file
from localmap.perf.sites import MRS_TPIDR_EL1, analyse, scan_words


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, min(times), statistics.median(times)


def main(argv):
    repeat = int(argv[0]) if argv else 3
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        print("aarch64-linux-gnu-objdump missing: apt-get install binutils-aarch64-linux-gnu", file=sys.stderr)
        return 1
    print(f"{'image':<12} {'method':<34} {'count':>6} {'min s':>7} {'median s':>8}")
    for flavour in ("arm64", "rt-arm64"):
        image, _ = debian_kernel(flavour)
        smap = debian_system_map(flavour)
        syms = read_symbol_file(smap)
        text, stext, etext = syms.get("_text"), syms.get("_stext"), syms.get("_etext")
        pipeline = (f"{objdump} -D -b binary -m aarch64 --adjust-vma={text:#x} --start-address={stext:#x} "
                    f"--stop-address={etext:#x} '{image}' | grep -c 'mrs.*tpidr_el1'")
        a, amin, amed = timed(lambda: int(subprocess.run(pipeline, shell=True, capture_output=True,
                                                         text=True).stdout), repeat)
        b, bmin, bmed = timed(lambda: analyse(load_image(image, smap)).sites, repeat)
        img = load_image(image, smap)
        c, cmin, cmed = timed(lambda: len(scan_words(img.text, MRS_TPIDR_EL1)), repeat)
        mb = (etext - stext) / 2**20
        print(f"{flavour:<12} {'A objdump -D | grep (' + f'{mb:.1f} MB text)':<34} {a:>6} {amin:>7.2f} {amed:>8.2f}")
        print(f"{flavour:<12} {'B localmap load+analyse (all)':<34} {b:>6} {bmin:>7.2f} {bmed:>8.2f}")
        print(f"{flavour:<12} {'C localmap pre-filter scan only':<34} {c:>6} {cmin:>7.3f} {cmed:>8.3f}")
        if a != b:
            print(f"MISMATCH: objdump {a} vs localmap {b}", file=sys.stderr)
            return 1
        print(f"{flavour:<12} speed-up B vs A: {amed / bmed:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
