//! The data-driven half of fracture (the "Quarantine" design): crash reports kept across runs
//! in SQLite, plans that choose the next run's isolation from them, and min-cut partitions of
//! a profiled module graph. Used by the `fracture` launcher's `report`, `plan` and `partition`
//! commands; the preloaded shim only writes the spool this crate ingests.
#![deny(unsafe_code)]

pub mod html;
pub mod partition;
pub mod plan;
pub mod reports;
pub mod svg;
pub mod symbolize;
pub mod utc;
pub mod xml;
