/*
 * localmap TCG plugin: count executions of this_cpu sites and kernel instructions.
 *
 * A site is an instruction "mrs xN, tpidr_el1" (or the VHE form "mrs xN, tpidr_el2") at a
 * kernel address (bit 63 set, TTBR1).  Each gets an inline 64-bit counter keyed by its address.
 * Every kernel translation block adds its instruction count inline when it starts executing,
 * and counts its own executions in a table keyed by (start address, instruction count), so the
 * host can attribute executed kernel instructions to functions.
 * A user-mode "movk xzr, #imm" (a no-op) writes a snapshot of every counter, tagged imm, to
 * the file named by the argument out=PATH; a final snapshot tagged -1 is written at exit.
 * Run QEMU with -accel tcg,thread=single: inline counters are not atomic.
 *
 * Output lines:  M <marker> <kernel_insns> <user_insns>  then  S <addr hex> <count>  per
 * executed site,  T <addr hex> <insns> <count>  per executed kernel block, then  E  at the end
 * of each snapshot.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define SLOTS (1u << 16)              /* open-addressing table of sites */
#define MRS_MASK 0xffffffe0u
#define MRS_TPIDR_EL1 0xd538d080u
#define MRS_TPIDR_EL2 0xd53cd040u
#define MARK_MASK 0xffe0001fu          /* movk xzr, #imm16, hw=0 */
#define MARK_VALUE 0xf280001fu

#define TB_SLOTS (1u << 18)           /* kernel translation blocks */

struct slot { uint64_t addr; uint64_t count; };
struct tbslot { uint64_t addr; uint64_t n; uint64_t count; };

static struct slot *table;
static struct tbslot *tbs;
static uint64_t tb_overflow;
static uint64_t kernel_insns, user_insns, overflow;
static FILE *out;

static uint64_t *counter_for(uint64_t addr)
{
    uint32_t h = (uint32_t)((addr >> 2) * 2654435761u) & (SLOTS - 1);
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct slot *s = &table[(h + i) & (SLOTS - 1)];
        if (s->addr == addr)
            return &s->count;
        if (s->addr == 0) {
            s->addr = addr;
            return &s->count;
        }
    }
    return &overflow;
}

static uint64_t *tb_counter_for(uint64_t addr, uint64_t n)
{
    uint32_t h = (uint32_t)(((addr >> 2) ^ (n << 20)) * 2654435761u) & (TB_SLOTS - 1);
    for (uint32_t i = 0; i < TB_SLOTS; i++) {
        struct tbslot *s = &tbs[(h + i) & (TB_SLOTS - 1)];
        if (s->addr == addr && s->n == n)
            return &s->count;
        if (s->addr == 0) {
            s->addr = addr;
            s->n = n;
            return &s->count;
        }
    }
    return &tb_overflow;
}

static void snapshot(long marker)
{
    if (!out)
        return;
    fprintf(out, "M %ld %" PRIu64 " %" PRIu64 "\n", marker, kernel_insns, user_insns);
    for (uint32_t i = 0; i < SLOTS; i++)
        if (table[i].addr && table[i].count)
            fprintf(out, "S %" PRIx64 " %" PRIu64 "\n", table[i].addr, table[i].count);
    if (overflow)
        fprintf(out, "S 0 %" PRIu64 "\n", overflow);
    for (uint32_t i = 0; i < TB_SLOTS; i++)
        if (tbs[i].addr && tbs[i].count)
            fprintf(out, "T %" PRIx64 " %" PRIu64 " %" PRIu64 "\n", tbs[i].addr, tbs[i].n, tbs[i].count);
    if (tb_overflow)
        fprintf(out, "T 0 0 %" PRIu64 "\n", tb_overflow);
    fputs("E\n", out);
    fflush(out);
}

static void on_marker(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    snapshot((long)(uintptr_t)udata);
}

static void on_tb(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);
    int kernel = (qemu_plugin_tb_vaddr(tb) >> 63) != 0;

    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                             kernel ? &kernel_insns : &user_insns, n);
    if (kernel)
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
                                                 tb_counter_for(qemu_plugin_tb_vaddr(tb), n), 1);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        uint32_t w;

        if (qemu_plugin_insn_size(insn) != 4)
            continue;
        memcpy(&w, qemu_plugin_insn_data(insn), 4);
        if (kernel && ((w & MRS_MASK) == MRS_TPIDR_EL1 || (w & MRS_MASK) == MRS_TPIDR_EL2)) {
            qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64,
                                                       counter_for(qemu_plugin_insn_vaddr(insn)), 1);
        } else if (!kernel && (w & MARK_MASK) == MARK_VALUE) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)((w >> 5) & 0xffff));
        }
    }
}

static void plugin_exit(qemu_plugin_id_t id, void *p)
{
    snapshot(-1);
    if (out)
        fclose(out);
    out = NULL;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    const char *path = NULL;

    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0)
            path = argv[i] + 4;
    if (!path) {
        fprintf(stderr, "thiscpu plugin: out=PATH is required\n");
        return -1;
    }
    out = fopen(path, "w");
    table = calloc(SLOTS, sizeof(*table));
    tbs = calloc(TB_SLOTS, sizeof(*tbs));
    if (!out || !table || !tbs) {
        fprintf(stderr, "thiscpu plugin: cannot open %s or allocate\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb);
    qemu_plugin_register_atexit_cb(id, plugin_exit, NULL);
    return 0;
}
