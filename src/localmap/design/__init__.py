"""design: the LSF/MM/BPF 2026 design itself, as DESIGN.md states it.

:mod:`.layout` places the global and local windows and picks the split level; :mod:`.machine`
runs per-CPU kernel page tables with the local mapping (``DesignMachine``) beside today's kernel
(``BaselineMachine``), with invariants I1-I5 checked after every step in checked mode.
"""
