//! Metrics on plaintext predictions.

use ndarray::{Array1, Array2, ArrayView1, Axis};

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Fraction of rows where [p > 0.5] equals the 0/1 label.
pub fn binary_accuracy(p: ArrayView1<'_, f64>, labels: ArrayView1<'_, f64>) -> f64 {
    let right = p.iter().zip(labels).filter(|(p, y)| (**p > 0.5) == (**y > 0.5)).count();
    right as f64 / labels.len().max(1) as f64
}

/// Mean binary cross-entropy of probabilities p (clipped to [1e-15, 1 - 1e-15]).
pub fn log_loss(p: ArrayView1<'_, f64>, labels: ArrayView1<'_, f64>) -> f64 {
    let total: f64 = p
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len().max(1) as f64
}

/// argmax of each row.
pub fn argmax_rows(scores: &Array2<f64>) -> Array1<f64> {
    scores
        .axis_iter(Axis(0))
        .map(|r| {
            r.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as f64
        })
        .collect()
}

/// Fraction of rows whose argmax score is the label.
pub fn multiclass_accuracy(scores: &Array2<f64>, labels: ArrayView1<'_, f64>) -> f64 {
    let pred = argmax_rows(scores);
    let right = pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    right as f64 / labels.len().max(1) as f64
}
