"""Regenerate src/localmap/data/sites-arches.json from Debian's kernels of every architecture.

Fetches (cached) the image package of each architecture in ``localmap.debian.ARCH_KERNELS``
(only the image and its .config are extracted), analyses it with ``localmap.perf.arches`` and
writes the small summary the package ships, so that ``localmap evaluate`` can compare the
architectures offline. Needs apt (root, network) the first time.

    .venv/bin/python bench/make_arches_summary.py [OUT]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchlib import write_data
from localmap.debian import ARCH_KERNELS, debian_arch_kernel
from localmap.perf.arches import analyse_arch
from localmap.perf.compare import summarize
from localmap.perf.images import load_any

OUT = Path(__file__).resolve().parent.parent / "src/localmap/data/sites-arches.json"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    rows = []
    for arch in ("amd64", "armhf", "ppc64el", "riscv64", "s390x"):
        t0 = time.monotonic()
        image, config = debian_arch_kernel(arch)
        img = load_any(image, config=config)
        rep = analyse_arch(img)
        rows.append(summarize(rep, img, package=ARCH_KERNELS[arch][0], config_path=config))
        print(f"{arch}: {rep.count} sites, {rep.totals()['removed_instructions']} removable "
              f"instructions ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    data = {"generated_by": "bench/make_arches_summary.py from the Debian kernels of localmap.debian.ARCH_KERNELS",
            "arches": rows}
    write_data(out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
