"""arch/arm64: translation tables (:mod:`.pgtable`), the kernel VA layout (:mod:`.memory`),
TLBs (:mod:`.tlb`), TTBR1 and the MMU (:mod:`.mmu`) and the this_cpu op sequences with their
interpreter (:mod:`.thiscpu`)."""
