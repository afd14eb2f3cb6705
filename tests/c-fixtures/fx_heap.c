/* fx_heap: reads lines "smash N" / "uaf N" and calls the heap-bug functions of libfx. */
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
    }
    return 0;
}
