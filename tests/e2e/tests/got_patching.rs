//! GOT patching across the loader's life: objects closed and opened again.

use crate::util::*;

const MAP: &str = r#"# libfx.so in a helper; the plugin reaches fx_pid through its own GOT.
target: "*/fx_reload_prog"
modules:
  fx:
    object: libfx.so
    functions:
      fx_pid: {}
processes:
  fxhelper:
    modules: [fx]
"#;

// A plugin closed and opened again came back at the base the first load had left, which the
// scan had recorded as done: the fresh instance's GOT was never routed and its calls ran in
// the program.
#[test]
fn plugin_reopened_at_the_same_address_is_routed_again() {
    let dir = TempDir::new("reload");
    let map = dir.write("reload.yaml", MAP);
    let p = fixture("fx_reload_prog");
    let plain_o = ok(run_with(plain(&p, &[]), b"", WATCHDOG));
    assert!(
        plain_o.contains("same_base: yes"),
        "the second load reuses the first one's address (what this test is about): {plain_o}"
    );
    assert!(plain_o.contains("second_where: program"), "{plain_o}");
    let (k, mark) = marker("reload");
    let mut cmd = under(&map, &[], &p, &[]);
    cmd.env(&k, &mark);
    let o = ok(run_with(cmd, b"", WATCHDOG));
    assert!(o.contains("first_where: helper"), "{o}");
    assert!(o.contains("same_base: yes"), "{o}");
    assert!(
        o.contains("second_where: helper"),
        "the reopened plugin's call is routed: {o}"
    );
    assert!(
        leftovers(&mark).is_empty(),
        "left behind: {:?}",
        leftovers(&mark)
    );
}
