/* fx_reload_prog: not linked against libfx. Holds libfx.so open, then opens, closes and opens
 * again libfx_plugin.so (which calls fx_pid through its own GOT). The second load usually lands
 * at the address the first one left: its fresh GOT must be routed again. Prints where each
 * load's call ran and whether the two loads shared an address. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void *load(const char *path, long (**ppid)(void)) {
    void *h = dlopen(path, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return NULL;
    }
    *ppid = (long (*)(void))dlsym(h, "plugin_pid");
    return *ppid ? h : NULL;
}

static void *base_of(void *addr) {
    Dl_info info;
    return dladdr(addr, &info) ? info.dli_fbase : NULL;
}

int main(void) {
    char exe[PATH_MAX], fx[PATH_MAX + 32], plugin[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 1;
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(fx, sizeof fx, "%s/libfx.so", exe);
    snprintf(plugin, sizeof plugin, "%s/libfx_plugin.so", exe);
    if (!dlopen(fx, RTLD_NOW)) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    long (*ppid)(void);
    void *h = load(plugin, &ppid);
    if (!h)
        return 1;
    void *first = base_of((void *)ppid);
    printf("first_where: %s\n", ppid() != (long)getpid() ? "helper" : "program");
    if (dlclose(h) != 0) {
        fprintf(stderr, "dlclose: %s\n", dlerror());
        return 1;
    }
    h = load(plugin, &ppid);
    if (!h)
        return 1;
    printf("same_base: %s\n", base_of((void *)ppid) == first ? "yes" : "no");
    printf("second_where: %s\n", ppid() != (long)getpid() ? "helper" : "program");
    return 0;
}
