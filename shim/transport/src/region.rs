//! The shared-memory queue between the program and one helper process.
//!
//! # Safety
//! One memfd per helper process holds a [`RegionHeader`], `CHANNELS` [`Channel`] headers and
//! one data area per channel. It is mapped `MAP_SHARED` before the zygote is forked, so the
//! program, the zygote and every helper see it at the same address. Everything in it is
//! `#[repr(C)]` plain data or atomics; it holds no pointers, only offsets. The peer is
//! untrusted: readers copy a message out once ([`Channel::read_msg`]) and validate offsets
//! and lengths against [`DATA_SIZE`] before use.
//!
//! Wake-up protocol (per direction): the sender writes the message, bumps the message
//! sequence (`*_seq`) with SeqCst, and when the receiver announced it sleeps (`*_sleeping`)
//! bumps the event word (`*_ev`) and wakes it. The receiver spins on the sequence, then reads
//! the event word, announces sleep (SeqCst), re-checks the sequence, and futex-waits on the
//! event word (the value it read) with a timeout.
//! SYNC POINT: sender's seq bump ↔ receiver's seq load; sleeping flag store ↔ its load.
//! The zygote bumps `to_prog_ev` of every channel when the helper dies, so a program thread
//! asleep in a call wakes at once.

#![allow(unsafe_code)]

use fracture_platform::abi::{MAX_ARGS, MAX_STACK};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

pub const MAGIC: u64 = 0x4652_4143_5455_5245; // "FRACTURE"
/// Bumped whenever the layout of the region or a message changes (v2: the zygote's
/// `state`/`wait_status` moved to [`Watch`], out of the helpers' reach; v3: a message's stack
/// words follow its common fields; v4: `Msg::hint` and `Channel::last_hint`, where a waiting
/// caller and its helper run, and how long the helper worked; v5: `Msg::pages_off`/`pages_len`
/// and the page messages of `memory: on-demand`; v6: the lead line, a call of registers only
/// and its answer beside the sequence words).
pub const VERSION: u32 = 6;
/// Channels per helper: calls in flight at once (one per calling thread).
pub const CHANNELS: usize = 16;
/// Frames of a helper's fault kept per crash record (the faulting pc first, then return
/// addresses); the region holds that many words per channel.
pub const MAX_FRAMES: usize = 16;
/// Bytes of argument and result data per channel (sparse: pages are used only when touched).
pub const DATA_SIZE: usize = 16 << 20;
const HEADER_SIZE: usize = 4096;
const CHANNEL_HDR: usize = 2048;
pub const REGION_SIZE: usize = HEADER_SIZE + CHANNELS * CHANNEL_HDR + CHANNELS * DATA_SIZE;

/// Helper states in [`RegionHeader::state`].
pub const STATE_NONE: u32 = 0;
pub const STATE_ALIVE: u32 = 1;
pub const STATE_DEAD: u32 = 2;

#[repr(C)]
pub struct RegionHeader {
    /// Written once by the program at creation; checked by the helper on attach.
    pub magic: u64,
    pub version: u32,
    pub nchannels: u32,
    /// Bumped by the program when a channel without a server thread gets a message; the
    /// helper's main thread waits on it. Also bumped on shutdown.
    pub doorbell: AtomicU32,
    pub doorbell_sleeping: AtomicU32,
    /// A helper resumed from a checkpoint announces itself here: STATE_ALIVE and its `pid`
    /// (helper writes; for debugging only: the program finds the resumed helper among the
    /// frozen copy's children, see `zygote::resume`). The zygote's word is in [`Watch`].
    pub state: AtomicU32,
    pub _unused: AtomicI32,
    pub pid: AtomicI32,
    /// Set by the zygote when the program is gone: the helper exits in order.
    pub shutdown: AtomicU32,
    pub _reserved: AtomicU64,
    /// Written by the helper's fatal-signal handler: the signal and the faulting address.
    pub fault_sig: AtomicI32,
    pub fault_addr: AtomicU64,
    /// Channel whose call was running on the faulting thread (-1: none / unknown).
    pub fault_channel: AtomicI32,
    /// `restore: checkpoint`: pid of the frozen copy of the helper (0: none); written by the
    /// helper that forked it, read by the program.
    pub ckpt_pid: AtomicI32,
    /// Command to the checkpoint (futex word): CKPT_IDLE, CKPT_RESUME. Program writes.
    pub ckpt_cmd: AtomicU32,
    /// Environment index the resumed helper applies (program writes before CKPT_RESUME).
    pub ckpt_env: AtomicU32,
    /// Written by the helper's fatal-signal handler: the faulting pc and return addresses
    /// found on the faulting thread's stack (for crash reports), and how many there are.
    pub fault_frames: [AtomicU64; MAX_FRAMES],
    pub fault_nframes: AtomicU32,
}

pub const CKPT_IDLE: u32 = 0;
pub const CKPT_RESUME: u32 = 1;

/// One message; the sender of the latest message owns it until the peer answers. The common
/// fields come first (three cache lines after the channel's seq words): a header, a call's
/// words and an answer's words, each kind carrying only its spans (see `Carries`); a call
/// adds the xmm registers, its arguments' buffer table and its stack words.
///
/// Who writes and who reads: the sender writes every field it uses (`write_msg`, only the parts
/// its kind needs), then posts; the receiver copies the message out once (`read_msg`, counts
/// bounded by the tables) and never reads the slot again for that message. A call goes program
/// -> helper (or helper -> program for a nested call or a callback); its answer goes back the
/// other way in the same slot. The program validates everything in an answer or a nested call
/// against its own bounds; the helper trusts the program.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Msg {
    /// `MSG_CALL`, `MSG_RETURN`, `MSG_FAIL`, `MSG_CHECKPOINT`.
    pub kind: u32,
    /// A call: the function's index in the plan (the same in every process of one map).
    pub func: u32,
    /// The sender's errno at the call, the callee's after it (answers).
    pub errno: i32,
    /// A call's stack words in `stack`.
    pub nstack: u32,
    /// Entries of `arg_off`/`arg_len` in use (calls).
    pub nargs: u32,
    /// In a call, written by the program, read by the helper as a scheduling hint only: 0 when
    /// the caller spins for the answer, else the caller's CPU + 1 when it sleeps (the serving
    /// thread then runs on that CPU, see `call::colocate`). In an answer, written by the
    /// helper: how long it took to serve the call, in ns (0: not said), read by the program for
    /// its wait policy only.
    pub hint: u32,
    /// Data of this message lies in `[data_base, data_end)` of the channel's data area.
    pub data_base: u64,
    pub data_end: u64,
    pub gp: [u64; 6],
    pub rax: u64,
    pub ret_rax: u64,
    pub ret_rdx: u64,
    pub ret_xmm0: [u64; 2],
    pub ret_xmm1: [u64; 2],
    /// For `ret: str`: offset and length (without NUL) of the string, u64::MAX = NULL.
    pub ret_off: u64,
    pub ret_len: u64,
    /// Snapshot of the object behind a returned handle (or the first handle argument): its
    /// first bytes, for programs that read fields of an "opaque" handle (`file` reads
    /// `ms->flags`). Offset (u64::MAX = none) and length in the data area.
    pub mirror_off: u64,
    pub mirror_len: u64,
    /// A call's stack words (`nstack` of them are copied): right after the common fields,
    /// so the first ones share the third cache line and the words passed beyond the spec
    /// cost little.
    pub stack: [u64; MAX_STACK],
    pub xmm: [[u64; 2]; 8],
    /// Per argument: offset in the data area (u64::MAX = NULL pointer) and length.
    pub arg_off: [u64; MAX_ARGS],
    pub arg_len: [u64; MAX_ARGS],
    /// `memory: on-demand` only (`pages_len` 0: none): a table of pages in the data area. In a call
    /// (program -> helper), pages sent ahead; in an answer or a nested call (helper ->
    /// program), the bytes the module changed in the program's pages (see `call::pages`).
    /// Copied for every kind of message.
    pub pages_off: u64,
    pub pages_len: u64,
}

impl Msg {
    /// A message with every field 0 (kind 0 is no kind: the sender sets it).
    pub fn zeroed() -> Msg {
        // SAFETY: Msg is plain data (integers only); all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }
}

const HOT: usize = std::mem::offset_of!(Msg, stack);
/// End of the header every message carries (`kind` .. `hint`), start of a call's words.
const HEAD: usize = std::mem::offset_of!(Msg, data_base);
/// Start of an answer's words.
const RET: usize = std::mem::offset_of!(Msg, ret_rax);
const _: () = assert!(HEAD == 24 && RET == 96);
const _: () = assert!(HOT.is_multiple_of(8) && HOT <= 192);
// The layout is a protocol (tests/c-fixtures/fx_forge.c writes it by hand): bump VERSION when
// any of these moves.
const _: () = assert!(std::mem::offset_of!(Msg, data_base) == 24);
const _: () = assert!(std::mem::offset_of!(Msg, gp) == 40);
const _: () = assert!(std::mem::offset_of!(Msg, ret_rax) == 96);
const _: () = assert!(HOT == 176);
const _: () = assert!(std::mem::offset_of!(Msg, xmm) == 432);
const _: () = assert!(std::mem::offset_of!(Msg, arg_off) == 560);
const _: () = assert!(std::mem::offset_of!(Msg, arg_len) == 816);
const _: () = assert!(std::mem::size_of::<Msg>() == 1088);
// Version 5: the page table of `memory: on-demand` after the argument table.
const _: () = assert!(std::mem::offset_of!(Msg, pages_off) == 1072);
// Version 6: the lead line (sequence words, `lead`, `lead_words`), the sleep words on the
// next line, the slot from the third.
const _: () = assert!(std::mem::offset_of!(Channel, to_prog_seq) == 4);
const _: () = assert!(std::mem::offset_of!(Channel, consumed) == 8);
const _: () = assert!(std::mem::offset_of!(Channel, lead) == 12);
const _: () = assert!(std::mem::offset_of!(Channel, lead_words) == 16);
const _: () = assert!(std::mem::offset_of!(Channel, to_prog_ev) == 72);
const _: () = assert!(std::mem::offset_of!(Channel, prog_sleeping) == 76);
const _: () = assert!(std::mem::offset_of!(Channel, msg) == 128);
// Version 4: `Msg::hint` (was padding) and `Channel::last_hint`.
const _: () = assert!(std::mem::offset_of!(Msg, hint) == 20);
const _: () = assert!(std::mem::offset_of!(Channel, last_hint) == 84);
const _: () = assert!(std::mem::offset_of!(RegionHeader, fault_sig) == 48);

/// Copies `n` 64-bit words with volatile accesses (shared memory the peer may change).
///
/// # Safety
/// Both ranges hold `n` aligned words.
unsafe fn copy_words(dst: *mut u64, src: *const u64, n: usize) {
    for i in 0..n {
        // SAFETY: forwarded contract.
        unsafe { std::ptr::write_volatile(dst.add(i), std::ptr::read_volatile(src.add(i))) };
    }
}

pub const MSG_CALL: u32 = 1;
pub const MSG_RETURN: u32 = 2;
/// The server could not run the call (bad request, unknown function, data too large).
pub const MSG_FAIL: u32 = 3;
/// Program → helper: fork a checkpoint now (sent only while no call is in flight).
pub const MSG_CHECKPOINT: u32 = 4;
/// Helper -> program, during a call (`memory: on-demand`): send the pages whose addresses are
/// `gp[..nargs]`. Answered with MSG_RETURN, `ret_rax` a bit mask of the pages sent.
pub const MSG_PAGES: u32 = 5;
/// Helper -> program, during a call: bytes the module changed (`pages_off`), to be written
/// when the call returns (a call that crashes writes nothing). Answered with MSG_RETURN.
pub const MSG_WRITES: u32 = 6;
/// Program -> helper, between calls: send the page of module memory at `gp[0]`, which the
/// program reads through a pointer the module gave it. Answered with MSG_RETURN, `ret_rax`
/// 1 when sent.
pub const MSG_PEEK: u32 = 7;
pub const NULL_OFF: u64 = u64::MAX;

#[repr(C)]
pub struct Channel {
    // Line 0: what moves with every message, and nothing else: the sequence words and the
    // lead. A call of registers only and its answer travel in this one line each way.
    /// Program → helper: message count.
    pub to_helper_seq: AtomicU32,
    /// Helper → program: message count.
    pub to_prog_seq: AtomicU32,
    /// Last `to_helper_seq` a helper thread took in (helper writes; the program rewinds it to
    /// `to_helper_seq` before starting a new helper, so nothing is served twice).
    pub consumed: AtomicU32,
    /// Where the latest message is (written by its sender before the post, like the slot):
    /// [`LEAD_NONE`] (or anything else), the message slot `msg`; [`LEAD_CALL`] in the low byte,
    /// a call of registers only in `lead_words`, with `al` and the function index in this
    /// word's upper bits; [`LEAD_RETURN`], its answer there (see [`FlatCall`],
    /// [`FlatAnswer`]).
    pub lead: AtomicU32,
    /// A flat call: gp[0..6]. A flat answer: errno and hint, rax, rdx, xmm0, the low half of
    /// xmm1. Read once by the receiver like the slot.
    pub lead_words: [AtomicU64; 6],
    // Line 1: read with every post, written only around sleeps and starts.
    /// Program → helper: event word (futex), receiver-asleep flag.
    pub to_helper_ev: AtomicU32,
    pub helper_sleeping: AtomicU32,
    /// Helper → program: event word (futex), receiver-asleep flag.
    pub to_prog_ev: AtomicU32,
    pub prog_sleeping: AtomicU32,
    /// Set by the helper when a server thread serves this channel.
    pub served: AtomicU32,
    /// The hint of the program's last call on this channel (see `Msg::hint`): where the
    /// serving thread went. Written and read by the program; a helper that scribbles on it
    /// changes only how the program waits.
    pub last_hint: AtomicU32,
    _line1: [u32; 10],
    pub msg: Msg,
}

/// `Channel::lead`: the message is in the slot.
pub const LEAD_NONE: u32 = 0;
/// `Channel::lead`'s low byte for a call of registers only; the word's next byte is the `al`
/// register (the vector register count a variadic callee reads; rax carries nothing else at
/// a call), its upper half the function index.
pub const LEAD_CALL: u32 = 0xc1;
/// `Channel::lead`, the whole word, for the answer to a call of registers only: a word a
/// helper scribbling garbage over the queue hits by chance once in 2^32 messages, as it
/// would an answer's kind in the slot (the program then fails the call as garbage).
pub const LEAD_RETURN: u32 = 0x5245_54d2;
/// The kind byte of `Channel::lead`.
pub const LEAD_KIND: u32 = 0xff;
const LEAD_AL_SHIFT: u32 = 8;
const LEAD_FUNC_SHIFT: u32 = 16;

const _: () = assert!(std::mem::size_of::<RegionHeader>() <= HEADER_SIZE);
const _: () = assert!(std::mem::size_of::<Channel>() <= CHANNEL_HDR);
// The zygote's status words (state, wait status, pid, generation), shared with the program.
const _: () = assert!(std::mem::size_of::<Watch>() == 16);

/// One mapped region (program side and helper side see the same address).
#[derive(Clone, Copy)]
pub struct Region {
    base: usize,
}

// SAFETY: the region is shared memory accessed only through atomics and through the
// copy-once message protocol documented above.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Creates a memfd of REGION_SIZE and maps it shared. The fd stays open (close-on-exec):
    /// an exec-mode helper maps the same memfd after its exec.
    pub fn create(name: &str) -> std::io::Result<(Region, i32)> {
        let fd = fracture_platform::vm::memfd(name, REGION_SIZE)?;
        let p = match fracture_platform::vm::map_shared(fd, REGION_SIZE) {
            Ok(p) => p,
            Err(e) => {
                fracture_platform::sys::close(fd);
                return Err(e);
            }
        };
        // SAFETY: the header lies at the start of the mapping just made, which nobody else
        // has yet.
        unsafe {
            let r = Region { base: p };
            let h = r.header_ptr();
            (*h).magic = MAGIC;
            (*h).version = VERSION;
            (*h).nchannels = CHANNELS as u32;
            Ok((r, fd))
        }
    }

    /// Maps an existing region from an fd inherited across exec (exec-mode helper), and
    /// checks its magic and version.
    pub fn attach(fd: i32) -> std::io::Result<Region> {
        // REGION_SIZE bytes of an fd the program passed us; checked below.
        let p = fracture_platform::vm::map_shared(fd, REGION_SIZE)?;
        let r = Region { base: p };
        if !r.valid() {
            return Err(std::io::Error::other("not a fracture region"));
        }
        Ok(r)
    }

    /// The region whose header `h` is.
    ///
    /// # Safety
    /// `h` is the header of a live region (at the start of its mapping).
    pub unsafe fn from_header(h: &RegionHeader) -> Region {
        Region {
            base: h as *const RegionHeader as usize,
        }
    }

    /// A key naming this region (its address), for per-helper tables such as handles.
    #[inline]
    pub fn key(&self) -> usize {
        self.base
    }

    fn header_ptr(&self) -> *mut RegionHeader {
        self.base as *mut RegionHeader
    }

    #[inline]
    pub fn header(&self) -> &RegionHeader {
        // SAFETY: the header lies at the start of a live mapping of REGION_SIZE bytes and is
        // only mutated through atomics after creation.
        unsafe { &*self.header_ptr() }
    }

    /// True when the mapping carries our magic and version (checked by a helper on attach).
    pub fn valid(&self) -> bool {
        let h = self.header();
        h.magic == MAGIC && h.version == VERSION && h.nchannels as usize == CHANNELS
    }

    #[inline]
    pub fn channel(&self, i: usize) -> &Channel {
        assert!(i < CHANNELS);
        // SAFETY: i < CHANNELS, so the channel header lies inside the mapping; fields other
        // than atomics are accessed only through `read_msg`/`msg_ptr`.
        unsafe { &*((self.base + HEADER_SIZE + i * CHANNEL_HDR) as *const Channel) }
    }

    /// Start of channel `i`'s data area.
    #[inline]
    pub fn data(&self, i: usize) -> *mut u8 {
        assert!(i < CHANNELS);
        (self.base + HEADER_SIZE + CHANNELS * CHANNEL_HDR + i * DATA_SIZE) as *mut u8
    }
}

impl Channel {
    #[inline]
    pub fn msg_ptr(&self) -> *mut Msg {
        std::ptr::addr_of!(self.msg) as *mut Msg
    }

    /// Copies the current message out of shared memory once (the peer may change it later):
    /// the common fields, and for a call its registers, argument table and stack words (counts
    /// bounded by the table sizes, whatever the peer wrote).
    pub fn read_msg(&self) -> Msg {
        let mut m = Msg::zeroed();
        self.read_msg_into(&mut m);
        m
    }

    /// Program side: [`Channel::read_msg`] of a helper's message.
    pub fn read_reply(&self) -> Msg {
        let mut m = Msg::zeroed();
        self.read_reply_into(&mut m);
        m
    }

    /// Program side: [`Channel::read_msg_into`] of a helper's message. A helper never sends
    /// a call in the lead (its calls are nested ones, in the slot): one there is garbage,
    /// read as a message of no kind (kind 0), which the program refuses.
    pub fn read_reply_into(&self, m: &mut Msg) {
        let lead = self.lead.load(Relaxed);
        if lead != LEAD_RETURN && lead & LEAD_KIND == LEAD_CALL {
            m.kind = 0;
            return;
        }
        self.read_msg_lead(m, lead);
    }

    /// [`Channel::read_msg`] into `m`, a message the caller reuses: only the fields its kind
    /// carries are copied (see `Carries`; the others keep what an earlier message left, as
    /// the counts and the kind say they are not in use). Saves zeroing and moving 1 KiB per
    /// message on the hot path, and reading cache lines the peer did not write.
    pub fn read_msg_into(&self, m: &mut Msg) {
        self.read_msg_lead(m, self.lead.load(Relaxed));
    }

    /// [`Channel::read_msg_into`] of the message `lead` (the lead word, loaded once) says.
    fn read_msg_lead(&self, m: &mut Msg, lead: u32) {
        // A call of registers only or its answer, in the lead line.
        match lead {
            LEAD_RETURN => {
                let a = self.flat_answer_of(lead);
                m.kind = a.kind;
                m.func = 0;
                m.errno = a.errno;
                m.hint = a.hint;
                (m.nstack, m.nargs) = (0, 0);
                (m.ret_rax, m.ret_rdx, m.ret_xmm0, m.ret_xmm1) =
                    (a.ret_rax, a.ret_rdx, a.ret_xmm0, a.ret_xmm1);
                (m.ret_off, m.ret_len, m.mirror_off, m.mirror_len) = (NULL_OFF, 0, NULL_OFF, 0);
                (m.pages_off, m.pages_len) = (NULL_OFF, 0);
                return;
            }
            _ if lead & LEAD_KIND == LEAD_CALL => {
                self.read_lead_call(m, lead);
                m.arg_off.fill(0);
                m.arg_len.fill(0);
                return;
            }
            _ => {}
        }
        let src = self.msg_ptr();
        let dst = m as *mut Msg as *mut u64;
        // SAFETY: the message lies in the live mapping; every range copied is inside Msg (the
        // counts are bounded by the table sizes), and every bit pattern is a valid Msg.
        unsafe {
            // The kind first: it says which words follow (a peer changing it meanwhile gets
            // a message of the kind read here, copied once).
            copy_words(dst, src as *const u64, 1);
            let carries = Carries::of(m.kind);
            copy_words(dst.add(1), (src as *const u64).add(1), HEAD / 8 - 1);
            if carries.call_words {
                copy_words(
                    dst.add(HEAD / 8),
                    (src as *const u64).add(HEAD / 8),
                    (RET - HEAD) / 8,
                );
            }
            if carries.answer_words {
                copy_words(
                    dst.add(RET / 8),
                    (src as *const u64).add(RET / 8),
                    (HOT - RET) / 8,
                );
            } else {
                // A call's answer fields read as in a fresh message.
                m.ret_rax = 0;
                m.ret_rdx = 0;
                m.ret_xmm0 = [0; 2];
                m.ret_xmm1 = [0; 2];
                m.ret_off = 0;
                m.ret_len = 0;
                m.mirror_off = 0;
                m.mirror_len = 0;
            }
            copy_words(
                std::ptr::addr_of_mut!(m.pages_off),
                std::ptr::addr_of!((*src).pages_off).cast(),
                2,
            );
            if m.kind == MSG_CALL {
                self.read_call_regs(m, m.nstack as usize);
                let n = (m.nargs as usize).min(MAX_ARGS);
                copy_words(
                    m.arg_off.as_mut_ptr(),
                    std::ptr::addr_of!((*src).arg_off).cast(),
                    n,
                );
                copy_words(
                    m.arg_len.as_mut_ptr(),
                    std::ptr::addr_of!((*src).arg_len).cast(),
                    n,
                );
                // Entries past `nargs` read as zero, as in a fresh message (a peer that says
                // fewer than the function has gets no leftovers of an earlier call).
                m.arg_off[n..].fill(0);
                m.arg_len[n..].fill(0);
            }
        }
    }

    /// Writes a message into the slot: only the parts its kind carries (see `Carries`).
    /// Words the peer only reads (the xmm registers, the page table) are written only when
    /// they change: their cache lines then stay shared by both sides instead of moving to
    /// the writer and back on every message.
    pub fn write_msg(&self, m: &Msg) {
        // SYNC POINT: as in `write_flat_call`: the message is in the slot.
        self.lead.store(LEAD_NONE, Relaxed);
        let dst = self.msg_ptr() as *mut u64;
        let src = m as *const Msg as *const u64;
        let carries = Carries::of(m.kind);
        // SAFETY: the slot belongs to us (we are the sender); ranges are inside Msg.
        unsafe {
            copy_words(dst, src, HEAD / 8);
            if carries.call_words {
                copy_words(dst.add(HEAD / 8), src.add(HEAD / 8), (RET - HEAD) / 8);
            }
            if carries.answer_words {
                copy_words(dst.add(RET / 8), src.add(RET / 8), (HOT - RET) / 8);
            }
            let pages = std::ptr::addr_of_mut!((*self.msg_ptr()).pages_off);
            write_changed(pages, std::ptr::addr_of!(m.pages_off), 2);
            if m.kind == MSG_CALL {
                let slot = self.msg_ptr();
                let k = (m.nstack as usize).min(MAX_STACK);
                copy_words(
                    std::ptr::addr_of_mut!((*slot).stack).cast(),
                    m.stack.as_ptr(),
                    k,
                );
                self.write_xmm(&m.xmm);
                let n = (m.nargs as usize).min(MAX_ARGS);
                copy_words(
                    std::ptr::addr_of_mut!((*slot).arg_off).cast(),
                    m.arg_off.as_ptr(),
                    n,
                );
                copy_words(
                    std::ptr::addr_of_mut!((*slot).arg_len).cast(),
                    m.arg_len.as_ptr(),
                    n,
                );
            }
        }
    }
}

/// A call of registers only (see `call::flat` in the shim): its function, errno, hint,
/// registers and stack words; no buffers, no pages. [`Channel::write_flat_call`] puts the
/// function, the general registers and `al` (of rax, the part a callee may read: a variadic
/// one's vector register count) in the lead line, the rest in the slot (each word only
/// when it changed: a caller in a loop repeats them, and a line left alone stays in both
/// caches). Any reader takes it as the equivalent [`Msg`] (no arguments in the table, an
/// empty data range, no page table).
pub struct FlatCall<'a> {
    pub func: u32,
    pub errno: i32,
    pub hint: u32,
    pub gp: &'a [u64; 6],
    pub rax: u64,
    pub xmm: &'a [[u64; 2]; 8],
    /// At most `MAX_STACK` words are sent.
    pub stack: &'a [u64],
}

/// The answer to a call of registers only: a plain return (`MSG_RETURN`) with its errno,
/// hint and return registers, in the lead line but for the upper half of xmm1. Read once by
/// [`Channel::read_flat_answer`] (`kind` 0 there: the answer is not one, read the slot).
#[derive(Clone, Copy, Debug, Default)]
pub struct FlatAnswer {
    pub kind: u32,
    pub errno: i32,
    pub hint: u32,
    pub ret_rax: u64,
    pub ret_rdx: u64,
    pub ret_xmm0: [u64; 2],
    pub ret_xmm1: [u64; 2],
}

/// Two 32-bit fields of one header word (the first at the lower address).
fn pair(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

const _: () = assert!(cfg!(target_endian = "little"));
// A function index fits the lead word's upper 20 bits.
const _: () = assert!(fracture_platform::stubs::MAX_FNS < 1 << (32 - LEAD_FUNC_SHIFT));
const _: () =
    assert!(std::mem::offset_of!(Msg, errno) == 8 && std::mem::offset_of!(Msg, nargs) == 16);

impl Channel {
    /// A call's stack words (`nstack` of them, bounded by the table) and xmm registers, out
    /// of the slot into `m`, copied once.
    fn read_call_regs(&self, m: &mut Msg, nstack: usize) {
        let src = self.msg_ptr();
        // SAFETY: both ranges lie inside the message in the live mapping (at most MAX_STACK
        // stack words); any bits are valid integers.
        unsafe {
            copy_words(
                m.stack.as_mut_ptr(),
                std::ptr::addr_of!((*src).stack).cast(),
                nstack.min(MAX_STACK),
            );
            copy_words(
                m.xmm.as_mut_ptr().cast(),
                std::ptr::addr_of!((*src).xmm).cast(),
                16,
            );
        }
    }

    /// A call's xmm registers into the slot, each word only when it changed (the peer only
    /// reads them, and a caller's registers mostly repeat: the lines stay in both caches).
    fn write_xmm(&self, xmm: &[[u64; 2]; 8]) {
        // SAFETY: the slot belongs to the sender, our caller; the 16 words lie inside Msg.
        unsafe {
            write_changed(
                std::ptr::addr_of_mut!((*self.msg_ptr()).xmm).cast(),
                xmm.as_ptr().cast(),
                16,
            )
        }
    }

    /// Writes a call of registers only (the sender's, as for `write_msg`).
    pub fn write_flat_call(&self, c: &FlatCall<'_>) {
        let slot = self.msg_ptr();
        let dst = slot as *mut u64;
        let n = c.stack.len().min(MAX_STACK);
        let head = [pair(c.errno as u32, n as u32), pair(0, c.hint)];
        // SAFETY: the slot belongs to us (we are the sender) and lies in the live mapping;
        // every range written is inside Msg (n <= MAX_STACK), every source holds the words
        // read.
        unsafe {
            write_changed(dst.add(1), head.as_ptr(), 2);
            write_changed(
                std::ptr::addr_of_mut!((*slot).stack).cast(),
                c.stack.as_ptr(),
                n,
            );
        }
        self.write_xmm(c.xmm);
        for (w, v) in self.lead_words.iter().zip(c.gp) {
            w.store(*v, Relaxed);
        }
        // SYNC POINT: published with the slot by the sender's `post` (SeqCst bump of `seq`);
        // the receiver reads it after it sees the new sequence.
        self.lead.store(
            LEAD_CALL | ((c.rax as u32 & 0xff) << LEAD_AL_SHIFT) | (c.func << LEAD_FUNC_SHIFT),
            Relaxed,
        );
    }

    /// The call of registers only the lead says (`lead`, its word) into `m`: every field a
    /// read of the equivalent message gives but the argument tables, which keep what they
    /// held (`nargs` 0 says none is in use).
    fn read_lead_call(&self, m: &mut Msg, lead: u32) {
        let src = self.msg_ptr();
        let mut head = [0u64; 2];
        // SAFETY: header words 1 and 2 lie inside the message in the live mapping; any bits
        // are valid integers.
        unsafe { copy_words(head.as_mut_ptr(), (src as *const u64).add(1), 2) };
        let k = ((head[0] >> 32) as usize).min(MAX_STACK);
        m.nstack = k as u32;
        self.read_call_regs(m, k);
        m.kind = MSG_CALL;
        m.func = lead >> LEAD_FUNC_SHIFT;
        m.rax = u64::from((lead >> LEAD_AL_SHIFT) & 0xff);
        m.errno = head[0] as u32 as i32;
        m.nargs = 0;
        m.hint = (head[1] >> 32) as u32;
        m.data_base = 0;
        m.data_end = 0;
        for (g, w) in m.gp.iter_mut().zip(&self.lead_words) {
            *g = w.load(Relaxed);
        }
        (m.ret_rax, m.ret_rdx, m.ret_xmm0, m.ret_xmm1) = (0, 0, [0; 2], [0; 2]);
        (m.ret_off, m.ret_len, m.mirror_off, m.mirror_len) = (0, 0, 0, 0);
        (m.pages_off, m.pages_len) = (NULL_OFF, 0);
    }

    /// Helper side: copies the call into `m` when it is one of registers only (in the lead),
    /// as [`Channel::read_msg_into`] would but for the argument tables (unused: `nargs` 0).
    /// False otherwise, with `m` untouched: the caller reads the message with
    /// [`Channel::read_msg_into`].
    pub fn read_flat_call(&self, m: &mut Msg) -> bool {
        let lead = self.lead.load(Relaxed);
        if lead & LEAD_KIND != LEAD_CALL {
            return false;
        }
        self.read_lead_call(m, lead);
        true
    }

    /// Helper side: writes the answer to a call of registers only (no string, no mirror, no
    /// page table).
    pub fn write_flat_answer(&self, a: &FlatAnswer) {
        let words = [
            pair(a.errno as u32, a.hint),
            a.ret_rax,
            a.ret_rdx,
            a.ret_xmm0[0],
            a.ret_xmm0[1],
            a.ret_xmm1[0],
        ];
        for (w, v) in self.lead_words.iter().zip(words) {
            w.store(v, Relaxed);
        }
        let slot = self.msg_ptr();
        // SAFETY: the slot belongs to us (we answer the call in it) and lies in the live
        // mapping; the word is inside Msg.
        unsafe {
            write_changed(
                std::ptr::addr_of_mut!((*slot).ret_xmm1[1]),
                &a.ret_xmm1[1],
                1,
            )
        };
        // SYNC POINT: as in `write_flat_call`.
        self.lead.store(LEAD_RETURN, Relaxed);
    }

    /// The answer to a call of registers only, when the lead holds one (`kind` MSG_RETURN),
    /// copied once; `kind` 0 otherwise (the message is in the slot).
    pub fn read_flat_answer(&self) -> FlatAnswer {
        self.flat_answer_of(self.lead.load(Relaxed))
    }

    /// [`Channel::read_flat_answer`] for the lead word `lead`, loaded once by the caller.
    fn flat_answer_of(&self, lead: u32) -> FlatAnswer {
        if lead != LEAD_RETURN {
            return FlatAnswer::default();
        }
        let mut w = [0u64; 6];
        for (v, l) in w.iter_mut().zip(&self.lead_words) {
            *v = l.load(Relaxed);
        }
        // SAFETY: the word lies inside the message in the live mapping; any bits are valid.
        let xmm1_hi =
            unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*self.msg_ptr()).ret_xmm1[1])) };
        FlatAnswer {
            kind: MSG_RETURN,
            errno: w[0] as u32 as i32,
            hint: (w[0] >> 32) as u32,
            ret_rax: w[1],
            ret_rdx: w[2],
            ret_xmm0: [w[3], w[4]],
            ret_xmm1: [w[5], xmm1_hi],
        }
    }
}

/// Which words of the common part a message of one kind carries. The common part is three
/// spans: the header (`kind` .. `hint`, with the seq words on the channel's first cache line),
/// the call's words (`data_base` .. `rax`: its data bounds and registers) and the answer's
/// words (`ret_rax` .. `mirror_len`). A call (`MSG_CALL`) carries no answer words and an
/// answer (`MSG_RETURN`, `MSG_FAIL`) no call words: a scalar call then moves two cache lines
/// each way (the header's and its own span's), and the span the peer did not write stays in
/// both caches. Reading a message copies what its kind carries and zeroes a call's answer
/// words; an answer's call words keep what the reader's buffer held (nothing reads them).
/// The other kinds (page requests, writes, peeks, checkpoints) carry all three.
#[derive(Clone, Copy)]
struct Carries {
    call_words: bool,
    answer_words: bool,
}

impl Carries {
    fn of(kind: u32) -> Carries {
        match kind {
            MSG_CALL => Carries {
                call_words: true,
                answer_words: false,
            },
            MSG_RETURN | MSG_FAIL => Carries {
                call_words: false,
                answer_words: true,
            },
            _ => Carries {
                call_words: true,
                answer_words: true,
            },
        }
    }
}

/// Writes the `n` words of `src` into `dst` where they differ (volatile accesses: shared
/// memory the peer reads). A word that did not change is not written, so its cache line
/// stays shared.
///
/// # Safety
/// Both ranges hold `n` aligned words.
unsafe fn write_changed(dst: *mut u64, src: *const u64, n: usize) {
    for i in 0..n {
        // SAFETY: forwarded contract.
        unsafe {
            let v = std::ptr::read_volatile(src.add(i));
            if std::ptr::read_volatile(dst.add(i)) != v {
                std::ptr::write_volatile(dst.add(i), v);
            }
        }
    }
}

/// Set when the program and its helpers may spin on more threads than there are CPUs
/// (replicated or sampled processes): spinning waiters yield between rounds.
pub static CROWDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Checks of the word between two yields of a crowded spinner.
const CROWDED_ROUND: u32 = 4;

pub use fracture_platform::futex::{wait as futex_wait, wake as futex_wake};

/// One direction of a channel.
pub struct Dir<'a> {
    pub seq: &'a AtomicU32,
    pub ev: &'a AtomicU32,
    pub sleeping: &'a AtomicU32,
}

impl Dir<'_> {
    /// Publishes the message already written and wakes the receiver if it sleeps.
    #[inline]
    pub fn post(&self) {
        // SYNC POINT: the message slot and data area were written before this; the receiver's
        // `seq` load in `wait` (spinning or after its futex wait) sees them after it sees the
        // new sequence (SeqCst on both sides).
        self.seq.fetch_add(1, SeqCst);
        // SYNC POINT: pairs with the receiver's `sleeping` store, which it makes after reading
        // `ev` and before its last `seq` check. Either our load comes first, and then its
        // check sees the new sequence (it does not sleep), or we see it asleep and bump `ev`
        // past the value its futex wait compares with, and wake it. (A receiver that is not
        // asleep costs no second locked instruction and no write to `ev`.)
        if self.sleeping.load(SeqCst) != 0 {
            self.ev.fetch_add(1, SeqCst);
            futex_wake(self.ev);
        }
    }

    /// Spins until `seq` differs from `seen`, for `spin` at most; the new sequence, or None
    /// when the time ran out (or `spin` is zero). `yielding`: the peer may be waiting for
    /// this very CPU; yield between short rounds.
    pub fn spin(&self, seen: u32, spin: Duration, yielding: bool) -> Option<u32> {
        if spin.is_zero() {
            return None;
        }
        // Started after the first round: an answer there costs no clock read.
        let mut start: Option<fracture_platform::clock::Stamp> = None;
        // A round of `pause`s lasts ~50 ns each here: when crowded, yield after a few, so a
        // peer with work is not kept off its CPU for microseconds.
        let crowded = yielding || CROWDED.load(Relaxed);
        let round = if crowded { CROWDED_ROUND } else { 64 };
        loop {
            for _ in 0..round {
                // SYNC POINT: pairs with the sender's `seq` bump in `post`.
                let s = self.seq.load(SeqCst);
                if s != seen {
                    return Some(s);
                }
                std::hint::spin_loop();
            }
            match start {
                None => start = Some(fracture_platform::clock::Stamp::now()),
                Some(t) if t.elapsed() >= spin => return None,
                Some(_) => {}
            }
            if crowded {
                // More spinners than CPUs (replicas): let the one with work run.
                fracture_platform::sys::yield_now();
            }
        }
    }

    /// Waits until `seq` differs from `seen`, spinning for `spin` first (see [`Dir::spin`]),
    /// then sleeping in slices of `slice`; between slices `give_up()` may end the wait (peer
    /// dead). Returns the new sequence, or None when `give_up` said so.
    pub fn wait(
        &self,
        seen: u32,
        spin: Duration,
        yielding: bool,
        slice: Duration,
        mut give_up: impl FnMut() -> bool,
    ) -> Option<u32> {
        if let Some(s) = self.spin(seen, spin, yielding) {
            return Some(s);
        }
        loop {
            // SYNC POINT: the `ev` value the futex wait compares with; a `post` after this load
            // changes it, so the wait cannot miss that post.
            let ev = self.ev.load(SeqCst);
            // SYNC POINT: announced before the re-check of `seq`, paired with the sender's
            // `sleeping` load after its `seq` bump (see `post`).
            self.sleeping.store(1, SeqCst);
            let s = self.seq.load(SeqCst);
            if s != seen {
                self.sleeping.store(0, SeqCst);
                return Some(s);
            }
            if give_up() {
                self.sleeping.store(0, SeqCst);
                return None;
            }
            futex_wait(self.ev, ev, slice);
            self.sleeping.store(0, SeqCst);
            let s = self.seq.load(SeqCst);
            if s != seen {
                return Some(s);
            }
        }
    }
}

/// Rings a doorbell word: bump and wake.
pub fn ring(word: &AtomicU32) {
    // SYNC POINT: pairs with the doorbell waiter's load of the word before its futex wait
    // (supervise/helper.rs, the serving-thread starter).
    word.fetch_add(1, SeqCst);
    futex_wake(word);
}

impl Channel {
    #[inline]
    pub fn to_helper(&self) -> Dir<'_> {
        Dir {
            seq: &self.to_helper_seq,
            ev: &self.to_helper_ev,
            sleeping: &self.helper_sleeping,
        }
    }
    #[inline]
    pub fn to_prog(&self) -> Dir<'_> {
        Dir {
            seq: &self.to_prog_seq,
            ev: &self.to_prog_ev,
            sleeping: &self.prog_sleeping,
        }
    }
}

/// What the zygote tells the program about one helper: written by the zygote (and by the
/// program when it adopts a helper resumed from a checkpoint), read by the program. It lives
/// in a shared anonymous mapping that every helper unmaps right after its fork, so no helper
/// can forge its own death, its wait status or another process's pid.
#[repr(C)]
pub struct Watch {
    /// STATE_NONE, STATE_ALIVE after a spawn, STATE_DEAD once the zygote reaped the helper.
    pub state: AtomicU32,
    /// Raw wait status of the dead helper.
    pub wait_status: AtomicI32,
    /// Pid of the current helper.
    pub pid: AtomicI32,
    /// Helpers started for this region so far.
    pub generation: AtomicU32,
}

impl Watch {
    /// The wait status, once the zygote reaped the helper.
    pub fn reaped(&self) -> Option<i32> {
        (self.state.load(SeqCst) == STATE_DEAD).then(|| self.wait_status.load(SeqCst))
    }
}

/// One [`Watch`] per region, in one mapping made before the zygote is forked.
pub struct Watches {
    base: usize,
    n: usize,
}

// SAFETY: the mapping holds atomics only, shared by design.
unsafe impl Send for Watches {}
// SAFETY: as above.
unsafe impl Sync for Watches {}

impl Watches {
    fn bytes(n: usize) -> usize {
        (n.max(1) * std::mem::size_of::<Watch>()).next_multiple_of(4096)
    }

    /// Maps `n` zeroed watches shared with the children forked later.
    pub fn create(n: usize) -> std::io::Result<Watches> {
        // Zeroed memory is a valid Watch array.
        let base = fracture_platform::vm::map_shared_anonymous(Self::bytes(n))?;
        Ok(Watches { base, n })
    }

    /// The watch of region `k`.
    pub fn get(&self, k: usize) -> &Watch {
        assert!(k < self.n);
        // SAFETY: k < n: inside the live mapping; Watch holds atomics only.
        unsafe { &*((self.base + k * std::mem::size_of::<Watch>()) as *const Watch) }
    }

    /// In a helper, right after its fork: drops the mapping, so nothing the module does can
    /// write it.
    ///
    /// # Safety
    /// No reference obtained from [`Watches::get`] may be used afterwards in this process.
    pub unsafe fn unmap(&self) {
        // SAFETY: forwarded contract: the mapping is ours and unused from now on.
        unsafe { fracture_platform::vm::unmap(self.base, self.base + Self::bytes(self.n)) };
    }
}

impl Region {
    /// In a helper, right after its fork: unmaps another helper's region.
    ///
    /// # Safety
    /// Nothing in this process may touch this region afterwards.
    pub unsafe fn unmap(&self) {
        // SAFETY: forwarded contract; the mapping is REGION_SIZE bytes at base.
        unsafe { fracture_platform::vm::unmap(self.base, self.base + REGION_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn zeroed() -> Msg {
        // SAFETY: Msg is plain data; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }

    /// One memfd mapped twice in one process, as the program and an exec-mode helper map it:
    /// a call and its answer cross on channel 3, with the receiver spinning, then sleeping.
    #[test]
    fn a_call_and_its_answer_cross_one_memfd_mapped_twice() {
        let (prog, fd) = Region::create("fracture-test").expect("memfd");
        let helper = Region::attach(fd).expect("attach");
        assert_ne!(prog.key(), helper.key(), "two mappings");
        for spin in [Duration::from_micros(200), Duration::ZERO] {
            let server = std::thread::spawn(move || {
                let ch = helper.channel(3);
                let seen = ch.consumed.load(SeqCst);
                let s = ch
                    .to_helper()
                    .wait(seen, spin, false, Duration::from_millis(50), || false)
                    .expect("a call");
                ch.consumed.store(s, SeqCst);
                let m = ch.read_msg();
                assert_eq!((m.kind, m.func, m.nstack), (MSG_CALL, 7, 2));
                assert_eq!(m.stack[..2], [11, 22]);
                assert_eq!(m.gp[0], 0xabc);
                let mut r = zeroed();
                r.kind = MSG_RETURN;
                r.ret_rax = m.gp[0] + m.stack[0] + m.stack[1];
                ch.write_msg(&r);
                ch.to_prog().post();
            });
            let ch = prog.channel(3);
            let seen = ch.to_prog_seq.load(SeqCst);
            let mut m = zeroed();
            m.kind = MSG_CALL;
            m.func = 7;
            m.nstack = 2;
            m.stack[0] = 11;
            m.stack[1] = 22;
            m.gp[0] = 0xabc;
            ch.write_msg(&m);
            ch.to_helper().post();
            ch.to_prog()
                .wait(seen, spin, false, Duration::from_millis(50), || false)
                .expect("an answer");
            let r = ch.read_msg();
            assert_eq!((r.kind, r.ret_rax), (MSG_RETURN, 0xabc + 33));
            server.join().unwrap();
        }
    }

    /// The peer's counts are bounded by the tables, and an answer moves only the fields every
    /// message needs.
    #[test]
    fn a_message_is_read_within_its_tables_whatever_counts_the_peer_wrote() {
        let (r, _fd) = Region::create("fracture-test").expect("memfd");
        let ch = r.channel(0);
        let mut m = zeroed();
        m.kind = MSG_CALL;
        m.stack = [5; MAX_STACK];
        m.arg_off = [9; MAX_ARGS];
        m.nstack = MAX_STACK as u32;
        m.nargs = MAX_ARGS as u32;
        ch.write_msg(&m);
        // A peer writes huge counts straight into the slot.
        // SAFETY: the slot is in our live mapping; plain data.
        unsafe {
            (*ch.msg_ptr()).nstack = u32::MAX;
            (*ch.msg_ptr()).nargs = u32::MAX;
        }
        let got = ch.read_msg();
        assert_eq!(got.stack, [5; MAX_STACK]);
        assert_eq!(got.arg_off, [9; MAX_ARGS]);
        // An answer's stack words are not read (a RETURN carries none).
        // SAFETY: as above.
        unsafe { (*ch.msg_ptr()).kind = MSG_RETURN };
        let ans = ch.read_msg();
        assert_eq!(ans.stack, [0; MAX_STACK]);
        assert_eq!(ans.kind, MSG_RETURN);
    }

    /// A flat call (in the lead line) is read as the message it stands for by either reader,
    /// and so is a flat answer; a message written with `write_msg` after one is read from the
    /// slot again.
    #[test]
    fn flat_calls_and_answers_read_as_the_messages_they_stand_for() {
        let (r, _fd) = Region::create("fracture-test").expect("memfd");
        let ch = r.channel(1);
        let gp = [1, 2, 3, 4, 5, 6];
        let mut xmm = [[0u64; 2]; 8];
        xmm[3] = [0x4045_0000_0000_0000, 7];
        let stack = [10, 20, 30];
        let flat = FlatCall {
            func: 9,
            errno: 34,
            hint: 5,
            gp: &gp,
            rax: 2,
            xmm: &xmm,
            stack: &stack,
        };
        ch.write_flat_call(&flat);
        let m = ch.read_msg();
        assert_eq!(
            (m.kind, m.func, m.errno, m.nstack, m.nargs, m.hint),
            (MSG_CALL, 9, 34, 3, 0, 5)
        );
        assert_eq!((m.gp, m.rax, m.xmm), (gp, 2, xmm));
        assert_eq!(m.stack[..3], stack);
        assert_eq!((m.data_base, m.data_end, m.pages_len), (0, 0, 0));
        assert_eq!((m.arg_off, m.arg_len), ([0; MAX_ARGS], [0; MAX_ARGS]));
        let mut fast = zeroed();
        assert!(ch.read_flat_call(&mut fast));
        assert_eq!(
            (fast.func, fast.errno, fast.nstack, fast.hint),
            (9, 34, 3, 5)
        );
        assert_eq!((fast.gp, fast.rax, fast.xmm), (gp, 2, xmm));
        assert_eq!(fast.stack[..3], stack);
        // The program never takes a call from the lead (a helper sends none there).
        assert_eq!(ch.read_reply().kind, 0);
        // The same call written whole is in the slot: not a flat one, read the same.
        let mut general = m;
        general.gp[0] = 77;
        ch.write_msg(&general);
        assert!(!ch.read_flat_call(&mut fast));
        assert_eq!(ch.read_msg().gp[0], 77);
        // A stack count past the table, written into the slot by a peer, is bounded.
        ch.write_flat_call(&flat);
        // SAFETY: the slot is in our live mapping; plain data.
        unsafe { (*ch.msg_ptr()).nstack = u32::MAX };
        assert!(ch.read_flat_call(&mut fast));
        assert_eq!(fast.nstack as usize, MAX_STACK);
        // An answer, both ways round.
        let a = FlatAnswer {
            kind: MSG_RETURN,
            errno: 5,
            hint: 700,
            ret_rax: 0xfeed,
            ret_rdx: 0xbeef,
            ret_xmm0: [1, 2],
            ret_xmm1: [3, 4],
        };
        ch.write_flat_answer(&a);
        let m = ch.read_msg();
        assert_eq!((m.kind, m.errno, m.hint), (MSG_RETURN, 5, 700));
        assert_eq!(
            (m.ret_rax, m.ret_rdx, m.ret_xmm0, m.ret_xmm1),
            (0xfeed, 0xbeef, [1, 2], [3, 4])
        );
        assert_eq!(
            (m.ret_off, m.mirror_off, m.pages_len),
            (NULL_OFF, NULL_OFF, 0)
        );
        let b = ch.read_flat_answer();
        assert_eq!(
            (b.kind, b.errno, b.hint, b.ret_rax, b.ret_xmm1),
            (MSG_RETURN, 5, 700, 0xfeed, [3, 4])
        );
        assert_eq!(ch.read_reply().ret_rax, 0xfeed);
        // An answer in the slot is no flat one.
        let mut fail = zeroed();
        fail.kind = MSG_FAIL;
        fail.errno = 3;
        ch.write_msg(&fail);
        assert_eq!(ch.read_flat_answer().kind, 0);
        assert_eq!((ch.read_msg().kind, ch.read_msg().errno), (MSG_FAIL, 3));
    }

    #[test]
    fn a_memfd_that_is_no_region_is_refused() {
        let fd = fracture_platform::vm::memfd("not-a-region", REGION_SIZE).expect("memfd");
        let e = Region::attach(fd).err().expect("refused");
        assert!(e.to_string().contains("not a fracture region"), "{e}");
    }
}
