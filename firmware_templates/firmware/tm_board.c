/* Power-up of what the UART needs, from the board file: clock-gate registers
 * ORed in order, then the TX/RX pins switched to their alternate function
 * (STM32 GPIO layout: MODER, OSPEEDR, AFRL/AFRH). */
#include "tm_firmware.h"

#if TM_ENABLE_COUNT
static const uint32_t enable_writes[TM_ENABLE_COUNT][2] = TM_ENABLE_WRITES;
#endif
#if TM_PIN_COUNT
static const uint32_t pins[TM_PIN_COUNT][3] = TM_PINS;   /* GPIO port base, pin, alternate function */
#endif

void tm_board_init(void)
{
#if TM_ENABLE_COUNT
    for (unsigned i = 0; i < TM_ENABLE_COUNT; i++) {
        TM_REG(enable_writes[i][0]) |= enable_writes[i][1];
        (void)TM_REG(enable_writes[i][0]);   /* read back: the clock is on before the next access */
    }
#endif
#if TM_PIN_COUNT
    for (unsigned i = 0; i < TM_PIN_COUNT; i++) {
        uint32_t port = pins[i][0], pin = pins[i][1], af = pins[i][2];
        uint32_t afr = port + 0x20u + 4u * (pin / 8u), shift = 4u * (pin % 8u);
        TM_REG(afr) = (TM_REG(afr) & ~(0xFu << shift)) | (af << shift);
        TM_REG(port + 0x08u) |= 2u << (2u * pin);                                  /* OSPEEDR: high */
        TM_REG(port + 0x00u) = (TM_REG(port) & ~(3u << (2u * pin))) | (2u << (2u * pin));  /* MODER: AF */
    }
#endif
}
