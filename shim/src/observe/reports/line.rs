//! The fixed buffer a spool record is formatted into ([`Line`]): JSON written without
//! allocating (the fault handler formats records), always valid and at most [`LINE_MAX`]
//! bytes, cut at its last complete field when it does not fit. No unsafe code: plain slices.

/// Longest record, newline included: what one spool line may take.
pub const LINE_MAX: usize = 8192;
/// Longest string value written whole (escaped bytes); a longer one is cut and ends in
/// `...`, so that a long detail or path cannot crowd out the rest of the record.
const STRING_MAX: usize = 2048;
/// Room kept free for closing a cut record: `]`, `,"truncated":true`, `}` and the newline.
const CLOSE_ROOM: usize = 24;

/// A fixed buffer a record is formatted into without allocating. Whatever is written, the
/// finished line is one valid JSON object of at most [`LINE_MAX`] bytes: strings are cut to
/// fit, and a write that does not fit cuts the record back to its last complete top-level
/// field or array element (a `commit`), closes it and marks it `"truncated":true`.
pub struct Line {
    pub(super) b: [u8; LINE_MAX],
    pub(super) n: usize,
    /// A write did not fit: everything after `mark` is dropped by `finish`.
    pub(super) over: bool,
    /// An array is open at the current position.
    in_array: bool,
    /// Length, and whether an array was open, at the last complete field or element.
    mark: usize,
    mark_in_array: bool,
}

impl Line {
    pub fn new() -> Line {
        Line {
            b: [0; LINE_MAX],
            n: 0,
            over: false,
            in_array: false,
            mark: 0,
            mark_in_array: false,
        }
    }
    /// Room left for content.
    pub(super) fn room(&self) -> usize {
        (LINE_MAX - CLOSE_ROOM).saturating_sub(self.n)
    }
    /// Appends `s` whole, or nothing (and the record is cut at the last commit).
    pub(super) fn raw(&mut self, s: &[u8]) {
        if self.over || s.len() > self.room() {
            self.over = true;
            return;
        }
        self.b[self.n..self.n + s.len()].copy_from_slice(s);
        self.n += s.len();
    }
    /// The record so far is complete up to here: a cut keeps it.
    pub(super) fn commit(&mut self) {
        if !self.over {
            self.mark = self.n;
            self.mark_in_array = self.in_array;
        }
    }
    pub(super) fn num(&mut self, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.raw(&d[i..]);
    }
    pub(super) fn int(&mut self, v: i64) {
        if v < 0 {
            self.raw(b"-");
        }
        self.num(v.unsigned_abs());
    }
    /// `"0x…"`, written whole.
    pub(super) fn hex(&mut self, v: u64) {
        const H: &[u8; 16] = b"0123456789abcdef";
        let mut d = [0u8; 16];
        let mut i = d.len();
        let mut v = v;
        loop {
            i -= 1;
            d[i] = H[(v & 15) as usize];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        let k = d.len() - i;
        let mut out = [0u8; 20];
        out[..3].copy_from_slice(b"\"0x");
        out[3..3 + k].copy_from_slice(&d[i..]);
        out[3 + k] = b'"';
        self.raw(&out[..4 + k]);
    }
    /// A JSON string of `s`, cut (ending in `...`) past [`STRING_MAX`] escaped bytes or where
    /// the record has no more room.
    pub(super) fn string(&mut self, s: &[u8]) {
        self.string_max(s, STRING_MAX);
    }
    /// As [`Line::string`], cut past `max` escaped bytes.
    pub(super) fn string_max(&mut self, s: &[u8], max: usize) {
        // Both quotes and the ellipsis must fit, or nothing is written.
        if self.over || self.room() < 5 {
            self.over = true;
            return;
        }
        let limit = max.min(self.room() - 5);
        self.raw(b"\"");
        let start = self.n;
        for &c in s {
            let mut e = [0u8; 6];
            let k = escape(c, &mut e);
            if self.n - start + k > limit {
                self.raw(b"...");
                break;
            }
            self.raw(&e[..k]);
        }
        self.raw(b"\"");
    }
    /// Starts a top-level field (the previous one is complete).
    pub(super) fn key(&mut self, k: &str) {
        self.commit();
        if self.n > 1 {
            self.raw(b",");
        }
        self.string(k.as_bytes());
        self.raw(b":");
    }
    pub(super) fn open_array(&mut self) {
        self.raw(b"[");
        if !self.over {
            self.in_array = true;
        }
        self.commit();
    }
    /// Starts an array element (the previous one is complete).
    pub(super) fn element(&mut self, first: &mut bool) {
        self.commit();
        if !*first {
            self.raw(b",");
        }
        *first = false;
    }
    pub(super) fn close_array(&mut self) {
        self.raw(b"]");
        if !self.over {
            self.in_array = false;
        }
    }
    /// The record as one line: cut back to its last complete part when something did not fit.
    pub(super) fn finish(&mut self) -> &[u8] {
        let close = |l: &mut Line, s: &[u8]| {
            // CLOSE_ROOM was kept free for exactly this.
            l.b[l.n..l.n + s.len()].copy_from_slice(s);
            l.n += s.len();
        };
        if self.over {
            self.n = self.mark;
            if self.mark_in_array {
                close(self, b"]");
            }
            close(self, b",\"truncated\":true");
        }
        close(self, b"}\n");
        &self.b[..self.n]
    }
}

/// `c` escaped for a JSON string into `out`; returns its length. Control and non-ASCII bytes
/// become \u00XX (the JSON text stays valid UTF-8).
fn escape(c: u8, out: &mut [u8; 6]) -> usize {
    const H: &[u8; 16] = b"0123456789abcdef";
    match c {
        b'"' | b'\\' => {
            out[0] = b'\\';
            out[1] = c;
            2
        }
        b'\n' => {
            out[..2].copy_from_slice(b"\\n");
            2
        }
        0..=0x1f | 0x7f..=0xff => {
            *out = [
                b'\\',
                b'u',
                b'0',
                b'0',
                H[(c >> 4) as usize],
                H[(c & 15) as usize],
            ];
            6
        }
        _ => {
            out[0] = c;
            1
        }
    }
}
