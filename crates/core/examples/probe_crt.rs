//! Timing probe for the CRT ring: elementwise operations, PRG fills, encodings and residue GEMMs.
//!
//! `cargo run --release -p pond-core --example probe_crt [reps]` prints the median over `reps`
//! (default 7) runs of each operation on 1e6 elements, and each CRT matmul's time as a ratio to
//! ndarray's f64 `dot` of the same shape measured in the same run.

use ndarray::{Array2, ArrayD, IxDyn};
use pond_core::*;
use std::time::Instant;

const N: usize = 1_000_000;

/// Median wall time of `reps` runs of `f`, in milliseconds.
fn median_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn elementwise<R: Ring>(reps: usize) {
    let key = PrgKey::from_seed(1);
    let a = R::Tensor::random(&key, 1, &[N]);
    let b = R::Tensor::random(&key, 2, &[N]);
    let bytes = a.to_bytes();
    let signed = a.to_signed();
    let small = ArrayD::from_shape_fn(IxDyn(&[N]), |i| (i[0] as i128 * 7919) % (1 << 40) - (1 << 39));
    let rows = [
        ("random", median_ms(reps, || R::Tensor::random(&key, 3, &[N]))),
        ("add", median_ms(reps, || a.add(&b).unwrap())),
        ("sub", median_ms(reps, || a.sub(&b).unwrap())),
        ("mul", median_ms(reps, || a.mul(&b).unwrap())),
        ("neg", median_ms(reps, || a.neg())),
        ("add_assign", median_ms(reps, || a.clone().add_assign(&b).unwrap())),
        ("mul_scalar", median_ms(reps, || a.mul_scalar(-12345))),
        ("to_bytes", median_ms(reps, || a.to_bytes())),
        ("from_bytes", median_ms(reps, || R::Tensor::from_bytes(&[N], &bytes).unwrap())),
        ("to_signed", median_ms(reps, || a.to_signed())),
        ("from_signed", median_ms(reps, || R::Tensor::from_signed(signed.view()))),
        ("from_signed_i64", median_ms(reps, || R::Tensor::from_signed(small.view()))),
    ];
    let line: Vec<String> = rows.iter().map(|(name, ms)| format!("{name} {ms:.2}")).collect();
    println!("{:6} 1e6 elements, ms: {}", R::NAME, line.join(" | "));
}

fn gemm<R: Ring>(reps: usize, (m, k, n): (usize, usize, usize)) {
    let key = PrgKey::from_seed(2);
    let a = R::Tensor::random(&key, 1, &[m, k]);
    let b = R::Tensor::random(&key, 2, &[k, n]);
    let af = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 17) % 1000) as f64 - 500.0);
    let bf = Array2::from_shape_fn((k, n), |(i, j)| ((i * 13 + j * 7) % 1000) as f64 - 500.0);
    let f64_ms = median_ms(reps, || af.dot(&bf));
    let ring_ms = median_ms(reps, || a.matmul(&b).unwrap());
    let f64_again = median_ms(reps, || af.dot(&bf));
    let f64_ms = f64_ms.min(f64_again);
    println!(
        "{:6} gemm ({m},{k},{n}): {ring_ms:.2} ms, f64 dot {f64_ms:.3} ms, ratio {:.2}",
        R::NAME,
        ring_ms / f64_ms
    );
}

fn main() {
    let reps = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(7);
    let key = PrgKey::from_seed(1);
    println!("z64    random 1e6: {:.2} ms", median_ms(reps, || <Z64 as Ring>::Tensor::random(&key, 2, &[N])));
    elementwise::<Int100>(reps);
    elementwise::<Crt<WideModuli>>(reps);
    for shape in [(1, 2304, 100), (100, 784, 128), (1000, 784, 128)] {
        gemm::<Int100>(reps * 3, shape);
        gemm::<Crt<WideModuli>>(reps * 3, shape);
    }
}
