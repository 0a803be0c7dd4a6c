"""Regenerate src/localmap/data/sites-6.12.117-arm64.json from Debian's 6.12.117 arm64 images.

Fetches (cached) linux-image-6.12.117+deb12-{arm64,rt-arm64}-unsigned:arm64 and the real
System.map of each flavour from its -dbg package, analyses both and writes the small summary the
package ships for offline use. Needs apt (root, network) the first time.

    .venv/bin/python bench/make_sites_summary.py [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from benchlib import write_data
from localmap.debian import DEBIAN_KERNELS, debian_kernel, debian_system_map
from localmap.perf.image import load_image
from localmap.perf.sites import analyse
from localmap.perf.summary import flavour_from_report

OUT = Path(__file__).resolve().parent.parent / "src/localmap/data/sites-6.12.117-arm64.json"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    flavours = []
    for name in ("arm64", "rt-arm64"):
        image, _stub = debian_kernel(name)
        smap = debian_system_map(name)
        img = load_image(image, smap)
        rep = analyse(img, progress=True)
        flavours.append(flavour_from_report(rep, img, name, package=DEBIAN_KERNELS[name]))
        print(f"{name}: {rep.sites} sites, {rep.totals()['removed_fast_path']} removable fast-path instructions",
              file=sys.stderr)
    data = {"generated_by": "bench/make_sites_summary.py from Debian 6.12.117-1~deb12u1 arm64 images",
            "flavours": flavours}
    write_data(out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
