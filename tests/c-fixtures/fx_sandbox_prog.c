/* fx_sandbox_prog DIR [crash|crash-first]: calls libfx_sandbox.so's probes and prints, one per
 * line, what each returned: "ok" or the errno name. Under a sandbox that allows reading DIR/ro
 * and writing DIR/rw, every probe of something else must fail, and the program goes on to
 * print "done" (a probe that worked would have killed it). With `crash`, the module's helper
 * crashes once after the probes, and they run again in the restarted helper; with
 * `crash-first`, they run only in the restarted one. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sb_open(const char *path, int write);
int sb_socket(int family);
int sb_abstract(const char *name);
int sb_exec(const char *path);
int sb_kill(int pid, int sig);
int sb_ptrace(int pid);
int sb_proc_mem(int pid);
int sb_vm_read(int pid, long addr);
int sb_pid(void);
int sb_ppid(void);
int sb_count(void);
int sb_crash(void);
int sbpeer_pid(void);

static const char *name(int r) {
    static char buf[32];
    switch (-r) {
    case 0: return "ok";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case ECONNREFUSED: return "ECONNREFUSED";
    default: snprintf(buf, sizeof buf, "errno %d", -r); return buf;
    }
}

static long secret = 0x5ec2e7;

static void probes(const char *dir, int me, int peer, const char *abstract) {
    char p[4096];
    snprintf(p, sizeof p, "%s/ro/data", dir);
    printf("read allowed: %s\n", name(sb_open(p, 0)));
    snprintf(p, sizeof p, "%s/outside/secret", dir);
    printf("read outside: %s\n", name(sb_open(p, 0)));
    printf("read /etc/passwd: %s\n", name(sb_open("/etc/passwd", 0)));
    snprintf(p, sizeof p, "%s/ro/new", dir);
    printf("write read-only dir: %s\n", name(sb_open(p, 1)));
    snprintf(p, sizeof p, "%s/rw/new", dir);
    printf("write allowed: %s\n", name(sb_open(p, 1)));
    printf("socket inet: %s\n", name(sb_socket(AF_INET)));
    printf("socket inet6: %s\n", name(sb_socket(AF_INET6)));
    printf("socket unix: %s\n", name(sb_socket(AF_UNIX)));
    printf("abstract socket of the program: %s\n", name(sb_abstract(abstract)));
    printf("exec: %s\n", name(sb_exec("/bin/true")));
    printf("kill program 0: %s\n", name(sb_kill(me, 0)));
    printf("kill program: %s\n", name(sb_kill(me, SIGKILL)));
    printf("ptrace program: %s\n", name(sb_ptrace(me)));
    printf("mem of program: %s\n", name(sb_proc_mem(me)));
    printf("vm_read program: %s\n", name(sb_vm_read(me, (long)&secret)));
    printf("kill peer: %s\n", name(sb_kill(peer, SIGKILL)));
    printf("ptrace peer: %s\n", name(sb_ptrace(peer)));
    printf("mem of peer: %s\n", name(sb_proc_mem(peer)));
    printf("vm_read self: %s\n", name(sb_vm_read(sb_pid(), (long)&secret)));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: fx_sandbox_prog DIR [crash]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int me = getpid();
    /* An abstract socket the program listens on: a scoped helper cannot reach it. */
    char abstract[64];
    snprintf(abstract, sizeof abstract, "fx-sandbox-%d", me);
    int ls = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path + 1, abstract, strlen(abstract));
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abstract))) < 0 || listen(ls, 4) < 0) {
        perror("abstract socket");
        return 2;
    }
    int peer = sbpeer_pid();
    int helper = sb_pid();
    printf("in a helper: %s\n", helper != me && peer != me && helper != peer ? "yes" : "no");
    printf("count: %d\n", sb_count());
    int crash_first = argc > 2 && strcmp(argv[2], "crash-first") == 0;
    if (!crash_first)
        probes(argv[1], me, peer, abstract);
    if (argc > 2 && (crash_first || strcmp(argv[2], "crash") == 0)) {
        int before = sb_ppid();
        sb_count();
        sb_crash();
        int after = sb_ppid();
        printf("restarted: %s\n", sb_pid() != helper ? "yes" : "no");
        printf("resumed from checkpoint: %s\n", after != before ? "yes" : "no");
        printf("count after restart: %d\n", sb_count());
        probes(argv[1], me, peer, abstract);
    }
    printf("secret: %lx\n", secret);
    printf("done\n");
    return 0;
}
