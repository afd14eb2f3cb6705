//! Handle translation (program side).
//!
//! A `handle` a helper returns is a pointer into the helper's memory. The program gets a
//! token instead: the address of a program-owned block holding a snapshot of the first
//! [`MIRROR`] bytes of the helper's object, refreshed after every call that returns or takes
//! the handle. Programs that treat the handle as opaque see no difference; programs that peek
//! at scalar fields (`/usr/bin/file` reads `ms->flags`) read the helper's current values
//! instead of faulting. Tokens are translated back to the helper's pointer on every call, so
//! a later issue can re-point them when a restarted helper's allocations differ.

use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of a handle's object mirrored into the program.
pub const MIRROR: usize = 512;

#[repr(C, align(16))]
struct Block([u8; MIRROR]);

#[derive(Default)]
struct Table {
    /// token → (owner, remote value)
    by_token: HashMap<u64, (u32, u64)>,
    /// (owner, remote value) → token
    by_remote: HashMap<(u32, u64), u64>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

/// The token standing for `remote` of helper `owner`, made on first sight.
pub fn token_for(owner: u32, remote: u64) -> u64 {
    if remote == 0 {
        return 0;
    }
    let mut g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let t = g.get_or_insert_with(Table::default);
    if let Some(tok) = t.by_remote.get(&(owner, remote)) {
        return *tok;
    }
    // Leaked on purpose: a token must stay readable for as long as the program may hold it.
    let tok = Box::into_raw(Box::new(Block([0; MIRROR]))) as u64;
    t.by_token.insert(tok, (owner, remote));
    t.by_remote.insert((owner, remote), tok);
    tok
}

/// The helper's value behind `token`, or the value itself when it is no token of `owner`.
pub fn remote_of(owner: u32, token: u64) -> u64 {
    if token == 0 {
        return 0;
    }
    let g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    match g.as_ref().and_then(|t| t.by_token.get(&token)) {
        Some((o, r)) if *o == owner => *r,
        _ => token,
    }
}

/// True when `token` is one of our tokens.
pub fn is_token(token: u64) -> bool {
    let g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref().is_some_and(|t| t.by_token.contains_key(&token))
}

/// Copies a snapshot (at most MIRROR bytes) into the token's block.
pub fn refresh(token: u64, snapshot: &[u8]) {
    if !is_token(token) {
        return;
    }
    let n = snapshot.len().min(MIRROR);
    // SAFETY: `token` is the address of a leaked, live Block of MIRROR bytes (checked above).
    unsafe { std::ptr::copy_nonoverlapping(snapshot.as_ptr(), token as *mut u8, n) };
}

/// After a replay: the old token `old` now stands for what the replayed call returned (the
/// fresh token `new`, made by the replayed call, is dropped from the table).
pub fn retarget(old: u64, new: u64) {
    if old == new || old == 0 {
        return;
    }
    let mut g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(t) = g.as_mut() else { return };
    let Some((owner, remote)) = t.by_token.remove(&new) else {
        return;
    };
    if let Some((o, r)) = t.by_token.get(&old).copied() {
        t.by_remote.remove(&(o, r));
    }
    t.by_token.insert(old, (owner, remote));
    t.by_remote.insert((owner, remote), old);
    // The block behind `new` is leaked like every token; copy its fresh snapshot over.
    // SAFETY: both are live, leaked Blocks of MIRROR bytes.
    unsafe { std::ptr::copy_nonoverlapping(new as *const u8, old as *mut u8, MIRROR) };
}
