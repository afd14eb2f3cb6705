/* One protocol plugin; built 14 times with -DPLUGIN=NN (00..13) as libchat_pNN.so, exporting
 * pNN_parse(text, out, n): the parsed message in out, its length (<= 0: dropped). */
#include "chat.h"
#include <stdlib.h>
#include <string.h>

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define PARSE CAT(CAT(p, PLUGIN_NAME), _parse)

#if PLUGIN == 5
void *volatile chat_p05_last;
#endif
#if PLUGIN == 8
volatile int chat_p08_odd;
#endif

int PARSE(const char *text, char *out, long n) {
    long len = (long)strlen(text);
    if (len >= n)
        len = n - 1;
#if PLUGIN == 11
    if (strstr(text, "\001BUZZ")) {
        /* the rare-input bug: a buzz message dereferences a missing contact */
        volatile int *contact = NULL;
        *contact = 1;
    }
#endif
#if PLUGIN == 5
    /* the leak: a per-message buffer nobody frees */
    char *copy = malloc(256);
    if (copy)
        memcpy(copy, text, len < 255 ? (size_t)len + 1 : 255);
    chat_p05_last = copy;
#endif
#if PLUGIN == 8
    /* the latent bug: a flag read from memory nobody initialised (valgrind: "Conditional
     * jump or move depends on uninitialised value(s)"); nothing the plugin prints depends
     * on it, so only a checker sees it */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    volatile int *flags = malloc(sizeof *flags);
    if (flags) {
        if (*flags == 0x5a5a5a5a)
            chat_p08_odd++;
        free((void *)flags);
    }
#pragma GCC diagnostic pop
#endif
    for (long i = 0; i < len; i++) {
#if PLUGIN == 3
        out[i] = (char)util_escape((unsigned char)text[i]);
#else
        out[i] = text[i];
#endif
    }
    out[len] = 0;
    return (int)len;
}
