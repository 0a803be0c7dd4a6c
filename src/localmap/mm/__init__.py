"""mm: the kernel's memory managers the design touches.

:mod:`.percpu` (mm/percpu.c and mm/percpu-vm.c of Linux 6.12), :mod:`.vmalloc` (vmap areas and
``pcpu_get_vm_areas``), :mod:`.page_alloc` (physical frames with contents).
"""
