/* Reset, vector table, fault reporting and stack accounting.
 *
 * Reset sets the stack pointer itself (the STM32 bootloader's Go command may
 * leave another one), points VTOR at our table, enables the FPU and the M7
 * caches, copies .data, zeroes .bss, paints the stack, arms the MPU guards and
 * calls main. Every fault lands in one handler that moves SP back to the top of
 * RAM first, so even a stack overflow is reported as a FAULT frame instead of
 * locking the core up. */
#include <stdint.h>
#include "tm_firmware.h"

#define TM_PAINT 0x5AC3A53Cu

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint32_t _stack_guard[], _stack_bottom[], _estack[];
int main(void);

void tm_reset_entry(void);
void tm_fault_entry(void);
const void *const tm_vectors[16] __attribute__((section(".isr_vector"), used)) = {
    _estack, tm_reset_entry, tm_fault_entry, tm_fault_entry,  /* SP, Reset, NMI, HardFault */
    tm_fault_entry, tm_fault_entry, tm_fault_entry, 0,         /* MemManage, BusFault, UsageFault */
    0, 0, 0, tm_fault_entry,                                    /* SVCall */
    tm_fault_entry, 0, tm_fault_entry, tm_fault_entry,         /* DebugMon, PendSV, SysTick */
};

__attribute__((naked, noreturn)) void tm_reset_entry(void)
{
    __asm__ volatile("ldr r0, =_estack\n msr msp, r0\n b tm_reset\n");
}

static void enable_caches(void)
{
#if TM_ICACHE || TM_DCACHE
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
#if TM_ICACHE
    TM_REG(0xE000EF50) = 0;                         /* ICIALLU */
    __asm__ volatile("dsb\n isb" ::: "memory");
    TM_REG(0xE000ED14) |= 1u << 17;                 /* CCR.IC */
#endif
#if TM_DCACHE
    TM_REG(0xE000ED84) = 0;                         /* CSSELR: level 1 data cache */
    __asm__ volatile("dsb" ::: "memory");
    uint32_t ccsidr = TM_REG(0xE000ED80);
    uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u, ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    for (uint32_t s = 0; s < sets; s++)
        for (uint32_t w = 0; w < ways; w++)
            TM_REG(0xE000EF60) = (s << 5) | (w << 30);   /* DCISW (32-byte lines, 4 ways) */
    __asm__ volatile("dsb" ::: "memory");
    TM_REG(0xE000ED14) |= 1u << 16;                 /* CCR.DC */
#endif
#if TM_ICACHE || TM_DCACHE
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
}

/* PMSAv7 regions: no access, execute never. size_log2 >= 5, base aligned to the size. */
static void mpu_no_access(uint32_t region, uint32_t base, uint32_t size_log2)
{
    TM_REG(0xE000ED98) = region;                                     /* MPU_RNR */
    TM_REG(0xE000ED9C) = base;                                       /* MPU_RBAR */
    TM_REG(0xE000EDA0) = (1u << 28) | ((size_log2 - 1u) << 1) | 1u;  /* MPU_RASR: XN, AP=0, SIZE, ENABLE */
}

static void arm_mpu_guards(void)
{
    /* below the stack: an overflow faults before it reaches .bss (the arena) */
    mpu_no_access(0, (uint32_t)(uintptr_t)_stack_guard, 5);
#if TM_GUARD_END_LOG2
    /* past the board's real RAM: the simulator maps more than the chip has */
    mpu_no_access(1, TM_GUARD_END_BASE, TM_GUARD_END_LOG2);
#endif
    TM_REG(0xE000ED94) = (1u << 2) | 1u;                             /* MPU_CTRL: PRIVDEFENA | ENABLE */
    __asm__ volatile("dsb\n isb" ::: "memory");
}

__attribute__((used, noreturn)) void tm_reset(void)
{
    TM_REG(0xE000ED08) = (uint32_t)(uintptr_t)tm_vectors;  /* VTOR */
#if defined(__ARM_FP)
    TM_REG(0xE000ED88) |= 0xFu << 20;                       /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    enable_caches();
    for (uint32_t *s = _sidata, *d = _sdata; d < _edata;)
        *d++ = *s++;
    for (volatile uint32_t *d = _sbss; d < _ebss;)
        *d++ = 0;
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = _stack_bottom; p < (uint32_t *)(uintptr_t)(sp - 64u);)
        *p++ = TM_PAINT;
    arm_mpu_guards();
    main();
    tm_exit(1, 0);
}

/* Naked and a leaf: it touches no stack, so everything below the caller's SP is
 * painted again and a following call's depth can be read back exactly. */
__attribute__((naked)) uint32_t tm_stack_repaint(void)
{
    __asm__ volatile("ldr r0, =_stack_bottom\n ldr r1, =0x5AC3A53C\n mov r2, sp\n"
                     "1: cmp r0, r2\n bhs 2f\n str r1, [r0], #4\n b 1b\n"
                     "2: mov r0, sp\n bx lr\n");
}

uint32_t tm_stack_depth_below(uint32_t sp)
{
    const uint32_t *p = _stack_bottom;
    while (p < _estack && *p == TM_PAINT)
        p++;
    return sp - (uint32_t)(uintptr_t)p;
}

uint32_t tm_stack_size(void) { return (uint32_t)((uintptr_t)_estack - (uintptr_t)_stack_bottom); }
uint32_t tm_stack_bottom(void) { return (uint32_t)(uintptr_t)_stack_bottom; }

/* mode 0: leave the simulator through semihosting SYS_EXIT_EXTENDED (status = code).
 * mode 1: system reset (a real board, where a BKPT without a debugger would fault). */
void tm_exit(uint32_t mode, uint32_t code)
{
    if (mode == 0) {
        uint32_t block[2] = { 0x20026u, code };   /* ADP_Stopped_ApplicationExit */
        register uint32_t r0 __asm__("r0") = 0x20u;
        register uint32_t *r1 __asm__("r1") = block;
        __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    }
    __asm__ volatile("dsb" ::: "memory");
    TM_REG(0xE000ED0C) = (0x5FAu << 16) | (1u << 2);   /* AIRCR: VECTKEY | SYSRESETREQ */
    for (;;) {
    }
}

/* Capture the faulting SP and EXC_RETURN, move SP to the top of RAM, report. */
__attribute__((naked, noreturn)) void tm_fault_entry(void)
{
    __asm__ volatile("mrs r0, msp\n mov r1, lr\n ldr r2, =_estack\n mov sp, r2\n b tm_fault_report\n");
}

__attribute__((used, noreturn)) void tm_fault_report(const uint32_t *frame, uint32_t exc_return)
{
    uint32_t ipsr, cfsr = TM_REG(0xE000ED28);
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    uintptr_t f = (uintptr_t)frame;
    int frame_ok = f >= (uintptr_t)_stack_bottom && f + 32u <= (uintptr_t)_estack
                   && !(cfsr & ((1u << 4) | (1u << 12)));   /* no MSTKERR / STKERR */
    uint32_t v[10] = {
        ipsr & 0x1FFu, cfsr, TM_REG(0xE000ED2C) /* HFSR */, TM_REG(0xE000ED34) /* MMFAR */,
        TM_REG(0xE000ED38) /* BFAR */, frame_ok ? frame[6] : 0xFFFFFFFFu /* PC */,
        frame_ok ? frame[5] : 0xFFFFFFFFu /* LR */, (uint32_t)f, exc_return, tm_stack_bottom(),
    };
    tm_tx_begin(TM_MSG_FAULT, 0, sizeof v);
    tm_tx_bytes(v, sizeof v);
    tm_tx_end();
    tm_serve_quit_only();
}
