/* fx_envbug: reads lines and calls fx_crash_if_env on each: "envbug" crashes the library
 * and "envhang" hangs it unless FX_SAFE is set in its environment (environment-sensitive
 * bugs for Rx retries and replicas). */
#include "fx.h"
#include <stdio.h>
#include <string.h>

int main(void) {
    char line[4096];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        printf("%s: %ld\n", line, fx_crash_if_env(line));
    }
    return 0;
}
