//! In-memory data sets: seeded splits, standardisation, one-hot labels, synthetic data.

use ndarray::{Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Features [n, d] with one label per row.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Features, one row per example.
    pub features: Array2<f64>,
    /// Labels (0/1 for binary tasks, class indices for multiclass).
    pub labels: Array1<f64>,
    /// Feature names (for reports).
    pub feature_names: Vec<String>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(Axis(0), idx),
            labels: self.labels.select(Axis(0), idx),
            feature_names: self.feature_names.clone(),
        }
    }

    /// Shuffles the rows with `seed` and splits them: the first `train_fraction` (rounded down)
    /// for training, the rest for testing.
    pub fn split(&self, train_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let cut = ((self.len() as f64) * train_fraction).floor() as usize;
        (self.select(&idx[..cut]), self.select(&idx[cut..]))
    }

    /// Labels as a column [n, 1].
    pub fn label_column(&self) -> Array2<f64> {
        self.labels.clone().insert_axis(Axis(1))
    }

    /// Labels as one-hot rows [n, classes].
    pub fn one_hot(&self, classes: usize) -> Array2<f64> {
        let mut out = Array2::zeros((self.len(), classes));
        for (i, &l) in self.labels.iter().enumerate() {
            if (l as usize) < classes {
                out[[i, l as usize]] = 1.0;
            }
        }
        out
    }
}

/// Per-feature mean and standard deviation, fitted on one set and applied to others.
#[derive(Debug, Clone)]
pub struct Standardizer {
    /// Means.
    pub mean: Array1<f64>,
    /// Standard deviations (1 where a feature is constant).
    pub std: Array1<f64>,
}

impl Standardizer {
    /// Fits on `x` (population standard deviation).
    pub fn fit(x: &Array2<f64>) -> Standardizer {
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x.std_axis(Axis(0), 0.0).mapv(|s| if s > 0.0 { s } else { 1.0 });
        Standardizer { mean, std }
    }

    /// (x - mean) / std.
    pub fn apply(&self, x: &Array2<f64>) -> Array2<f64> {
        (x - &self.mean) / &self.std
    }
}

/// A synthetic binary task: features uniform in [-1, 1], labels [x . w + noise > 0] for a
/// random w, from `seed`.
pub fn synthetic_binary(rows: usize, features: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w: Vec<f64> = (0..features).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Array2::from_shape_fn((rows, features), |_| rng.random_range(-1.0..1.0));
    let labels = x.rows().into_iter().map(|r| {
        let z: f64 = r.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + rng.random_range(-0.5..0.5);
        if z > 0.0 {
            1.0
        } else {
            0.0
        }
    });
    Dataset { labels: labels.collect(), features: x, feature_names: (0..features).map(|j| format!("x{j}")).collect() }
}
