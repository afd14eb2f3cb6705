//! Handle translation (program side).
//!
//! A `handle` a helper returns is a pointer into that helper's memory. The program gets a
//! token instead: the address of a program-owned block holding a snapshot of the first
//! [`MIRROR`] bytes of the helper's object, refreshed after every call that returns or takes
//! the handle. Programs that treat the handle as opaque see no difference; programs that peek
//! at scalar fields (`/usr/bin/file` reads `ms->flags`) read the helper's current values
//! instead of faulting. A token is bound to one value per helper region (replicas each have
//! their own), translated back on every call, and re-pointed when a restarted helper's
//! allocations differ.
//!
//! # Safety
//! Token blocks are allocated here (`Box`) and freed only here; the mirror bytes copied into a
//! token are at most `MIRROR` bytes from a snapshot of that size, and a token is rewritten only
//! while its binding says it is ours.

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;

/// Bytes of a handle's object mirrored into the program.
pub const MIRROR: usize = 512;

/// Tokens one helper region may make: a helper that returns a new handle on every call
/// would otherwise grow the program's memory without bound (512 bytes a token, never
/// freed). Past it, a call returning a new handle fails as an answer the program cannot
/// take (the helper is restarted per `on_crash`). 65536 tokens are 32 MiB.
pub const MAX_TOKENS: usize = 1 << 16;

#[repr(C, align(16))]
struct Block([u8; MIRROR]);

#[derive(Default)]
struct Table {
    /// token → (region key, remote value) per region
    by_token: HashMap<u64, Vec<(usize, u64)>>,
    /// (region key, remote value) → token
    by_remote: HashMap<(usize, u64), u64>,
    /// Tokens made for each region key.
    made: HashMap<usize, usize>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Table) -> R) -> R {
    let mut g = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Table::default))
}

/// The token standing for `remote` of the helper region `key`, made on first sight; None
/// once the region made [`MAX_TOKENS`].
pub fn token_for(key: usize, remote: u64) -> Option<u64> {
    if remote == 0 {
        return Some(0);
    }
    with(|t| {
        if let Some(tok) = t.by_remote.get(&(key, remote)) {
            return Some(*tok);
        }
        new_token(t, key, remote)
    })
}

/// A new token bound to `remote` of region `key`. Leaked on purpose: a token must stay
/// readable for as long as the program may hold it.
fn new_token(t: &mut Table, key: usize, remote: u64) -> Option<u64> {
    let made = t.made.entry(key).or_insert(0);
    if *made >= MAX_TOKENS {
        return None;
    }
    *made += 1;
    let tok = Box::into_raw(Box::new(Block([0; MIRROR]))) as u64;
    t.by_token.insert(tok, vec![(key, remote)]);
    t.by_remote.insert((key, remote), tok);
    Some(tok)
}

/// A new token for `remote` of region `key`, never an existing one: a replayed call's handle
/// is about to be handed to the token the program holds ([`retarget`]), and a restarted
/// helper's allocations may reuse addresses that stale bindings of other tokens still name.
// A token found by address during a replay was another handle's: that handle's token lost
// its bindings in the retarget, and the program's next call with it sent the helper the
// token's own address (fx_stress, 4 threads with crashes under load).
pub fn fresh_token(key: usize, remote: u64) -> Option<u64> {
    if remote == 0 {
        return Some(0);
    }
    with(|t| new_token(t, key, remote))
}

/// After a helper of region `key` was replaced by a pristine one (`restore: none`): no
/// value it returns stands for a token of the old helper.
pub fn forget_region(key: usize) {
    with(|t| t.by_remote.retain(|(k, _), _| *k != key))
}

/// Binds `token` to `remote` in region `key` (a replica's value for the same handle).
pub fn bind(token: u64, key: usize, remote: u64) {
    if token == 0 {
        return;
    }
    with(|t| {
        let Some(v) = t.by_token.get_mut(&token) else {
            return;
        };
        if let Some(old) = v.iter_mut().find(|b| b.0 == key) {
            let prev = old.1;
            old.1 = remote;
            // The old value may stand for another token by now (a restarted helper reused it).
            if t.by_remote.get(&(key, prev)) == Some(&token) {
                t.by_remote.remove(&(key, prev));
            }
        } else {
            v.push((key, remote));
        }
        t.by_remote.insert((key, remote), token);
    })
}

/// The value behind `token` in region `key`, or the value itself when it is no token.
pub fn remote_of(key: usize, token: u64) -> u64 {
    if token == 0 {
        return 0;
    }
    with(|t| match t.by_token.get(&token) {
        Some(v) => v.iter().find(|b| b.0 == key).map_or(token, |b| b.1),
        None => token,
    })
}

/// True when `token` is one of our tokens.
pub fn is_token(token: u64) -> bool {
    with(|t| t.by_token.contains_key(&token))
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

/// After a replayed call: the token `old` takes over the bindings of the fresh token `new`
/// that call made, and its snapshot; `new` is dropped from the table.
pub fn retarget(old: u64, new: u64) {
    if retarget_bindings(old, new) {
        // SAFETY: both are live, leaked Blocks of MIRROR bytes.
        unsafe { std::ptr::copy_nonoverlapping(new as *const u8, old as *mut u8, MIRROR) };
    }
}

/// [`retarget`] for a token [`fresh_token`] made during a replay, which the program never saw:
/// once `old` has its bindings and snapshot, its block is freed (a restart would otherwise
/// leak a block per replayed handle).
pub fn retarget_fresh(old: u64, new: u64) {
    if new == 0 || old == new {
        return;
    }
    hand_over_fresh(old, new, retarget);
}

/// A replica's (or an observer's) handle for the call whose token the program keeps: `new` is
/// the fresh token that replica's answer got (never an existing one: a replica returning
/// another handle's value once moved that handle's bindings, every replica's, onto `keep`),
/// its one binding moves to `keep`, and its block is freed.
pub fn adopt_fresh(keep: u64, new: u64) {
    if new == 0 || keep == 0 || keep == new {
        return;
    }
    hand_over_fresh(keep, new, |k, n| {
        retarget_bindings(k, n);
    });
}

/// Moves the fresh token `new` onto `old` with `how`, then frees `new` (and its count toward
/// its region's bound) once it is out of the table.
fn hand_over_fresh(old: u64, new: u64, how: impl FnOnce(u64, u64)) {
    let made_for = with(|t| t.by_token.get(&new).and_then(|b| b.first()).map(|b| b.0));
    how(old, new);
    if !is_token(new) {
        if let Some(key) = made_for {
            with(|t| {
                t.made.entry(key).and_modify(|n| *n = n.saturating_sub(1));
            });
        }
        // SAFETY: `new` is a Box<Block> that fresh_token leaked for a call no caller saw (a
        // replayed call, or a replica other than the answering one); `how` removed it from
        // the table, so nothing refers to it any more.
        unsafe { drop(Box::from_raw(new as *mut Block)) };
    }
}

/// As [`retarget`] without the snapshot (a replica's value for a handle replica 0 returned).
/// Returns false when `new` had no binding.
pub fn retarget_bindings(old: u64, new: u64) -> bool {
    if old == new || old == 0 || new == 0 {
        return false;
    }
    let binds = with(|t| {
        let b = t.by_token.remove(&new).unwrap_or_default();
        for (k, r) in &b {
            if t.by_remote.get(&(*k, *r)) == Some(&new) {
                t.by_remote.remove(&(*k, *r));
            }
        }
        b
    });
    if binds.is_empty() {
        return false;
    }
    for (k, r) in binds {
        bind(old, k, r);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is global: each test uses region keys of its own.

    #[test]
    fn a_token_stands_for_one_value_per_region_and_translates_back() {
        let (k, k2) = (910_001, 910_002);
        let t = token_for(k, 0x1000).expect("a token");
        assert_ne!(t, 0x1000);
        assert_eq!(
            token_for(k, 0x1000),
            Some(t),
            "the same value, the same token"
        );
        assert!(is_token(t));
        assert_eq!(remote_of(k, t), 0x1000);
        assert_eq!(token_for(k, 0), Some(0), "NULL stays NULL");
        assert_eq!(remote_of(k, 0x55), 0x55, "a value that is no token passes");
        assert_eq!(remote_of(k2, t), t, "not bound in another region");
        // A replica's value for the same handle.
        bind(t, k2, 0x2000);
        assert_eq!(remote_of(k2, t), 0x2000);
        assert_eq!(remote_of(k, t), 0x1000);
        assert_eq!(token_for(k2, 0x2000), Some(t));
    }

    #[test]
    fn a_replayed_handle_hands_its_value_and_snapshot_to_the_programs_token() {
        let k = 910_003;
        let t = token_for(k, 0x1000).unwrap();
        // The restarted helper's object lives elsewhere now.
        let fresh = fresh_token(k, 0x3000).unwrap();
        assert_ne!(fresh, t);
        refresh(fresh, b"abc");
        retarget_fresh(t, fresh);
        assert_eq!(remote_of(k, t), 0x3000);
        assert!(!is_token(fresh), "the fresh token is gone");
        // SAFETY: `t` is a live token block of MIRROR bytes.
        let snap = unsafe { std::slice::from_raw_parts(t as *const u8, 3) };
        assert_eq!(snap, b"abc");
        assert_eq!(token_for(k, 0x3000), Some(t));
    }

    #[test]
    fn a_region_makes_at_most_max_tokens() {
        let k = 910_004;
        for i in 0..MAX_TOKENS as u64 {
            assert!(token_for(k, 0x10_0000 + i * 16).is_some());
        }
        assert_eq!(token_for(k, 0x9999_0000), None);
        // Known values keep their tokens.
        assert!(token_for(k, 0x10_0000).is_some());
    }
}
