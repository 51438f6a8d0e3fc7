/* QEMU TCG plugin: exact guest instruction counts at every call of one function,
 * and the executed instruction mix a cycle estimate needs (sim/cycles.py).
 *
 * The firmware's tm_now() is the mark. Each time its first instruction runs,
 * the number of guest instructions executed so far (not counting that one) is
 * appended to a list; at exit the list goes to the file named by out=, one
 * decimal number per line. The firmware returns the call's sequence number as
 * its "counter value", so the host can turn any two counter values into the
 * exact number of instructions between them, on any machine QEMU emulates.
 *
 * The mix: every translated block's Thumb instructions are sorted into classes
 * once (loads, stores, multiplies and MACs, load/store multiple and their
 * registers, branches, ...), and a per-block callback adds the block's class
 * counts when it runs. A conditional branch ends a block; it was taken when the
 * next block does not start at its fall-through address. With run=ADDRESS the
 * class totals are also written at every entry of that function (tinyml_run)
 * and at every mark, so the host gets each inference's mix. With
 * flash=ORIGIN:SIZE:LINE, data reads from flash are counted per new LINE-byte
 * line (one wait-state burst each; a one-line model of the flash read buffer).
 *
 * Args:  mark=0xADDRESS,out=PATH[,run=0xADDRESS][,flash=0xORIGIN:0xSIZE:LINE]
 * Build: cc -O2 -shared -fPIC -o insn_marks.so insn_marks.c
 * Debian ships no qemu-plugin.h, so the few plugin API (version 1, QEMU 7.x)
 * declarations used here are written out below. One vCPU (Cortex-M): no atomics. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
typedef uint32_t qemu_plugin_meminfo_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int vcpu_index, qemu_plugin_meminfo_t info, uint64_t vaddr,
                                          void *userdata);

#define EXPORT __attribute__((visibility("default")))
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, enum qemu_plugin_op op,
                                                void *ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *insn, qemu_plugin_vcpu_mem_cb_t cb,
                                      enum qemu_plugin_cb_flags flags, enum qemu_plugin_mem_rw rw, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);

EXPORT int qemu_plugin_version = 1;

/* Instruction classes; sim/cycles.py holds the same names in the same order. */
enum {
    C_ALU, C_MUL, C_MLA, C_MAC, C_DIV, C_LOAD, C_LOAD_PIPELINED, C_STORE, C_DUAL, C_MULTI, C_MULTI_REGS,
    C_BRANCH, C_COND_BRANCH, C_TAKEN, C_FP, C_FP_MEM, C_FLASH_LINES, N_CLASSES
};
static const char *const class_names[N_CLASSES] = {
    "alu", "mul", "mla", "mac", "div", "load", "load_pipelined", "store", "dual", "multi", "multi_regs",
    "branch", "cond_branch", "taken", "fp", "fp_mem", "flash_lines",
};

struct block {
    uint64_t start, fallthrough;
    int cond_branch_at_end;
    uint32_t counts[N_CLASSES];
};

struct snapshots {
    uint64_t *rows; /* N_CLASSES + 1 values per row: executed, then the classes */
    size_t n, cap;
};

static uint64_t executed;
static uint64_t classes[N_CLASSES];
static uint64_t mark_addr = UINT64_MAX, run_addr = UINT64_MAX;
static uint64_t flash_lo, flash_hi, flash_line = 16, last_flash_line = UINT64_MAX;
static const struct block *prev_block;
static uint64_t *marks;
static size_t n_marks, cap_marks;
static struct snapshots mark_mix, run_mix;
static char out_path[4096];

static void snapshot(struct snapshots *s)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *grown = realloc(s->rows, cap * (N_CLASSES + 1) * sizeof *grown);
        if (!grown)
            return;
        s->rows = grown;
        s->cap = cap;
    }
    uint64_t *row = s->rows + s->n++ * (N_CLASSES + 1);
    row[0] = executed;
    memcpy(row + 1, classes, sizeof classes);
}

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
    if (run_addr != UINT64_MAX)
        snapshot(&mark_mix);
}

static void on_run(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    (void)udata;
    snapshot(&run_mix);
}

static void on_block(unsigned int vcpu, void *udata)
{
    (void)vcpu;
    const struct block *b = udata;
    if (prev_block && prev_block->cond_branch_at_end && prev_block->fallthrough != b->start)
        classes[C_TAKEN]++;
    for (int c = 0; c < N_CLASSES; c++)
        classes[c] += b->counts[c];
    prev_block = b;
}

static void on_load(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *udata)
{
    (void)vcpu;
    (void)info;
    (void)udata;
    if (vaddr >= flash_lo && vaddr < flash_hi && vaddr / flash_line != last_flash_line) {
        last_flash_line = vaddr / flash_line;
        classes[C_FLASH_LINES]++;
    }
}

static int popcount16(uint32_t v) { return __builtin_popcount(v & 0xFFFFu); }

/* Sort one Thumb instruction into a class. `regs` gets the register count of a
 * load/store multiple, `*cond` is set for a conditional branch, `*loads` when
 * the instruction reads data memory. Encodings: ARMv7-M ARM, chapter A5. */
static int classify(uint32_t hw1, uint32_t hw2, int wide, int *regs, int *cond, int *loads)
{
    *regs = 0;
    *cond = 0;
    *loads = 0;
    if (!wide) {
        if ((hw1 >> 11) == 0x09) { *loads = 1; return C_LOAD; }                  /* LDR literal */
        if ((hw1 >> 12) == 0x5) {                                               /* register offset */
            *loads = ((hw1 >> 9) & 7) >= 3;
            return *loads ? C_LOAD : C_STORE;
        }
        if ((hw1 >> 13) == 0x3 || (hw1 >> 12) == 0x8 || (hw1 >> 12) == 0x9) {   /* immediate / SP offset */
            *loads = (hw1 >> 11) & 1;
            return *loads ? C_LOAD : C_STORE;
        }
        if ((hw1 >> 12) == 0xC) {                                               /* LDM / STM */
            *regs = popcount16(hw1 & 0xFF);
            *loads = (hw1 >> 11) & 1;
            return C_MULTI;
        }
        if ((hw1 & 0xFE00) == 0xB400) { *regs = popcount16(hw1 & 0x1FF); return C_MULTI; }     /* PUSH */
        if ((hw1 & 0xFE00) == 0xBC00) {                                                          /* POP */
            *regs = popcount16(hw1 & 0x1FF);
            *loads = 1;
            return C_MULTI;
        }
        if ((hw1 >> 12) == 0xD) {                                               /* B<cond>, SVC, UDF */
            if (((hw1 >> 8) & 0xF) < 0xE) { *cond = 1; return C_COND_BRANCH; }
            return C_ALU;
        }
        if ((hw1 >> 11) == 0x1C) return C_BRANCH;                               /* B */
        if ((hw1 & 0xF500) == 0xB100) { *cond = 1; return C_COND_BRANCH; }      /* CBZ, CBNZ */
        if ((hw1 & 0xFF00) == 0x4700) return C_BRANCH;                          /* BX, BLX */
        if ((hw1 & 0xFFC0) == 0x4340) return C_MUL;                             /* MULS */
        if ((hw1 & 0xFD00) == 0x4400 && ((hw1 & 7) | ((hw1 >> 4) & 8)) == 15)   /* ADD/MOV pc, Rm */
            return C_BRANCH;
        return C_ALU;
    }
    if ((hw1 & 0xFE40) == 0xE800) {                                             /* LDM / STM (.W) */
        *regs = popcount16(hw2);
        *loads = (hw1 >> 4) & 1;
        return C_MULTI;
    }
    if ((hw1 & 0xFE40) == 0xE840) {                                             /* dual, exclusive, TBB */
        if ((hw1 & 0xFFF0) == 0xE8D0 && (hw2 & 0xFFE0) == 0xF000) { *loads = 1; return C_BRANCH; }
        *loads = (hw1 >> 4) & 1;
        if ((hw1 & 0xFF00) == 0xE800 || (hw1 & 0xFFE0) == 0xE8C0)               /* LDREX / STREX */
            return *loads ? C_LOAD : C_STORE;
        return C_DUAL;
    }
    if ((hw1 & 0xEC00) == 0xEC00 && (hw1 >> 11) != 0x1F) {                     /* coprocessor: FPU */
        if ((hw1 & 0xFE00) == 0xEC00) {
            *loads = (hw1 >> 4) & 1;
            return C_FP_MEM;
        }
        return C_FP;
    }
    if ((hw1 >> 11) == 0x1E) {                                                  /* 11110: imm data, branches */
        if (!(hw2 & 0x8000))
            return C_ALU;
        if ((hw2 & 0xD000) == 0x8000) {
            if (((hw1 >> 6) & 0xF) < 0xE) { *cond = 1; return C_COND_BRANCH; }  /* B<cond>.W */
            return C_ALU;                                                       /* MSR, MRS, hints, barriers */
        }
        return C_BRANCH;                                                        /* B.W, BL */
    }
    if ((hw1 >> 11) == 0x1D)
        return C_ALU;                                                           /* shifted-register data ops */
    /* 11111 */
    if ((hw1 & 0xFE00) == 0xF800 && !(hw1 & 0x10))
        return C_STORE;
    if ((hw1 & 0xFE10) == 0xF810 || (hw1 & 0xFF10) == 0xF910) {
        *loads = 1;
        if ((hw1 & 0xFF70) == 0xF850 && (hw2 >> 12) == 15)
            return C_BRANCH;                                                    /* LDR pc */
        return C_LOAD;
    }
    if ((hw1 & 0xFF80) == 0xFB00) {                                             /* 32-bit multiply, MAC */
        int op1 = (hw1 >> 4) & 7, ra = hw2 >> 12;
        if (op1 == 0)
            return ra == 15 ? C_MUL : C_MLA;                                    /* MUL / MLA, MLS */
        return C_MAC;                                                           /* SMLAD, SMLABB, SMMUL... */
    }
    if ((hw1 & 0xFF80) == 0xFB80) {
        int op1 = (hw1 >> 4) & 7;
        return op1 == 1 || op1 == 3 ? C_DIV : C_MAC;                            /* SDIV/UDIV, long MACs */
    }
    if ((hw1 & 0xEC00) == 0xEC00)
        return C_FP;
    return C_ALU;                                                               /* FA..: SXTB16, QADD... */
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    struct block *b = run_addr != UINT64_MAX ? calloc(1, sizeof *b) : NULL;
    int prev_single_mem = 0;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* the callback is registered first: it sees the count before this instruction */
        if (qemu_plugin_insn_vaddr(insn) == mark_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (b && qemu_plugin_insn_vaddr(insn) == run_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_run, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
        if (!b)
            continue;
        const uint8_t *d = qemu_plugin_insn_data(insn);
        size_t size = qemu_plugin_insn_size(insn);
        uint32_t hw1 = d[0] | (uint32_t)d[1] << 8, hw2 = size >= 4 ? (d[2] | (uint32_t)d[3] << 8) : 0;
        int regs, cond, loads;
        int c = classify(hw1, hw2, size >= 4, &regs, &cond, &loads);
        int single_mem = c == C_LOAD || c == C_STORE;
        if (c == C_LOAD && prev_single_mem)
            c = C_LOAD_PIPELINED;                   /* address phase overlaps the previous access */
        prev_single_mem = single_mem;
        b->counts[c]++;
        b->counts[C_MULTI_REGS] += regs;
        if (i == n - 1) {
            b->start = qemu_plugin_tb_vaddr(tb);
            b->fallthrough = qemu_plugin_insn_vaddr(insn) + size;
            b->cond_branch_at_end = cond;
        }
        if (loads && flash_hi > flash_lo)
            qemu_plugin_register_vcpu_mem_cb(insn, on_load, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_R, NULL);
    }
    if (b)
        qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
}

static void write_rows(FILE *f, const char *tag, const struct snapshots *s)
{
    for (size_t r = 0; r < s->n; r++) {
        fputs(tag, f);
        for (int c = 0; c <= N_CLASSES; c++)
            fprintf(f, " %llu", (unsigned long long)s->rows[r * (N_CLASSES + 1) + c]);
        fputc('\n', f);
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
    if (run_addr != UINT64_MAX) {
        fputs("classes executed", f);
        for (int c = 0; c < N_CLASSES; c++)
            fprintf(f, " %s", class_names[c]);
        fputc('\n', f);
        write_rows(f, "run", &run_mix);
        write_rows(f, "mark", &mark_mix);
    }
    fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "mark=", 5))
            mark_addr = strtoull(argv[i] + 5, NULL, 0) & ~1ull;   /* drop the Thumb bit */
        else if (!strncmp(argv[i], "run=", 4))
            run_addr = strtoull(argv[i] + 4, NULL, 0) & ~1ull;
        else if (!strncmp(argv[i], "flash=", 6)) {
            char *end;
            flash_lo = strtoull(argv[i] + 6, &end, 0);
            flash_hi = *end == ':' ? flash_lo + strtoull(end + 1, &end, 0) : 0;
            flash_line = *end == ':' ? strtoull(end + 1, NULL, 0) : 0;
            if (flash_hi <= flash_lo || flash_line == 0) {
                fprintf(stderr, "insn_marks: flash= needs ORIGIN:SIZE:LINE\n");
                return -1;
            }
        } else if (!strncmp(argv[i], "out=", 4) && strlen(argv[i] + 4) < sizeof out_path)
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
