/* QEMU TCG plugin: exact guest instruction counts at every call of one function.
 *
 * The firmware's tm_now() is the mark. Each time its first instruction runs,
 * the number of guest instructions executed so far (not counting that one) is
 * appended to a list; at exit the list goes to the file named by out=, one
 * decimal number per line. The firmware returns the call's sequence number as
 * its "counter value", so the host can turn any two counter values into the
 * exact number of instructions between them, on any machine QEMU emulates.
 *
 * Args:  mark=0xADDRESS,out=PATH
 * Build: cc -O2 -shared -fPIC -o insn_marks.so insn_marks.c
 * Debian ships no qemu-plugin.h, so the few plugin API (version 1, QEMU 7.x)
 * declarations used here are written out below. One vCPU (Cortex-M): no atomics. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

#define EXPORT __attribute__((visibility("default")))
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

EXPORT int qemu_plugin_version = 1;

static uint64_t executed;
static uint64_t mark_addr = UINT64_MAX;
static uint64_t *marks;
static size_t n_marks, cap_marks;
static char out_path[4096];

static void on_mark(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    (void)udata;
    if (n_marks == cap_marks) {
        size_t cap = cap_marks ? 2 * cap_marks : 4096;
        uint64_t *grown = realloc(marks, cap * sizeof *marks);
        if (!grown)
            return;
        marks = grown;
        cap_marks = cap;
    }
    marks[n_marks++] = executed;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* the callback is registered first: it sees the count before this instruction */
        if (qemu_plugin_insn_vaddr(insn) == mark_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    }
}

static void write_marks(qemu_plugin_id_t id, void *udata)
{
    (void)id;
    (void)udata;
    FILE *f = fopen(out_path, "w");
    if (!f)
        return;
    for (size_t i = 0; i < n_marks; i++)
        fprintf(f, "%llu\n", (unsigned long long)marks[i]);
    fprintf(f, "total %llu\n", (unsigned long long)executed);
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "mark=", 5))
            mark_addr = strtoull(argv[i] + 5, NULL, 0) & ~1ull;   /* drop the Thumb bit */
        else if (!strncmp(argv[i], "out=", 4) && strlen(argv[i] + 4) < sizeof out_path)
            strcpy(out_path, argv[i] + 4);
        else {
            fprintf(stderr, "insn_marks: unknown argument %s\n", argv[i]);
            return -1;
        }
    }
    if (mark_addr == UINT64_MAX || !out_path[0]) {
        fprintf(stderr, "insn_marks: needs mark=ADDRESS,out=PATH\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_marks, NULL);
    return 0;
}
