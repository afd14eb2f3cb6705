//! Policy: what to do with a call beyond running it once: replicate or sample it
//! (`replicas`), or count it in place (`profile`, for `fracture profile`).

pub mod profile;
pub mod replicas;
