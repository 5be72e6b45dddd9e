//! Fast ring kernels. Each is a safe function tested against a plain scalar reference.

pub(crate) mod blocking;
pub mod gemm_crt;
pub mod gemm_u128;
pub mod gemm_u64;
pub mod im2col;
