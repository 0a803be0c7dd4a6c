"""analysis: runs of the model over real or synthetic histories.

:mod:`.replay` (the allocator against a real trace), :mod:`.overhead` (what the design costs),
:mod:`.synthetic` (synthetic traces for scale tests).
"""
