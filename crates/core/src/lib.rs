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

/// tf-encrypted's int100: the CRT ring over its ten moduli.
pub type Int100 = Crt<TfeModuli>;
