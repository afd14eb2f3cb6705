//! `env.sandbox` in `fracture check` and `fracture run`: a sandbox this kernel cannot enforce
//! refuses the map before the program starts (the shim checks the same before `main`), and a
//! path that does not exist is worth a warning (nothing can be opened there).

use module_map::{MapError, ModuleMap};

/// The Landlock ABI a sandbox needs: 6 is the first with signal and abstract-socket scopes.
const ABI: landlock::ABI = landlock::ABI::V6;

/// Why this kernel cannot enforce a sandbox, or `None`. Creates (and drops) one ruleset with
/// the scopes every sandbox uses, refusing any fallback.
fn kernel_problem() -> Option<String> {
    use landlock::{Access, CompatLevel, Compatible, Ruleset, RulesetAttr, Scope};
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .scope(Scope::from_all(ABI))
        .and_then(|r| r.create());
    created.err().map(|e| {
        format!("a sandbox cannot be enforced on this kernel: it needs Landlock ABI 6 (Linux 6.12 or later, with Landlock enabled in `lsm=`): {e}; remove the sandbox or run on a kernel that has it")
    })
}

/// Adds the sandbox problems of `map` to `warnings` and `errors` (one line each).
pub fn check(map: &ModuleMap, warnings: &mut Vec<String>, errors: &mut Vec<String>) {
    let mut first: Option<(usize, String)> = None;
    for p in &map.processes {
        for (key, env) in p.helper_envs() {
            let Some(sb) = &env.sandbox else { continue };
            if first.is_none() {
                first = Some((p.line, format!("{key}.sandbox")));
            }
            let Some(files) = &sb.files else { continue };
            for path in files.read().iter().chain(files.write()) {
                if !std::path::Path::new(path).exists() {
                    let w = MapError::at(
                        &map.file,
                        Some(p.line),
                        Some(format!("{key}.sandbox.files")),
                        format!("`{path}` does not exist, so nothing can be opened there"),
                    )
                    .to_string();
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
            }
        }
    }
    if let Some((line, key)) = first {
        if let Some(problem) = kernel_problem() {
            errors.push(MapError::at(&map.file, Some(line), Some(key), problem).to_string());
        }
    }
}
