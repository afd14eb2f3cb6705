//! Processes and what they carry: env (vars, rlimits, malloc, wrapper, preload,
//! library_path, sandbox), on_crash, replicate and sample.

use serde_yaml_ng::Value;

use super::walk::{check_name, describe, Cx, Fields};
use super::{MapError, MAX_COUNT, MAX_RETRIES, RLIMIT_NAMES};
use crate::errno::errno_from_name;
use crate::locate::{join_index, join_key};
use crate::{
    Env, FileRules, GiveUp, Malloc, Memory, OnCrash, OnMismatch, Pick, Process, Replicate, Restore,
    Sample, Sandbox,
};

const PROCESS_KEYS: &[&str] = &[
    "modules",
    "env",
    "timeout_ms",
    "on_crash",
    "replicate",
    "sample",
    "memory",
];
const ENV_KEYS: &[&str] = &[
    "vars",
    "rlimits",
    "malloc",
    "wrapper",
    "preload",
    "library_path",
    "sandbox",
];
const SANDBOX_KEYS: &[&str] = &["files", "network", "exec"];
const FILES_KEYS: &[&str] = &["read", "write"];
const MALLOC_KEYS: &[&str] = &["perturb", "pad", "zero_fill", "delay_free"];
const ON_CRASH_KEYS: &[&str] = &["restart", "restore", "max_retries", "retry_envs", "give_up"];
const GIVE_UP_KEYS: &[&str] = &["return", "errno"];
const REPLICATE_KEYS: &[&str] = &["count", "on_mismatch", "envs"];
const SAMPLE_KEYS: &[&str] = &["count", "envs", "pick"];

impl Cx<'_> {
    pub(super) fn process(&self, name: &str, v: &Value, path: &str) -> Result<Process, MapError> {
        check_name(self, name, path, "process")?;
        let f = self.fields(v, path, "a process", PROCESS_KEYS)?;
        let modules = match f.get("modules") {
            Some((v, p)) => {
                let Value::Sequence(items) = v else {
                    return Err(self.schema(
                        &p,
                        format!(
                            "expected a list of module names such as [magic], found {}",
                            describe(v)
                        ),
                    ));
                };
                let mut names: Vec<String> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let ip = join_index(&p, i);
                    let m = self.scalar_string(item, &ip)?;
                    if names.contains(&m) {
                        return Err(
                            self.invalid(&ip, format!("module `{m}` is listed twice; remove one"))
                        );
                    }
                    names.push(m);
                }
                names
            }
            None => Vec::new(),
        };
        let env = match f.get("env") {
            Some((v, p)) => self.env(v, &p)?,
            None => Env::default(),
        };
        let timeout_ms = match f.get("timeout_ms") {
            Some((v, p)) => {
                let t = self.uint(v, &p)?;
                if t == 0 {
                    return Err(self.invalid(
                        &p,
                        "timeout_ms must be at least 1; remove it to let calls run as long as they need",
                    ));
                }
                Some(t)
            }
            None => None,
        };
        let on_crash = match f.get("on_crash") {
            Some((v, p)) => self.on_crash(v, &p)?,
            None => OnCrash::default(),
        };
        let replicate = match f.get("replicate") {
            Some((v, p)) => Some(self.replicate(v, &p)?),
            None => None,
        };
        let sample = match f.get("sample") {
            Some((v, p)) => Some(self.sample(v, &p)?),
            None => None,
        };
        if replicate.is_some() && sample.is_some() {
            return Err(self.invalid(
                &join_key(path, "sample"),
                "a process either replicates or samples its calls, not both; remove `replicate` or `sample`",
            ));
        }
        let memory = match f.get("memory") {
            Some((v, p)) => match self.word(v, &p, &["copy", "on-demand"])? {
                "on-demand" => Memory::OnDemand,
                _ => Memory::Copy,
            },
            None => Memory::Copy,
        };
        let process = Process {
            name: name.to_owned(),
            memory,
            modules,
            env,
            timeout_ms,
            on_crash,
            replicate,
            sample,
            line: self.index.line_of(path).unwrap_or(0),
        };
        self.check_sandbox_wrappers(&process)?;
        self.check_on_demand(&process)?;
        Ok(process)
    }

    /// `memory: on-demand` (SPEC.md, "Memory") serves the program's pages to one helper while a
    /// call runs; what it cannot do yet is refused here, naming the key, instead of running
    /// with a meaning nobody asked for.
    fn check_on_demand(&self, p: &Process) -> Result<(), MapError> {
        if p.memory != Memory::OnDemand {
            return Ok(());
        }
        let base = format!("processes.{}", p.name);
        let why = |key: &str, what: &str| {
            self.invalid(
                &join_key(&base, key),
                format!(
                    "`memory: on-demand` cannot be combined with {what} yet; remove one of them"
                ),
            )
        };
        if p.replicate.is_some() {
            return Err(why(
                "replicate",
                "`replicate` (each replica would fetch and write back the same pages)",
            ));
        }
        if p.sample.is_some() {
            return Err(why("sample", "`sample`"));
        }
        if p.on_crash.restore != Restore::None {
            return Err(why(
                "on_crash",
                "`restore: replay` or `checkpoint` (a replayed call would fetch today's memory, not the memory the call saw)",
            ));
        }
        let envs = std::iter::once(&p.env).chain(p.on_crash.retry_envs.iter());
        for e in envs {
            if e.exec_mode() {
                return Err(why(
                    "env",
                    "an exec-mode helper (`wrapper`, `preload`, `library_path`: a fresh program does not share the program's addresses)",
                ));
            }
            if e.rlimits.contains_key("as") {
                return Err(why(
                    "env",
                    "`rlimits: as` (the helper reserves the program's address ranges, which counts as address space)",
                ));
            }
        }
        Ok(())
    }

    /// valgrind runs the helper on a synthetic CPU and does not pass Landlock or seccomp
    /// (`landlock_create_ruleset`, `seccomp`) to the kernel: a sandbox under it could never be
    /// applied, so the map is refused instead of the helper failing at each start.
    fn check_sandbox_wrappers(&self, p: &Process) -> Result<(), MapError> {
        // Each combination of [`Process::helper_envs`], without building the merged
        // environments: replicas times retries can be tens of thousands of them.
        let base_key = format!("processes.{}", p.name);
        let (what, replica_envs) = match (&p.replicate, &p.sample) {
            (Some(r), _) => ("replicate", r.envs.as_slice()),
            (None, Some(s)) => ("sample", s.envs.as_slice()),
            (None, None) => ("", &[][..]),
        };
        let layers = std::iter::once((None, &p.env))
            .chain(replica_envs.iter().enumerate().map(|(i, e)| (Some(i), e)));
        for (replica, env) in layers {
            let retries =
                std::iter::once(None).chain(p.on_crash.retry_envs.iter().enumerate().map(Some));
            for retry in retries {
                let mut chain = vec![&p.env];
                if replica.is_some() {
                    chain.push(env);
                }
                if let Some((_, r)) = retry {
                    chain.push(r);
                }
                let Some(tool) = chain.iter().rev().find_map(|e| e.wrapper.first()) else {
                    continue;
                };
                let base = tool.rsplit('/').next().unwrap_or(tool);
                if chain.iter().any(|e| e.sandbox.is_some()) && base.starts_with("valgrind") {
                    let key = match (retry, replica) {
                        (Some((n, _)), _) => format!("{base_key}.on_crash.retry_envs[{n}]"),
                        (None, Some(i)) => format!("{base_key}.{what}.envs[{i}]"),
                        (None, None) => format!("{base_key}.env"),
                    };
                    return Err(self.invalid(
                        &key,
                        format!("this environment has both a sandbox and the wrapper `{tool}`, which cannot apply one (valgrind does not pass Landlock and seccomp to the kernel); remove the sandbox or the wrapper from it"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn env(&self, v: &Value, path: &str) -> Result<Env, MapError> {
        let f = self.fields(v, path, "an environment", ENV_KEYS)?;
        let mut env = Env::default();
        if let Some((v, p)) = f.get("vars") {
            for (k, val) in self.entries(v, &p, "vars")? {
                let kp = join_key(&p, &k);
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(self.schema(
                        &kp,
                        format!("`{k}` is not a valid environment variable name"),
                    ));
                }
                env.vars.insert(k, self.scalar_string(val, &kp)?);
            }
        }
        if let Some((v, p)) = f.get("rlimits") {
            for (k, val) in self.entries(v, &p, "rlimits")? {
                let kp = join_key(&p, &k);
                if !RLIMIT_NAMES.contains(&k.as_str()) {
                    return Err(self.schema(
                        &kp,
                        format!(
                            "unknown rlimit `{k}`; expected one of: {}",
                            RLIMIT_NAMES.join(", ")
                        ),
                    ));
                }
                env.rlimits.insert(k, self.size_value(val, &kp)?);
            }
        }
        if let Some((v, p)) = f.get("malloc") {
            env.malloc = self.malloc(v, &p)?;
        }
        if let Some((v, p)) = f.get("wrapper") {
            env.wrapper = self.strings(v, &p, "[valgrind, --leak-check=full]")?;
            if env.wrapper.first().is_some_and(|w| w.is_empty()) {
                return Err(self.schema(&join_index(&p, 0), "the wrapper command is empty"));
            }
        }
        if let Some((v, p)) = f.get("preload") {
            env.preload = self.strings(v, &p, "[/usr/lib/libefence.so]")?;
            for l in env.preload.iter_mut() {
                if l.contains('/') {
                    *l = self.beside_map(l);
                }
            }
        }
        if let Some((v, p)) = f.get("library_path") {
            let lp = self.string(v, &p)?;
            env.library_path = lp
                .split(':')
                .map(|d| self.beside_map(d))
                .collect::<Vec<_>>()
                .join(":");
        }
        if let Some((v, p)) = f.get("sandbox") {
            env.sandbox = Some(self.sandbox(v, &p)?);
        }
        Ok(env)
    }

    fn sandbox(&self, v: &Value, path: &str) -> Result<Sandbox, MapError> {
        let f = self.fields(v, path, "sandbox settings", SANDBOX_KEYS)?;
        let mut sb = Sandbox::default();
        if let Some((v, p)) = f.get("files") {
            let ff = self.fields(v, &p, "file rules", FILES_KEYS)?;
            let mut files = FileRules::default();
            if let Some((v, p)) = ff.get("read") {
                files.read = Some(self.sandbox_paths(v, &p)?);
            }
            if let Some((v, p)) = ff.get("write") {
                files.write = Some(self.sandbox_paths(v, &p)?);
            }
            sb.files = Some(files);
        }
        if let Some((v, p)) = f.get("network") {
            sb.network = Some(self.boolean(v, &p)?);
        }
        if let Some((v, p)) = f.get("exec") {
            sb.exec = Some(self.boolean(v, &p)?);
        }
        Ok(sb)
    }

    /// Paths of `files.read`/`files.write`: a relative one is beside the map, like `preload`;
    /// an empty one would silently allow nothing.
    fn sandbox_paths(&self, v: &Value, path: &str) -> Result<Vec<String>, MapError> {
        let mut paths = self.strings(v, path, "[/usr/share/misc, /usr/lib/file]")?;
        for (i, p) in paths.iter_mut().enumerate() {
            if p.trim().is_empty() || p.contains('\0') {
                return Err(self.schema(
                    &join_index(path, i),
                    "expected a path such as /usr/share/misc; an empty path allows nothing",
                ));
            }
            if p.starts_with('$') {
                return Err(self.schema(
                    &join_index(path, i),
                    format!("`{p}`: variables are not expanded here; write the path itself"),
                ));
            }
            *p = self.beside_map(p);
        }
        Ok(paths)
    }

    /// A relative path in the map (`library_path`, a `preload` entry with a `/`) is relative
    /// to the map's own directory, so a map can ship beside the libraries it names.
    fn beside_map(&self, p: &str) -> String {
        if p.is_empty() || p.starts_with('/') || p.starts_with('$') {
            return p.to_string();
        }
        match self.file.parent() {
            Some(dir) => std::path::absolute(dir.join(p))
                .unwrap_or_else(|_| dir.join(p))
                .display()
                .to_string(),
            None => p.to_string(),
        }
    }

    fn malloc(&self, v: &Value, path: &str) -> Result<Malloc, MapError> {
        let f = self.fields(v, path, "malloc settings", MALLOC_KEYS)?;
        let mut m = Malloc::default();
        if let Some((v, p)) = f.get("perturb") {
            let n = self.uint(v, &p)?;
            m.perturb = Some(u8::try_from(n).map_err(|_| {
                self.schema(&p, format!("perturb is a byte value, 0 to 255; found {n}"))
            })?);
        }
        if let Some((v, p)) = f.get("pad") {
            m.pad = Some(self.size_value(v, &p)?);
        }
        if let Some((v, p)) = f.get("zero_fill") {
            m.zero_fill = Some(self.boolean(v, &p)?);
        }
        if let Some((v, p)) = f.get("delay_free") {
            m.delay_free = Some(self.uint(v, &p)?);
        }
        Ok(m)
    }

    fn envs(&self, v: &Value, path: &str) -> Result<Vec<Env>, MapError> {
        match v {
            Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, e)| self.env(e, &join_index(path, i)))
                .collect(),
            other => Err(self.schema(
                path,
                format!("expected a list of environments such as [{{vars: {{A: \"1\"}}}}, {{wrapper: [valgrind]}}], found {}", describe(other)),
            )),
        }
    }

    fn on_crash(&self, v: &Value, path: &str) -> Result<OnCrash, MapError> {
        let f = self.fields(v, path, "on_crash settings", ON_CRASH_KEYS)?;
        let mut c = OnCrash::default();
        if let Some((v, p)) = f.get("restart") {
            c.restart = self.boolean(v, &p)?;
        }
        if let Some((v, p)) = f.get("restore") {
            c.restore = match self.word(v, &p, &["none", "replay", "checkpoint"])? {
                "replay" => Restore::Replay,
                "checkpoint" => Restore::Checkpoint,
                _ => Restore::None,
            };
        }
        if let Some((v, p)) = f.get("max_retries") {
            let n = self.uint(v, &p)?;
            if n > MAX_RETRIES {
                return Err(self.invalid(
                    &p,
                    format!("max_retries is {n}; at most {MAX_RETRIES} are allowed, since a crash loop stalls the caller"),
                ));
            }
            c.max_retries = n as u32;
        }
        if let Some((v, p)) = f.get("retry_envs") {
            c.retry_envs = self.envs(v, &p)?;
            // Retry n runs in retry_envs[n-1] and there are at most MAX_RETRIES retries; more
            // entries are never used, and each multiplies the environments to check.
            if c.retry_envs.len() as u64 > MAX_RETRIES {
                return Err(self.invalid(
                    &p,
                    format!("{} retry environments; retry n runs in retry_envs[n-1] and at most {MAX_RETRIES} retries are allowed, so give at most {MAX_RETRIES}", c.retry_envs.len()),
                ));
            }
        }
        if let Some((v, p)) = f.get("give_up") {
            c.give_up = self.give_up(v, &p)?;
        }
        Ok(c)
    }

    fn give_up(&self, v: &Value, path: &str) -> Result<GiveUp, MapError> {
        const HOW: &str =
            "expected `crash` or {return: VALUE, errno: NAME} such as {return: 0, errno: EIO}";
        match v {
            Value::String(s) if s == "crash" => Ok(GiveUp::Crash),
            Value::Mapping(_) => {
                let f = self.fields(v, path, "give_up", GIVE_UP_KEYS)?;
                let value = match f.get("return") {
                    Some((v, p)) => v.as_i64().ok_or_else(|| {
                        self.schema(
                            &p,
                            format!("expected an integer return value, found {}", describe(v)),
                        )
                    })?,
                    None => return Err(self.schema(path, format!("missing `return`; {HOW}"))),
                };
                // Without `errno` the caller's errno is set to 0.
                let errno = match f.get("errno") {
                    Some((v, p)) => self.errno(v, &p)?,
                    None => 0,
                };
                Ok(GiveUp::Return { value, errno })
            }
            other => Err(self.schema(path, format!("{HOW}; found {}", describe(other)))),
        }
    }

    fn errno(&self, v: &Value, path: &str) -> Result<i32, MapError> {
        let n = match v {
            Value::Number(_) => v.as_u64(),
            Value::String(s) => errno_from_name(s.trim()).map(|n| n as u64),
            _ => None,
        };
        match n {
            Some(n) if n <= 4095 => Ok(n as i32),
            _ => Err(self.schema(
                path,
                format!("expected an errno name such as EIO, ENOMEM, EINVAL or a number 0..4095, found {}", describe(v)),
            )),
        }
    }

    fn count(&self, f: &Fields<'_>, path: &str, what: &str) -> Result<u32, MapError> {
        let Some((v, p)) = f.get("count") else {
            return Err(self.schema(
                path,
                format!("missing `count`: how many {what} to run, e.g. `count: 3`"),
            ));
        };
        let n = self.uint(v, &p)?;
        if n == 0 || n > MAX_COUNT {
            return Err(self.invalid(
                &p,
                format!("count must be between 1 and {MAX_COUNT}; found {n}"),
            ));
        }
        Ok(n as u32)
    }

    /// Each of the `count` helpers runs in its own entry of `envs`, so more envs than helpers
    /// would be silently unused.
    fn check_envs(&self, envs: &[Env], count: u32, path: &str) -> Result<(), MapError> {
        if envs.len() > count as usize {
            return Err(self.invalid(
                &join_key(path, "envs"),
                format!("{} environments for count {count}; the i-th helper runs in envs[i], so give at most {count} or raise count", envs.len()),
            ));
        }
        Ok(())
    }

    fn replicate(&self, v: &Value, path: &str) -> Result<Replicate, MapError> {
        let f = self.fields(v, path, "replicate settings", REPLICATE_KEYS)?;
        let count = self.count(&f, path, "replicas")?;
        let on_mismatch = match f.get("on_mismatch") {
            Some((v, p)) => match self.word(v, &p, &["majority", "first", "abort"])? {
                "first" => OnMismatch::First,
                "abort" => OnMismatch::Abort,
                _ => OnMismatch::Majority,
            },
            None => OnMismatch::Majority,
        };
        let envs = match f.get("envs") {
            Some((v, p)) => self.envs(v, &p)?,
            None => Vec::new(),
        };
        self.check_envs(&envs, count, path)?;
        Ok(Replicate {
            count,
            on_mismatch,
            envs,
        })
    }

    fn sample(&self, v: &Value, path: &str) -> Result<Sample, MapError> {
        let f = self.fields(v, path, "sample settings", SAMPLE_KEYS)?;
        let count = self.count(&f, path, "samplers")?;
        let envs = match f.get("envs") {
            Some((v, p)) => self.envs(v, &p)?,
            None => Vec::new(),
        };
        self.check_envs(&envs, count, path)?;
        let pick = match f.get("pick") {
            Some((v, p)) => match self.word(v, &p, &["round-robin", "random"])? {
                "random" => Pick::Random,
                _ => Pick::RoundRobin,
            },
            None => Pick::RoundRobin,
        };
        Ok(Sample { count, envs, pick })
    }
}
