/* Host harness for a generated tinyml library: reads input sets from stdin
 * (each input's bytes back to back, one set after another) and writes each
 * set's outputs to stdout. Exit 0 at a clean EOF, 3 on a short read. */
#include <stdio.h>
#include <stdlib.h>
#include "tinyml_model.h"

static int read_exact(void *dst, size_t n)
{
    size_t got = fread(dst, 1, n, stdin);
    return got == n ? 0 : (got == 0 && feof(stdin) ? 1 : -1);
}

int main(void)
{
    unsigned i;
    if (tinyml_init() != 0) return 4;
    for (;;) {
        for (i = 0; i < TINYML_NUM_INPUTS; i++) {
            int rc = read_exact(tinyml_input(i), tinyml_input_bytes[i]);
            if (rc == 1 && i == 0) { fflush(stdout); return 0; }
            if (rc != 0) return 3;
        }
        if (tinyml_run() != 0) return 5;
        for (i = 0; i < TINYML_NUM_OUTPUTS; i++)
            fwrite(tinyml_output(i), 1, tinyml_output_bytes[i], stdout);
    }
}
