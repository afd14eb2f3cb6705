//! Calls: the one buffer walk of a call (`marshal`), the client and server sides of a call
//! over a channel and nested calls (`dispatch`), handle translation (`handles`), and the
//! hooks through which the layers above take part in a call (`hooks`).

pub mod colocate;
pub mod dispatch;
#[cfg(test)]
mod fuzz_reply;
pub mod handles;
pub mod hooks;
pub mod marshal;
