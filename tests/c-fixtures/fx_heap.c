/* fx_heap: reads lines "smash N", "uaf N", "uninit N", "overflow N", "leak N" and calls the heap-bug
 * functions of libfx (leak N reports whether malloc(N) succeeded). */
#include "fx.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char line[256];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "smash ", 6))
            printf("%s: %ld\n", line, fx_smash(atol(line + 6)));
        else if (!strncmp(line, "uaf ", 4))
            printf("%s: %ld\n", line, fx_use_after_free(atol(line + 4)));
        else if (!strncmp(line, "uninit ", 7))
            printf("%s: %ld\n", line, fx_uninit(atol(line + 7)));
        else if (!strncmp(line, "overflow ", 9))
            printf("%s: %d\n", line, fx_overflow(atol(line + 9)));
        else if (!strncmp(line, "leak ", 5))
            printf("%s: %s\n", line, fx_leak(atol(line + 5)) ? "ok" : "null");
    }
    return 0;
}
