//! Every layer's plaintext backward pass against central finite differences of its forward
//! pass, for the scalar L = sum(y * r) with a fixed random r (so dL/dy = r).
//!
//! Tolerance: central differences with step h on these smooth (or, away from kinks, piecewise
//! linear) functions have truncation error h^2/6 max|f'''| <= 1e-10 here (|f'''| < 1e2 for the
//! degree-9 sigmoid on [-8, 8]), plus rounding error about 1e-16 |L| / h; with h = 1e-5 and |L|
//! below 1e2 both stay under 1e-6, the tolerance used. Inputs keep 0.05 away from every ReLU
//! kink and window maxima are distinct, farther apart than h.

mod common;

use common::*;
use ndarray::ArrayD;
use pond_layers::*;

fn loss(spec: &ModelSpec, w: &Weights, x: &ArrayD<f64>, r: &ArrayD<f64>) -> f64 {
    let mut b = PlainBackend;
    let model = Sequential::input(&mut b, spec, pond_protocol::Role::Server0, Some(w)).unwrap();
    let (y, _) = model.forward(&mut b, Activation::Value(x.clone())).unwrap();
    (&y * r).sum()
}

#[test]
fn plaintext_backward_matches_finite_differences() {
    let h = 1e-5;
    let tol = 1e-6;
    for case in cases() {
        let w = case.spec.init(11);
        // Non-zero biases, so their gradients are exercised around a generic point.
        let w: Weights =
            w.into_iter().map(|(k, v)| (k.clone(), if k.ends_with("bias") { v + 0.1 } else { v })).collect();
        let mut b = PlainBackend;
        let model = Sequential::input(&mut b, &case.spec, pond_protocol::Role::Server0, Some(&w)).unwrap();
        let (y, _) = model.forward(&mut b, Activation::Value(case.x.clone())).unwrap();
        let r = uniform(99, y.shape(), 1.0, 0.0);
        let (_, dx, grads) = run_layer(&mut b, &case.spec, &w, &case.x, &r, (true, true)).unwrap().unwrap();
        for i in 0..case.x.len() {
            let (mut xp, mut xm) = (case.x.clone(), case.x.clone());
            *xp.iter_mut().nth(i).unwrap() += h;
            *xm.iter_mut().nth(i).unwrap() -= h;
            let fd = (loss(&case.spec, &w, &xp, &r) - loss(&case.spec, &w, &xm, &r)) / (2.0 * h);
            let got = *dx.iter().nth(i).unwrap();
            assert!((fd - got).abs() <= tol, "{}: dx[{i}] = {got}, finite difference {fd}", case.name);
        }
        for ((name, _), g) in case.spec.param_shapes().iter().zip(&grads) {
            for i in 0..g.len() {
                let (mut wp, mut wm) = (w.clone(), w.clone());
                *wp.get_mut(name).unwrap().iter_mut().nth(i).unwrap() += h;
                *wm.get_mut(name).unwrap().iter_mut().nth(i).unwrap() -= h;
                let fd = (loss(&case.spec, &wp, &case.x, &r) - loss(&case.spec, &wm, &case.x, &r)) / (2.0 * h);
                let got = *g.iter().nth(i).unwrap();
                assert!((fd - got).abs() <= tol, "{}: d{name}[{i}] = {got}, finite difference {fd}", case.name);
            }
        }
    }
}

/// The logistic loss gradient sigma(z) - y is the derivative of binary cross-entropy of
/// sigma(z) with the exact sigmoid; the polynomial version differs from it by at most the
/// polynomial's stated error on its interval.
#[test]
fn logistic_gradient_is_the_cross_entropy_derivative() {
    let sigma = |z: f64| 1.0 / (1.0 + (-z).exp());
    let bce = |z: f64, y: f64| -(y * sigma(z).ln() + (1.0 - y) * (1.0 - sigma(z)).ln());
    let loss = LogisticLoss::default();
    let z = uniform(3, &[50, 1], 7.9, 0.0);
    let y = z.mapv(|v| if v.sin() > 0.0 { 1.0 } else { 0.0 });
    let (_, dz) = loss.gradient(&mut PlainBackend, &z, &y).unwrap();
    for ((zi, yi), gi) in z.iter().zip(&y).zip(&dz) {
        let fd = (bce(zi + 1e-6, *yi) - bce(zi - 1e-6, *yi)) / 2e-6;
        assert!((fd - gi).abs() <= loss.sigmoid.max_error + 1e-6, "z {zi}: {gi} vs {fd}");
    }
    let sq = SquaredLoss.gradient(&mut PlainBackend, &z, &y).unwrap();
    assert_eq!(sq, &z - &y);
}
