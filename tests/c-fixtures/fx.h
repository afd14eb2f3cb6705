/* libfx.so: one function per ABI and spec case fracture must carry (see configs/fx.yaml). */
#ifndef FX_H
#define FX_H
#include <stddef.h>

struct fx_pair { long a; long b; };
struct fx_dpair { double x; double y; };
struct fx_counter;

int fx_add(int a, int b);
int fx_add3(int a, int b, int c);
long fx_sum8(long a, long b, long c, long d, long e, long f, long g, long h);
double fx_mix(int a, double x, float y, long b);
double fx_sum10d(double a0, double a1, double a2, double a3, double a4, double a5, double a6,
                 double a7, double a8, double a9);
struct fx_pair fx_pair_swap(struct fx_pair p);
struct fx_dpair fx_dpair_scale(struct fx_dpair p, double k);
long fx_vsum(int n, ...);
double fx_vavg(int n, ...);
long fx_strlen(const char *s);
const char *fx_greet(const char *name);
long fx_fill(char *out, long n);
unsigned fx_checksum(const void *buf, long n);
void fx_upcase(char *buf, long n);
int fx_get_blob(void *buf, const long *len);
void fx_iota_u32(unsigned *out, long count);
int fx_fill_fixed(char *out16);
int fx_is_null(const void *p);
struct fx_counter *fx_counter_new(long start);
long fx_counter_add(struct fx_counter *c, long d);
long fx_counter_get(const struct fx_counter *c);
void fx_counter_free(struct fx_counter *c);
long fx_pid(void);
long fx_env_at_load(void);
int fx_set_errno(int e);
long fx_sleep_us(long us);
long fx_segv_at(long i, long at);
long fx_crash_on(const char *s);
long fx_crash_if_env(const char *s);
void *fx_leak(long n);
int fx_overflow(long n);
long fx_smash(long n);
long fx_use_after_free(long n);
long fx_uninit(long n);
#endif
long fx_need(char *buf, long *len);
