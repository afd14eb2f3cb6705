/* libfx_nest.so: an isolated module that calls back into a module of the program
 * (libfx_host.so): those calls must be nested calls served by the program. */
#include <unistd.h>
long host_pid(void);
long host_twice(long x);
long host_count(void);
long nest_outer(long x) { return host_twice(x) + 1; }
long nest_host_pid(void) { return host_pid(); }
long nest_pid(void) { return (long)getpid(); }
long host_back(long x);
/* State in the isolated module, changed by calls that come back through the program. */
static long leaves;
long nest_leaf(long x) { return x * 10 + ++leaves; }
long nest_deep(long x) { return host_back(x) + 1; }
long nest_leaves(void) { return leaves; }
long nest_count_twice(void) {
    host_count();
    return host_count();
}

/* Crashes the first time it runs (a marker file named by FX_CRASH_ONCE records it). */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
long host_back2(long x);
long nest_leaf_crashy(long x) {
    const char *m = getenv("FX_CRASH_ONCE");
    if (m && access(m, F_OK) != 0) {
        int fd = open(m, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0)
            close(fd);
        raise(SIGSEGV);
    }
    return x * 10;
}
long nest_deep2(long x) { return host_back2(x) + 1; }
