//! Argument and return specs (SPEC.md, table "Argument specs") and their SIZE forms: the types
//! and their string syntax. Parsing here is pure; whether a SIZE's `argN` makes sense for its
//! function is checked by the map validation, which knows the whole argument list.

use std::fmt;
use std::str::FromStr;

/// Where a buffer size comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeBase {
    /// A literal byte count.
    Literal(u64),
    /// Another argument's value (`arg2`).
    Arg(usize),
    /// The 64-bit value a pointer argument points to (`*arg1`).
    Deref(usize),
}

/// `base * mul` bytes (`arg2*8`); `mul` is 1 when no multiplier is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub base: SizeBase,
    pub mul: u64,
}

/// One positional argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSpec {
    /// Passed as the register or stack slot holds it (INTEGER class: a general register).
    Val,
    /// Extension: a `float`/`double` argument (SSE class: an xmm register). Spelled `f64`,
    /// `double`, `f32` or `float`. Only needed to place pointer arguments that follow it.
    Float,
    Handle,
    Str,
    In(Size),
    Out(Size),
    InOut(Size),
    /// An array of string pointers (`strv:SIZE`, SIZE counting entries; `strv`: up to a NULL
    /// entry): the array and each string are copied to the callee, NULL entries stay NULL.
    Strv(Option<Size>),
    /// A function pointer the module may call back (SPEC.md, "Callbacks"): `cb:NAME` names
    /// entry `Some(i)` of the module's `callbacks`; bare `cb` (`None`) has all-`val` arguments
    /// and return.
    Cb(Option<u16>),
}

impl ArgSpec {
    /// True for specs whose argument is a pointer the shim copies (`str`, `in`, `out`, `inout`).
    pub fn is_buffer(&self) -> bool {
        matches!(
            self,
            ArgSpec::Str | ArgSpec::In(_) | ArgSpec::Out(_) | ArgSpec::InOut(_) | ArgSpec::Strv(_)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetSpec {
    #[default]
    Val,
    Handle,
    Str,
    Void,
    /// Extension: a floating-point result (xmm0, and xmm1 for a struct of two doubles);
    /// replicas compare it instead of rax.
    Float,
}

/// Why a spec string (`in:arg2`, `str`, `*arg1*4`) did not parse; the message says what is
/// accepted. The module map wraps it with the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpecError {
    message: String,
}

impl SpecError {
    fn new(message: String) -> SpecError {
        SpecError { message }
    }
    /// The one-line message, without file or key.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

const ARG_SPECS: &str =
    "val, handle, str, f64, in:SIZE, out:SIZE, inout:SIZE, strv, strv:SIZE, cb, cb:NAME";
const SIZE_FORMS: &str = "64, 4KiB, arg2, *arg1, arg2*8, *arg1*4";

impl FromStr for ArgSpec {
    type Err = SpecError;

    /// Parses one `args` entry of a module that declares no callbacks (see [`ArgSpec::parse_in`]).
    fn from_str(s: &str) -> Result<ArgSpec, SpecError> {
        ArgSpec::parse_in(s, &[])
    }
}

impl ArgSpec {
    /// Parses one `args` entry of a module whose `callbacks` are named `callbacks`, in order
    /// (`cb:NAME` resolves to its index there).
    pub fn parse_in(s: &str, callbacks: &[&str]) -> Result<ArgSpec, SpecError> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("cb:") {
            let name = name.trim();
            return match callbacks.iter().position(|c| *c == name) {
                Some(i) => Ok(ArgSpec::Cb(Some(i as u16))),
                None if callbacks.is_empty() => Err(SpecError::new(format!(
                    "unknown callback type `{name}` in `{s}`: the module declares no `callbacks`; declare it under the module's `callbacks:` or write bare `cb`"
                ))),
                None => Err(SpecError::new(format!(
                    "unknown callback type `{name}` in `{s}`; the module declares: {}",
                    callbacks.join(", ")
                ))),
            };
        }
        if let Some((kind, size)) = s.split_once(':') {
            let size: Size = size.parse()?;
            return match kind.trim() {
                "in" => Ok(ArgSpec::In(size)),
                "out" => Ok(ArgSpec::Out(size)),
                "inout" => Ok(ArgSpec::InOut(size)),
                "strv" => Ok(ArgSpec::Strv(Some(size))),
                other => Err(SpecError::new(format!(
                    "unknown buffer direction `{other}` in argument spec `{s}`; expected in:SIZE, out:SIZE, inout:SIZE, strv:SIZE or cb:NAME"
                ))),
            };
        }
        match s {
            "val" => Ok(ArgSpec::Val),
            "handle" => Ok(ArgSpec::Handle),
            "str" => Ok(ArgSpec::Str),
            "strv" => Ok(ArgSpec::Strv(None)),
            "cb" => Ok(ArgSpec::Cb(None)),
            "f64" | "double" | "f32" | "float" => Ok(ArgSpec::Float),
            "in" | "out" | "inout" => Err(SpecError::new(format!(
                "argument spec `{s}` needs a size; write `{s}:SIZE`, e.g. `{s}:64` or `{s}:arg2`"
            ))),
            "" => Err(SpecError::new(format!(
                "empty argument spec; expected one of: {ARG_SPECS}"
            ))),
            other => Err(SpecError::new(format!(
                "unknown argument spec `{other}`; expected one of: {ARG_SPECS}"
            ))),
        }
    }
}

impl FromStr for RetSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<RetSpec, SpecError> {
        match s.trim() {
            "val" => Ok(RetSpec::Val),
            "handle" => Ok(RetSpec::Handle),
            "str" => Ok(RetSpec::Str),
            "void" => Ok(RetSpec::Void),
            "f64" | "double" | "f32" | "float" => Ok(RetSpec::Float),
            other => Err(SpecError::new(format!(
                "unknown return spec `{other}`; expected one of: val, handle, str, void, f64"
            ))),
        }
    }
}

impl FromStr for Size {
    type Err = SpecError;

    /// `LITERAL | argN | *argN`, each optionally followed by `*LITERAL` (several multiply).
    fn from_str(s: &str) -> Result<Size, SpecError> {
        let whole = s.trim();
        let bad = |why: String| {
            SpecError::new(format!(
                "bad size `{whole}`: {why}; expected a byte count or argument such as {SIZE_FORMS}"
            ))
        };
        if whole.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let (deref, rest) = match whole.strip_prefix('*') {
            Some(rest) => (true, rest),
            None => (false, whole),
        };
        let mut parts = rest.split('*');
        let head = parts.next().unwrap_or("").trim();
        let base = if let Some(n) = head.strip_prefix("arg") {
            let index = parse_arg_index(n).map_err(|()| bad(format!("`{head}` is not argN")))?;
            if deref {
                SizeBase::Deref(index)
            } else {
                SizeBase::Arg(index)
            }
        } else if deref {
            return Err(bad(
                "`*` must be followed by an argument, as in `*arg1`".into()
            ));
        } else {
            SizeBase::Literal(parse_byte_count(head).map_err(bad)?)
        };
        let mut mul: u64 = 1;
        for factor in parts {
            let factor = factor.trim();
            if factor.starts_with("arg") {
                return Err(bad(format!(
                    "the multiplier `{factor}` must be a literal; only the first term may name an argument"
                )));
            }
            let f = parse_byte_count(factor).map_err(bad)?;
            if f == 0 {
                return Err(bad("a multiplier of 0 makes an empty buffer".into()));
            }
            mul = mul
                .checked_mul(f)
                .ok_or_else(|| bad("the multiplier overflows 64 bits".into()))?;
        }
        if let SizeBase::Literal(n) = base {
            if n.checked_mul(mul).is_none() {
                return Err(bad("the size overflows 64 bits".into()));
            }
        }
        Ok(Size { base, mul })
    }
}

/// `N` of `argN`: decimal, no sign, no leading zeros beyond `0` itself (so `arg01` is refused
/// rather than silently meaning `arg1`).
fn parse_arg_index(n: &str) -> Result<usize, ()> {
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0'))
    {
        return Err(());
    }
    n.parse().map_err(|_| ())
}

/// A byte count: decimal or `0x` hex, optionally with a binary suffix `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, `T`/`TiB` (and `B` for bytes). Shared by SIZE literals and rlimit values.
/// Decimal suffixes (`KB`, `MB`) are refused because their meaning (1000 or 1024) is ambiguous.
pub(crate) fn parse_byte_count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("missing number".into());
    }
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|_| format!("`{s}` is not a hex number"));
    }
    let digits_end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{s}` is not a number"));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{s}` does not fit in 64 bits"))?;
    let shift = match suffix.trim() {
        "" | "B" => 0,
        "K" | "KiB" | "k" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        "KB" | "kB" | "MB" | "GB" | "TB" => {
            return Err(format!(
                "`{s}`: decimal units are ambiguous; use KiB, MiB, GiB or TiB (powers of 1024)"
            ))
        }
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}`; use KiB, MiB, GiB or TiB"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` does not fit in 64 bits"))
}

impl fmt::Display for Size {
    /// The canonical spelling, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base {
            SizeBase::Literal(n) => write!(f, "{n}")?,
            SizeBase::Arg(i) => write!(f, "arg{i}")?,
            SizeBase::Deref(i) => write!(f, "*arg{i}")?,
        }
        if self.mul != 1 {
            write!(f, "*{}", self.mul)?;
        }
        Ok(())
    }
}

impl fmt::Display for ArgSpec {
    /// The canonical spelling, which parses back to the same value (`Float` prints as `f64`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgSpec::Val => f.write_str("val"),
            ArgSpec::Float => f.write_str("f64"),
            ArgSpec::Handle => f.write_str("handle"),
            ArgSpec::Str => f.write_str("str"),
            ArgSpec::In(s) => write!(f, "in:{s}"),
            ArgSpec::Out(s) => write!(f, "out:{s}"),
            ArgSpec::InOut(s) => write!(f, "inout:{s}"),
            ArgSpec::Strv(None) => f.write_str("strv"),
            ArgSpec::Strv(Some(s)) => write!(f, "strv:{s}"),
            ArgSpec::Cb(None) => f.write_str("cb"),
            // The module's callback types are not known here: their index stands in.
            ArgSpec::Cb(Some(i)) => write!(f, "cb:#{i}"),
        }
    }
}

impl fmt::Display for RetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RetSpec::Val => "val",
            RetSpec::Handle => "handle",
            RetSpec::Str => "str",
            RetSpec::Void => "void",
            RetSpec::Float => "f64",
        })
    }
}

impl ArgSpec {
    /// The buffer size of `in`/`out`/`inout` (bytes) and `strv:SIZE` (entries), `None` for
    /// the other specs.
    pub fn size(&self) -> Option<Size> {
        match self {
            ArgSpec::In(s) | ArgSpec::Out(s) | ArgSpec::InOut(s) | ArgSpec::Strv(Some(s)) => {
                Some(*s)
            }
            _ => None,
        }
    }
}

impl Size {
    /// The argument this size reads (`arg2`, `*arg1`), if any.
    pub fn arg(&self) -> Option<usize> {
        match self.base {
            SizeBase::Literal(_) => None,
            SizeBase::Arg(i) | SizeBase::Deref(i) => Some(i),
        }
    }
    /// The byte count when it is a literal (`64`, `4KiB*2`).
    pub fn literal(&self) -> Option<u64> {
        match self.base {
            SizeBase::Literal(n) => n.checked_mul(self.mul),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Size {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }
    fn lit(n: u64) -> Size {
        Size {
            base: SizeBase::Literal(n),
            mul: 1,
        }
    }

    #[test]
    fn size_forms() {
        assert_eq!(size("64"), lit(64));
        assert_eq!(size(" 64 "), lit(64));
        assert_eq!(size("0x40"), lit(64));
        assert_eq!(size("4KiB"), lit(4096));
        assert_eq!(size("4K"), lit(4096));
        assert_eq!(size("1MiB"), lit(1 << 20));
        assert_eq!(size("2GiB"), lit(2 << 30));
        assert_eq!(
            size("arg2"),
            Size {
                base: SizeBase::Arg(2),
                mul: 1
            }
        );
        assert_eq!(
            size("*arg1"),
            Size {
                base: SizeBase::Deref(1),
                mul: 1
            }
        );
        assert_eq!(
            size("arg2*8"),
            Size {
                base: SizeBase::Arg(2),
                mul: 8
            }
        );
        assert_eq!(
            size("*arg1*4"),
            Size {
                base: SizeBase::Deref(1),
                mul: 4
            }
        );
        assert_eq!(
            size("arg10 * 2 * 3"),
            Size {
                base: SizeBase::Arg(10),
                mul: 6
            }
        );
        assert_eq!(
            size("16*4"),
            Size {
                base: SizeBase::Literal(16),
                mul: 4
            }
        );
        assert_eq!(size("16*4").literal(), Some(64));
    }

    #[test]
    fn bad_sizes_say_why() {
        for (s, why) in [
            ("", "empty"),
            ("*64", "followed by an argument"),
            ("arg", "not argN"),
            ("argx", "not argN"),
            ("arg01", "not argN"),
            ("arg1*arg2", "must be a literal"),
            ("arg1*0", "multiplier of 0"),
            ("4KB", "decimal units"),
            ("4 parsecs", "unknown unit"),
            ("99999999999999999999", "64 bits"),
            ("16EiB", "unknown unit"),
            ("16TiB*16777216", "overflows"),
            ("x", "not a number"),
        ] {
            let e = s.parse::<Size>().expect_err(s);
            assert!(e.message().contains(why), "{s}: {e}");
            assert!(e.message().contains("expected"), "{s}: {e}");
        }
    }

    #[test]
    fn arg_specs() {
        assert_eq!("val".parse(), Ok(ArgSpec::Val));
        assert_eq!(" handle ".parse(), Ok(ArgSpec::Handle));
        assert_eq!("str".parse(), Ok(ArgSpec::Str));
        assert_eq!("cb".parse(), Ok(ArgSpec::Cb(None)));
        assert_eq!("strv".parse(), Ok(ArgSpec::Strv(None)));
        assert_eq!(
            "strv:arg1".parse(),
            Ok(ArgSpec::Strv(Some(Size {
                base: SizeBase::Arg(1),
                mul: 1
            })))
        );
        assert_eq!(
            ArgSpec::parse_in("cb:row", &["destroy", "row"]),
            Ok(ArgSpec::Cb(Some(1)))
        );
        let e = ArgSpec::parse_in("cb:rows", &["destroy", "row"]).unwrap_err();
        assert_eq!(
            e.message(),
            "unknown callback type `rows` in `cb:rows`; the module declares: destroy, row"
        );
        let e = "cb:row".parse::<ArgSpec>().unwrap_err();
        assert!(e.message().contains("declares no `callbacks`"), "{e}");
        for f in ["f64", "double", "f32", "float"] {
            assert_eq!(f.parse(), Ok(ArgSpec::Float));
        }
        assert_eq!("in:64".parse(), Ok(ArgSpec::In(lit(64))));
        assert_eq!("out: 4KiB".parse(), Ok(ArgSpec::Out(lit(4096))));
        assert_eq!(
            "inout:*arg1*4".parse(),
            Ok(ArgSpec::InOut(Size {
                base: SizeBase::Deref(1),
                mul: 4
            }))
        );
        let e = "strr".parse::<ArgSpec>().unwrap_err();
        assert_eq!(
            e.message(),
            "unknown argument spec `strr`; expected one of: val, handle, str, f64, in:SIZE, out:SIZE, inout:SIZE, strv, strv:SIZE, cb, cb:NAME"
        );
        let e = "in".parse::<ArgSpec>().unwrap_err();
        assert!(e.message().contains("write `in:SIZE`"), "{e}");
        let e = "up:64".parse::<ArgSpec>().unwrap_err();
        assert!(e.message().contains("unknown buffer direction `up`"), "{e}");
        assert!("in:".parse::<ArgSpec>().is_err());
        assert!("".parse::<ArgSpec>().is_err());
    }

    #[test]
    fn ret_specs() {
        assert_eq!("val".parse(), Ok(RetSpec::Val));
        assert_eq!("handle".parse(), Ok(RetSpec::Handle));
        assert_eq!(" str".parse(), Ok(RetSpec::Str));
        assert_eq!("void".parse(), Ok(RetSpec::Void));
        assert_eq!("double".parse(), Ok(RetSpec::Float));
        let e = "int".parse::<RetSpec>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown return spec `int`; expected one of: val, handle, str, void, f64"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "val",
            "f64",
            "handle",
            "str",
            "cb",
            "strv",
            "strv:arg1",
            "in:64",
            "out:arg2",
            "inout:*arg1*4",
            "in:arg3*8",
        ] {
            let spec: ArgSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
        }
        for s in ["val", "handle", "str", "void"] {
            assert_eq!(s.parse::<RetSpec>().unwrap().to_string(), s);
        }
    }
}
