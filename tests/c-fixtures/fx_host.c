/* libfx_host.so: a module that stays in the program; its state must live only there. */
#include <unistd.h>
static long counter;
long host_pid(void) { return (long)getpid(); }
long host_twice(long x) { return 2 * x; }
long host_count(void) { return ++counter; }

/* A module -> program -> same module chain: nest_deep (isolated) calls host_back (in the
 * program), which calls nest_leaf (isolated again, in the same process). */
long nest_leaf(long x);
long host_back(long x) { return nest_leaf(x) + 1000; }

/* The same chain whose innermost call crashes the helper once (module -> program -> same
 * module, and the helper dies in the inner call): the outer call must recover. */
long nest_leaf_crashy(long x);
long host_back2(long x) { return nest_leaf_crashy(x) + 1000; }
