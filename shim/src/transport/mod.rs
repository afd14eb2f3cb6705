//! The transport: the shared-memory region between the program and one helper, its channels
//! (one message slot and data area each, a sequence and futex word per direction) and the
//! zygote's watch words. It knows frames and byte counts, never functions or modules.

pub mod region;
