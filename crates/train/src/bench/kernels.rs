//! `pond bench kernels`: ring GEMMs against ndarray's f64 GEMM of the same shape, measured in
//! the same run, and PRG throughput.

use super::timing::{median_ms, runs_for};
use ndarray::Array2;
use pond_core::{Crt, PrgKey, Ring, RingTensor, TfeModuli, WideModuli, Z128, Z64};
use serde::Serialize;

/// The GEMM shapes (m, k, n) of the kernel benchmark.
pub const SHAPES: [(usize, usize, usize); 6] =
    [(1, 784, 128), (100, 784, 128), (1000, 784, 128), (1000, 2304, 100), (256, 256, 256), (1024, 1024, 1024)];

/// One GEMM measurement.
#[derive(Debug, Clone, Serialize)]
pub struct GemmRow {
    /// Always "gemm".
    pub name: &'static str,
    /// Ring name.
    pub ring: &'static str,
    /// Rows of A.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of B.
    pub n: usize,
    /// Median milliseconds of the ring GEMM.
    pub ms: f64,
    /// Median milliseconds of ndarray's f64 GEMM of the same shape, same run.
    pub f64_ms: f64,
    /// ms / f64_ms.
    pub ratio: f64,
}

/// One PRG throughput measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PrgRow {
    /// Always "prg".
    pub name: &'static str,
    /// Ring name.
    pub ring: &'static str,
    /// Threads used.
    pub threads: usize,
    /// Elements generated per run.
    pub elements: usize,
    /// Bytes of ring elements produced per second (element bytes in memory: 8 for Z64, 16 for
    /// Z128, 8 per residue for CRT).
    pub bytes_per_s: f64,
}

/// A benchmark line: GEMM or PRG.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum KernelRow {
    /// A GEMM measurement.
    Gemm(GemmRow),
    /// A PRG measurement.
    Prg(PrgRow),
}

fn f64_gemm_ms(m: usize, k: usize, n: usize, budget_ms: f64) -> f64 {
    let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 17) as f64 - 8.0);
    let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j) % 13) as f64 - 6.0);
    let once = median_ms(1, || drop(std::hint::black_box(a.dot(&b))));
    median_ms(runs_for(once, budget_ms), || drop(std::hint::black_box(a.dot(&b))))
}

/// Median time of `a · b` with the same `b` in every run, as a weight is multiplied batch after
/// batch (so with at most 8 rows, the CRT rings read the packed copy of `b` they keep from the
/// second product on).
fn ring_gemm_ms<R: Ring>(m: usize, k: usize, n: usize, budget_ms: f64) -> f64 {
    let key = PrgKey::from_seed(1);
    let a = R::Tensor::random(&key, 1, &[m, k]);
    let b = R::Tensor::random(&key, 2, &[k, n]);
    let once = median_ms(1, || drop(std::hint::black_box(a.matmul(&b))));
    median_ms(runs_for(once, budget_ms), || drop(std::hint::black_box(a.matmul(&b))))
}

fn gemm_row<R: Ring>(m: usize, k: usize, n: usize, budget_ms: f64) -> GemmRow {
    // f64 first and ring right after, so both see the same machine state.
    let f64_ms = f64_gemm_ms(m, k, n, budget_ms);
    let ms = ring_gemm_ms::<R>(m, k, n, budget_ms);
    GemmRow { name: "gemm", ring: R::NAME, m, k, n, ms, f64_ms, ratio: ms / f64_ms }
}

fn prg_row<R: Ring>(threads: usize, elements: usize, bytes_per_element: usize) -> PrgRow {
    let key = PrgKey::from_seed(3);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool of 1-2 threads");
    let ms = pool.install(|| median_ms(5, || drop(std::hint::black_box(R::Tensor::random(&key, 7, &[elements])))));
    PrgRow {
        name: "prg",
        ring: R::NAME,
        threads,
        elements,
        bytes_per_s: (elements * bytes_per_element) as f64 / (ms / 1e3),
    }
}

/// Runs the kernel benchmark, calling `emit` with each row as soon as it is measured.
/// `quick` shrinks the time budget per measurement (for smoke tests).
pub fn run(quick: bool, mut emit: impl FnMut(KernelRow)) {
    let budget_ms = if quick { 20.0 } else { 400.0 };
    for (m, k, n) in SHAPES {
        emit(KernelRow::Gemm(gemm_row::<Z64>(m, k, n, budget_ms)));
        emit(KernelRow::Gemm(gemm_row::<Z128>(m, k, n, budget_ms)));
        emit(KernelRow::Gemm(gemm_row::<Crt<TfeModuli>>(m, k, n, budget_ms)));
        emit(KernelRow::Gemm(gemm_row::<Crt<WideModuli>>(m, k, n, budget_ms)));
    }
    let elements = if quick { 1 << 16 } else { 1 << 22 };
    for threads in [1, rayon::current_num_threads()] {
        emit(KernelRow::Prg(prg_row::<Z64>(threads, elements, 8)));
        emit(KernelRow::Prg(prg_row::<Z128>(threads, elements, 16)));
        emit(KernelRow::Prg(prg_row::<Crt<TfeModuli>>(threads, elements, 8 * 10)));
    }
}
