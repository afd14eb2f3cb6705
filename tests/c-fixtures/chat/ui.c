#include "chat.h"
#include <stdio.h>

static long lines;

int ui_format(const char *proto, const char *text, char *out, long n) {
    lines++;
    return snprintf(out, (size_t)n, "<%s> %s", proto, text);
}

long ui_lines(void) { return lines; }
