//! Modules, their functions and callbacks, and the argument and return specs they list.

use serde_yaml_ng::Value;

use super::walk::{check_name, describe, describe_plain, Cx};
use super::MapError;
use crate::locate::{join_index, join_key};
use crate::{ArgSpec, Callback, Function, Module, RetSpec, SizeBase};

const MODULE_KEYS: &[&str] = &["object", "functions", "callbacks", "capabilities"];
const CALLBACK_KEYS: &[&str] = &["args", "ret"];
const FUNCTION_KEYS: &[&str] = &["args", "ret", "effect"];

impl Cx<'_> {
    pub(super) fn module(&self, name: &str, v: &Value, path: &str) -> Result<Module, MapError> {
        check_name(self, name, path, "module")?;
        let f = self.fields(v, path, "a module", MODULE_KEYS)?;
        let object = match f.get("object") {
            Some((v, p)) => {
                let o = self.string(v, &p)?;
                if o.trim().is_empty() {
                    return Err(self.schema(&p, "empty object; name a soname (libmagic.so.1), a file name or path, or `main`"));
                }
                o
            }
            None => {
                return Err(self.schema(
                    path,
                    format!("module `{name}` has no `object`; add `object: SONAME` (e.g. libmagic.so.1) or `object: main`"),
                ))
            }
        };
        let mut callbacks = Vec::new();
        if let Some((v, p)) = f.get("callbacks") {
            for (cname, cv) in self.entries(v, &p, "callbacks")? {
                callbacks.push(self.callback(&cname, cv, &join_key(&p, &cname))?);
            }
        }
        let names: Vec<&str> = callbacks.iter().map(|c| c.name.as_str()).collect();
        let mut functions = Vec::new();
        if let Some((v, p)) = f.get("functions") {
            for (fname, fv) in self.entries(v, &p, "functions")? {
                functions.push(self.function(&fname, fv, &join_key(&p, &fname), &names)?);
            }
        }
        let capabilities = match f.get("capabilities") {
            Some((v, p)) => self.strings(v, &p, "[restartable, replicable, samplable]")?,
            None => Vec::new(),
        };
        Ok(Module {
            name: name.to_owned(),
            object,
            functions,
            callbacks,
            capabilities,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    /// One entry of a module's `callbacks`: `args` and `ret` as a function's, limited to what
    /// can be copied from the helper to the program (no `handle`, no `cb`).
    pub(super) fn callback(&self, name: &str, v: &Value, path: &str) -> Result<Callback, MapError> {
        check_name(self, name, path, "callback")?;
        let f = self.fields(v, path, "a callback", CALLBACK_KEYS)?;
        let mut args = Vec::new();
        if let Some((v, p)) = f.get("args") {
            let Value::Sequence(items) = v else {
                return Err(self.schema(
                    &p,
                    format!("expected a list of argument specs such as [val, str, \"strv:arg1\"], found {}", describe(v)),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let ip = join_index(&p, i);
                let a = self.arg_spec(item, &ip, &[])?;
                match a {
                    ArgSpec::Handle => {
                        return Err(self.schema(&ip, "a callback's argument cannot be `handle`: the program receives the module's pointer as it is; write `val`"))
                    }
                    ArgSpec::Cb(_) => {
                        return Err(self.schema(&ip, "a callback's argument cannot be a callback (`cb`); write `val`"))
                    }
                    _ => args.push(a),
                }
            }
            self.check_sizes(&args, &p)?;
        }
        let ret = match f.get("ret") {
            Some((v, p)) => {
                let r = self.ret_spec(v, &p)?;
                if r == RetSpec::Handle {
                    return Err(self.schema(&p, "a callback cannot return `handle`; write `val`"));
                }
                r
            }
            None => RetSpec::Val,
        };
        Ok(Callback {
            name: name.to_owned(),
            args,
            ret,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    fn ret_spec(&self, v: &Value, p: &str) -> Result<RetSpec, MapError> {
        match v {
            Value::String(s) => s
                .parse::<RetSpec>()
                .map_err(|e| self.schema(p, e.message())),
            other => Err(self.schema(
                p,
                format!(
                    "expected a return spec (val, handle, str, void), found {}",
                    describe(other)
                ),
            )),
        }
    }

    pub(super) fn function(
        &self,
        name: &str,
        v: &Value,
        path: &str,
        callbacks: &[&str],
    ) -> Result<Function, MapError> {
        check_name(self, name, path, "function")?;
        if name.starts_with('@') || name.ends_with('@') {
            return Err(self.schema(
                path,
                format!("bad function name `{name}`; write SYMBOL or SYMBOL@VERSION"),
            ));
        }
        let f = self.fields(v, path, "a function", FUNCTION_KEYS)?;
        let mut args = Vec::new();
        if let Some((v, p)) = f.get("args") {
            let Value::Sequence(items) = v else {
                return Err(self.schema(
                    &p,
                    format!("expected a list of argument specs such as [handle, str, \"in:arg2\"], found {}", describe(v)),
                ));
            };
            for (i, item) in items.iter().enumerate() {
                args.push(self.arg_spec(item, &join_index(&p, i), callbacks)?);
            }
            self.check_sizes(&args, &p)?;
        }
        let ret = match f.get("ret") {
            Some((v, p)) => self.ret_spec(v, &p)?,
            None => RetSpec::Val,
        };
        let pure = match f.get("effect") {
            Some((v, p)) => self.word(v, &p, &["pure", "state"])? == "pure",
            None => false,
        };
        Ok(Function {
            name: name.to_owned(),
            args,
            ret,
            pure,
            line: self.index.line_of(path).unwrap_or(0),
        })
    }

    fn arg_spec(&self, v: &Value, path: &str, callbacks: &[&str]) -> Result<ArgSpec, MapError> {
        match v {
            Value::String(s) => ArgSpec::parse_in(s, callbacks)
                .map_err(|e: crate::SpecError| self.schema(path, e.message())),
            // `[in: 64]` is a one-entry mapping in YAML flow syntax: say how to write it.
            Value::Mapping(m) if m.len() == 1 => {
                let (k, val) = m.iter().next().map(|(k, v)| (describe_plain(k), describe_plain(v))).unwrap_or_default();
                Err(self.schema(
                    path,
                    format!("YAML read `{k}: {val}` as a mapping; write the spec as \"{k}:{val}\" (quoted, no space after `:`)"),
                ))
            }
            other => Err(self.schema(
                path,
                format!("expected an argument spec string such as val, handle, str or \"in:64\", found {}", describe(other)),
            )),
        }
    }

    /// A SIZE naming an argument must name another, listed argument that can hold a length.
    fn check_sizes(&self, args: &[ArgSpec], path: &str) -> Result<(), MapError> {
        for (i, a) in args.iter().enumerate() {
            let Some(size) = a.size() else { continue };
            let p = join_index(path, i);
            let (n, deref) = match size.base {
                SizeBase::Literal(_) => continue,
                SizeBase::Arg(n) => (n, false),
                SizeBase::Deref(n) => (n, true),
            };
            if n == i {
                return Err(self.schema(
                    &p,
                    format!("`{a}`: the size of arg{i} cannot come from arg{i} itself; name the argument that holds the length"),
                ));
            }
            let Some(target) = args.get(n) else {
                return Err(self.schema(
                    &p,
                    format!("`{a}` refers to arg{n}, but only {} arguments are listed; list the arguments up to arg{n} (e.g. `val` for a length)", args.len()),
                ));
            };
            if !deref && *target != ArgSpec::Val {
                return Err(self.schema(
                    &p,
                    format!("`{a}` uses the value of arg{n} as a length, so arg{n} must be `val`, not `{target}`"),
                ));
            }
            if deref {
                let ok = match target {
                    ArgSpec::Val => true,
                    ArgSpec::In(s) | ArgSpec::InOut(s) => s.literal().is_none_or(|b| b >= 8),
                    _ => false,
                };
                if !ok {
                    return Err(self.schema(
                        &p,
                        format!("`{a}` reads a 64-bit length through arg{n}, so arg{n} must be `val`, `in:8` or `inout:8`, not `{target}`"),
                    ));
                }
            }
        }
        Ok(())
    }
}
