/* fx_chat: an event-loop program in the spirit of Pidgin. A UI module formats lines, a
 * utility module escapes characters, and 14 protocol plugins (loaded with dlopen, like
 * Pidgin's) parse incoming messages. Plugin p11 crashes on a rare input (a message holding
 * "\x01BUZZ"), plugin p05 leaks a block per message, plugin p03 escapes every character
 * through the utility module (a chatty pair for the partitioner). */
#ifndef CHAT_H
#define CHAT_H
#define CHAT_PLUGINS 14
int ui_format(const char *proto, const char *text, char *out, long n);
long ui_lines(void);
int util_escape(int c);
const char *util_version(void);
#endif
