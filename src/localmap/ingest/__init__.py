"""ingest: readers for what users capture from real kernels.

Traces of the percpu tracepoints (:mod:`.trace`), dmesg, meminfo, vmallocinfo and CPU lists
(:mod:`.procfs`), ``.config`` (:mod:`.kconfig`), and whole bundles (:mod:`.bundle`); every file
plain, gzip or xz (:mod:`.textfile`). Bad input raises :class:`localmap.errors.LocalmapError`
naming the file and line.
"""
