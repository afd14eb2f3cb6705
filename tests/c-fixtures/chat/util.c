#include "chat.h"
#include <ctype.h>

int util_escape(int c) {
    if (c == '<' || c == '>')
        return '_';
    return isprint(c) ? c : '?';
}

const char *util_version(void) { return "chat-util 1.0"; }
