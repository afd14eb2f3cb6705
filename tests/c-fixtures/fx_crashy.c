/* fx_crashy: reads lines and calls fx_crash_on on each; "segv", "abort", "exit", "hang",
 * "fpe" and "stack" (a stack overflow) trigger the library's bugs. Line-buffered so output before a crash is visible. */
#include "fx.h"
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        long r = fx_crash_on(line);
        printf("%s: %ld\n", line, r);
    }
    return 0;
}
