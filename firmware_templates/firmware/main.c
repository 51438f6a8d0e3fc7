/* The firmware's main loop: announce, then serve framed requests forever.
 *
 *   HELLO_REQ -> HELLO  (what this firmware is: model id, sizes, counter, board)
 *   INFER     -> RESULT (inputs stream straight into the arena, tinyml_run() is
 *                        timed between two counter reads, outputs go back as is)
 *   QUIT      -> leave the simulator (semihosting) or reset (a real board)
 * A model built with streamed inputs (TINYML_USER_READ_INPUT) reads them window by
 * window while it runs: tinyml_read_input() below asks the host for those rows
 * (READ) and receives the answer (DATA) straight into the model's window tensor,
 * so no whole input is ever held; READ_END follows the RESULT.
 * Messages are laid out in tinyml/sim/protocol.py. */
#include <stdint.h>
#include "tm_firmware.h"
#include "tinyml_model.h"
#if TM_SELFTEST
#include "tm_selftest.h"
#endif

#define TM_PROTOCOL_VERSION 2u

static uint32_t calib0, calib1, inferences;

#if TM_PER_LAYER
static uint32_t layer_ticks[2u * TINYML_NUM_LAYERS];
void tm_layer_mark(unsigned slot);
void tm_layer_mark(unsigned slot) { layer_ticks[slot] = tm_now(); }
#endif

static uint32_t total_bytes(const uint32_t *sizes, unsigned n)
{
    uint32_t t = 0;
    for (unsigned i = 0; i < n; i++)
        t += sizes[i];
    return t;
}

/* Inputs the library does not hold (tinyml_input(i) is NULL): read on demand. */
static uint8_t streamed_mask(void)
{
    uint8_t mask = 0;
    for (unsigned i = 0; i < TINYML_NUM_INPUTS && i < 8u; i++)
        if (!tinyml_input(i))
            mask |= (uint8_t)(1u << i);
    return mask;
}

static uint32_t upfront_bytes(void)
{
    uint32_t t = 0;
    for (unsigned i = 0; i < TINYML_NUM_INPUTS; i++)
        if (tinyml_input(i))
            t += tinyml_input_bytes[i];
    return t;
}

#ifdef TINYML_USER_READ_INPUT
#if TINYML_NUM_INPUTS > 8
#error "streamed inputs: the HELLO mask covers 8 inputs"
#endif
static uint8_t read_seq;               /* the INFER the reads belong to */
static uint32_t read_end, reads;       /* counter at the end of the last read; reads this inference */
static uint8_t read_status;            /* TM_READ_* bits */
static const uint8_t *local_inputs;    /* self-test: the inputs are in flash, not on the link */

static void fetch(unsigned index, uint32_t rows, uint32_t offset, uint32_t length, uint32_t stride,
                  uint32_t start, uint8_t *dst)
{
    const uint8_t head[4] = { (uint8_t)index, 0, (uint8_t)rows, (uint8_t)(rows >> 8) };
    tm_tx_begin(TM_MSG_READ, read_seq, 24u);
    tm_tx_bytes(head, sizeof head);
    tm_tx_u32(offset);
    tm_tx_u32(length);
    tm_tx_u32(stride);
    tm_tx_u32(start);
    tm_tx_u32(read_end);
    tm_tx_end();
    for (;;) {
        tm_header_t h;
        tm_rx_header(&h);
        if (h.type == TM_MSG_DATA) {
            int fits = h.len == rows * length;
            tm_rx_bytes(fits ? dst : 0, h.len);
            if (!fits)
                read_status |= TM_READ_BAD_LENGTH;
            if (tm_rx_end() != 0)
                read_status |= TM_READ_BAD_CRC;
            return;
        }
        tm_rx_bytes(0, h.len);
        if (tm_rx_end() == 0 && h.type == TM_MSG_QUIT)
            tm_exit(0, 1);  /* the host gave up on this inference */
        read_status |= TM_READ_SKIPPED;
    }
}

/* The library's window reader (tinyml_model.h): rows [row, row + rows) x columns
 * [col, col + cols) of input `index`, densely into dst. The counter reads around
 * the transfer let the host leave link time out of the model's cost. */
void tinyml_read_input(unsigned index, uint32_t row, uint32_t col, uint32_t rows, uint32_t cols, void *dst)
{
    static const uint32_t row_bytes[TINYML_NUM_INPUTS] = TM_INPUT_ROW_BYTES;
    static const uint32_t pixel_bytes[TINYML_NUM_INPUTS] = TM_INPUT_PIXEL_BYTES;
    if (index >= TINYML_NUM_INPUTS)
        return;
    const uint32_t stride = row_bytes[index], length = cols * pixel_bytes[index];
    const uint32_t offset = row * stride + col * pixel_bytes[index];
    if (local_inputs) {
        const uint8_t *src = local_inputs;
        for (unsigned i = 0; i < index; i++)
            src += tinyml_input_bytes[i];
        for (uint32_t r = 0; r < rows; r++)
            for (uint32_t k = 0; k < length; k++)
                ((uint8_t *)dst)[r * length + k] = src[offset + r * stride + k];
        return;
    }
    const uint32_t start = tm_now();
    fetch(index, rows, offset, length, stride, start, (uint8_t *)dst);
    reads++;
    read_end = tm_now();
}

static void begin_reads(uint8_t seq)
{
    read_seq = seq;
    read_end = reads = 0;
    read_status = 0;
}

static void end_reads(uint8_t seq)
{
    tm_tx_begin(TM_MSG_READ_END, seq, 9u);
    tm_tx_u32(read_end);
    tm_tx_u32(reads);
    tm_tx_bytes(&read_status, 1);
    tm_tx_end();
}
#endif

static void send_hello(uint8_t seq)
{
    static const char name[] = TM_BOARD_NAME;
    const uint32_t name_len = sizeof name - 1u;
    const uint8_t head[8] = {
        TM_PROTOCOL_VERSION, (uint8_t)tm_counter_kind(),
        (uint8_t)((TM_PER_LAYER ? 1u : 0u) | (TM_SELFTEST ? 2u : 0u)),
        TINYML_NUM_INPUTS, TINYML_NUM_OUTPUTS, streamed_mask(),
        (uint8_t)(TINYML_NUM_LAYERS & 0xFFu), (uint8_t)(TINYML_NUM_LAYERS >> 8),
    };
    tm_tx_begin(TM_MSG_HELLO, seq, 8u + 4u * 7u + 4u * (TINYML_NUM_INPUTS + TINYML_NUM_OUTPUTS) + 1u + name_len);
    tm_tx_bytes(head, sizeof head);
    tm_tx_u32(TM_MODEL_ID);
    tm_tx_u32(TINYML_ARENA_BYTES);
    tm_tx_u32(tm_stack_size());
    tm_tx_u32(tm_stack_bottom());
    tm_tx_u32(calib0);
    tm_tx_u32(calib1);
    tm_tx_u32(TM_CLOCK_HZ);
    for (unsigned i = 0; i < TINYML_NUM_INPUTS; i++)
        tm_tx_u32(tinyml_input_bytes[i]);
    for (unsigned i = 0; i < TINYML_NUM_OUTPUTS; i++)
        tm_tx_u32(tinyml_output_bytes[i]);
    uint8_t n = (uint8_t)name_len;
    tm_tx_bytes(&n, 1);
    tm_tx_bytes(name, name_len);
    tm_tx_end();
}

/* Inputs are already in the arena: time tinyml_run() alone. */
static void run_and_report(uint8_t seq)
{
#if TM_PER_LAYER
    for (unsigned i = 0; i < 2u * TINYML_NUM_LAYERS; i++)
        layer_ticks[i] = 0;
#endif
    /* the stack figure is what tinyml_run() itself uses (the harness's own
       frames are not part of an inference) */
    uint32_t sp = tm_stack_repaint();
    uint32_t t0 = tm_now();
    int32_t rc = (int32_t)tinyml_run();
    uint32_t t1 = tm_now();
    uint32_t stack = tm_stack_depth_below(sp);
    inferences++;
    uint32_t out_total = total_bytes(tinyml_output_bytes, TINYML_NUM_OUTPUTS);
    uint32_t per_layer = TM_PER_LAYER ? 8u * TINYML_NUM_LAYERS : 0u;
    tm_tx_begin(TM_MSG_RESULT, seq, 20u + per_layer + out_total);
    tm_tx_u32(inferences);
    tm_tx_u32((uint32_t)rc);
    tm_tx_u32(t0);
    tm_tx_u32(t1);
    tm_tx_u32(stack);
#if TM_PER_LAYER
    for (unsigned i = 0; i < 2u * TINYML_NUM_LAYERS; i++)
        tm_tx_u32(layer_ticks[i]);
#endif
    for (unsigned i = 0; i < TINYML_NUM_OUTPUTS; i++)
        tm_tx_bytes(tinyml_output(i), tinyml_output_bytes[i]);
    tm_tx_end();
}

static void handle(const tm_header_t *h)
{
    if (h->type == TM_MSG_INFER) {
        if (h->len != upfront_bytes()) {
            tm_send_error(h->seq, TM_ERR_LENGTH, "INFER payload is not the model's input size");
            return;
        }
        for (unsigned i = 0; i < TINYML_NUM_INPUTS; i++)
            if (tinyml_input(i))
                tm_rx_bytes(tinyml_input(i), tinyml_input_bytes[i]);
        if (tm_rx_end() != 0) {
            tm_send_error(h->seq, TM_ERR_CRC, "INFER frame CRC mismatch");
            return;
        }
#ifdef TINYML_USER_READ_INPUT
        begin_reads(h->seq);
        run_and_report(h->seq);
        end_reads(h->seq);
#else
        run_and_report(h->seq);
#endif
    } else if (h->type == TM_MSG_HELLO_REQ && h->len == 0) {
        if (tm_rx_end() == 0)
            send_hello(h->seq);
        else
            tm_send_error(h->seq, TM_ERR_CRC, "HELLO_REQ frame CRC mismatch");
    } else if (h->type == TM_MSG_QUIT && h->len == 2) {
        uint8_t b[2];
        tm_rx_bytes(b, 2);
        if (tm_rx_end() == 0)
            tm_exit(b[0], b[1]);
        tm_send_error(h->seq, TM_ERR_CRC, "QUIT frame CRC mismatch");
    } else if (h->type == TM_MSG_HELLO_REQ || h->type == TM_MSG_QUIT) {
        tm_send_error(h->seq, TM_ERR_LENGTH, "bad payload length");
    } else {
        tm_send_error(h->seq, TM_ERR_TYPE, "unknown message type");
    }
}

#if TM_SELFTEST
static void put_hex(uint32_t v)
{
    char s[9];
    for (int i = 7; i >= 0; i--, v >>= 4)
        s[i] = "0123456789abcdef"[v & 15u];
    s[8] = 0;
    tm_puts(s);
}

/* Runs one known input and checks the outputs' CRC: a line a terminal (or a
 * Renode test) can read without speaking the frame protocol. */
static void selftest(void)
{
    const uint8_t *src = tm_selftest_input;
    for (unsigned i = 0; i < TINYML_NUM_INPUTS; i++) {
        uint8_t *dst = (uint8_t *)tinyml_input(i);
        for (uint32_t k = 0; k < tinyml_input_bytes[i]; k++, src++)
            if (dst)
                dst[k] = *src;
    }
#ifdef TINYML_USER_READ_INPUT
    local_inputs = tm_selftest_input;
#endif
    int rc = tinyml_run();
#ifdef TINYML_USER_READ_INPUT
    local_inputs = 0;
#endif
    uint32_t crc = 0xFFFFFFFFu;
    for (unsigned i = 0; i < TINYML_NUM_OUTPUTS; i++)
        crc = tm_crc32(crc, tinyml_output(i), tinyml_output_bytes[i]);
    crc = ~crc;
    tinyml_reset();  /* a stateful model's first INFER starts from the initial state */
    tm_puts(rc == 0 && crc == TM_SELFTEST_CRC ? "tinyml selftest PASS crc=" : "tinyml selftest FAIL crc=");
    put_hex(crc);
    tm_puts("\r\n");
}
#endif

int main(void)
{
    tm_board_init();
    tm_uart_init();
    tm_counter_init();
    tinyml_init();
    calib0 = tm_now();
    calib1 = tm_now();
    tm_puts("\r\ntinyml " TM_BOARD_NAME " ready\r\n");
#if TM_SELFTEST
    selftest();
#endif
    send_hello(0);
    for (;;) {
        tm_header_t h;
        tm_rx_header(&h);
        handle(&h);
    }
}
