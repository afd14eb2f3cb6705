/* fx_nest_prog: nested calls. Prints 41, the host counter seen through the isolated module
 * (2) and directly (3), and where each module ran. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
long nest_outer(long x);
long nest_host_pid(void);
long nest_pid(void);
long nest_count_twice(void);
long host_count(void);
long nest_deep(long x);
long nest_leaves(void);
long nest_deep2(long x);
int main(int argc, char **argv) {
    if (argc > 1) {
        /* nest_deep2 -> host_back2 -> nest_leaf_crashy, which crashes the helper once */
        printf("deep2: %ld\n", nest_deep2(argc > 2 ? atol(argv[2]) : 7));
        printf("deep2_again: %ld\n", nest_deep2(8));
        return 0;
    }
    printf("outer: %ld\n", nest_outer(20));
    printf("count: %ld\n", nest_count_twice());
    printf("host_count: %ld\n", host_count());
    printf("nest_in_helper: %s\n", nest_pid() != (long)getpid() ? "yes" : "no");
    printf("host_in_program: %s\n", nest_host_pid() == (long)getpid() ? "yes" : "no");
    printf("deep: %ld\n", nest_deep(4));
    printf("deep: %ld\n", nest_deep(5));
    printf("leaves: %ld\n", nest_leaves());
    return 0;
}
