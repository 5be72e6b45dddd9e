//! pond-layers: layers with forward and backward passes, written once over a [`Backend`] with
//! two implementations: [`PlainBackend`] (f64, the reference) and [`PrivateBackend`] (secret
//! shares on pond-protocol). Losses suited to MPC, model descriptions and weight files.
//!
//! A layer's `forward(backend, x)` returns the output and an explicit cache; `backward(backend,
//! cache, dy)` returns the input gradient and the parameter gradients. On the private backend
//! every product is followed by one truncation (below 1 ulp of error each), and tensors used by
//! several products are masked once ([`Backend::prepare`]).
#![deny(missing_docs)]

pub mod activation;
pub mod backend;
pub mod conv;
pub mod cost;
pub mod dense;
pub mod error;
pub mod io;
pub mod layer;
pub mod loss;
pub mod model;
pub mod plain;
pub mod pool;
pub mod private;

pub use activation::{Relu, ReluMode, Sigmoid};
pub use backend::{Activation, Affine, Backend, Input, ReluOutput};
pub use conv::Conv2d;
pub use dense::Dense;
pub use error::{LayerError, Result};
pub use io::ModelError;
pub use layer::{Flatten, Layer};
pub use loss::{LogisticLoss, SquaredLoss};
pub use model::{AnyLayer, LayerSpec, ModelSpec, Sequential, Weights};
pub use plain::PlainBackend;
pub use pool::{AvgPool2d, MaxPool2d};
pub use private::PrivateBackend;
