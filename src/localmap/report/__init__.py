"""report: the main job's report (:mod:`.evaluate`): its document model, HTML page and figures.

Models nothing of the kernel; every number comes from another part's API on one bundle; a
section whose input the bundle lacks is reported as missing (:mod:`.sections`). The terminal
view is :mod:`localmap.cli.report_view`.
"""
