//! End-to-end tests of fracture: real programs and the C fixtures (target/fixtures), run plain
//! and under `fracture run` (or with the shim preloaded), compared.
//!
//! One test binary: each file beside this one is a module of it, named for the part of the
//! promise it checks; [`util`] finds the built launcher, shim and fixtures, runs commands under
//! a watchdog and compares a run under fracture with a plain run ([`util::same_as_plain`]).
//! Every scenario runs in a fresh child process (patching touches the whole process). A test
//! that pins a bug is named after it, with a comment saying what went wrong.
#![deny(unsafe_code)]

mod util;

mod boundary;
mod callbacks;
mod cli;
mod exec_mode;
mod fixtures;
mod fleet;
mod got_patching;
mod launcher_cli;
mod map_errors;
mod on_demand;
mod partition;
mod quarantine;
mod real_programs;
mod recovery;
mod replication;
mod sandbox;
mod spool;
