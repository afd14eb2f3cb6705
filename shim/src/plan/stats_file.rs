//! `FRACTURE_STATS`: the statistics file, written from the plan's counters.

use crate::observe::stats;
use crate::plan::runtime::{Runtime, PROGRAM};
use std::sync::atomic::Ordering::Relaxed;

/// Writes `FRACTURE_STATS` (per process and function: calls, bytes, latency percentiles).
pub fn write(rt: &Runtime) {
    let Some(path) = std::env::var_os("FRACTURE_STATS").filter(|p| !p.is_empty()) else {
        return;
    };
    let mut o = String::new();
    o.push_str(&format!(
        "{{\n  \"program\": {},\n  \"pid\": {},\n  \"processes\": {{",
        stats::json_str(&rt.exe),
        rt.program_pid()
    ));
    let mut owners: Vec<(crate::plan::runtime::Owner, String)> =
        vec![(PROGRAM, "main".to_string())];
    owners.extend(
        rt.procs
            .iter()
            .filter(|p| p.replica == 0)
            .map(|p| (p.owner(), p.name.clone())),
    );
    let mut first_p = true;
    for (owner, name) in owners {
        // A process's section lists its functions and the callbacks the program served for it.
        let fns: Vec<_> = rt
            .fns
            .iter()
            .filter(|f| match &f.callback {
                Some(c) => c.process == owner && f.real.load(Relaxed) != 0,
                None => f.owner == owner,
            })
            .collect();
        if fns.is_empty() {
            continue;
        }
        if !first_p {
            o.push(',');
        }
        first_p = false;
        let pid = rt
            .proc_of(owner)
            .map(|p| p.pid.load(Relaxed))
            .unwrap_or(rt.program_pid());
        let replicas: Vec<String> = match owner.process() {
            Some(k) if rt.replicas_of(k).nth(1).is_some() => rt
                .replicas_of(k)
                .map(|p| {
                    format!(
                        "{{\"replica\": {}, \"pid\": {}, \"calls\": {}, \"mismatches\": {}, \"crashes\": {}}}",
                        p.replica,
                        p.pid.load(Relaxed),
                        p.calls.load(Relaxed),
                        p.mismatches.load(Relaxed),
                        p.crashes.load(Relaxed)
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        let pages = owner.process()
            .filter(|&k| {
                rt.procs
                    .get(k)
                    .is_some_and(|p| p.spec.memory == module_map::Memory::OnDemand)
            })
            .and_then(|k| stats::PAGES.get(k))
            .map(|g| {
                format!(
                    "\n      \"pages\": {{\"fetched\": {}, \"sent_ahead\": {}, \"bytes_written\": {}, \"peeked\": {}, \"peek_faults\": {}}},",
                    g.fetched.load(Relaxed),
                    g.sent_ahead.load(Relaxed),
                    g.written.load(Relaxed),
                    g.peeked.load(Relaxed),
                    g.faulted.load(Relaxed)
                )
            })
            .unwrap_or_default();
        o.push_str(&format!(
            "\n    {}: {{\n      \"pid\": {pid},\n      \"replicas\": [{}],{pages}\n      \"functions\": {{",
            stats::json_str(&name),
            replicas.join(", ")
        ));
        for (i, f) in fns.iter().enumerate() {
            let s = &f.stats;
            o.push_str(&format!(
                "{}\n        {}: {{\"module\": {}, \"effect\": \"{}\", \"calls\": {}, \"bytes_in\": {}, \"bytes_out\": {}, \"failures\": {}, \"crashes\": {}, \"restarts\": {}, \"retries\": {}, \"give_ups\": {}, \"recovered\": {}, \"succeeded_env\": {}, \"nested_calls\": {}, \"flat_calls\": {}, \"unsampled\": {}, \"latency_us\": {{\"p50\": {:.3}, \"p99\": {:.3}}}}}",
                if i > 0 { "," } else { "" },
                stats::json_str(&f.name),
                stats::json_str(&f.module),
                if f.pure { "pure" } else { "state" },
                s.calls.load(Relaxed),
                s.bytes_in.load(Relaxed),
                s.bytes_out.load(Relaxed),
                s.failures.load(Relaxed),
                s.crashes.load(Relaxed),
                s.restarts.load(Relaxed),
                s.retries.load(Relaxed),
                s.give_ups.load(Relaxed),
                s.recovered.load(Relaxed),
                match s.succeeded_env.load(Relaxed) {
                    u64::MAX => "null".to_string(),
                    0 => "\"env\"".to_string(),
                    n => format!("\"retry_envs[{}]\"", n - 1),
                },
                s.nested.load(Relaxed),
                s.flat.load(Relaxed),
                s.unsampled.load(Relaxed),
                s.percentile_us(0.5),
                s.percentile_us(0.99),
            ));
        }
        o.push_str("\n      }\n    }");
    }
    o.push_str("\n  }\n}\n");
    if let Err(e) = std::fs::write(&path, o) {
        warn!(
            "cannot write the statistics to {}: {e}",
            std::path::Path::new(&path).display()
        );
    }
}
