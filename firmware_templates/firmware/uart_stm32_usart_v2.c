/* STM32 USART/LPUART, second register layout (F0/F3/F7/H7/L4/G4: CR1, BRR,
 * ISR, ICR, RDR, TDR). The LPUART differs only in its BRR scale, which the
 * board loader folds into TM_UART_DIVISOR. Polled. */
#include "tm_firmware.h"

#define CR1 (TM_UART_BASE + 0x00u)
#define BRR (TM_UART_BASE + 0x0Cu)
#define ISR (TM_UART_BASE + 0x1Cu)
#define ICR (TM_UART_BASE + 0x20u)
#define RDR (TM_UART_BASE + 0x24u)
#define TDR (TM_UART_BASE + 0x28u)

void tm_uart_init(void)
{
    TM_REG(CR1) = 0;
    TM_REG(BRR) = TM_UART_DIVISOR;
    TM_REG(CR1) = (1u << 3) | (1u << 2) | 1u;   /* TE | RE | UE, 8N1 */
}

void tm_uart_putc(uint8_t c)
{
    while (!(TM_REG(ISR) & (1u << 7))) {   /* TXE */
    }
    TM_REG(TDR) = c;
}

uint8_t tm_uart_getc(void)
{
    for (;;) {
        uint32_t isr = TM_REG(ISR);
        if (isr & (1u << 5))                /* RXNE */
            return (uint8_t)TM_REG(RDR);
        if (isr & (1u << 3))                /* ORE would stop reception: clear it */
            TM_REG(ICR) = 1u << 3;
    }
}
