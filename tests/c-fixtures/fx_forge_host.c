/* libfx_forge_host.so: functions that stay in the program, which fx_forge's helpers call
 * back with forged nested calls. */
#include <string.h>
long host_fill(char *buf, long n) {
    memset(buf, 'H', (size_t)n);
    return n;
}
long host_slen(const char *s) { return s ? (long)strlen(s) : -1; }
