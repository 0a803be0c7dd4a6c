"""report: the main job ``localmap evaluate`` (:mod:`.evaluate`) and its terminal and HTML output.

Models nothing of the kernel; every number comes from another part's API on one bundle, and a
part that is missing is reported as missing (:mod:`.sections`).
"""
