"""this_cpu site analysis of every other Debian architecture vs `objdump | grep`, side by side.

For the kernels of localmap.debian.ARCH_KERNELS (fetched and cached): A = that architecture's
binutils objdump over [_stext, _etext) piped to grep -c of the site pattern
(docs/architectures.md); B = localmap: load the image alone (embedded kallsyms) and analyse every
site. Counts must agree. Minimum and median of REPEAT runs.

    .venv/bin/python bench/bench_arches.py [REPEAT]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localmap.debian import debian_arch_kernel
from localmap.perf.arches import analyse_arch
from localmap.perf.images import find_payload, load_any

TOOLS = {"amd64": ("x86_64-linux-gnu-objdump", "-d", r"%gs:"),
         "armhf": ("arm-linux-gnueabihf-objdump", "-D -b binary -m arm", r"\tmrc\t15, 0, \w+, cr13, cr0, \{4\}"),
         "ppc64el": ("powerpc64le-linux-gnu-objdump", "-d", r"\tld\s+r\d+,48\(r13\)$"),
         "riscv64": ("riscv64-linux-gnu-objdump", "-D -b binary -m riscv:rv64", r"\tlw\s+\w+,32\(tp\)"),
         "s390x": ("s390x-linux-gnu-objdump", "-D -b binary -m s390:64-bit -EB", r"[\t,]952(,|$)")}


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return result, min(times), statistics.median(times)


def main(argv):
    repeat = int(argv[0]) if argv else 3
    print(f"{'arch':<8} {'method':<30} {'count':>6} {'min s':>7} {'median s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch, (tool, args, rx) in TOOLS.items():
            if shutil.which(tool) is None:
                print(f"{arch}: {tool} missing (apt-get install binutils-...), skipped", file=sys.stderr)
                continue
            image, config = debian_arch_kernel(arch)
            img = load_any(image, config=config)
            base, blob = img.segments[0]
            if arch == "ppc64el":
                target, adjust = str(image), ""
            elif arch == "amd64":
                target, adjust = str(Path(tmp) / "vmlinux"), ""
                raw = image.read_bytes()
                Path(target).write_bytes(find_payload(raw, image, 0x200)[2])
            else:
                target, adjust = str(Path(tmp) / f"{arch}.bin"), f"--adjust-vma={base:#x}"
                Path(target).write_bytes(blob)
            pipeline = (f"{tool} {args} {adjust} --start-address={img.stext:#x} --stop-address={img.etext:#x} "
                        f"'{target}' | grep -cP '{rx}'")
            a, amin, amed = timed(lambda: int(subprocess.run(pipeline, shell=True, capture_output=True,
                                                             text=True).stdout or 0), repeat)
            b, bmin, bmed = timed(lambda: analyse_arch(load_any(image, config=config)).count, repeat)
            mb = img.text_bytes / 2**20
            print(f"{arch:<8} {'A objdump | grep (' + f'{mb:.1f} MB text)':<30} {a:>6} {amin:>7.2f} {amed:>8.2f}")
            print(f"{arch:<8} {'B localmap load+analyse':<30} {b:>6} {bmin:>7.2f} {bmed:>8.2f}")
            if a != b:
                print(f"MISMATCH {arch}: objdump {a} vs localmap {b}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
