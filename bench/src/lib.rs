//! Shared pieces of the benchmark binaries.

pub mod host;
