/* STM32 USART, first register layout (F1/F2/F4: SR, DR, BRR, CR1). Polled. */
#include "tm_firmware.h"

#define SR (TM_UART_BASE + 0x00u)
#define DR (TM_UART_BASE + 0x04u)
#define BRR (TM_UART_BASE + 0x08u)
#define CR1 (TM_UART_BASE + 0x0Cu)

void tm_uart_init(void)
{
    TM_REG(BRR) = TM_UART_DIVISOR;
    TM_REG(CR1) = (1u << 13) | (1u << 3) | (1u << 2);   /* UE | TE | RE, 8N1 */
}

void tm_uart_putc(uint8_t c)
{
    while (!(TM_REG(SR) & (1u << 7))) {   /* TXE */
    }
    TM_REG(DR) = c;
}

uint8_t tm_uart_getc(void)
{
    while (!(TM_REG(SR) & (1u << 5))) {   /* RXNE (reading SR then DR also clears ORE) */
    }
    return (uint8_t)TM_REG(DR);
}
