//! x86_64 SysV call frames: what a trampoline saves, and where each argument of a mapped
//! function lives (a general register, an xmm register or a stack slot).
//!
//! Pure and safe: the trampoline (`trampoline.rs`) fills a [`Frame`], the dispatcher reads and
//! rewrites it through the layout computed here.

use module_map::{ArgSpec, Function};

/// Registers and stack of one call, as the trampoline saved them, and the return registers the
/// trampoline restores. The layout is shared with the assembly in `trampoline.rs`: offsets are
/// asserted below.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    /// rdi, rsi, rdx, rcx, r8, r9.
    pub gp: [u64; 6],
    /// rax at entry: for variadic callees, the number of vector registers used (al).
    pub rax: u64,
    /// Address of the first stack argument in the caller's frame.
    pub stack: *const u64,
    /// xmm0..xmm7, low and high halves.
    pub xmm: [[u64; 2]; 8],
    pub ret_rax: u64,
    pub ret_rdx: u64,
    pub ret_xmm0: [u64; 2],
    pub ret_xmm1: [u64; 2],
    /// The caller's return address (for profiles and reports).
    pub caller: u64,
    pub _pad: u64,
}

pub const FRAME_SIZE: usize = 256;
const _: () = assert!(std::mem::size_of::<Frame>() == FRAME_SIZE);
const _: () = assert!(std::mem::offset_of!(Frame, rax) == 48);
const _: () = assert!(std::mem::offset_of!(Frame, stack) == 56);
const _: () = assert!(std::mem::offset_of!(Frame, xmm) == 64);
const _: () = assert!(std::mem::offset_of!(Frame, ret_rax) == 192);
const _: () = assert!(std::mem::offset_of!(Frame, ret_rdx) == 200);
const _: () = assert!(std::mem::offset_of!(Frame, ret_xmm0) == 208);
const _: () = assert!(std::mem::offset_of!(Frame, ret_xmm1) == 224);
const _: () = assert!(std::mem::offset_of!(Frame, caller) == 240);

impl Default for Frame {
    fn default() -> Self {
        Frame {
            gp: [0; 6],
            rax: 0,
            stack: std::ptr::null(),
            xmm: [[0; 2]; 8],
            ret_rax: 0,
            ret_rdx: 0,
            ret_xmm0: [0; 2],
            ret_xmm1: [0; 2],
            caller: 0,
            _pad: 0,
        }
    }
}

/// Where one argument is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Gp(u8),
    Xmm(u8),
    Stack(u16),
}

/// Stack words passed with every call whatever the spec lists: a function declared with
/// fewer `args` than it takes still gets the stack arguments the ABI may have placed (up to
/// this many; the caller's stack mapping may allow fewer).
pub const ABI_STACK: usize = 6;

/// Most stack words a call may carry (arguments past the registers).
pub const MAX_STACK: usize = 32;
/// Most arguments a function spec may list.
pub const MAX_ARGS: usize = 32;

/// The placement of every argument of one function.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub args: Vec<(ArgSpec, Loc)>,
    /// Stack words to copy: every stack slot the listed arguments can occupy.
    pub nstack: usize,
}

impl Layout {
    /// Places the listed arguments as the SysV classifier does for INTEGER (`val`, pointers,
    /// handles) and SSE (`f64`) eightbytes. A small struct takes one `val` per eightbyte.
    pub fn of(f: &Function) -> Result<Layout, String> {
        if f.args.len() > MAX_ARGS {
            return Err(format!(
                "{} arguments; at most {MAX_ARGS} are supported",
                f.args.len()
            ));
        }
        let (mut gp, mut xmm, mut stack) = (0u8, 0u8, 0u16);
        let mut args = Vec::with_capacity(f.args.len());
        for spec in &f.args {
            let loc = match spec {
                ArgSpec::Float if xmm < 8 => {
                    xmm += 1;
                    Loc::Xmm(xmm - 1)
                }
                ArgSpec::Float => {
                    stack += 1;
                    Loc::Stack(stack - 1)
                }
                _ if gp < 6 => {
                    gp += 1;
                    Loc::Gp(gp - 1)
                }
                _ => {
                    stack += 1;
                    Loc::Stack(stack - 1)
                }
            };
            args.push((*spec, loc));
        }
        if stack as usize > MAX_STACK {
            return Err(format!(
                "{stack} stack words; at most {MAX_STACK} are supported"
            ));
        }
        Ok(Layout {
            args,
            nstack: stack as usize,
        })
    }
}

/// Reads the 64-bit value of an argument from registers and a copy of the stack words.
pub fn arg_value(frame: &Frame, stack: &[u64], loc: Loc) -> u64 {
    match loc {
        Loc::Gp(i) => frame.gp[i as usize],
        Loc::Xmm(i) => frame.xmm[i as usize][0],
        Loc::Stack(i) => stack.get(i as usize).copied().unwrap_or(0),
    }
}

/// Writes the 64-bit value of an argument into registers or the stack words.
pub fn set_arg(frame: &mut Frame, stack: &mut [u64], loc: Loc, v: u64) {
    match loc {
        Loc::Gp(i) => frame.gp[i as usize] = v,
        Loc::Xmm(i) => frame.xmm[i as usize][0] = v,
        Loc::Stack(i) => {
            if let Some(s) = stack.get_mut(i as usize) {
                *s = v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use module_map::RetSpec;

    fn f(args: Vec<ArgSpec>) -> Function {
        Function {
            name: "f".into(),
            args,
            ret: RetSpec::Val,
            pure: false,
            line: 1,
        }
    }

    #[test]
    fn ints_fill_six_registers_then_the_stack() {
        let l = Layout::of(&f(vec![ArgSpec::Val; 8])).unwrap();
        assert_eq!(l.args[5].1, Loc::Gp(5));
        assert_eq!(l.args[6].1, Loc::Stack(0));
        assert_eq!(l.nstack, 2);
    }

    #[test]
    fn floats_do_not_take_general_registers() {
        let l = Layout::of(&f(vec![
            ArgSpec::Val,
            ArgSpec::Float,
            ArgSpec::Float,
            ArgSpec::Str,
        ]))
        .unwrap();
        assert_eq!(l.args[3].1, Loc::Gp(1));
        assert_eq!(l.args[2].1, Loc::Xmm(1));
        let l = Layout::of(&f(vec![ArgSpec::Float; 10])).unwrap();
        assert_eq!(l.args[9].1, Loc::Stack(1));
    }
}
