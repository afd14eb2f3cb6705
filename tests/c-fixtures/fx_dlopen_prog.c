/* fx_dlopen_prog: not linked against libfx. Loads libfx_plugin.so with dlopen (which pulls
 * in libfx.so) and looks functions up with dlsym. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    char exe[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 1;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    *slash = 0;
    snprintf(path, sizeof path, "%s/libfx_plugin.so", exe);
    void *h = dlopen(path, RTLD_NOW);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*run)(int) = (int (*)(int))dlsym(h, "plugin_run");
    long (*ppid)(void) = (long (*)(void))dlsym(h, "plugin_pid");
    printf("plugin_run: %d\n", run(5));
    snprintf(path, sizeof path, "%s/libfx.so", exe);
    void *fx = dlopen(path, RTLD_NOW);
    int (*add)(int, int) = (int (*)(int, int))dlsym(fx, "fx_add");
    long (*pid)(void) = (long (*)(void))dlsym(fx, "fx_pid");
    printf("fx_add: %d\n", add(2, 3));
    printf("plugin_where: %s\n", ppid() != (long)getpid() ? "helper" : "program");
    printf("dlsym_where: %s\n", pid() != (long)getpid() ? "helper" : "program");
    return 0;
}
