//! Criterion benches of the ring kernels: GEMM per ring against ndarray's f64 GEMM on the
//! shapes of `pond bench kernels`, and PRG throughput.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use pond_core::{Crt, PrgKey, Ring, RingTensor, TfeModuli, WideModuli, Z128, Z64};
use pond_train::bench::kernels::SHAPES;

fn gemm_ring<R: Ring>(c: &mut Criterion, m: usize, k: usize, n: usize) {
    let key = PrgKey::from_seed(1);
    let a = R::Tensor::random(&key, 1, &[m, k]);
    let b = R::Tensor::random(&key, 2, &[k, n]);
    c.benchmark_group("gemm").sample_size(10).bench_with_input(
        BenchmarkId::new(R::NAME, format!("{m}x{k}x{n}")),
        &(a, b),
        |bench, (a, b)| bench.iter(|| a.matmul(b).expect("shapes fit")),
    );
}

fn gemm(c: &mut Criterion) {
    for (m, k, n) in SHAPES {
        let a = Array2::<f64>::from_elem((m, k), 0.5);
        let b = Array2::<f64>::from_elem((k, n), 0.25);
        c.benchmark_group("gemm")
            .sample_size(10)
            .bench_function(BenchmarkId::new("f64", format!("{m}x{k}x{n}")), |bench| bench.iter(|| a.dot(&b)));
        gemm_ring::<Z64>(c, m, k, n);
        gemm_ring::<Z128>(c, m, k, n);
        gemm_ring::<Crt<TfeModuli>>(c, m, k, n);
        gemm_ring::<Crt<WideModuli>>(c, m, k, n);
    }
}

fn prg(c: &mut Criterion) {
    let key = PrgKey::from_seed(3);
    let n = 1 << 20;
    let mut group = c.benchmark_group("prg");
    group.throughput(Throughput::Bytes((n * 8) as u64));
    group.bench_function("z64", |b| b.iter(|| <Z64 as Ring>::Tensor::random(&key, 1, &[n])));
    group.throughput(Throughput::Bytes((n * 16) as u64));
    group.bench_function("z128", |b| b.iter(|| <Z128 as Ring>::Tensor::random(&key, 1, &[n])));
    group.finish();
}

criterion_group!(benches, gemm, prg);
criterion_main!(benches);
