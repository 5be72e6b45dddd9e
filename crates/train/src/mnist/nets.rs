//! The MNIST networks of tf-encrypted's benchmarks, as pond architectures.
//!
//! | net | layers | parameters |
//! |---|---|---|
//! | A | dense 784-128, ReLU, dense 128-128, ReLU, dense 128-10 | 118,282 |
//! | B | conv 5x5 1->16 valid (24x24), max-pool 2, ReLU, conv 5x5 16->16 valid (8x8), max-pool 2, ReLU, flatten 256, dense 256-100, ReLU, dense 100-10 | 33,542 |
//! | C | conv 5x5 1->20 valid, max-pool 2, ReLU, conv 5x5 20->50 valid, max-pool 2, ReLU, flatten 800, dense 800-500, ReLU, dense 500-10 | 431,080 |
//! | D | conv 5x5 1->5 stride 2 same padding (14x14), ReLU, flatten 980, dense 980-100, ReLU, dense 100-10 | 99,240 |
//! | S | conv 5x5 1->16 valid, avg-pool 2, ReLU, flatten 2304, dense 2304-100, ReLU, dense 100-10 (the one-convolution net tf-encrypted was timed with) | 231,926 |
//!
//! Inputs are images scaled to [0, 1]: [784] for A, [1, 28, 28] (NCHW without the batch) for
//! the others.

use pond_layers::{LayerSpec, ModelSpec, ReluMode};

/// One of the benchmark networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Net {
    /// Three dense layers.
    A,
    /// Two convolutions with max-pooling, two dense layers.
    B,
    /// A larger B.
    C,
    /// One strided convolution, two dense layers.
    D,
    /// One convolution with average pooling, two dense layers.
    S,
}

fn conv(in_channels: usize, out_channels: usize, stride: usize, padding: usize) -> LayerSpec {
    LayerSpec::Conv2d {
        in_channels,
        out_channels,
        kernel: (5, 5),
        stride: (stride, stride),
        padding: (padding, padding),
    }
}

fn dense(inputs: usize, outputs: usize) -> LayerSpec {
    LayerSpec::Dense { inputs, outputs }
}

impl Net {
    /// Every network.
    pub const ALL: [Net; 5] = [Net::A, Net::B, Net::C, Net::D, Net::S];

    /// The network's letter.
    pub fn name(self) -> &'static str {
        match self {
            Net::A => "A",
            Net::B => "B",
            Net::C => "C",
            Net::D => "D",
            Net::S => "S",
        }
    }

    /// The network named `name` (case-insensitive).
    pub fn parse(name: &str) -> Option<Net> {
        Net::ALL.into_iter().find(|n| n.name().eq_ignore_ascii_case(name))
    }

    /// The architecture, with every ReLU computed as `relu`.
    pub fn spec(self, relu: ReluMode) -> ModelSpec {
        let r = LayerSpec::Relu { mode: relu };
        let max2 = LayerSpec::MaxPool2d { size: (2, 2), stride: (2, 2) };
        let image = vec![1, 28, 28];
        let (input_shape, layers) = match self {
            Net::A => (vec![784], vec![dense(784, 128), r.clone(), dense(128, 128), r.clone(), dense(128, 10)]),
            Net::B => (
                image,
                vec![
                    conv(1, 16, 1, 0),
                    max2.clone(),
                    r.clone(),
                    conv(16, 16, 1, 0),
                    max2,
                    r.clone(),
                    LayerSpec::Flatten,
                    dense(256, 100),
                    r,
                    dense(100, 10),
                ],
            ),
            Net::C => (
                image,
                vec![
                    conv(1, 20, 1, 0),
                    max2.clone(),
                    r.clone(),
                    conv(20, 50, 1, 0),
                    max2,
                    r.clone(),
                    LayerSpec::Flatten,
                    dense(800, 500),
                    r,
                    dense(500, 10),
                ],
            ),
            Net::D => {
                (image, vec![conv(1, 5, 2, 2), r.clone(), LayerSpec::Flatten, dense(980, 100), r, dense(100, 10)])
            }
            Net::S => (
                image,
                vec![
                    conv(1, 16, 1, 0),
                    LayerSpec::AvgPool2d { size: (2, 2), stride: (2, 2) },
                    r.clone(),
                    LayerSpec::Flatten,
                    dense(2304, 100),
                    r,
                    dense(100, 10),
                ],
            ),
        };
        ModelSpec { input_shape, layers }
    }

    /// Plaintext test accuracy the trained model must reach (the bar; S is for timing).
    pub fn target_accuracy(self) -> f64 {
        match self {
            Net::A => 0.975,
            Net::B => 0.989,
            Net::C => 0.991,
            Net::D => 0.980,
            Net::S => 0.0,
        }
    }

    /// File stem of the committed model trained with `relu`: `mnist-{letter}` for exact ReLU,
    /// `mnist-{letter}-poly` for the polynomial ReLU.
    pub fn file_stem(self, relu: ReluMode) -> String {
        let suffix = match relu {
            ReluMode::Exact => "",
            ReluMode::Polynomial => "-poly",
        };
        format!("mnist-{}{suffix}", self.name().to_ascii_lowercase())
    }
}

/// Replaces every ReLU of `spec` by `mode` (the same weights run with exact or polynomial ReLU).
pub fn with_relu(spec: &ModelSpec, mode: ReluMode) -> ModelSpec {
    let layers = spec
        .layers
        .iter()
        .map(|l| match l {
            LayerSpec::Relu { .. } => LayerSpec::Relu { mode },
            other => other.clone(),
        })
        .collect();
    ModelSpec { input_shape: spec.input_shape.clone(), layers }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_the_table() {
        let count = |n: Net| -> usize {
            n.spec(ReluMode::Exact).param_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
        };
        assert_eq!(count(Net::A), 118_282);
        assert_eq!(count(Net::B), 33_542);
        assert_eq!(count(Net::C), 431_080);
        assert_eq!(count(Net::D), 99_240);
        assert_eq!(count(Net::S), 231_926);
    }
}
