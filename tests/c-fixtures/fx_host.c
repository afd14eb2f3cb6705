/* libfx_host.so: a module that stays in the program; its state must live only there. */
#include <unistd.h>
static long counter;
long host_pid(void) { return (long)getpid(); }
long host_twice(long x) { return 2 * x; }
long host_count(void) { return ++counter; }
