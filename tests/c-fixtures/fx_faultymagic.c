/* libfx_faultymagic.so: fault injection into a real program's library. Preloaded in front of
 * libmagic, its magic_file crashes (SIGSEGV) on any file whose name contains "CRASH" and
 * otherwise calls the real libmagic magic_file. Isolated by configs/file-faulty.yaml, the
 * crash happens in the helper; /usr/bin/file keeps running. On a name containing "LIBFAULT"
 * it hands libmagic's magic_file a bad handle, so the crash happens inside libmagic itself
 * (a stripped library), under magic_file. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

typedef const char *(*magic_file_fn)(void *, const char *);

const char *magic_file(void *ms, const char *name) {
    static magic_file_fn real;
    if (name && strstr(name, "CRASH")) {
        volatile int *p = NULL;
        *p = 3;
    }
    if (!real)
        real = (magic_file_fn)dlsym(RTLD_NEXT, "magic_file");
    if (name && strstr(name, "LIBFAULT"))
        ms = (void *)16;
    return real(ms, name);
}
