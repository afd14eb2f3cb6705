//! symbol-map on real system files.
use std::path::Path;
use symbol_map::*;

#[test]
fn usr_bin_file_imports_libmagic_through_jump_slots() {
    let o = read(Path::new("/usr/bin/file")).unwrap();
    assert!(o.pie && o.bind_now);
    let m = o
        .imports
        .iter()
        .find(|i| i.name == "magic_file")
        .expect("magic_file imported");
    assert_eq!(m.kind, RelocKind::JumpSlot);
    assert!(o.needed.iter().any(|n| n == "libmagic.so.1"));
}

/// pyexpat (linked into Debian's python3) takes the addresses of libexpat's handler setters
/// into a table: R_X86_64_64 words, imports as much as a GOT slot (the shim routes both).
#[test]
fn python3_imports_expat_setters_through_data_words() {
    let p = Path::new("/usr/bin/python3.11");
    if !p.exists() {
        eprintln!("skipped: no {}", p.display());
        return;
    }
    let o = read(p).unwrap();
    let set = o
        .imports
        .iter()
        .find(|i| i.name == "XML_SetStartElementHandler")
        .expect("XML_SetStartElementHandler imported");
    assert_eq!(set.kind, RelocKind::Abs64);
    let parse = o.imports.iter().find(|i| i.name == "XML_Parse").unwrap();
    assert_eq!(parse.kind, RelocKind::JumpSlot);
}

#[test]
fn libmagic_exports_magic_file_and_is_found_by_soname() {
    let p = find_library("libmagic.so.1", &[]).expect("libmagic.so.1 found");
    let o = read(&p).unwrap();
    assert!(o.exports_function("magic_file"));
    assert!(!o.exports_function("magic_fil"));
    assert_eq!(o.soname.as_deref(), Some("libmagic.so.1"));
}

#[test]
fn libz_versions() {
    let o = read(&find_library("libz.so.1", &[]).unwrap()).unwrap();
    assert!(o.exports_function("inflateCopy@ZLIB_1.2.0"));
    assert!(!o.exports_function("inflateCopy@ZLIB_9"));
}

#[test]
fn ld_so_cache_knows_libmagic() {
    assert!(ld_so_cache(Path::new("/etc/ld.so.cache"))
        .iter()
        .any(|(n, _)| n == "libmagic.so.1"));
}

#[test]
fn closure_of_file_has_libmagic_and_libc() {
    let (c, _) = load_closure(Path::new("/usr/bin/file")).unwrap();
    assert!(find_object(&c, "libmagic.so.1").is_some());
    assert!(find_object(&c, "libc.so.6").is_some());
    assert_eq!(
        find_object(&c, "main").unwrap().path,
        Path::new("/usr/bin/file")
    );
}

#[test]
fn truncated_and_garbage_files_are_errors_not_panics() {
    let data = std::fs::read("/usr/bin/file").unwrap();
    for n in [0, 3, 4, 16, 20, 63, 64, 65, 200, 1000, 4096, data.len() / 2] {
        let _ = parse(Path::new("t"), &data[..n.min(data.len())]);
    }
    let mut x = 12345u64;
    for _ in 0..200 {
        let mut d = data[..4096.min(data.len())].to_vec();
        for _ in 0..16 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % d.len();
            d[i] = (x >> 32) as u8;
        }
        let _ = parse(Path::new("t"), &d);
    }
    assert!(matches!(
        parse(Path::new("t"), b"hello"),
        Err(ElfError::NotElf(_))
    ));
}

/// `read` takes only the headers and the dynamic tables from the file (libpython is 23 MB);
/// what it finds must be what parsing the whole file finds.
#[test]
fn reading_only_the_dynamic_tables_finds_what_the_whole_file_holds() {
    let candidates = [
        "/usr/bin/file",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libmagic.so.1",
        "/usr/bin/python3.11",
        "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
    ];
    let mut n = 0;
    for c in candidates {
        let p = Path::new(c);
        if !p.exists() {
            continue;
        }
        let whole = parse(p, &std::fs::read(p).unwrap()).unwrap();
        let sparse = read(p).unwrap();
        assert_eq!(sparse.exports, whole.exports, "{c}");
        assert_eq!(sparse.imports, whole.imports, "{c}");
        assert_eq!(
            (
                &sparse.soname,
                &sparse.needed,
                &sparse.runpath,
                sparse.bind_now,
                sparse.pie
            ),
            (
                &whole.soname,
                &whole.needed,
                &whole.runpath,
                whole.bind_now,
                whole.pie
            ),
            "{c}"
        );
        assert!(
            !whole.exports.is_empty() || !whole.imports.is_empty(),
            "{c}"
        );
        n += 1;
    }
    assert!(n >= 2, "no system objects found");
}
