//! Observation leaves: leveled logging (`log`), per-function counters (`stats`), crash
//! reports and the spool (`reports`). `log` and `stats` depend on nothing else in the shim;
//! `reports` reads the plan (function names and owners) to name what crashed.

#[macro_use]
pub mod log;
pub mod reports;
pub mod stats;
