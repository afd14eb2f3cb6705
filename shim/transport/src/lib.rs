//! The transport: the shared-memory region between the program and one helper, its channels
//! (one message slot and data area each, a sequence and futex word per direction) and the
//! zygote's watch words. It knows frames and byte counts, never functions or modules.

// Unsafe code only in the files that opt back in, each with a `# Safety` section.
#![deny(unsafe_code)]

pub mod region;
