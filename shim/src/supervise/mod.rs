//! Supervision: the zygote and helpers (`zygote`, `helper`), who owns an address under
//! `memory: on-demand` (`address`, and `touch`: its system calls), the helper's environment
//! (`sandbox`, `rxmalloc`, `valgrind`), liveness, restart and retry (`recovery`), and module
//! state rebuilt after a restart (`replay`; checkpoints live in `zygote` and `recovery`).

pub mod address;
pub mod helper;
pub mod recovery;
pub mod replay;
pub mod rxmalloc;
pub mod sandbox;
pub mod touch;
pub mod valgrind;
pub mod zygote;
