/* fx_chat [--gen N [SEED]]: the event loop. Reads "NN text" lines (NN: plugin number), has
 * plugin NN parse the text and the UI format it, prints the line; a message a plugin drops
 * (parse result <= 0) is reported as dropped. --gen prints a workload of N events, one of
 * them (at 70%) the rare input that crashes plugin p11. */
#include "chat.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*parse_fn)(const char *, char *, long);

static int gen(long n, unsigned seed) {
    static const char *words[] = {"hello", "how", "are", "you", "<b>bold</b>", "ok", "lunch?",
                                  "see", "you", "later", "ping", "pong"};
    for (long i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        int p = (int)((seed >> 16) % CHAT_PLUGINS);
        if (i == n * 7 / 10) {
            printf("11 \001BUZZ from a friend\n");
            continue;
        }
        printf("%02d", p);
        int k = 1 + (int)((seed >> 8) % 6);
        for (int w = 0; w < k; w++) {
            seed = seed * 1103515245u + 12345u;
            printf(" %s", words[(seed >> 16) % 12]);
        }
        printf("\n");
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "--gen"))
        return gen(atol(argv[2]), argc > 3 ? (unsigned)atol(argv[3]) : 1u);
    char dir[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (k <= 0)
        return 2;
    dir[k] = 0;
    *strrchr(dir, '/') = 0;
    parse_fn parse[CHAT_PLUGINS];
    for (int i = 0; i < CHAT_PLUGINS; i++) {
        char path[PATH_MAX + 32], sym[32];
        snprintf(path, sizeof path, "%s/libchat_p%02d.so", dir, i);
        snprintf(sym, sizeof sym, "p%02d_parse", i);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h || !(parse[i] = (parse_fn)dlsym(h, sym))) {
            fprintf(stderr, "fx_chat: cannot load plugin %d: %s\n", i, dlerror());
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("fx_chat with %s\n", util_version());
    char line[4096], text[4096], out[4200];
    long events = 0, dropped = 0;
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        int p = atoi(line);
        if (p < 0 || p >= CHAT_PLUGINS || strlen(line) < 3)
            continue;
        events++;
        char name[8];
        snprintf(name, sizeof name, "p%02d", p);
        if (parse[p](line + 3, text, sizeof text) <= 0) {
            dropped++;
            printf("[%s: message dropped]\n", name);
            continue;
        }
        ui_format(name, text, out, sizeof out);
        puts(out);
    }
    printf("events: %ld, dropped: %ld, ui lines: %ld\n", events, dropped, ui_lines());
    return 0;
}
