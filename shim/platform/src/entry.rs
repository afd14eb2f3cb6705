//! Entry points the host calls (the loader, glibc, the program through `dlopen`/`dlsym`, fork
//! handlers): their bodies must never unwind into C.
//!
//! [`entry_point!`](crate::entry_point) declares an `extern "C" fn` whose body runs under [`guard`]: a panic is
//! caught, reported in one line without allocating, and the entry returns its fallback value.

/// Runs `body`; if it panics, writes one line naming `what` and returns `fallback()`.
pub fn guard<R>(what: &str, body: impl FnOnce() -> R, fallback: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(_) => {
            crate::sys::write_stderr(b"fracture: internal error in ");
            crate::sys::write_stderr(what.as_bytes());
            crate::sys::write_stderr(b"; going on without it\n");
            fallback()
        }
    }
}

/// `entry_point! { fn name(args) -> Ret = fallback; { body } }` declares
/// `extern "C" fn name(args) -> Ret` running `body` under [`guard`] (a panic returns
/// `fallback`). For entries without a result, leave out `-> Ret = fallback`.
#[macro_export]
macro_rules! entry_point {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $fallback:expr; $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name($($arg: $ty),*) -> $ret {
            $crate::entry::guard(stringify!($name), move || -> $ret { $body }, || $fallback)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis extern "C" fn $name($($arg: $ty),*) {
            $crate::entry::guard(stringify!($name), move || $body, || ())
        }
    };
    // The same for entries that take raw pointers (`unsafe extern "C"`; their `# Safety`
    // section goes in the attributes). The body's unsafe operations still need their own
    // `unsafe` blocks, with their `// SAFETY:` comments.
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $fallback:expr; $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            $crate::entry::guard(stringify!($name), move || -> $ret { $body }, || $fallback)
        }
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis unsafe extern "C" fn $name($($arg: $ty),*) {
            $crate::entry::guard(stringify!($name), move || $body, || ())
        }
    };
}

#[cfg(test)]
#[allow(unsafe_code)] // an `unsafe` entry point under test
mod tests {
    entry_point! {
        fn panics_inside(x: i32) -> i32 = -1; {
            if x > 0 {
                panic!("boom");
            }
            x
        }
    }

    entry_point! {
        /// # Safety
        /// `p` is valid for writes.
        unsafe fn writes_then_panics(p: *mut i32) -> i32 = {
            // SAFETY: the test passes a live local.
            unsafe { *p = -7 };
            -2
        }; {
            // SAFETY: the caller passes a valid pointer.
            unsafe { *p = 1 };
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_entry_point_returns_its_fallback_instead_of_unwinding_into_c() {
        assert_eq!(panics_inside(0), 0);
        assert_eq!(panics_inside(5), -1);
        let mut x = 0;
        // SAFETY: a live local.
        assert_eq!(unsafe { writes_then_panics(&mut x) }, -2);
        assert_eq!(x, -7, "the fallback ran after the body's panic");
    }
}
