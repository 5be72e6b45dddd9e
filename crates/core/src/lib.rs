//! pond-core: the rings pond computes in, their tensors, fixed-point encoding, seeded PRG streams
//! and the fast kernels underneath (GEMM and im2col convolution per ring).
//!
//! Nothing here knows about parties or networks: this crate is plain, deterministic arithmetic.
#![deny(missing_docs)]

pub mod cpu;
pub mod crt;
pub mod error;
pub mod fixed;
pub mod kernels;
pub mod layout;
pub mod parallel;
pub mod pooled_conv;
pub mod prg;
pub mod ring;
pub mod ztensor;

pub use crt::{Crt, CrtModuli, CrtTensor, TfeModuli, WideModuli};
pub use error::{CoreError, Result};
pub use fixed::FixedPoint;
pub use prg::PrgKey;
pub use ring::{Conv2dParams, PowerOfTwoTensor, Ring, RingTensor};
pub use ztensor::{Word, ZTensor, Z128, Z64};

/// pond's int100: the CRT ring over five primes just below 2^21 (M about 2^104.9).
///
/// Chosen over tf-encrypted's ten moduli ([`TfeModuli`], its int100, still available as
/// `Crt<TfeModuli>` for the like-for-like comparison) by measurement, as DESIGN.md section 3
/// asks: half the residues per element, so half the elementwise work, a quarter less traffic
/// (three bytes per residue, 15 per element against 20) and the same five GEMMs; with 16
/// fractional bits both give the same fixed-point results. `pond infer --ring int100` against
/// `--ring crt10` (alternated, same minutes, 2-core machine): net A batch 1 1.50-1.59 ->
/// 0.99-1.14 ms, net S batch 1 4.36-5.38 -> 4.01-4.31 ms, net S batch 100 301-336 -> 237-246 ms,
/// identical KL.
pub type Int100 = Crt<WideModuli>;
