//! Page protections of the current mappings, from `/proc/self/maps`: what a GOT slot's page
//! is given back after a store.

/// Protection of the pages of the current mappings, from /proc/self/maps.
pub struct Maps(Vec<(usize, usize, i32)>);

impl Maps {
    pub fn read() -> Maps {
        Maps::parse(&crate::fs::read_proc("/proc/self/maps"))
    }

    /// Parses the text of a maps file; lines it cannot read are skipped.
    fn parse(text: &str) -> Maps {
        let prot = |m: &crate::vm::Mapping| {
            (if m.read { libc::PROT_READ } else { 0 })
                | (if m.write { libc::PROT_WRITE } else { 0 })
                | (if m.exec { libc::PROT_EXEC } else { 0 })
        };
        Maps(
            crate::vm::Mapping::parse(text)
                .iter()
                .map(|m| (m.start, m.end, prot(m)))
                .collect(),
        )
    }

    fn prot_of(&self, addr: usize) -> Option<i32> {
        self.0
            .iter()
            .find(|(a, b, _)| addr >= *a && addr < *b)
            .map(|x| x.2)
    }
}

/// Protection of the page holding `slot` (None: not mapped).
pub fn prot_at(maps: &Maps, slot: usize) -> Option<i32> {
    maps.prot_of(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: i32 = libc::PROT_READ;
    const W: i32 = libc::PROT_WRITE;
    const X: i32 = libc::PROT_EXEC;

    #[test]
    fn permissions_become_protection_bits() {
        let m = Maps::parse(
            "00400000-00401000 r-xp 00000000 08:02 173521 /usr/bin/true\n\
             00600000-00601000 r--p 00000000 08:02 173521 /usr/bin/true\n\
             00601000-00602000 rw-p 00001000 08:02 173521 /usr/bin/true\n\
             7f0000000000-7f0000001000 ---p 00000000 00:00 0\n\
             7f0000001000-7f0000002000 rwxs 00000000 00:05 42 /memfd:jit (deleted)\n",
        );
        assert_eq!(prot_at(&m, 0x400000), Some(R | X));
        assert_eq!(prot_at(&m, 0x600000), Some(R));
        assert_eq!(prot_at(&m, 0x601000), Some(R | W));
        assert_eq!(prot_at(&m, 0x7f00_0000_0000), Some(0), "mapped, no access");
        assert_eq!(prot_at(&m, 0x7f00_0000_1000), Some(R | W | X));
    }

    #[test]
    fn ranges_are_hex_and_end_exclusive() {
        let m = Maps::parse(
            "7ffd1c3e5000-7ffd1c406000 rw-p 00000000 00:00 0                          [stack]\n\
             ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n",
        );
        assert_eq!(prot_at(&m, 0x7ffd_1c3e_5000), Some(R | W), "first byte");
        assert_eq!(prot_at(&m, 0x7ffd_1c40_5fff), Some(R | W), "last byte");
        assert_eq!(
            prot_at(&m, 0x7ffd_1c40_6000),
            None,
            "end is not in the range"
        );
        assert_eq!(prot_at(&m, 0x7ffd_1c3e_4fff), None);
        assert_eq!(prot_at(&m, 0xffff_ffff_ff60_0800), Some(X));
        assert_eq!(prot_at(&m, 0), None);
    }

    #[test]
    fn a_path_with_spaces_does_not_disturb_the_line() {
        let m = Maps::parse(
            "7f3a00000000-7f3a00021000 r--p 00002000 fd:01 9 /home/a b/lib  x.so (deleted)\n",
        );
        assert_eq!(m.0, vec![(0x7f3a_0000_0000, 0x7f3a_0002_1000, R)]);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let m = Maps::parse(
            "\n\
             garbage\n\
             00400000 r-xp 00000000 08:02 1 /no/dash\n\
             0040zz00-00401000 r-xp 00000000 08:02 1 /not/hex\n\
             00400000-00401000\n\
             -00401000 r-xp 00000000 08:02 1 /no/start\n\
             00500000-00501000 rw-p 00000000 00:00 0\n",
        );
        assert_eq!(m.0, vec![(0x500000, 0x501000, R | W)]);
        assert_eq!(prot_at(&m, 0x400000), None);
        assert_eq!(Maps::parse("").0, Vec::new());
    }
}
