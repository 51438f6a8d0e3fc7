/* Framing on the UART: A5 5A | type | seq | length (u32 LE) | payload | CRC-32 (u32 LE)
 * where the CRC (IEEE 802.3, as zlib.crc32) covers type, seq, length and payload.
 * The layout of every message is documented in tinyml/sim/protocol.py. */
#include "tm_firmware.h"

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t tm_crc32(uint32_t crc, const void *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    while (n--) {
        crc ^= *b++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return crc;
}

static uint32_t tx_crc, rx_crc;

void tm_puts(const char *s)
{
    while (*s)
        tm_uart_putc((uint8_t)*s++);
}

void tm_tx_bytes(const void *p, uint32_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    tx_crc = tm_crc32(tx_crc, b, n);
    for (uint32_t i = 0; i < n; i++)
        tm_uart_putc(b[i]);
}

void tm_tx_u32(uint32_t v)
{
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    tm_tx_bytes(b, 4);
}

void tm_tx_begin(uint8_t type, uint8_t seq, uint32_t len)
{
    tm_uart_putc(0xA5u);
    tm_uart_putc(0x5Au);
    tx_crc = 0xFFFFFFFFu;
    uint8_t h[2] = { type, seq };
    tm_tx_bytes(h, 2);
    tm_tx_u32(len);
}

void tm_tx_end(void)
{
    uint32_t c = ~tx_crc;
    for (int i = 0; i < 4; i++)
        tm_uart_putc((uint8_t)(c >> (8 * i)));
}

void tm_rx_bytes(void *dst, uint32_t n)
{
    uint8_t *b = (uint8_t *)dst;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = tm_uart_getc();
        rx_crc = tm_crc32(rx_crc, &c, 1);
        if (b)
            b[i] = c;
    }
}

void tm_rx_header(tm_header_t *h)
{
    uint8_t prev = 0;
    for (;;) {
        uint8_t c = tm_uart_getc();
        if (prev == 0xA5u && c == 0x5Au)
            break;
        prev = c;
    }
    uint8_t b[6];
    rx_crc = 0xFFFFFFFFu;
    tm_rx_bytes(b, 6);
    h->type = b[0];
    h->seq = b[1];
    h->len = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24);
}

int tm_rx_end(void)
{
    uint32_t want = ~rx_crc, got = 0;
    for (int i = 0; i < 4; i++)
        got |= (uint32_t)tm_uart_getc() << (8 * i);
    return got == want ? 0 : -1;
}

void tm_send_error(uint8_t seq, uint8_t code, const char *text)
{
    uint32_t n = 0;
    while (text[n])
        n++;
    tm_tx_begin(TM_MSG_ERROR, seq, n + 1u);
    tm_tx_bytes(&code, 1);
    tm_tx_bytes(text, n);
    tm_tx_end();
}

/* After a fault only QUIT is served, so the host can still end a simulation cleanly.
 * Cold: a fault path, kept small (GCC would otherwise inline the receive functions here). */
__attribute__((cold)) void tm_serve_quit_only(void)
{
    for (;;) {
        tm_header_t h;
        tm_rx_header(&h);
        if (h.type == TM_MSG_QUIT && h.len == 2) {
            uint8_t b[2];
            tm_rx_bytes(b, 2);
            if (tm_rx_end() == 0)
                tm_exit(b[0], b[1]);
        }
    }
}
