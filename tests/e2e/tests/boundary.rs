//! The boundary holds: hostile helpers (libfx_forge writes the queue by hand) and honest
//! modules at the edges of the protocol can fail their own calls, never corrupt, stop or hang
//! the program. Each test is named after the bug it pins; every scenario is one run of
//! `fx_boundary` (or `fx_nest_prog`) under `fracture run`, compared with what it must print.

use crate::util::*;
use std::time::Duration;

fn boundary(map: &str, scenario: &str) -> std::process::Output {
    run_with(
        under(&config(map), &[], &fixture("fx_boundary"), &[scenario]),
        b"",
        WATCHDOG,
    )
}

/// `fx_boundary SCENARIO` under `map` (in configs/) prints what it prints plain.
fn boundary_same_as_plain(map: &str, scenario: &str) {
    same_as_plain(&config(map), &fixture("fx_boundary"), &[scenario], b"");
}

#[test]
fn nested_call_whose_buffer_entry_is_shorter_than_its_size_register_is_refused() {
    // A nested call said arg_len[0]=1 with a size register of 4096: the program wrote 4096
    // bytes into a 1-byte copy of its heap (and would have copied 4096 back).
    let o = boundary("boundary.yaml", "len");
    assert_eq!(ok(o), "len_lie: 3\nintact\n");
}

#[test]
fn nested_call_table_entries_past_nargs_reach_the_function_as_null() {
    // Entries past the helper's nargs were read as offset 0, length 0: a pointer into the
    // data area instead of NULL.
    let o = boundary("boundary.yaml", "nargs");
    assert_eq!(ok(o), "nargs0: -1\nintact\n");
}

#[test]
fn nested_call_of_the_requesting_helpers_own_function_is_refused() {
    // The program called back into the call it was serving: the helper's answer to it was
    // taken for the outer call's, and the outer call hung until timeout_ms.
    let o = boundary("boundary.yaml", "own");
    let e = stderr(&o);
    assert_eq!(ok(o), "own: 3\nintact\n");
    assert!(e.contains("refused a nested call of forge_own"), "{e}");
}

#[test]
fn unbounded_nested_recursion_between_two_helpers_is_bounded() {
    // Two helpers asking the program to call each other's functions made the program nest
    // without limit (active_push failing at depth 32 was ignored) until its stack overflowed.
    let o = boundary("boundary-ping.yaml", "ping");
    let e = stderr(&o);
    let out = ok(o);
    assert!(
        out.starts_with("ping: ") && out.ends_with("intact\n"),
        "{out}"
    );
    assert!(e.contains("calls nest deeper than 16"), "{e}");
}

#[test]
fn give_up_crash_ends_the_program_as_the_zygote_saw_the_helper_end_not_as_it_claims() {
    // A helper wrote SIGSTOP into fault_sig and exited 3: give_up: crash raised SIGSTOP in
    // the program and `fracture run` never returned.
    let o = boundary("boundary-crash.yaml", "stopsig");
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "before\n");
    assert!(stderr(&o).contains("exit status 3"), "{}", stderr(&o));
}

#[test]
fn checkpoint_resume_never_adopts_a_pid_announced_from_shared_memory() {
    // The resumed helper's pid was read from the region: a helper's child announced the
    // program's own pid, the program adopted it, and the next restart SIGKILLed the program.
    let o = boundary("boundary-ckpt.yaml", "pid");
    let e = stderr(&o);
    let out = ok(o);
    assert_eq!(out, "state: 5\npid: -1\nstate_after: 6\nintact\n", "{e}");
}

#[test]
fn nested_calls_that_never_stop_still_time_out() {
    // timeout_ms was checked only when the wait slept; a helper that kept sending nested
    // calls never let it sleep, and the program hung for good.
    let o = boundary("boundary-misc.yaml", "flood");
    let e = stderr(&o);
    assert_eq!(ok(o), "flood: 0\nintact\n");
    assert!(e.contains("hung (no answer within timeout_ms 2000"), "{e}");
}

#[test]
fn a_helper_returning_a_new_handle_on_every_call_cannot_grow_the_handle_table_without_bound() {
    // Every new handle value became a 512-byte token, never freed: 70000 calls, 35 MiB.
    let o = boundary("boundary-misc.yaml", "handles");
    let e = stderr(&o);
    assert_eq!(ok(o), "handles refused: some\nintact\n");
    assert!(
        e.contains("returned a new handle after 65536 others"),
        "{e}"
    );
}

#[test]
fn a_stack_overflow_in_the_module_is_recorded_with_its_fault_address() {
    // The helper's fault handler ran without SA_ONSTACK: on a stack overflow it could not
    // run at all, and the crash was recorded without its fault address.
    let o = boundary("boundary-misc.yaml", "recurse");
    let e = stderr(&o);
    assert_eq!(ok(o), "recurse: 0\nintact\n");
    let line = e
        .lines()
        .find(|l| l.contains("died of signal 11 (SIGSEGV) during forge_recurse"))
        .unwrap_or_else(|| panic!("{e}"));
    assert!(!line.contains("fault address 0x0;"), "{line}");
}

#[test]
fn a_child_the_program_forked_does_not_pass_handle_tokens_to_the_real_function() {
    // A forked child runs mapped calls in place, and passed the program's token (a mirror
    // block) to the real function as if it were the helper's object.
    let o = boundary("boundary-misc.yaml", "fork");
    let e = stderr(&o);
    assert_eq!(ok(o), "parent: 41\nchild: 0\nintact\n");
    assert!(
        e.contains("cannot be used in a child the program forked"),
        "{e}"
    );
}

#[test]
fn each_replica_has_only_its_own_queue_mapped() {
    // Every helper had every region mapped read-write: a faulty replica could write the
    // other replicas' answers and defeat the vote.
    let d = TempDir::new("regions");
    let map = d.write(
        "map.yaml",
        &format!(
            "modules:\n  forge:\n    object: {}\n    functions:\n      forge_regions: {{}}\n\
             processes:\n  forger:\n    modules: [forge]\n    replicate: {{count: 3}}\n",
            fixture("libfx_forge.so").display()
        ),
    );
    let o = run_with(
        under(&map, &[], &fixture("fx_boundary"), &["regions"]),
        b"",
        WATCHDOG,
    );
    assert_eq!(ok(o), "regions: 1\nintact\n");
}

#[test]
fn replicated_calls_keep_the_buffer_lengths_measured_before_the_call() {
    // After the call, replicas recomputed `out:*arg1` from the length the function had just
    // reported (16 MiB) and read 16 MiB of a 64-byte buffer: the program crashed.
    boundary_same_as_plain("boundary-honest.yaml", "need");
}

#[test]
fn a_function_declared_with_no_args_still_gets_its_stack_arguments() {
    // fx_sum8 (eight longs, two on the stack) mapped as {effect: pure}: the stack words the
    // spec did not list were not passed, and the sum came out wrong.
    boundary_same_as_plain("boundary-honest.yaml", "sum8");
}

#[test]
fn a_restart_inside_a_module_program_module_chain_does_not_deadlock() {
    // nest_deep2 -> host_back2 -> nest_leaf_crashy, the innermost crashing: its restart took
    // the gate exclusively while the outer call on the same thread held it shared.
    let d = TempDir::new("chain");
    let once = d.path("crashed-once");
    let o = Twin::new(
        &config("nest-restart.yaml"),
        &fixture("fx_nest_prog"),
        &["chain"],
    )
    .env("FX_CRASH_ONCE", &once)
    .env("FRACTURE_REPORTS", d.path("r.db"))
    .fracture_speaks()
    .watchdog(Duration::from_secs(60))
    .same_as_plain();
    let e = stderr(&o);
    assert!(once.exists(), "the helper never crashed: {e}");
    assert!(e.contains("recovered"), "{e}");
    // One record per fault, naming the inner call that faulted: the outer call saw the same
    // death and does not report it again.
    let crashes = stored(
        &d.path("r.db"),
        "SELECT function || ' ' || backtrace FROM events WHERE outcome = 'crash'",
    );
    assert_eq!(crashes.len(), 1, "{crashes:?}");
    assert!(crashes[0].contains("nest_leaf_crashy"), "{crashes:?}");
}

#[test]
fn sampled_calls_of_a_short_run_reach_the_valgrind_replica() {
    // Ten pure calls over two round-robin replicas gave the valgrind replica none (its
    // turn came after 16), and with no `target` valgrind's own launcher became the helper.
    let d = TempDir::new("sample");
    let map = d.write(
        "map.yaml",
        &format!(
            "modules:\n  fx:\n    object: {}\n    functions:\n      fx_leak: {{args: [val], effect: pure}}\n\
             processes:\n  fx:\n    modules: [fx]\n    sample: {{count: 2, envs: [{{}}, {{wrapper: [valgrind, --leak-check=full, -q]}}]}}\n",
            fixture("libfx.so").display()
        ),
    );
    let o = run_with(
        under(&map, &[], &fixture("fx_boundary"), &["leak"]),
        b"",
        Duration::from_secs(180),
    );
    let e = stderr(&o);
    assert_eq!(ok(o), "leak: 10\nintact\n");
    assert!(e.contains("definitely lost"), "{e}");
    assert!(e.contains("fx_leak"), "{e}");
}

#[test]
fn a_panic_in_a_forked_child_never_runs_the_programs_main_again() {
    // An exec-mode helper's plan read the environment as UTF-8 and panicked, in the zygote,
    // on a variable that was not: the unwind reached the wrapper of main, which ran the
    // program's main a second time (in the zygote).
    use std::os::unix::ffi::OsStrExt;
    let d = TempDir::new("nonutf8");
    let map = d.write(
        "map.yaml",
        &format!(
            "modules:\n  fx:\n    object: libfx.so\n    functions:\n      fx_sum8: {{args: [val, val, val, val, val, val, val, val]}}\n\
             processes:\n  fx:\n    modules: [fx]\n    env: {{library_path: {}}}\n",
            fixture("libfx.so").parent().unwrap().display()
        ),
    );
    Twin::new(&map, &fixture("fx_boundary"), &["sum8"])
        .env("FX_NOT_UTF8", std::ffi::OsStr::from_bytes(b"caf\xe9 \xff"))
        .same_as_plain();
}

#[test]
fn a_replica_returning_another_handles_value_cannot_rebind_the_programs_handles() {
    // Replica 1 answered a new handle with the value of an older one: the program merged the
    // older token, with every replica's bindings, into the new one; the new handle then named
    // replica 0's old object and the old token stopped being a token at all.
    let d = TempDir::new("objs");
    let map = d.write(
        "map.yaml",
        &format!(
            "modules:\n  forge:\n    object: {}\n    functions:\n      forge_obj_new: {{args: [val], ret: handle}}\n      forge_obj_get: {{args: [handle]}}\n\
             processes:\n  forger:\n    modules: [forge]\n    replicate: {{count: 2, on_mismatch: first}}\n",
            fixture("libfx_forge.so").display()
        ),
    );
    // Fracture warns of the replicas' disagreement and answers with replica 0's value.
    Twin::new(&map, &fixture("fx_boundary"), &["objs"])
        .fracture_speaks()
        .same_as_plain();
}

#[test]
fn a_call_whose_answer_is_refused_writes_nothing_into_the_callers_out_buffers() {
    // The out-buffers were copied back before the returned string was checked: an answer
    // with a string past the data area failed the call after the helper's bytes had already
    // overwritten the caller's buffer.
    let o = boundary("boundary-misc.yaml", "badstr");
    let e = stderr(&o);
    assert_eq!(ok(o), "badstr: NULL ........\nintact\n", "{e}");
}
