//! The private backend: secret-shared fixed-point tensors computed on by pond-protocol.
//!
//! Every product is one Beaver product and one truncation (error below 1 ulp = 2^-f per
//! truncation, [`pond_protocol::truncation`]); a dense or convolution layer followed by an exact
//! ReLU has its truncation fused with the ReLU's comparison ([`Affine::relu`]); prepared
//! operands are [`MaskedTensor`]s, so a
//! tensor used by several products (a weight in forward and backward, a layer input in forward
//! and in the weight gradient, a training set sliced into batches) is opened once.

use crate::backend::{Affine, Backend, Input, ReluOutput};
use crate::error::{shape_error, Result};
use ndarray::{ArrayD, Ix2};
use pond_core::kernels::im2col::{col2im, im2col, ConvGeometry};
use pond_core::{FixedPoint, Ring, RingTensor};
use pond_protocol::comparison::{ComparisonRing, ComparisonSource};
use pond_protocol::polynomial::Polynomial;
use pond_protocol::{MaskedTensor, Operand, PrivateTensor, ProtocolRing, Role, Session};
use std::ops::Range;
use std::sync::Arc;

/// The private backend's prepared operand, behind a shared pointer, so a copy (a training batch
/// handed to a step every epoch, a layer's cache) copies no tensor: a [`MaskedTensor`], or an
/// input that cp owns, which needs no mask ([`PrivateTensor::known_to_cp`]: its products with
/// masked operands open nothing, [`Session::product`]).
#[derive(Clone)]
pub struct Prepared<R: Ring>(Arc<PreparedKind<R>>);

enum PreparedKind<R: Ring> {
    Masked(MaskedTensor<R>),
    KnownToCp(PrivateTensor<R>),
}

impl<R: ProtocolRing> Prepared<R> {
    /// Wraps a masked tensor.
    pub fn new(masked: MaskedTensor<R>) -> Self {
        Prepared(Arc::new(PreparedKind::Masked(masked)))
    }

    /// The prepared value.
    pub fn value(&self) -> &PrivateTensor<R> {
        match &*self.0 {
            PreparedKind::Masked(m) => &m.value,
            PreparedKind::KnownToCp(x) => x,
        }
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        self.value().shape()
    }

    /// The product operand it is.
    fn operand(&self) -> Operand<'_, R> {
        match &*self.0 {
            PreparedKind::Masked(m) => Operand::Masked(m),
            PreparedKind::KnownToCp(x) => Operand::Private(x),
        }
    }
}

impl<R: ProtocolRing> std::fmt::Debug for Prepared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Prepared").field(&self.shape()).finish()
    }
}

/// Computation on secret shares in the ring `R` with fixed-point settings `fp`.
/// All three parties build one over their own [`Session`] and call the same operations.
pub struct PrivateBackend<'s, R: ProtocolRing> {
    session: &'s mut Session,
    fp: FixedPoint<R>,
}

impl<R: ProtocolRing> std::fmt::Debug for PrivateBackend<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateBackend").field("ring", &R::NAME).field("fp", &self.fp).finish()
    }
}

/// Applies a share-level map on servers; cp, which holds no share, only records the output
/// shape (computed by the caller, so cp never materialises a placeholder of the input's size).
fn map_share<R: ProtocolRing>(
    x: &PrivateTensor<R>,
    out_shape: &[usize],
    f: impl Fn(&R::Tensor) -> Result<R::Tensor>,
) -> Result<PrivateTensor<R>> {
    let share = x.share().map(&f).transpose()?;
    if let Some(y) = &share {
        if y.shape() != out_shape {
            return Err(shape_error("map_share", format!("output {:?}, expected {out_shape:?}", y.shape())));
        }
    }
    Ok(PrivateTensor::from_share(out_shape, share))
}

/// Applies the same linear data movement to a masked tensor's value, mask and opened
/// difference: the result is again a valid masked tensor (x' - a' = f(x - a)).
pub fn map_masked<R: ProtocolRing>(
    m: &MaskedTensor<R>,
    out_shape: &[usize],
    f: impl Fn(&R::Tensor) -> Result<R::Tensor>,
) -> Result<MaskedTensor<R>> {
    Ok(MaskedTensor {
        value: map_share(&m.value, out_shape, &f)?,
        mask: m.mask.try_map(&f)?,
        masked: m.masked.as_ref().map(&f).transpose()?,
    })
}

/// A share-level gather/scatter through the signed representatives: `to_signed` and
/// `from_signed` are inverse bijections on ring elements, and `f` only moves values or adds
/// them with wrapping i128 sums (exact mod 2^128, and no i128 overflow for the other rings'
/// representatives below 2^100), so the result is the same map applied in the ring.
fn through_signed<T: RingTensor>(
    t: &T,
    f: impl Fn(ndarray::ArrayViewD<'_, i128>) -> Result<ArrayD<i128>>,
) -> Result<T> {
    let signed = t.to_signed();
    Ok(T::from_signed(f(signed.view())?.view()))
}

fn sliced_shape(shape: &[usize], rows: &Range<usize>) -> Result<Vec<usize>> {
    match shape.first() {
        Some(&n) if rows.start <= rows.end && rows.end <= n => {
            Ok(std::iter::once(rows.len()).chain(shape[1..].iter().copied()).collect())
        }
        _ => Err(shape_error("slice_rows", format!("rows {rows:?} of {shape:?}"))),
    }
}

impl<'s, R: ComparisonRing> PrivateBackend<'s, R> {
    /// A backend over `session` with fixed-point settings `fp`.
    pub fn new(session: &'s mut Session, fp: FixedPoint<R>) -> Self {
        PrivateBackend { session, fp }
    }

    /// The session (for statistics, roles, or protocol calls the trait does not cover).
    pub fn session(&mut self) -> &mut Session {
        self.session
    }

    /// The fixed-point settings.
    pub fn fixed_point(&self) -> FixedPoint<R> {
        self.fp
    }

    /// Extra fractional bits used to encode public scalars: the most that keeps
    /// |value| * 2^(f + k) below the truncation bound for every in-range value.
    fn scalar_bits(&self) -> u32 {
        R::PRODUCT_BITS - self.fp.frac_bits() - self.fp.int_bits()
    }

    fn encode_public(&self, c: f64) -> Result<i128> {
        let k = self.scalar_bits();
        let v = c * (k as f64).exp2();
        if !v.is_finite() || v.abs() >= 2f64.powi(100) {
            return Err(shape_error("scale", format!("public scalar {c} out of range")));
        }
        Ok(v.round() as i128)
    }

    fn operand<'a>(x: Input<'a, Self>) -> Operand<'a, R> {
        match x {
            Input::Value(v) => Operand::Private(v),
            Input::Prepared(p) => p.operand(),
        }
    }

    /// A convolution's Beaver product at scale 2^2f (with `window`, the window sums of it, as one
    /// pooled product) and the shift that rescales it: f, or f + log2(area) for the average.
    fn conv_product(
        &mut self,
        x: Input<'_, Self>,
        w: Input<'_, Self>,
        g: &ConvGeometry,
        window: Option<(usize, usize)>,
    ) -> Result<(PrivateTensor<R>, u32)> {
        let (x, w, f) = (Self::operand(x), Self::operand(w), self.fp.frac_bits());
        let Some(window) = window else {
            return Ok((self.session.conv2d(x, w, g.params)?, f));
        };
        let area = window.0 * window.1;
        if !area.is_power_of_two() {
            return Err(shape_error("conv2d_avg_pool", format!("window {window:?}: its area must be a power of two")));
        }
        Ok((self.session.pooled_conv2d(x, w, g.params, window)?, f + area.trailing_zeros()))
    }

    /// (z + bias·2^shift) / 2^shift for a product z at scale 2^(f + shift) and a bias at scale
    /// 2^f ([`Backend::affine_unscaled`]): the bias joins the product before its one
    /// truncation. floor((z + b·2^s) / 2^s) = floor(z / 2^s) + b, so the value is
    /// that of the truncated product plus the bias (the truncation's own error aside, below
    /// 1 ulp either way), and the result is the truncation's: in rings whose truncation masks
    /// for free (CRT) it carries its masked form, so the next layer's product or polynomial
    /// opens nothing for it ([`Session::truncate_keeping_form`]). Local apart from the
    /// truncation; its range condition now applies to the layer's output z/2^(f+s) + b, which
    /// must be in range anyway.
    fn affine(&mut self, affine: Affine<'_, Self>) -> Result<PrivateTensor<R>> {
        let (z, shift) = self.affine_unscaled(affine)?;
        Ok(self.session.truncate_keeping_form(&z, shift)?)
    }
}

impl<R: ComparisonRing> Backend for PrivateBackend<'_, R> {
    type Tensor = PrivateTensor<R>;
    type Operand = Prepared<R>;

    fn name(&self) -> &'static str {
        "private"
    }

    fn shape<'a>(&self, x: &'a PrivateTensor<R>) -> &'a [usize] {
        x.shape()
    }

    fn input(&mut self, owner: Role, value: Option<&ArrayD<f64>>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        let encoded = match value {
            Some(v) if self.session.role() == owner => Some(self.fp.encode(v.view())?),
            _ => None,
        };
        Ok(self.session.share_input_owned::<R>(owner, encoded, shape)?)
    }

    fn output(&mut self, x: &PrivateTensor<R>, owner: Role) -> Result<Option<ArrayD<f64>>> {
        Ok(self.session.reveal_to(x, owner)?.map(|t| self.fp.decode(&t)))
    }

    /// Masks x (one opening), except an input cp owns, which stays as it is.
    fn prepare(&mut self, x: &PrivateTensor<R>) -> Result<Prepared<R>> {
        if x.known_to_cp() {
            return self.prepare_owned(x.clone());
        }
        Ok(Prepared::new(self.session.mask(x)?))
    }

    fn prepare_owned(&mut self, x: PrivateTensor<R>) -> Result<Prepared<R>> {
        if x.known_to_cp() {
            return Ok(Prepared(Arc::new(PreparedKind::KnownToCp(x))));
        }
        let mut masked = self.session.mask_many(vec![x])?;
        Ok(Prepared::new(masked.pop().expect("one masked tensor per input")))
    }

    fn prepared_value<'a>(&self, x: &'a Prepared<R>) -> &'a PrivateTensor<R> {
        x.value()
    }

    /// A masked tensor's transpose reuses its mask; the transpose of an input cp owns loses the
    /// mark (it is a new share-level tensor) and is masked.
    fn transpose_prepared(&mut self, x: &Prepared<R>) -> Result<Prepared<R>> {
        let &[m, n] = x.shape() else {
            return Err(shape_error("transpose", format!("{:?} is not a matrix", x.shape())));
        };
        let transpose = |t: &R::Tensor| Ok(t.transpose()?);
        match &*x.0 {
            PreparedKind::Masked(masked) => Ok(Prepared::new(map_masked(masked, &[n, m], transpose)?)),
            PreparedKind::KnownToCp(value) => {
                let t = map_share(value, &[n, m], transpose)?;
                self.prepare_owned(t)
            }
        }
    }

    fn matmul(&mut self, a: Input<'_, Self>, b: Input<'_, Self>) -> Result<PrivateTensor<R>> {
        let z = self.session.matmul(Self::operand(a), Self::operand(b))?;
        Ok(self.session.truncate(&z, self.fp.frac_bits())?)
    }

    /// The product, with the bias joining it before its truncation
    /// ([`PrivateBackend::affine`]).
    fn matmul_add_row(
        &mut self,
        a: Input<'_, Self>,
        b: Input<'_, Self>,
        bias: &PrivateTensor<R>,
    ) -> Result<PrivateTensor<R>> {
        self.affine(Affine::Dense { x: a, w: b, bias })
    }

    fn mul(&mut self, a: &PrivateTensor<R>, b: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        let z = self.session.mul(a, b)?;
        Ok(self.session.truncate(&z, self.fp.frac_bits())?)
    }

    fn gate(&mut self, x: &PrivateTensor<R>, bits: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        Ok(self.session.mul(x, bits)?)
    }

    fn add(&mut self, a: &PrivateTensor<R>, b: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        Ok(self.session.add(a, b)?)
    }

    fn sub(&mut self, a: &PrivateTensor<R>, b: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        Ok(self.session.sub(a, b)?)
    }

    /// c encoded with k = PRODUCT_BITS - f - int_bits fractional bits, one truncation by k:
    /// error at most |x| 2^-(k+1) + 1 ulp.
    fn scale(&mut self, x: &PrivateTensor<R>, c: f64) -> Result<PrivateTensor<R>> {
        let ci = self.encode_public(c)?;
        let z = self.session.mul_scalar(x, ci);
        Ok(self.session.truncate(&z, self.scalar_bits())?)
    }

    /// a and b encoded with k extra fractional bits (as in [`Backend::scale`]); all pairs are
    /// flattened into one tensor and truncated together: one round for the whole batch.
    fn axpby_many(
        &mut self,
        a: f64,
        xs: &[&PrivateTensor<R>],
        b: f64,
        ys: &[&PrivateTensor<R>],
    ) -> Result<Vec<PrivateTensor<R>>> {
        if xs.len() != ys.len() || xs.iter().zip(ys).any(|(x, y)| x.shape() != y.shape()) {
            return Err(shape_error("axpby_many", "x and y tensors must pair up with equal shapes"));
        }
        if xs.is_empty() {
            return Ok(Vec::new());
        }
        let (ai, bi) = (self.encode_public(a)?, self.encode_public(b)?);
        let s = &mut *self.session;
        let mut parts = Vec::with_capacity(xs.len());
        for (x, y) in xs.iter().zip(ys) {
            let sum = match bi {
                0 => s.mul_scalar(x, ai),
                _ => s.add(&s.mul_scalar(x, ai), &s.mul_scalar(y, bi))?,
            };
            parts.push(s.reshape(&sum, &[x.len()])?);
        }
        let refs: Vec<&PrivateTensor<R>> = parts.iter().collect();
        let flat = s.concat(&refs)?;
        let k = R::PRODUCT_BITS - self.fp.frac_bits() - self.fp.int_bits();
        let flat = s.truncate(&flat, k)?;
        let mut out = Vec::with_capacity(xs.len());
        let mut start = 0;
        for x in xs {
            let part = s.slice_axis(&flat, 0, start..start + x.len())?;
            out.push(s.reshape(&part, x.shape())?);
            start += x.len();
        }
        Ok(out)
    }

    fn add_row(&mut self, x: &PrivateTensor<R>, row: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        let mut sum = x.clone();
        self.session.add_broadcast_assign(&mut sum, row)?;
        Ok(sum)
    }

    fn sum_axis(&mut self, x: &PrivateTensor<R>, axis: usize) -> Result<PrivateTensor<R>> {
        Ok(self.session.sum_axis(x, axis)?)
    }

    fn reshape(&mut self, x: &PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        Ok(self.session.reshape(x, shape)?)
    }

    fn reshape_owned(&mut self, x: PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        Ok(self.session.reshape_owned(x, shape)?)
    }

    fn permute(&mut self, x: &PrivateTensor<R>, axes: &[usize]) -> Result<PrivateTensor<R>> {
        Ok(self.session.permute(x, axes)?)
    }

    fn broadcast(&mut self, x: &PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        Ok(self.session.broadcast_to(x, shape)?)
    }

    fn slice_rows(&mut self, x: &PrivateTensor<R>, rows: Range<usize>) -> Result<PrivateTensor<R>> {
        let shape = sliced_shape(x.shape(), &rows)?;
        map_share(x, &shape, |t| Ok(t.slice_axis(0, rows.clone())?))
    }

    fn conv2d(&mut self, x: Input<'_, Self>, w: Input<'_, Self>, g: &ConvGeometry) -> Result<PrivateTensor<R>> {
        let (z, shift) = self.conv_product(x, w, g, None)?;
        Ok(self.session.truncate(&z, shift)?)
    }

    /// One Beaver product of the window sums of the convolution ([`pond_protocol::Bilinear`]'s
    /// pooled convolution: the convolution's full output is never built, and cp's correction has
    /// the pooled size), at scale 2^2f, then one truncation by f + log2(area) (error below 1 ulp
    /// of the average, as for any product).
    fn conv2d_avg_pool(
        &mut self,
        x: Input<'_, Self>,
        w: Input<'_, Self>,
        g: &ConvGeometry,
        window: (usize, usize),
    ) -> Result<PrivateTensor<R>> {
        let (sums, shift) = self.conv_product(x, w, g, Some(window))?;
        Ok(self.session.truncate(&sums, shift)?)
    }

    /// The convolution's (or pooled convolution's) product, with the bias joining it before its
    /// truncation ([`PrivateBackend::affine`]).
    fn conv2d_add_channels(
        &mut self,
        x: Input<'_, Self>,
        w: Input<'_, Self>,
        g: &ConvGeometry,
        window: Option<(usize, usize)>,
        bias: &PrivateTensor<R>,
    ) -> Result<PrivateTensor<R>> {
        self.affine(Affine::Conv { x, w, geometry: g, window, bias })
    }

    fn window_sum(&mut self, x: &PrivateTensor<R>, window: (usize, usize)) -> Result<PrivateTensor<R>> {
        let shape = crate::backend::window_sum_shape(x.shape(), window)?;
        map_share(x, &shape, |t| Ok(t.window_sum(window)?))
    }

    fn im2col(&mut self, x: &PrivateTensor<R>, g: &ConvGeometry) -> Result<PrivateTensor<R>> {
        if x.shape() != [g.batch, g.channels, g.input.0, g.input.1] {
            return Err(shape_error("im2col", format!("input {:?} for geometry {g:?}", x.shape())));
        }
        map_share(x, &[g.patch_rows(), g.patch_cols()], |t| through_signed(t, |v| Ok(im2col(v, g).into_dyn())))
    }

    fn col2im(&mut self, patches: &PrivateTensor<R>, g: &ConvGeometry) -> Result<PrivateTensor<R>> {
        if patches.shape() != [g.patch_rows(), g.patch_cols()] {
            return Err(shape_error("col2im", format!("patches {:?} for geometry {g:?}", patches.shape())));
        }
        map_share(patches, &[g.batch, g.channels, g.input.0, g.input.1], |t| {
            through_signed(t, |v| {
                let m = v.into_dimensionality::<Ix2>().map_err(|_| shape_error("col2im", "patches are not 2-D"))?;
                Ok(col2im(m, g, i128::wrapping_add))
            })
        })
    }

    fn polynomial(&mut self, x: &PrivateTensor<R>, p: &Polynomial) -> Result<PrivateTensor<R>> {
        Ok(self.session.polynomial(x, p, self.fp)?)
    }

    /// x's share and masked form become the polynomial's first power (no copy).
    fn polynomial_owned(&mut self, x: PrivateTensor<R>, p: &Polynomial) -> Result<PrivateTensor<R>> {
        Ok(self.session.polynomial_owned(x, p, self.fp)?)
    }

    /// Exact ReLU by pond-protocol's secure comparison (2 rounds); the bits are [x >= 0]. The
    /// values are fixed-point, in range by the configuration's invariant, so the comparison
    /// reads only their low bits ([`pond_protocol::Session::relu_exact_in_range`]). Needs a
    /// power-of-two ring: the CRT rings refuse with a typed error.
    fn relu(&mut self, x: &PrivateTensor<R>) -> Result<(PrivateTensor<R>, PrivateTensor<R>)> {
        let r = self.session.relu_exact_in_range(x, &mut ComparisonSource::Online)?;
        Ok((r.output, r.derivative))
    }

    /// An affine map's product, untruncated, with the bias added at the product's scale, and the shift that
    /// rescales it: for a product z at scale 2^(f + shift) and a bias at scale 2^f, z +
    /// bias·2^shift, the bias reshaped to the map's bias shape and broadcast to z's shape.
    fn affine_unscaled(&mut self, affine: Affine<'_, Self>) -> Result<(PrivateTensor<R>, u32)> {
        let (mut z, shift, bias, bias_shape) = match affine {
            Affine::Dense { x, w, bias } => {
                let z = self.session.matmul(Self::operand(x), Self::operand(w))?;
                (z, self.fp.frac_bits(), bias, vec![1, bias.len()])
            }
            Affine::Conv { x, w, geometry, window, bias } => {
                let (z, shift) = self.conv_product(x, w, geometry, window)?;
                (z, shift, bias, vec![1, geometry.filters, 1, 1])
            }
        };
        let scaled = self.session.mul_scalar(bias, 1i128 << shift);
        let scaled = self.session.reshape_owned(scaled, &bias_shape)?;
        // In the product's own buffer, broadcast as it is added: no tensor of the product's
        // size besides the product.
        self.session.add_broadcast_assign(&mut z, &scaled)?;
        Ok((z, shift))
    }

    /// The truncation of z fused with the exact ReLU
    /// ([`pond_protocol::Session::truncate_relu_in_range`]): in Z64 the truncation's opening is
    /// the comparison's, 2 rounds where the truncation and [`Backend::relu`] take 3. The same
    /// values as the truncation followed by [`Backend::relu`] (the ReLU is that of
    /// floor(z / 2^s) or one more, as the truncation's own result is).
    fn rescale_relu(&mut self, z: &PrivateTensor<R>, shift: u32) -> Result<ReluOutput<Self>> {
        let r = self.session.truncate_relu_in_range(z, shift, &mut ComparisonSource::Online)?;
        Ok((r.output, r.derivative))
    }

    /// Row maxima and the one-hot of the first maximum by a comparison tournament
    /// (2 ceil(log2 k) rounds for k columns).
    fn max_rows(&mut self, x: &PrivateTensor<R>) -> Result<(PrivateTensor<R>, PrivateTensor<R>)> {
        if x.shape().len() != 2 {
            return Err(shape_error("max_rows", format!("{:?} is not a matrix", x.shape())));
        }
        let r = self.session.argmax_exact(x, &mut ComparisonSource::Online)?;
        Ok((r.max, r.one_hot))
    }
}
