"""this_cpu sites of every other Debian architecture: localmap against ``objdump | grep``.

For the kernels of localmap.debian.ARCH_KERNELS (fetched and cached): A = that architecture's
binutils objdump over [_stext, _etext) piped to ``grep -cP`` of the site pattern
(docs/architectures.md); B = localmap: load the image alone (its own kallsyms) and find and
classify every site. Each runs REPEAT times (median); the counts must agree. Target: B faster.

    .venv/bin/python bench/bench_arches.py [--repeat N]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import Row, main, timed
from localmap.debian import debian_arch_kernel
from localmap.perf.arches import analyse_arch
from localmap.perf.images import find_payload, load_any
from localmap.units import fmt_bytes, fmt_seconds

TOOLS = {"amd64": ("x86_64-linux-gnu-objdump", "-d", r"%gs:"),
         "armhf": ("arm-linux-gnueabihf-objdump", "-D -b binary -m arm", r"\tmrc\t15, 0, \w+, cr13, cr0, \{4\}"),
         "ppc64el": ("powerpc64le-linux-gnu-objdump", "-d", r"\tld\s+r\d+,48\(r13\)$"),
         "riscv64": ("riscv64-linux-gnu-objdump", "-D -b binary -m riscv:rv64", r"\tlw\s+\w+,32\(tp\)"),
         "s390x": ("s390x-linux-gnu-objdump", "-D -b binary -m s390:64-bit -EB", r"[\t,]952(,|$)")}


def rows(args) -> list[Row]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, (tool, opts, rx) in TOOLS.items():
            if shutil.which(tool) is None:
                sys.exit(f"{tool} missing: apt-get install binutils for {arch}")
            image, config = debian_arch_kernel(arch)
            img = load_any(image, config=config)
            base, blob = img.segments[0]
            if arch == "ppc64el":
                target, adjust = str(image), ""
            elif arch == "amd64":
                target, adjust = str(Path(tmp) / "vmlinux"), ""
                Path(target).write_bytes(find_payload(image.read_bytes(), image, 0x200)[2])
            else:
                target, adjust = str(Path(tmp) / f"{arch}.bin"), f"--adjust-vma={base:#x}"
                Path(target).write_bytes(blob)
            pipeline = (f"{tool} {opts} {adjust} --start-address={img.stext:#x} --stop-address={img.etext:#x} "
                        f"'{target}' | grep -cP '{rx}'")
            amed, _, a = timed(lambda: int(subprocess.run(pipeline, shell=True, capture_output=True,
                                                          text=True).stdout or 0), args.repeat)
            bmed, _, b = timed(lambda: analyse_arch(load_any(image, config=config)).count, args.repeat)
            if a != b:
                sys.exit(f"MISMATCH on {arch}: objdump counts {a} sites, localmap {b}")
            out.append(Row(f"this_cpu sites of Debian's {arch} kernel ({fmt_bytes(img.text_bytes)} text): "
                           "localmap load + full analysis vs objdump | grep",
                           f"{fmt_seconds(bmed)} vs {fmt_seconds(amed)} ({amed / bmed:.1f}x), {b} sites both",
                           "faster than objdump", bmed < amed))
    return out


def add_args(ap) -> None:
    ap.add_argument("--repeat", type=int, default=3, help="runs per method (default 3)")


if __name__ == "__main__":
    sys.exit(main(__doc__, rows, add_args))
