"""perf: what the local mapping saves, read from real arm64 kernel images.

``image`` loads a raw Image / vmlinux with kallsyms or System.map, ``sites`` finds and classifies
every this_cpu access site (capstone), ``costs`` prices one op before/after per core from public
figures (``localmap/data/costs.toml``), ``predict`` joins a perf profile with the sites, and
``summary`` assembles the performance section for ``localmap evaluate``. The model follows arm64's
``asm/percpu.h`` as compiled; its simplifications are listed in each module.
"""
