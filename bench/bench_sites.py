"""this_cpu sites of a whole image: localmap against ``objdump -D | grep``, side by side.

For Debian's 6.12.117 arm64 and rt-arm64 Images (fetched and cached by localmap.debian):
  A  aarch64-linux-gnu-objdump -D over [_stext, _etext) piped to grep -c 'mrs.*tpidr_el1'
  B  localmap: load Image + System.map, scan, capstone on windows, classify every site
  C  localmap: the pre-filter scan alone (numpy over the aligned words)
Each runs REPEAT times (median); the counts of A and B must agree. Target: B faster than A.

    .venv/bin/python bench/bench_sites.py [--repeat N]
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from benchlib import Row, main, timed
from localmap.debian import debian_kernel, debian_system_map
from localmap.perf.image import load_image, read_symbol_file
from localmap.perf.sites import MRS_TPIDR_EL1, analyse, scan_words
from localmap.units import fmt_bytes, fmt_seconds


def rows(args) -> list[Row]:
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        sys.exit("aarch64-linux-gnu-objdump missing: apt-get install binutils-aarch64-linux-gnu")
    out = []
    for flavour in ("arm64", "rt-arm64"):
        image, _ = debian_kernel(flavour)
        smap = debian_system_map(flavour)
        syms = read_symbol_file(smap)
        text, stext, etext = syms.get("_text"), syms.get("_stext"), syms.get("_etext")
        pipeline = (f"{objdump} -D -b binary -m aarch64 --adjust-vma={text:#x} --start-address={stext:#x} "
                    f"--stop-address={etext:#x} '{image}' | grep -c 'mrs.*tpidr_el1'")
        amed, _, a = timed(lambda: int(subprocess.run(pipeline, shell=True, capture_output=True,
                                                      text=True).stdout), args.repeat)
        bmed, _, b = timed(lambda: analyse(load_image(image, smap)).sites, args.repeat)
        img = load_image(image, smap)
        cmed, _, _ = timed(lambda: len(scan_words(img.text, MRS_TPIDR_EL1)), args.repeat)
        if a != b:
            sys.exit(f"MISMATCH on {flavour}: objdump counts {a} sites, localmap {b}")
        out.append(Row(f"this_cpu sites of Debian 6.12 {flavour} ({fmt_bytes(etext - stext)} text): "
                       "localmap load + full analysis vs objdump -D | grep",
                       f"{fmt_seconds(bmed)} vs {fmt_seconds(amed)} ({amed / bmed:.1f}x), "
                       f"{b} sites both", "faster than objdump", bmed < amed))
        out.append(Row(f"  the pre-filter scan alone ({flavour})", fmt_seconds(cmed, 3)))
    return out


def add_args(ap) -> None:
    ap.add_argument("--repeat", type=int, default=3, help="runs per method (default 3)")


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
