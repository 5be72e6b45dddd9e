//! Models: an architecture description (serde JSON), named f64 weights, and a [`Sequential`]
//! stack of layers over any backend.

use crate::activation::{Relu, ReluCache, ReluMode, Sigmoid};
use crate::backend::{Activation, Backend};
use crate::conv::{Conv2d, Conv2dCache};
use crate::dense::{Dense, DenseCache};
use crate::error::{shape_error, Result};
use crate::layer::{Backward, Flatten, Layer};
use crate::pool::{AvgPool2d, MaxPool2d, PoolCache};
use ndarray::ArrayD;
use pond_core::Conv2dParams;
use pond_protocol::Role;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One layer of an architecture description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    /// [`Dense`]: weight [inputs, outputs], bias [outputs].
    Dense {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
    },
    /// [`Conv2d`]: weight [out_channels, in_channels, kernel.0, kernel.1], bias [out_channels].
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Filter height and width.
        kernel: (usize, usize),
        /// Vertical and horizontal stride.
        stride: (usize, usize),
        /// Zero padding rows and columns.
        padding: (usize, usize),
    },
    /// [`AvgPool2d`].
    AvgPool2d {
        /// Window height and width.
        size: (usize, usize),
        /// Step.
        stride: (usize, usize),
    },
    /// [`MaxPool2d`].
    MaxPool2d {
        /// Window height and width.
        size: (usize, usize),
        /// Step.
        stride: (usize, usize),
    },
    /// [`Flatten`].
    Flatten,
    /// [`Relu`].
    Relu {
        /// Exact or polynomial.
        mode: ReluMode,
    },
    /// [`Sigmoid`] (polynomial).
    Sigmoid,
}

impl LayerSpec {
    /// Names and shapes of this layer's parameters, given its index in the model.
    pub fn param_shapes(&self, index: usize) -> Vec<(String, Vec<usize>)> {
        let name = |p: &str| format!("layers.{index}.{p}");
        match *self {
            LayerSpec::Dense { inputs, outputs } => {
                vec![(name("weight"), vec![inputs, outputs]), (name("bias"), vec![outputs])]
            }
            LayerSpec::Conv2d { in_channels, out_channels, kernel, .. } => vec![
                (name("weight"), vec![out_channels, in_channels, kernel.0, kernel.1]),
                (name("bias"), vec![out_channels]),
            ],
            _ => Vec::new(),
        }
    }

    /// Fan-in and fan-out for initialisation (parametrised layers only).
    fn fans(&self) -> (usize, usize) {
        match *self {
            LayerSpec::Dense { inputs, outputs } => (inputs, outputs),
            LayerSpec::Conv2d { in_channels, out_channels, kernel, .. } => {
                (in_channels * kernel.0 * kernel.1, out_channels * kernel.0 * kernel.1)
            }
            _ => (1, 1),
        }
    }
}

/// An architecture: the per-example input shape and the layers in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Shape of one example (without the batch axis).
    pub input_shape: Vec<usize>,
    /// The layers.
    pub layers: Vec<LayerSpec>,
}

/// Named plaintext weights ("layers.{i}.weight", "layers.{i}.bias").
pub type Weights = BTreeMap<String, ArrayD<f64>>;

impl ModelSpec {
    /// Logistic regression on `features` inputs: one Dense layer with one output (the logit).
    pub fn logistic_regression(features: usize) -> Self {
        ModelSpec { input_shape: vec![features], layers: vec![LayerSpec::Dense { inputs: features, outputs: 1 }] }
    }

    /// A multilayer perceptron with ReLU between the dense layers: `sizes` = [in, h1, ..., out].
    pub fn mlp(sizes: &[usize], relu: ReluMode) -> Self {
        let mut layers = Vec::new();
        for (i, w) in sizes.windows(2).enumerate() {
            if i > 0 {
                layers.push(LayerSpec::Relu { mode: relu });
            }
            layers.push(LayerSpec::Dense { inputs: w[0], outputs: w[1] });
        }
        ModelSpec { input_shape: sizes.first().map(|&n| vec![n]).unwrap_or_default(), layers }
    }

    /// Every parameter's name and shape, in model order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.layers.iter().enumerate().flat_map(|(i, l)| l.param_shapes(i)).collect()
    }

    /// Glorot-uniform weights (U(-a, a), a = sqrt(6 / (fan_in + fan_out))) and zero biases,
    /// from a seed: the same seed gives the same weights on every platform.
    pub fn init(&self, seed: u64) -> Weights {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Weights::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = layer.fans();
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            for (name, shape) in layer.param_shapes(i) {
                let n: usize = shape.iter().product();
                let values: Vec<f64> = if name.ends_with("bias") {
                    vec![0.0; n]
                } else {
                    (0..n).map(|_| rng.random_range(-a..a)).collect()
                };
                out.insert(name, ArrayD::from_shape_vec(shape, values).expect("length is the shape's product"));
            }
        }
        out
    }

    /// Checks that `weights` holds exactly the parameters of this architecture with the right
    /// shapes; the error names the first tensor that is missing, unexpected or mis-shaped.
    pub fn check_weights(&self, weights: &Weights) -> std::result::Result<(), crate::io::ModelError> {
        use crate::io::ModelError;
        let expected = self.param_shapes();
        for (name, shape) in &expected {
            match weights.get(name) {
                None => return Err(ModelError::MissingTensor { name: name.clone(), file: None }),
                Some(w) if w.shape() != shape.as_slice() => {
                    return Err(ModelError::WrongShape {
                        name: name.clone(),
                        expected: shape.clone(),
                        got: w.shape().to_vec(),
                        file: None,
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = weights.keys().find(|k| !expected.iter().any(|(n, _)| n == *k)) {
            return Err(ModelError::UnexpectedTensor { name: extra.clone(), file: None });
        }
        Ok(())
    }
}

/// Any layer, for heterogeneous stacks.
#[derive(Debug, Clone)]
pub enum AnyLayer<B: Backend> {
    /// Dense.
    Dense(Dense<B>),
    /// Conv2D.
    Conv2d(Conv2d<B>),
    /// Average pooling.
    AvgPool2d(AvgPool2d),
    /// Max pooling.
    MaxPool2d(MaxPool2d),
    /// Flatten.
    Flatten(Flatten),
    /// ReLU.
    Relu(Relu),
    /// Sigmoid.
    Sigmoid(Sigmoid),
}

/// The cache of any layer.
#[derive(Debug)]
pub enum AnyCache<B: Backend> {
    /// Dense.
    Dense(DenseCache<B>),
    /// Conv2D.
    Conv2d(Conv2dCache<B>),
    /// Pooling.
    Pool(PoolCache<B::Tensor>),
    /// Flatten.
    Flatten(Vec<usize>),
    /// ReLU.
    Relu(ReluCache<B>),
    /// Sigmoid.
    Sigmoid(B::Tensor),
}

macro_rules! dispatch {
    ($self:expr, $l:ident => $body:expr) => {
        match $self {
            AnyLayer::Dense($l) => $body,
            AnyLayer::Conv2d($l) => $body,
            AnyLayer::AvgPool2d($l) => $body,
            AnyLayer::MaxPool2d($l) => $body,
            AnyLayer::Flatten($l) => $body,
            AnyLayer::Relu($l) => $body,
            AnyLayer::Sigmoid($l) => $body,
        }
    };
}

impl<B: Backend> Layer<B> for AnyLayer<B> {
    type Cache = AnyCache<B>;

    fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, AnyCache<B>)> {
        Ok(match self {
            AnyLayer::Dense(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Dense(c)))?,
            AnyLayer::Conv2d(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Conv2d(c)))?,
            AnyLayer::AvgPool2d(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Pool(c)))?,
            AnyLayer::MaxPool2d(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Pool(c)))?,
            AnyLayer::Flatten(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Flatten(c)))?,
            AnyLayer::Relu(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Relu(c)))?,
            AnyLayer::Sigmoid(l) => l.forward(b, x).map(|(y, c)| (y, AnyCache::Sigmoid(c)))?,
        })
    }

    fn infer(&self, b: &mut B, x: Activation<B>) -> Result<B::Tensor> {
        match self {
            AnyLayer::Dense(l) => l.infer(b, x),
            AnyLayer::Conv2d(l) => l.infer(b, x),
            AnyLayer::AvgPool2d(l) => l.infer(b, x),
            AnyLayer::MaxPool2d(l) => l.infer(b, x),
            AnyLayer::Flatten(l) => l.infer(b, x),
            AnyLayer::Relu(l) => l.infer(b, x),
            AnyLayer::Sigmoid(l) => l.infer(b, x),
        }
    }

    fn backward_select(&self, b: &mut B, cache: AnyCache<B>, dy: &B::Tensor, need_dx: bool) -> Result<Backward<B>> {
        match (self, cache) {
            (AnyLayer::Dense(l), AnyCache::Dense(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::Conv2d(l), AnyCache::Conv2d(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::AvgPool2d(l), AnyCache::Pool(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::MaxPool2d(l), AnyCache::Pool(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::Flatten(l), AnyCache::Flatten(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::Relu(l), AnyCache::Relu(c)) => l.backward_select(b, c, dy, need_dx),
            (AnyLayer::Sigmoid(l), AnyCache::Sigmoid(c)) => l.backward_select(b, c, dy, need_dx),
            _ => Err(shape_error("backward", "cache from a different kind of layer")),
        }
    }

    fn params(&self) -> Vec<&B::Tensor> {
        dispatch!(self, l => Layer::<B>::params(l))
    }

    fn params_mut(&mut self) -> Vec<&mut B::Tensor> {
        dispatch!(self, l => Layer::<B>::params_mut(l))
    }

    fn params_changed(&mut self) {
        dispatch!(self, l => Layer::<B>::params_changed(l))
    }
}

/// A stack of layers built from a [`ModelSpec`], with its parameters in one backend.
#[derive(Debug, Clone)]
pub struct Sequential<B: Backend> {
    /// The architecture.
    pub spec: ModelSpec,
    /// The layers.
    pub layers: Vec<AnyLayer<B>>,
}

impl<B: Backend> Sequential<B> {
    /// Builds the model in backend `b` from weights held by `owner` (private backend: `owner`
    /// secret-shares them; other parties pass `None`). The owner's weights are checked
    /// against the architecture first.
    pub fn input(b: &mut B, spec: &ModelSpec, owner: Role, weights: Option<&Weights>) -> Result<Self> {
        if let Some(w) = weights {
            spec.check_weights(w).map_err(|e| shape_error("model weights", e.to_string()))?;
        }
        let mut layers = Vec::with_capacity(spec.layers.len());
        for (i, l) in spec.layers.iter().enumerate() {
            let mut params = Vec::new();
            for (name, shape) in l.param_shapes(i) {
                params.push(b.input(owner, weights.and_then(|w| w.get(&name)), &shape)?);
            }
            let mut params = params.into_iter();
            let mut next = || params.next().ok_or_else(|| shape_error("model", "missing parameter"));
            layers.push(match *l {
                LayerSpec::Dense { .. } => AnyLayer::Dense(Dense::new(b, next()?, next()?)?),
                LayerSpec::Conv2d { stride, padding, .. } => {
                    AnyLayer::Conv2d(Conv2d::new(b, next()?, next()?, Conv2dParams { stride, padding })?)
                }
                LayerSpec::AvgPool2d { size, stride } => AnyLayer::AvgPool2d(AvgPool2d { size, stride }),
                LayerSpec::MaxPool2d { size, stride } => AnyLayer::MaxPool2d(MaxPool2d { size, stride }),
                LayerSpec::Flatten => AnyLayer::Flatten(Flatten),
                LayerSpec::Relu { mode } => AnyLayer::Relu(Relu { mode }),
                LayerSpec::Sigmoid => AnyLayer::Sigmoid(Sigmoid),
            });
        }
        Ok(Sequential { spec: spec.clone(), layers })
    }

    /// The same model typed for another backend with the same tensor types, without copying:
    /// a private model built through one `PrivateBackend` borrow of a session can be kept and
    /// used through a later borrow (the backend's lifetime is part of the model's type).
    pub fn rebind<C: Backend<Tensor = B::Tensor, Operand = B::Operand>>(self) -> Sequential<C> {
        let layers = self
            .layers
            .into_iter()
            .map(|l| match l {
                AnyLayer::Dense(d) => AnyLayer::Dense(d.rebind()),
                AnyLayer::Conv2d(c) => AnyLayer::Conv2d(c.rebind()),
                AnyLayer::AvgPool2d(p) => AnyLayer::AvgPool2d(p),
                AnyLayer::MaxPool2d(p) => AnyLayer::MaxPool2d(p),
                AnyLayer::Flatten(f) => AnyLayer::Flatten(f),
                AnyLayer::Relu(r) => AnyLayer::Relu(r),
                AnyLayer::Sigmoid(g) => AnyLayer::Sigmoid(g),
            })
            .collect();
        Sequential { spec: self.spec, layers }
    }

    /// Reveals every parameter to `owner` (others get `None`).
    pub fn output(&self, b: &mut B, owner: Role) -> Result<Option<Weights>> {
        let mut out = Weights::new();
        let mut complete = true;
        for ((name, _), p) in self.spec.param_shapes().into_iter().zip(self.params()) {
            match b.output(p, owner)? {
                Some(v) => {
                    out.insert(name, v);
                }
                None => complete = false,
            }
        }
        Ok(complete.then_some(out))
    }

    /// Forward pass: the output and one cache per layer. A convolution followed by an average
    /// pooling that fuses with it ([`AvgPool2d::fuses_with_conv`]) runs as one operation
    /// ([`Conv2d::forward_avg_pooled`]: one rescaling instead of two), with both caches.
    pub fn forward(&self, b: &mut B, x: Activation<B>) -> Result<(B::Tensor, Vec<AnyCache<B>>)> {
        let mut caches = Vec::with_capacity(self.layers.len());
        let y = self.run(b, x, Some(&mut caches))?;
        Ok((y, caches))
    }

    /// The output alone, for inference ([`Layer::infer`]): no layer keeps what its backward
    /// pass would need, so every activation is dropped once the next layer has it.
    pub fn infer(&self, b: &mut B, x: Activation<B>) -> Result<B::Tensor> {
        self.run(b, x, None)
    }

    /// The forward pass, pushing every layer's cache to `caches` when given (training), else
    /// by [`Layer::infer`]. Either way, a convolution followed by an average pooling it can
    /// fuse with runs as one fused layer, a dense or convolution layer (pooled or not)
    /// followed by an exact ReLU runs with the ReLU as one step ([`Affine::relu`]), and
    /// a convolution, max-pool and exact ReLU run with the max-pool on the convolution's unscaled
    /// output and its rescaling fused with the ReLU ([`Backend::rescale_relu`]), each layer
    /// getting the cache its own forward pass would make.
    fn run(&self, b: &mut B, x: Activation<B>, mut caches: Option<&mut Vec<AnyCache<B>>>) -> Result<B::Tensor> {
        let mut x = x;
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            let pool = match (layer, layers.peek()) {
                (AnyLayer::Conv2d(conv), Some(AnyLayer::AvgPool2d(pool)))
                    if pool.fuses_with_conv(&conv.output_shape(b, x.value(b))?) =>
                {
                    layers.next();
                    Some(*pool)
                }
                _ => None,
            };
            let exact_relu =
                |l: Option<&AnyLayer<B>>| matches!(l, Some(AnyLayer::Relu(Relu { mode: ReluMode::Exact })));
            // A convolution, a max-pool and an exact ReLU: the max-pool runs on the convolution's
            // unscaled output, and its result's rescaling is fused with the ReLU.
            let mut ahead = layers.clone();
            let maxpool = match (layer, pool, ahead.next(), ahead.next()) {
                (AnyLayer::Conv2d(_), None, Some(AnyLayer::MaxPool2d(maxpool)), after) if exact_relu(after) => {
                    layers.nth(1);
                    Some(*maxpool)
                }
                _ => None,
            };
            let affine = matches!(layer, AnyLayer::Dense(_) | AnyLayer::Conv2d(_));
            let relu = maxpool.is_none() && affine && exact_relu(layers.peek().copied());
            if relu {
                layers.next();
            }
            let training = caches.is_some();
            let (y, made) = match (layer, relu, pool, maxpool) {
                (AnyLayer::Conv2d(conv), _, _, Some(maxpool)) => {
                    let ((z, shift), conv_cache, _) = conv.forward_unscaled(b, x)?;
                    let (pooled, pool_cache) = maxpool.forward(b, Activation::Value(z))?;
                    let (y, bits) = b.rescale_relu(&pooled, shift)?;
                    let relu_cache = AnyCache::Relu(ReluCache::Bits(bits));
                    (y, vec![AnyCache::Conv2d(conv_cache), AnyCache::Pool(pool_cache), relu_cache])
                }
                (AnyLayer::Dense(dense), true, _, _) => {
                    let ((y, bits), cache) = dense.forward_relu(b, x)?;
                    (y, vec![AnyCache::Dense(cache), AnyCache::Relu(ReluCache::Bits(bits))])
                }
                (AnyLayer::Conv2d(conv), true, pool, _) => {
                    let ((y, bits), cache, pool_cache) = conv.forward_relu(b, x, pool.as_ref())?;
                    let relu_cache = AnyCache::Relu(ReluCache::Bits(bits));
                    let made = [AnyCache::Conv2d(cache)].into_iter().chain(pool_cache.map(AnyCache::Pool));
                    (y, made.chain([relu_cache]).collect())
                }
                (AnyLayer::Conv2d(conv), false, Some(pool), _) => {
                    let (y, (conv_cache, pool_cache)) = conv.forward_avg_pooled(b, x, &pool)?;
                    (y, vec![AnyCache::Conv2d(conv_cache), AnyCache::Pool(pool_cache)])
                }
                _ if training => {
                    let (y, cache) = layer.forward(b, x)?;
                    (y, vec![cache])
                }
                _ => (layer.infer(b, x)?, Vec::new()),
            };
            if let Some(caches) = caches.as_deref_mut() {
                caches.extend(made);
            }
            x = Activation::Value(y);
        }
        Ok(x.into_value(b))
    }

    /// Backward pass from the output gradient: the parameter gradients, in [`Sequential::params`]
    /// order. The first layer's input gradient is not computed.
    pub fn backward(&self, b: &mut B, caches: Vec<AnyCache<B>>, dy: B::Tensor) -> Result<Vec<B::Tensor>> {
        self.backward_with(b, caches, dy, |_, _| Ok(None))
    }

    /// [`Sequential::backward`] for a loss with extra terms on the layers' inputs: `extra(b,
    /// cache)` may return the gradient of such a term with respect to the input of the layer
    /// that made `cache`, which is added to the gradient flowing back through that layer.
    pub fn backward_with(
        &self,
        b: &mut B,
        caches: Vec<AnyCache<B>>,
        dy: B::Tensor,
        mut extra: impl FnMut(&mut B, &AnyCache<B>) -> Result<Option<B::Tensor>>,
    ) -> Result<Vec<B::Tensor>> {
        if caches.len() != self.layers.len() {
            return Err(shape_error("backward", format!("{} caches for {} layers", caches.len(), self.layers.len())));
        }
        let mut grads: Vec<Vec<B::Tensor>> = Vec::with_capacity(self.layers.len());
        let mut dy = dy;
        for (i, (layer, cache)) in self.layers.iter().zip(caches).enumerate().rev() {
            let extra = if i > 0 { extra(b, &cache)? } else { None };
            let (dx, g) = layer.backward_select(b, cache, &dy, i > 0)?;
            grads.push(g);
            match (dx, extra) {
                (Some(dx), Some(e)) => dy = b.add(&dx, &e)?,
                (Some(dx), None) => dy = dx,
                (None, _) => break,
            }
        }
        Ok(grads.into_iter().rev().flatten().collect())
    }

    /// Every parameter, in model order.
    pub fn params(&self) -> Vec<&B::Tensor> {
        self.layers.iter().flat_map(|l| l.params()).collect()
    }

    /// Replaces the parameters (in model order) and drops prepared copies.
    pub fn set_params(&mut self, new: Vec<B::Tensor>) -> Result<()> {
        let count: usize = self.layers.iter().map(|l| l.params().len()).sum();
        if new.len() != count {
            return Err(shape_error("set_params", format!("{} tensors for {count} parameters", new.len())));
        }
        let mut new = new.into_iter();
        for layer in &mut self.layers {
            for p in layer.params_mut() {
                if let Some(v) = new.next() {
                    *p = v;
                }
            }
            layer.params_changed();
        }
        Ok(())
    }
}
