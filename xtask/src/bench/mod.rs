//! What the benchmark tasks share: one HTTP client and one set of statistics.

pub mod http;
pub mod stats;
