/* Arm CMSDK APB UART (MPS2 boards): DATA, STATE, CTRL, BAUDDIV. Polled. */
#include "tm_firmware.h"

#define DATA (TM_UART_BASE + 0x00u)
#define STATE (TM_UART_BASE + 0x04u)
#define CTRL (TM_UART_BASE + 0x08u)
#define BAUDDIV (TM_UART_BASE + 0x10u)

void tm_uart_init(void)
{
    TM_REG(BAUDDIV) = TM_UART_DIVISOR;
    TM_REG(CTRL) = 3u;                       /* TX_EN | RX_EN */
}

void tm_uart_putc(uint8_t c)
{
    while (TM_REG(STATE) & 1u) {             /* TX buffer full */
    }
    TM_REG(DATA) = c;
}

uint8_t tm_uart_getc(void)
{
    while (!(TM_REG(STATE) & 2u)) {          /* RX buffer full */
    }
    return (uint8_t)TM_REG(DATA);
}
