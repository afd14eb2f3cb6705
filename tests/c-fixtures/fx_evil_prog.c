/* fx_evil_prog: calls libfx_evil.so and checks the program survives what the helper does.
 * Prints one line per step; exits 0 when the program's own memory is intact. */
#include <stdio.h>
#include <string.h>

long evil_scribble(void);
long evil_overwrite(char *buf, long n);
const char *evil_long_string(void);
long evil_add(long a, long b);

int main(void) {
    char buf[32];
    memset(buf, '.', sizeof buf);
    long r = evil_overwrite(buf, 24);
    printf("overwrite: %ld %.*s\n", r, (int)sizeof buf, buf);
    printf("add: %ld\n", evil_add(2, 3));
    printf("long_string: %zu\n", strlen(evil_long_string()));
    long s = evil_scribble();
    printf("scribble: %ld\n", s);
    printf("add_after: %ld\n", evil_add(40, 2));
    return 0;
}
