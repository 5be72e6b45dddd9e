//! Benchmark runners behind `pond bench` and the criterion benches: each returns rows that
//! serialise to one JSON object per line.

pub mod infer;
pub mod kernels;
pub mod protocol;
pub mod protocol_compare;
pub mod results;
pub mod timing;
