//! The `Backend` trait: the operations layers are written in, implemented once in plaintext
//! (f64, the reference) and once on secret shares (pond-protocol).
//!
//! Every product-like operation returns a value at the backend's working scale: on the private
//! backend that means one truncation after each product (error below 1 ulp, see
//! [`pond_protocol::truncation`]); the plaintext backend computes in f64.

use crate::error::Result;
use pond_core::kernels::im2col::ConvGeometry;
use pond_protocol::polynomial::Polynomial;
use pond_protocol::Role;
use std::fmt::Debug;
use std::ops::Range;

/// An operand of a product: a value, or a value prepared for reuse by several products
/// (on the private backend: masked once, Pond-style, so later products open nothing for it).
pub enum Input<'a, B: Backend + ?Sized> {
    /// A value; the product prepares it on the fly.
    Value(&'a B::Tensor),
    /// A prepared value.
    Prepared(&'a B::Operand),
}

/// A ReLU's output and its 0/1 derivative ([`Backend::relu`], [`Affine::relu`]).
pub type ReluOutput<B> = (<B as Backend>::Tensor, <B as Backend>::Tensor);

/// A layer's affine map, for [`Affine::apply`] and [`Affine::relu`]: a dense layer's x W + b, or a
/// convolution (with the average pooling fused with it when `window` is set) plus its bias per
/// output channel.
pub enum Affine<'a, B: Backend + ?Sized> {
    /// [`Backend::matmul_add_row`] of these operands.
    Dense {
        /// The input.
        x: Input<'a, B>,
        /// The weight.
        w: Input<'a, B>,
        /// The bias row.
        bias: &'a B::Tensor,
    },
    /// [`Backend::conv2d_add_channels`] of these operands.
    Conv {
        /// The NCHW input.
        x: Input<'a, B>,
        /// The OIHW filters.
        w: Input<'a, B>,
        /// The convolution's geometry.
        geometry: &'a ConvGeometry,
        /// The average pooling window fused with it, if any.
        window: Option<(usize, usize)>,
        /// The bias per output channel.
        bias: &'a B::Tensor,
    },
}

impl<B: Backend + ?Sized> Affine<'_, B> {
    /// The map's output in `b`.
    pub fn apply(self, b: &mut B) -> Result<B::Tensor> {
        match self {
            Affine::Dense { x, w, bias } => b.matmul_add_row(x, w, bias),
            Affine::Conv { x, w, geometry, window, bias } => b.conv2d_add_channels(x, w, geometry, window, bias),
        }
    }
}

impl<B: Backend> Affine<'_, B> {
    /// [`Backend::relu`] of the map's output (the ReLU and its 0/1 derivative) as one step:
    /// [`Backend::affine_unscaled`], then [`Backend::rescale_relu`], in which the private
    /// backend fuses the product's rescaling with the comparison
    /// ([`pond_protocol::Session::truncate_relu_in_range`]: in Z64 one round and one opening
    /// fewer).
    pub fn relu(self, b: &mut B) -> Result<ReluOutput<B>> {
        let (z, shift) = b.affine_unscaled(self)?;
        b.rescale_relu(&z, shift)
    }
}

impl<B: Backend + ?Sized> Clone for Input<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B: Backend + ?Sized> Copy for Input<'_, B> {}

/// A layer's input, owned: a value or an already prepared value (e.g. a batch sliced from a
/// training set that was masked once).
pub enum Activation<B: Backend + ?Sized> {
    /// A value.
    Value(B::Tensor),
    /// A prepared value.
    Prepared(B::Operand),
}

impl<B: Backend + ?Sized> Activation<B> {
    /// The value, whichever form it is in.
    pub fn value<'a>(&'a self, b: &B) -> &'a B::Tensor {
        match self {
            Activation::Value(v) => v,
            Activation::Prepared(p) => b.prepared_value(p),
        }
    }

    /// The value, owned.
    pub fn into_value(self, b: &B) -> B::Tensor {
        match self {
            Activation::Value(v) => v,
            Activation::Prepared(p) => b.prepared_value(&p).clone(),
        }
    }

    /// The prepared form, preparing the value if needed.
    pub fn into_prepared(self, b: &mut B) -> Result<B::Operand> {
        match self {
            Activation::Value(v) => b.prepare_owned(v),
            Activation::Prepared(p) => Ok(p),
        }
    }
}

/// The operations layers, losses and optimisers are written in.
///
/// Conventions: tensors are row-major, batches are axis 0, images NCHW, filters OIHW.
/// "Public" scalars (learning rates, pooling factors) are `f64` known to every party.
pub trait Backend {
    /// A value: f64 array (plaintext) or secret shares (private).
    type Tensor: Clone + Debug + Send;
    /// A value prepared for reuse as a product operand.
    type Operand: Clone + Debug + Send;

    /// Short name for errors and reports.
    fn name(&self) -> &'static str;

    /// The (public) shape of a value.
    fn shape<'a>(&self, x: &'a Self::Tensor) -> &'a [usize];

    /// Brings a plaintext value held by `owner` into the backend (private: secret-shares it;
    /// parties other than `owner` pass `None`).
    fn input(&mut self, owner: Role, value: Option<&ndarray::ArrayD<f64>>, shape: &[usize]) -> Result<Self::Tensor>;

    /// Reveals a value to `owner` only (everyone else gets `None`).
    fn output(&mut self, x: &Self::Tensor, owner: Role) -> Result<Option<ndarray::ArrayD<f64>>>;

    /// Prepares `x` for reuse by several products (private: masks it, one opening).
    fn prepare(&mut self, x: &Self::Tensor) -> Result<Self::Operand>;
    /// [`Backend::prepare`] of a value the caller no longer needs (private: moved into the
    /// masked tensor instead of copied).
    fn prepare_owned(&mut self, x: Self::Tensor) -> Result<Self::Operand> {
        self.prepare(&x)
    }
    /// The value of a prepared operand.
    fn prepared_value<'a>(&self, x: &'a Self::Operand) -> &'a Self::Tensor;
    /// The transpose of a prepared 2-D operand, still prepared (reuses its mask).
    fn transpose_prepared(&mut self, x: &Self::Operand) -> Result<Self::Operand>;

    /// Matrix product a @ b at the working scale.
    fn matmul(&mut self, a: Input<'_, Self>, b: Input<'_, Self>) -> Result<Self::Tensor>;
    /// Elementwise product at the working scale.
    fn mul(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// x * bits, elementwise, where `bits` holds 0 or 1 (as produced by [`Backend::relu`] and
    /// [`Backend::max_rows`]): no rescaling needed.
    fn gate(&mut self, x: &Self::Tensor, bits: &Self::Tensor) -> Result<Self::Tensor>;
    /// a + b.
    fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// a - b.
    fn sub(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// c * x for a public scalar c.
    fn scale(&mut self, x: &Self::Tensor, c: f64) -> Result<Self::Tensor>;
    /// a * x_i + b * y_i for each pair, with public a and b, in one batch (private: one
    /// truncation for all pairs). `xs` and `ys` pair up and have equal shapes.
    fn axpby_many(&mut self, a: f64, xs: &[&Self::Tensor], b: f64, ys: &[&Self::Tensor]) -> Result<Vec<Self::Tensor>>;

    /// x [n, m] + row [m] broadcast over the rows.
    fn add_row(&mut self, x: &Self::Tensor, row: &Self::Tensor) -> Result<Self::Tensor>;
    /// A dense layer's affine map: a @ b with `bias` [m] added to every row. Default:
    /// [`Backend::matmul`], then [`Backend::add_row`]; the private backend adds the bias to the
    /// product before its rescaling (see [`crate::PrivateBackend`]).
    fn matmul_add_row(&mut self, a: Input<'_, Self>, b: Input<'_, Self>, bias: &Self::Tensor) -> Result<Self::Tensor> {
        let z = self.matmul(a, b)?;
        self.add_row(&z, bias)
    }
    /// Sum over `axis` (removed).
    fn sum_axis(&mut self, x: &Self::Tensor, axis: usize) -> Result<Self::Tensor>;
    /// Same elements, new shape.
    fn reshape(&mut self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// [`Backend::reshape`] of a tensor the caller no longer needs (no copy where the backend
    /// can avoid it; the default copies).
    fn reshape_owned(&mut self, x: Self::Tensor, shape: &[usize]) -> Result<Self::Tensor> {
        self.reshape(&x, shape)
    }
    /// Axes permuted.
    fn permute(&mut self, x: &Self::Tensor, axes: &[usize]) -> Result<Self::Tensor>;
    /// 2-D transpose.
    fn transpose(&mut self, x: &Self::Tensor) -> Result<Self::Tensor> {
        self.permute(x, &[1, 0])
    }
    /// Broadcast to `shape` (numpy rules), materialised.
    fn broadcast(&mut self, x: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;
    /// Rows `rows` of a value.
    fn slice_rows(&mut self, x: &Self::Tensor, rows: Range<usize>) -> Result<Self::Tensor>;

    /// 2-D convolution of an NCHW input with OIHW filters at the working scale, output NOHW
    /// (private: one Beaver convolution, opening only the operands that are not prepared).
    fn conv2d(&mut self, x: Input<'_, Self>, w: Input<'_, Self>, g: &ConvGeometry) -> Result<Self::Tensor>;

    /// Average pooling of conv2d(x, w) over non-overlapping `window`s that tile its output and
    /// whose area is a power of two, rescaled once: the private backend computes the window sums
    /// of the convolution as one Beaver product (scale 2^2f) and truncates once by
    /// f + log2(area), one rounding and one truncation of the pooled size instead of one of the
    /// convolution's size and one of the pooled size. Default: conv2d, [`Backend::window_sum`],
    /// scale by 1/area.
    fn conv2d_avg_pool(
        &mut self,
        x: Input<'_, Self>,
        w: Input<'_, Self>,
        g: &ConvGeometry,
        window: (usize, usize),
    ) -> Result<Self::Tensor> {
        let y = self.conv2d(x, w, g)?;
        let sums = self.window_sum(&y, window)?;
        self.scale(&sums, 1.0 / (window.0 * window.1) as f64)
    }
    /// A convolution layer's affine map: [`Backend::conv2d`] (`window` `None`) or
    /// [`Backend::conv2d_avg_pool`] (`Some(window)`), with the per-channel `bias` [C] added to
    /// every position. Default: the product, then the bias broadcast and added; the private
    /// backend adds the bias to the product before its rescaling (see [`crate::PrivateBackend`]).
    fn conv2d_add_channels(
        &mut self,
        x: Input<'_, Self>,
        w: Input<'_, Self>,
        g: &ConvGeometry,
        window: Option<(usize, usize)>,
        bias: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        let y = match window {
            None => self.conv2d(x, w, g)?,
            Some(window) => self.conv2d_avg_pool(x, w, g, window)?,
        };
        let shape = self.shape(&y).to_vec();
        let bias = self.reshape(bias, &[1, g.filters, 1, 1])?;
        let bias = self.broadcast(&bias, &shape)?;
        self.add(&y, &bias)
    }
    /// Sums of the non-overlapping `window`s (kh, kw) of an NCHW x whose height and width they
    /// divide: [N, C, H/kh, W/kw] (exact and local: no patch matrix, no traffic).
    fn window_sum(&mut self, x: &Self::Tensor, window: (usize, usize)) -> Result<Self::Tensor>;

    /// The patch matrix of an NCHW input (see [`pond_core::kernels::im2col`]).
    fn im2col(&mut self, x: &Self::Tensor, g: &ConvGeometry) -> Result<Self::Tensor>;
    /// The adjoint of [`Backend::im2col`]: sums every patch entry back into its input position.
    fn col2im(&mut self, patches: &Self::Tensor, g: &ConvGeometry) -> Result<Self::Tensor>;

    /// p(x), elementwise.
    fn polynomial(&mut self, x: &Self::Tensor, p: &Polynomial) -> Result<Self::Tensor>;
    /// [`Backend::polynomial`] of a tensor the caller no longer needs (a backend may then
    /// reuse its buffers).
    fn polynomial_owned(&mut self, x: Self::Tensor, p: &Polynomial) -> Result<Self::Tensor> {
        self.polynomial(&x, p)
    }
    /// Exact ReLU: (max(x, 0), [x >= 0] as 0/1 bits for the backward pass).
    fn relu(&mut self, x: &Self::Tensor) -> Result<(Self::Tensor, Self::Tensor)>;
    /// `affine`'s output before its rescaling, and the shift s that rescales it: a value at
    /// scale 2^(f + s), for [`Backend::rescale_relu`] or for operations that commute with the
    /// rescaling (a max-pool: floor is monotone). The private backend returns its product with
    /// the bias added and no truncation; by default, the map's output and s = 0.
    fn affine_unscaled(&mut self, affine: Affine<'_, Self>) -> Result<(Self::Tensor, u32)> {
        Ok((affine.apply(self)?, 0))
    }
    /// [`Backend::relu`] of z / 2^`shift` for a value z from [`Backend::affine_unscaled`] (or a
    /// max-pool of one): the private backend fuses the truncation with the comparison
    /// ([`pond_protocol::Session::truncate_relu_in_range`]). Default: scale, then relu.
    fn rescale_relu(&mut self, z: &Self::Tensor, shift: u32) -> Result<ReluOutput<Self>>
    where
        Self: Sized,
    {
        if shift == 0 {
            return self.relu(z);
        }
        let y = self.scale(z, 0.5f64.powi(shift as i32))?;
        self.relu(&y)
    }
    /// Row maxima of a 2-D x [m, k]: (max [m], one-hot [m, k] of the first maximum).
    fn max_rows(&mut self, x: &Self::Tensor) -> Result<(Self::Tensor, Self::Tensor)>;
}

/// The output shape of [`Backend::window_sum`] on an input of `shape`, or the shape error.
pub(crate) fn window_sum_shape(shape: &[usize], (kh, kw): (usize, usize)) -> Result<Vec<usize>> {
    match *shape {
        [n, c, h, w] if kh > 0 && kw > 0 && h % kh == 0 && w % kw == 0 => Ok(vec![n, c, h / kh, w / kw]),
        _ => Err(crate::error::shape_error(
            "window_sum",
            format!("windows {kh}x{kw} do not tile the NCHW input {shape:?}"),
        )),
    }
}
