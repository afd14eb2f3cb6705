//! The plan: the module map resolved against the loaded objects (functions, their owners,
//! GOT slots, the processes and their regions), and routing (patching the slots to stubs).

pub mod load;
pub mod runtime;
pub mod stats_file;
