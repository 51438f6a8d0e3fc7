/* Internal interfaces of the tinyml firmware (startup, drivers, protocol).
 * The wire protocol is documented in tinyml/sim/protocol.py (host side). */
#ifndef TM_FIRMWARE_H
#define TM_FIRMWARE_H
#include <stdint.h>
#include "tm_config.h"

#define TM_REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* startup.c */
uint32_t tm_stack_repaint(void);       /* paint the free stack again; returns the caller's SP */
uint32_t tm_stack_depth_below(uint32_t sp); /* stack used below `sp` since the last repaint */
uint32_t tm_stack_size(void);         /* bytes between the guard and the top of RAM */
uint32_t tm_stack_bottom(void);       /* lowest usable stack address */
void tm_exit(uint32_t mode, uint32_t code) __attribute__((noreturn));

/* tm_board.c: clock gates and pins listed in the board file */
void tm_board_init(void);

/* uart_*.c: one driver per UART family, polled */
void tm_uart_init(void);
void tm_uart_putc(uint8_t c);
uint8_t tm_uart_getc(void);           /* blocks until a byte arrives */

/* counter.c: a free-running 32-bit counter (see TM_COUNTER_* kinds) */
#define TM_COUNTER_NONE 0u
#define TM_COUNTER_DWT 1u
#define TM_COUNTER_TIM2 2u   /* usable in #if: tm_config.h's TM_COUNTER_FALLBACK */
#define TM_COUNTER_MARKS 3u
void tm_counter_init(void);
uint32_t tm_counter_kind(void);
uint32_t tm_now(void);

/* protocol.c: framing (sync, type, seq, length, payload, CRC-32) */
enum {
    TM_MSG_HELLO_REQ = 0x01, TM_MSG_INFER = 0x02, TM_MSG_QUIT = 0x03, TM_MSG_DATA = 0x04,
    TM_MSG_HELLO = 0x81, TM_MSG_RESULT = 0x82, TM_MSG_READ = 0x83, TM_MSG_READ_END = 0x84,
    TM_MSG_ERROR = 0xE0, TM_MSG_FAULT = 0xEF
};
/* READ_END status bits (streamed inputs) */
enum { TM_READ_BAD_CRC = 1, TM_READ_BAD_LENGTH = 2, TM_READ_SKIPPED = 4 };
enum { TM_ERR_LENGTH = 1, TM_ERR_CRC = 2, TM_ERR_TYPE = 3 };
typedef struct { uint8_t type; uint8_t seq; uint32_t len; } tm_header_t;
void tm_puts(const char *s);
void tm_tx_begin(uint8_t type, uint8_t seq, uint32_t len);
void tm_tx_bytes(const void *p, uint32_t n);
void tm_tx_u32(uint32_t v);
void tm_tx_end(void);
void tm_rx_header(tm_header_t *h);    /* waits for the next sync + header */
void tm_rx_bytes(void *dst, uint32_t n);
int tm_rx_end(void);                  /* reads the CRC; 0 when it matches */
void tm_send_error(uint8_t seq, uint8_t code, const char *text);
uint32_t tm_crc32(uint32_t crc, const void *p, uint32_t n);  /* crc = ~0u to start, ~result at the end */

/* main.c */
void tm_serve_quit_only(void) __attribute__((noreturn));
#endif
