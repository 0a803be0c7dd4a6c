"""lab: capture bundles from real kernels, under QEMU (:mod:`.qemu`) or on a live host (:mod:`.host`).

Models nothing of the kernel; both paths run the same guest script (``guest/capture.sh``) and
turn its output into a bundle with :mod:`.bundle_io`. See docs/lab.md.
"""
