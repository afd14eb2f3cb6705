//! The address space, page by page: reservations, fresh pages at fixed addresses, copies of
//! this process's own memory that cannot fault, and running a function on a new stack. The
//! room of `memory: on-demand` (SPEC.md, "Memory").
//!
//! # Safety
//! Every function that replaces a mapping at a fixed address is `unsafe`: the caller says the
//! range holds nothing of its own (a reservation, or a page it fetched). Reads and writes of
//! this process's memory at addresses someone else named go through `process_vm_readv` /
//! `process_vm_writev`, so an unmapped or read-only address is an error, never a fault.
//! Nothing here allocates except [`Mapping::read_all`], which callers use only where
//! allocation is safe (before threads exist, or outside signal handlers).

#![allow(unsafe_code)]

pub const PAGE: usize = 4096;
/// The first address mappings may use (`vm.mmap_min_addr` is 65536 here and on most systems).
pub const LOW: usize = 0x10000;
/// The end of the user address space with 4-level page tables.
pub const HIGH: usize = 0x7fff_ffff_f000;

/// One line of `/proc/self/maps`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    pub shared: bool,
    /// The path, `[heap]`, `[stack]`, `[vdso]`..., or empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    /// This process's mappings, in address order (allocates).
    pub fn read_all() -> Vec<Mapping> {
        Mapping::parse(&crate::fs::read_proc("/proc/self/maps"))
    }

    /// Parses the text of a maps file; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Vec<Mapping> {
        let mut v = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(range), Some(perms)) = (it.next(), it.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            else {
                continue;
            };
            let p = perms.as_bytes();
            let path = it.nth(3).unwrap_or("").to_string();
            v.push(Mapping {
                start,
                end,
                read: p.first() == Some(&b'r'),
                write: p.get(1) == Some(&b'w'),
                exec: p.get(2) == Some(&b'x'),
                shared: p.get(3) == Some(&b's'),
                path,
            });
        }
        v
    }
}

/// The unmapped ranges of `[LOW, HIGH)` between `maps` (sorted).
pub fn gaps(maps: &[Mapping]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = LOW;
    for m in maps {
        if m.start >= HIGH {
            break;
        }
        if m.start > at {
            out.push((at, m.start));
        }
        at = at.max(m.end);
    }
    if at < HIGH {
        out.push((at, HIGH));
    }
    out
}

const RESERVE_FLAGS: i32 = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;

/// Reserves `len` bytes anywhere, inaccessible (None: no room).
pub fn reserve(len: usize) -> Option<usize> {
    // SAFETY: a new mapping at an address the kernel picks: nothing of ours is replaced.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_NONE,
            RESERVE_FLAGS,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// Maps `len` bytes of fresh memory anywhere, readable and writable, committed page by page
/// on first touch (None: no room).
pub fn anonymous(len: usize) -> Option<usize> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new mapping at an address the kernel picks: nothing of ours is replaced.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, RESERVE_FLAGS, -1, 0) };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

/// The length of the C string at `p`, looking at `max` bytes at most (`strnlen`).
///
/// # Safety
/// `[p, p + max)` is readable, or the string's NUL lies before the first byte that is not.
pub unsafe fn c_str_len_within(p: *const libc::c_char, max: usize) -> usize {
    // SAFETY: forwarded contract.
    unsafe { libc::strnlen(p, max) }
}

/// The length of the C string at `p` (`strlen`).
///
/// # Safety
/// `p` points to a NUL-terminated string that stays readable during the call.
pub unsafe fn c_str_len(p: *const libc::c_char) -> usize {
    // SAFETY: forwarded contract.
    unsafe { libc::strlen(p) }
}

/// A new memfd named `name` (close-on-exec) of `size` bytes: memory to share with
/// processes forked later or given the fd.
pub fn memfd(name: &str, size: usize) -> std::io::Result<i32> {
    let cname = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: a NUL-terminated name of our own.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sizing the memfd just made.
    if unsafe { libc::ftruncate(fd, size as libc::off_t) } != 0 {
        let e = std::io::Error::last_os_error();
        crate::sys::close(fd);
        return Err(e);
    }
    Ok(fd)
}

/// Maps `len` bytes of `fd` shared, readable and writable, anywhere (the start address).
pub fn map_shared(fd: i32, len: usize) -> std::io::Result<usize> {
    map_read_write(len, libc::MAP_SHARED | libc::MAP_NORESERVE, fd)
}

/// Maps `len` zeroed bytes shared with the children forked later, anywhere.
pub fn map_shared_anonymous(len: usize) -> std::io::Result<usize> {
    map_read_write(len, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1)
}

/// A new readable and writable mapping of `len` bytes with `flags` (of `fd`, or -1), at an
/// address the kernel picks.
fn map_read_write(len: usize, flags: i32, fd: i32) -> std::io::Result<usize> {
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: a new mapping at an address the kernel picks: nothing of ours is replaced.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(p as usize)
}

/// Reserves the free range `[a, b)`, inaccessible, without replacing anything
/// (`MAP_FIXED_NOREPLACE`): false when something is there.
pub fn reserve_free(a: usize, b: usize) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let p = unsafe {
        libc::mmap(
            a as *mut libc::c_void,
            b - a,
            libc::PROT_NONE,
            RESERVE_FLAGS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    p as usize == a
}

/// Turns `[a, b)` back into an inaccessible reservation, dropping its pages.
///
/// # Safety
/// Nothing of the caller's lives in the range (fetched pages it has written back, or a
/// reservation).
pub unsafe fn drop_to_reservation(a: usize, b: usize) -> bool {
    // SAFETY: the caller owns the range (contract).
    let p = unsafe {
        libc::mmap(
            a as *mut libc::c_void,
            b - a,
            libc::PROT_NONE,
            RESERVE_FLAGS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p as usize == a
}

/// Puts a page holding the `PAGE` bytes at `src` at `page` (readable and writable) in one
/// change of the address space: the bytes are copied into a page made elsewhere, which is then
/// moved into place, so another thread never sees `page` mapped and still zero (a fresh page
/// mapped in place and then filled showed its zeros to a reader in between). False when it
/// could not be done (`page` is left as it was).
///
/// # Safety
/// `page` lies in a reservation or a range the caller owns; `src` is readable for `PAGE`
/// bytes and does not overlap the new page.
pub unsafe fn put_page(page: usize, src: *const u8) -> bool {
    let Some(scratch) = anonymous(PAGE) else {
        return false;
    };
    let scratch = scratch as *mut libc::c_void;
    // SAFETY: the scratch page is ours and PAGE bytes long; `src` is readable (contract).
    unsafe { std::ptr::copy_nonoverlapping(src, scratch.cast::<u8>(), PAGE) };
    // SAFETY: moves our scratch page over `page`, which the caller owns (contract).
    let moved = unsafe {
        libc::mremap(
            scratch,
            PAGE,
            PAGE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            page as *mut libc::c_void,
        )
    };
    if moved as usize != page {
        // SAFETY: the scratch page is still ours (the move failed).
        unsafe { libc::munmap(scratch, PAGE) };
        return false;
    }
    true
}

/// Puts a fresh zeroed page at `page`, readable and writable (and executable with `exec`).
///
/// # Safety
/// The page lies in a reservation or a range the caller owns.
pub unsafe fn fresh_page(page: usize, exec: bool) -> bool {
    // SAFETY: forwarded contract.
    unsafe { fresh_pages(page, 1, exec) }
}

/// Puts `n` fresh zeroed pages from `page` on, readable and writable (and executable with
/// `exec`), in one mapping (one change of the address space for a run of pages).
///
/// # Safety
/// The range lies in a reservation or a range the caller owns.
pub unsafe fn fresh_pages(page: usize, n: usize, exec: bool) -> bool {
    let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
    // SAFETY: the caller owns the range (contract).
    let p = unsafe {
        libc::mmap(
            page as *mut libc::c_void,
            n * PAGE,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    p as usize == page
}

/// Calls `f(start, end)` for each run of consecutive pages in `pages` (sorted in place).
pub fn page_runs(pages: &mut [u64], mut f: impl FnMut(u64, u64)) {
    pages.sort_unstable();
    let mut i = 0;
    while i < pages.len() {
        let start = pages[i];
        let mut end = start + PAGE as u64;
        i += 1;
        while i < pages.len() && pages[i] <= end {
            end = end.max(pages[i] + PAGE as u64);
            i += 1;
        }
        f(start, end);
    }
}

/// Makes `[a, b)` readable, writable and executable (a fetched page the module runs).
///
/// # Safety
/// The caller owns the range.
pub unsafe fn make_executable(a: usize, b: usize) -> bool {
    let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
    // SAFETY: the caller owns the range (contract).
    unsafe { libc::mprotect(a as *mut libc::c_void, b - a, prot) == 0 }
}

/// Makes `[a, b)` inaccessible, keeping its pages.
///
/// # Safety
/// Nothing the caller still runs reads or writes the range.
pub unsafe fn protect_none(a: usize, b: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { libc::mprotect(a as *mut libc::c_void, b - a, libc::PROT_NONE) == 0 }
}

/// Makes `[a, b)` readable and writable again, keeping its pages.
///
/// # Safety
/// The range holds nothing that must stay inaccessible.
pub unsafe fn protect_read_write(a: usize, b: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe {
        libc::mprotect(
            a as *mut libc::c_void,
            b - a,
            libc::PROT_READ | libc::PROT_WRITE,
        ) == 0
    }
}

/// Unmaps `[a, b)`.
///
/// # Safety
/// Nothing of the caller's lives in the range.
pub unsafe fn unmap(a: usize, b: usize) -> bool {
    // SAFETY: forwarded contract.
    unsafe { libc::munmap(a as *mut libc::c_void, b - a) == 0 }
}

/// Copies whole pages of this process's memory at the page addresses `pages` into `dst` (one
/// page each, in order) with one `process_vm_readv` per unreadable stretch; returns a bit mask
/// of the pages copied (bit i: `pages[i]`). At most 64 pages.
pub fn read_pages(pages: &[u64], dst: &mut [u8]) -> u64 {
    let n = pages.len().min(64).min(dst.len() / PAGE);
    let mut ok = 0u64;
    let mut i = 0;
    let pid = crate::sys::getpid();
    while i < n {
        let mut local = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; 64];
        let mut remote = local;
        let cnt = n - i;
        for j in 0..cnt {
            local[j].iov_base = dst[(i + j) * PAGE..].as_mut_ptr().cast();
            local[j].iov_len = PAGE;
            remote[j].iov_base = pages[i + j] as *mut libc::c_void;
            remote[j].iov_len = PAGE;
        }
        // SAFETY: the local iovecs lie inside `dst`; the kernel checks the remote ones.
        let got = unsafe {
            libc::process_vm_readv(
                pid,
                local.as_ptr(),
                cnt as u64,
                remote.as_ptr(),
                cnt as u64,
                0,
            )
        };
        let whole = if got > 0 { got as usize / PAGE } else { 0 };
        for j in 0..whole {
            ok |= 1 << (i + j);
        }
        // The page after the last whole one could not be read: skip it.
        i += whole + 1;
    }
    ok
}

/// Writes `bytes` into this process's memory at `addr` with `process_vm_writev`: an unmapped
/// or read-only destination is an error (false), never a fault.
pub fn write_own(addr: u64, bytes: &[u8]) -> bool {
    let local = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: the local iovec is the caller's slice; the kernel checks the remote one.
    let n = unsafe { libc::process_vm_writev(crate::sys::getpid(), &local, 1, &remote, 1, 0) };
    n == bytes.len() as isize
}

/// Runs `f(arg)` on the stack whose top is `top` (16-byte aligned); never returns.
///
/// # Safety
/// `[.., top)` is a writable stack of the caller's that nothing else uses; `f` never returns.
pub unsafe fn run_on_stack(top: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    // SAFETY: the caller gives a fresh stack; the call leaves rsp 16-byte aligned minus the
    // return address, as the ABI wants at a function's entry; `f` does not return (ud2).
    unsafe {
        std::arch::asm!(
            "mov rsp, {top}",
            "xor ebp, ebp",
            "call {f}",
            "ud2",
            top = in(reg) top & !15,
            f = in(reg) f,
            in("rdi") arg,
            options(noreturn)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_give_ranges_permissions_and_paths() {
        let m = Mapping::parse(
            "555555554000-555555556000 r-xp 00000000 08:01 123 /usr/bin/xz\n\
             7ffff7dd0000-7ffff7dd2000 rw-p 00000000 00:00 0 \n\
             7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]\n\
             garbage\n",
        );
        assert_eq!(m.len(), 3);
        assert!(m[0].exec && !m[0].write && m[0].path == "/usr/bin/xz");
        assert!(m[1].write && m[1].path.is_empty());
        assert_eq!(m[2].path, "[stack]");
        let g = gaps(&m);
        assert_eq!(g[0], (LOW, 0x5555_5555_4000));
        assert_eq!(g[1], (0x5555_5555_6000, 0x7fff_f7dd_0000));
        assert_eq!(
            g.len(),
            3,
            "the stack ends where the user address space does"
        );
    }

    #[test]
    fn own_pages_are_read_and_a_hole_is_skipped_without_a_fault() {
        let a = reserve(3 * PAGE).unwrap();
        // SAFETY: our own fresh reservation.
        unsafe {
            assert!(fresh_page(a, false));
            assert!(fresh_page(a + 2 * PAGE, false));
            *(a as *mut u8) = 7;
            *((a + 2 * PAGE) as *mut u8) = 9;
        }
        let mut buf = vec![0u8; 3 * PAGE];
        let ok = read_pages(
            &[a as u64, (a + PAGE) as u64, (a + 2 * PAGE) as u64],
            &mut buf,
        );
        assert_eq!(ok, 0b101);
        assert_eq!((buf[0], buf[2 * PAGE]), (7, 9));
        assert!(write_own(a as u64 + 1, &[5, 6]));
        assert!(!write_own((a + PAGE) as u64, &[1]));
        // SAFETY: our own reservation.
        unsafe {
            assert_eq!(*((a + 2) as *const u8), 6);
            assert!(unmap(a, a + 3 * PAGE));
        }
    }
}
