/* fx_nest_prog: nested calls. Prints 41, the host counter seen through the isolated module
 * (2) and directly (3), and where each module ran. */
#include <stdio.h>
#include <unistd.h>
long nest_outer(long x);
long nest_host_pid(void);
long nest_pid(void);
long nest_count_twice(void);
long host_count(void);
long nest_deep(long x);
long nest_leaves(void);
int main(void) {
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
