/* libfx_plugin.so: loaded with dlopen; calls into libfx.so through its own PLT, which must
 * be routed before dlopen returns. */
int fx_add(int a, int b);
long fx_pid(void);
int plugin_run(int x) { return fx_add(x, 100); }
long plugin_pid(void) { return fx_pid(); }
