/* Cost counter. On a real core DWT->CYCCNT counts cycles. QEMU does not model
 * the DWT (it reads 0), so the firmware falls back to what the build selected:
 * TIM2, which QEMU's STM32F4 model clocks at 1 GHz of virtual time (one count
 * per instruction under -icount shift=0), or "marks": tm_now() returns a call
 * sequence number and a QEMU TCG plugin records the instruction count each time
 * tm_now() is entered; the host maps sequence numbers to counts. */
#include "tm_firmware.h"

static uint32_t kind = TM_COUNTER_NONE;
static uint32_t mark_seq;

static int dwt_counts(void)
{
    TM_REG(0xE000EDFC) |= 1u << 24;          /* DEMCR.TRCENA */
    TM_REG(0xE0001FB0) = 0xC5ACCE55u;        /* DWT_LAR unlock (Cortex-M7) */
    TM_REG(0xE0001004) = 0;                  /* CYCCNT */
    TM_REG(0xE0001000) |= 1u;                /* CTRL.CYCCNTENA */
    uint32_t a = TM_REG(0xE0001004);
    for (volatile int i = 0; i < 8; i++) {
    }
    return TM_REG(0xE0001004) != a;
}

void tm_counter_init(void)
{
    if (dwt_counts()) {
        kind = TM_COUNTER_DWT;
        return;
    }
#if TM_COUNTER_FALLBACK == TM_COUNTER_TIM2
    TM_REG(0x40023840) |= 1u;                /* RCC_APB1ENR.TIM2EN (STM32F4) */
    TM_REG(0x40000028) = 0;                  /* PSC */
    TM_REG(0x4000002C) = 0xFFFFFFFFu;        /* ARR */
    TM_REG(0x40000014) = 1u;                 /* EGR.UG */
    TM_REG(0x40000000) = 1u;                 /* CR1.CEN */
    kind = TM_COUNTER_TIM2;
#else
    kind = TM_COUNTER_MARKS;
#endif
}

uint32_t tm_counter_kind(void) { return kind; }

/* Not inlined and kept whole: the QEMU plugin watches its first instruction. */
__attribute__((noinline, used)) uint32_t tm_now(void)
{
    if (kind == TM_COUNTER_DWT)
        return TM_REG(0xE0001004);
    if (kind == TM_COUNTER_TIM2)
        return TM_REG(0x40000024);
    return ++mark_seq;
}
