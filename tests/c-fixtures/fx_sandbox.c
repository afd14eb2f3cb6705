/* libfx_sandbox.so: a module that tries, from its helper, everything a sandbox
 * (SPEC.md, "Sandbox") must refuse. Each probe returns 0 when the operation worked and
 * -errno when it failed, so the program prints what the module saw.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int res(long r) { return r < 0 ? -errno : 0; }

/* Opens `path` for reading (write == 0) or creates it for writing (write != 0). */
int sb_open(const char *path, int write) {
    int fd = write ? open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : open(path, O_RDONLY);
    if (fd < 0)
        return -errno;
    if (write && dprintf(fd, "written by the helper\n") < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

int sb_socket(int family) {
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* Connects to the abstract AF_UNIX socket `name` (without the leading NUL). */
int sb_abstract(const char *name) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    if (n > sizeof a.sun_path - 1)
        n = sizeof a.sun_path - 1;
    memcpy(a.sun_path + 1, name, n);
    int r = res(connect(fd, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)));
    close(fd);
    return r;
}

/* execve of `path` from a child, so the helper itself survives: the child's exit status
 * carries the errno (or 0 when the exec worked and the program ran). */
int sb_exec(const char *path) {
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        char *argv[] = {(char *)path, NULL};
        char *envp[] = {NULL};
        execve(path, argv, envp);
        _exit(errno & 0xff);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) < 0)
        return -errno;
    return WIFEXITED(st) ? -WEXITSTATUS(st) : -1000;
}

int sb_kill(int pid, int sig) { return res(kill(pid, sig)); }

int sb_ptrace(int pid) {
    if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) < 0)
        return -errno;
    waitpid(pid, NULL, __WALL);
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    return 0;
}

int sb_proc_mem(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* Reads 8 bytes at `addr` of process `pid`. */
int sb_vm_read(int pid, long addr) {
    long v = 0;
    struct iovec local = {&v, sizeof v}, remote = {(void *)addr, sizeof v};
    return res(process_vm_readv(pid, &local, 1, &remote, 1, 0));
}

int sb_pid(void) { return getpid(); }
int sb_ppid(void) { return getppid(); }

static int counter;
/* Module state, so a restart has something to restore. */
int sb_count(void) { return ++counter; }

/* Crashes the helper, unless it runs in a retry environment that sets FX_SANDBOX_CALM. */
int sb_crash(void) {
    if (!getenv("FX_SANDBOX_CALM"))
        raise(SIGSEGV);
    return 0;
}

/* A function of another module, isolated in another helper without a sandbox. */
int sbpeer_pid(void) { return getpid(); }
