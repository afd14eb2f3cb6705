/* fx_demo: calls every libfx function with fixed arguments and prints each result, one
 * `name: value` a line, so a run under fracture can be compared with a plain run. Built twice:
 * fx_demo (calls through PLT, JUMP_SLOT) and fx_demo_noplt (-fno-plt: GLOB_DAT slots). */
#include "fx.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--env-at-load")) {
        printf("env at load: %ld\n", fx_env_at_load());
        return 0;
    }
    printf("fx_add: %d\n", fx_add(40, 2));
    printf("fx_sum8: %ld\n", fx_sum8(1, 2, 3, 4, 5, 6, 7, 8));
    printf("fx_mix: %.6f\n", fx_mix(1, 2.5, 0.25f, 3));
    printf("fx_sum10d: %.6f\n", fx_sum10d(0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5));
    struct fx_pair p = fx_pair_swap((struct fx_pair){11, 22});
    printf("fx_pair_swap: %ld %ld\n", p.a, p.b);
    struct fx_dpair d = fx_dpair_scale((struct fx_dpair){1.5, -2.25}, 4.0);
    printf("fx_dpair_scale: %.6f %.6f\n", d.x, d.y);
    printf("fx_vsum: %ld\n", fx_vsum(5, 1L, 20L, 300L, 4000L, 50000L));
    printf("fx_vavg: %.6f\n", fx_vavg(4, 1.0, 2.0, 3.5, 10.0));
    printf("fx_strlen: %ld\n", fx_strlen("fractured"));
    printf("fx_strlen_null: %ld\n", fx_strlen(NULL));
    printf("fx_greet: %s\n", fx_greet("world"));
    printf("fx_greet_null: %s\n", fx_greet(NULL));
    char out[40];
    memset(out, '.', sizeof out);
    long n = fx_fill(out, 30);
    printf("fx_fill: %ld %.40s\n", n, out);
    printf("fx_fill_null: %ld\n", fx_fill(NULL, 5));
    char blob[4096];
    for (int i = 0; i < (int)sizeof blob; i++)
        blob[i] = (char)(i * 31);
    printf("fx_checksum: %u\n", fx_checksum(blob, sizeof blob));
    printf("fx_checksum_null: %u\n", fx_checksum(NULL, 10));
    char up[] = "mixed Case text";
    fx_upcase(up, 5);
    printf("fx_upcase: %s\n", up);
    unsigned char got[64];
    memset(got, 0, sizeof got);
    long len = 48;
    int gn = fx_get_blob(got, &len);
    unsigned gs = 0;
    for (int i = 0; i < 64; i++)
        gs = gs * 31 + got[i];
    printf("fx_get_blob: %d %u\n", gn, gs);
    unsigned iota[10];
    memset(iota, 0xff, sizeof iota);
    fx_iota_u32(iota, 8);
    printf("fx_iota_u32:");
    for (int i = 0; i < 10; i++)
        printf(" %u", iota[i]);
    printf("\n");
    char fixed[16];
    memset(fixed, '.', sizeof fixed);
    int fw = fx_fill_fixed(fixed);
    printf("fx_fill_fixed: %d %.16s\n", fw, fixed);
    printf("fx_is_null: %d %d\n", fx_is_null(NULL), fx_is_null("x"));
    struct fx_counter *c = fx_counter_new(100);
    fx_counter_add(c, 5);
    fx_counter_add(c, -20);
    printf("fx_counter: %ld %ld\n", fx_counter_add(c, 1), fx_counter_get(c));
    fx_counter_free(c);
    errno = 0;
    int er = fx_set_errno(ENOENT);
    printf("fx_set_errno: %d %d\n", er, errno);
    errno = EAGAIN;
    printf("fx_add_keeps_errno: %d %d\n", fx_add(1, 1), errno);
    if (argc > 1 && !strcmp(argv[1], "--where"))
        printf("where: %s\n", fx_pid() != (long)getpid() ? "helper" : "program");
    return 0;
}
