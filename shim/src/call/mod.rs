//! Calls: the entry from a trampoline (`dispatch`), the one buffer walk of a call
//! (`marshal`), the client and server sides of a call over a channel (`client`, `server`), the
//! program's channels of a helper and its liveness (`channels`), the flat path of a call of
//! registers only (`flat`),
//! the records of nested calls and callbacks (`nested`), where a waiting caller and its
//! helper run (`colocate`), handle translation (`handles`), `memory: on-demand` (`pages`),
//! and the hooks through which the
//! layers above take part in a call (`hooks`).

mod channels;
mod client;
pub mod colocate;
pub mod dispatch;
pub mod flat;
#[cfg(test)]
mod fuzz_reply;
pub mod handles;
pub mod hooks;
pub mod marshal;
mod nested;
pub mod pages;
mod server;
