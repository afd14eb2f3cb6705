/* fx_state: module state behind a handle across helper crashes. Reads commands:
 *   new N   make a counter starting at N     add D   add D, print the value
 *   get     print the value                  other   fx_crash_on(line) (segv, abort, ...)
 * Under `restore: replay`/`checkpoint`, a crash in between must not lose the counter. */
#include "fx.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char line[256];
    struct fx_counter *c = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "new ", 4)) {
            c = fx_counter_new(atol(line + 4));
            printf("new: %s\n", c ? "ok" : "null");
        } else if (!strncmp(line, "add ", 4) && c) {
            printf("add: %ld\n", fx_counter_add(c, atol(line + 4)));
        } else if (!strcmp(line, "get") && c) {
            printf("get: %ld\n", fx_counter_get(c));
        } else {
            printf("%s: %ld\n", line, fx_crash_on(line));
        }
    }
    return 0;
}
