//! The ring abstraction: `Ring` names a ring, `RingTensor` is what every ring's tensors can do.
//!
//! pond computes on additive shares in one of three rings:
//! [`Z64`](crate::Z64) (Z_2^64), [`Z128`](crate::Z128) (Z_2^128) and [`Crt`](crate::Crt) (Z_M with
//! M a product of pairwise-coprime moduli, "int100"). Protocol code is written once,
//! generic over `R: Ring`, and reaches elements only through `R::Tensor: RingTensor`.

use crate::error::Result;
use crate::prg::PrgKey;
use ndarray::{ArrayD, ArrayViewD};
use num_bigint::BigUint;
use std::fmt::Debug;
use std::ops::Range;

/// Geometry of a 2-D convolution on NCHW inputs with OIHW filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conv2dParams {
    /// Vertical and horizontal stride.
    pub stride: (usize, usize),
    /// Zero rows added above and below, zero columns left and right.
    pub padding: (usize, usize),
}

impl Conv2dParams {
    /// Stride 1, no padding ("valid").
    pub const VALID: Conv2dParams = Conv2dParams { stride: (1, 1), padding: (0, 0) };

    /// Output height and width for an `h`x`w` input and a `kh`x`kw` filter, if the filter fits.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Option<(usize, usize)> {
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if sh == 0 || sw == 0 || h + 2 * ph < kh || w + 2 * pw < kw {
            return None;
        }
        Some(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }
}

/// A ring that pond computes in. Implemented by zero-sized marker types.
pub trait Ring: Copy + Clone + Debug + Default + PartialEq + Send + Sync + 'static {
    /// Tensors of elements of this ring.
    type Tensor: RingTensor;
    /// Short name used in CLI flags, JSON and errors ("z64", "z128", "crt10", "crt5").
    const NAME: &'static str;
    /// Truncation precondition: fixed-point products must stay below 2^`PRODUCT_BITS` in absolute
    /// value for the ring's truncation protocol to meet its stated error (see `FixedPoint`).
    const PRODUCT_BITS: u32;
    /// The modulus M (2^64, 2^128 or the product of the CRT moduli).
    fn modulus() -> BigUint;
}

/// Operations on tensors of ring elements. All arithmetic is modulo the ring's modulus.
///
/// Shapes are checked: binary operations need equal shapes (use [`RingTensor::broadcast_to`]
/// first), `matmul` needs (m,k)x(k,n), `conv2d` needs NCHW x OIHW with matching C.
pub trait RingTensor: Clone + Debug + PartialEq + Send + Sync + Sized + 'static {
    /// The ring's name, for errors.
    const RING: &'static str;
    /// Bytes per element in the wire encoding.
    const BYTES_PER_ELEMENT: usize;

    /// The tensor's shape.
    fn shape(&self) -> &[usize];
    /// Number of elements.
    fn len(&self) -> usize {
        self.shape().iter().product()
    }
    /// True if the tensor has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// All-zero tensor.
    fn zeros(shape: &[usize]) -> Self;
    /// Each integer reduced modulo the ring.
    fn from_signed(values: ArrayViewD<'_, i128>) -> Self;
    /// A tensor of `shape` from one 64-bit integer per element in row-major order, each reduced
    /// modulo the ring (fixed-point encodings fit in 64 bits, see [`crate::FixedPoint::encode`]).
    /// Errors if the count does not fill the shape.
    fn from_i64s(shape: &[usize], values: Vec<i64>) -> Result<Self>;
    /// The signed representative of each element: the one in [-M/2, M/2).
    fn to_signed(&self) -> ArrayD<i128>;
    /// The canonical representative in [0, M) of each element, in row-major order.
    fn to_biguint(&self) -> Vec<BigUint>;
    /// Uniformly random tensor from stream `stream` of `key`: deterministic, generated in parallel.
    fn random(key: &PrgKey, stream: u64, shape: &[usize]) -> Self;

    /// Elementwise sum.
    fn add(&self, other: &Self) -> Result<Self>;
    /// Elementwise difference.
    fn sub(&self, other: &Self) -> Result<Self>;
    /// Elementwise product.
    fn mul(&self, other: &Self) -> Result<Self>;
    /// Additive inverse.
    fn neg(&self) -> Self;
    /// In-place elementwise sum.
    fn add_assign(&mut self, other: &Self) -> Result<()>;
    /// In-place elementwise difference.
    fn sub_assign(&mut self, other: &Self) -> Result<()>;
    /// In-place `self = other - self` (a correction computed in the buffer of the value it
    /// corrects, where the ring allows).
    fn sub_from_assign(&mut self, other: &Self) -> Result<()> {
        *self = other.sub(self)?;
        Ok(())
    }
    /// In-place `self += a * b` elementwise (one pass where the ring allows; the Beaver
    /// products' recombination).
    fn mul_add_assign(&mut self, a: &Self, b: &Self) -> Result<()> {
        self.add_assign(&a.mul(b)?)
    }
    /// In-place `self += a1 * b1 + a2 * b2` elementwise: a server's two local products in an
    /// elementwise Beaver product, in one pass over the five tensors where the ring allows.
    fn mul_add_pair_assign(&mut self, (a1, b1): (&Self, &Self), (a2, b2): (&Self, &Self)) -> Result<()> {
        self.mul_add_assign(a1, b1)?;
        self.mul_add_assign(a2, b2)
    }
    /// In-place `self += c * other` elementwise, with c the ring element `c mod M` (one pass where
    /// the ring allows; the terms of a polynomial, summed without a scaled copy of each power).
    fn add_scaled_assign(&mut self, other: &Self, c: i128) -> Result<()> {
        self.add_assign(&other.mul_scalar(c))
    }
    /// In-place `self += other` with `other` broadcast to `self`'s shape (no broadcast copy
    /// where the ring allows; a layer's bias). An error if the shapes are not
    /// broadcast-compatible.
    fn add_broadcast_assign(&mut self, other: &Self) -> Result<()> {
        let other = other.broadcast_to(self.shape())?;
        self.add_assign(&other)
    }
    /// Adds the ring element `c mod M` to every element.
    fn add_scalar(&self, c: i128) -> Self;
    /// In-place [`RingTensor::add_scalar`].
    fn add_scalar_assign(&mut self, c: i128) {
        *self = self.add_scalar(c);
    }
    /// Multiplies every element by the ring element `c mod M`.
    fn mul_scalar(&self, c: i128) -> Self;

    /// Matrix product of (m,k) and (k,n).
    fn matmul(&self, other: &Self) -> Result<Self>;
    /// 2-D convolution (cross-correlation, as in every ML framework) of an NCHW input with OIHW
    /// filters; output NOHW.
    fn conv2d(&self, filters: &Self, params: Conv2dParams) -> Result<Self>;
    /// In-place `self += conv2d(x, filters)` (the Beaver products' recombination). Rings that
    /// convolve in bounded chunks add each chunk straight into `self`, without a temporary of
    /// the convolution's size.
    fn conv2d_add_assign(&mut self, x: &Self, filters: &Self, params: Conv2dParams) -> Result<()> {
        self.add_assign(&x.conv2d(filters, params)?)
    }
    /// In-place `self += window_sum(conv2d(x, filters), window)` (average pooling's window sums
    /// folded into the product), computed as one strided convolution with a wider filter (see
    /// [`pooled_as_strided`](crate::pooled_conv::pooled_as_strided)); the window (1, 1) adds the
    /// convolution itself.
    fn pooled_conv2d_add_assign(
        &mut self,
        x: &Self,
        filters: &Self,
        params: Conv2dParams,
        window: (usize, usize),
    ) -> Result<()> {
        if window == (1, 1) {
            return self.conv2d_add_assign(x, filters, params);
        }
        let (wide, strided) = crate::pooled_conv::pooled_as_strided(x.shape(), filters, params, window)?;
        self.conv2d_add_assign(x, &wide, strided)
    }

    /// Sum over `axis` (the axis is removed).
    fn sum_axis(&self, axis: usize) -> Result<Self>;
    /// Sums of the non-overlapping `window`s (kh, kw) of the last two axes, which they must
    /// divide: [.., H, W] -> [.., H/kh, W/kw].
    fn window_sum(&self, window: (usize, usize)) -> Result<Self>;
    /// Same elements, new shape (row-major order).
    fn reshape(&self, shape: &[usize]) -> Result<Self>;
    /// [`RingTensor::reshape`] of a tensor the caller no longer needs: no copy of the elements
    /// when they are in standard layout (the default copies, as `reshape`).
    fn into_reshaped(self, shape: &[usize]) -> Result<Self> {
        self.reshape(shape)
    }
    /// Axes permuted: output axis i is input axis `axes[i]`.
    fn permute(&self, axes: &[usize]) -> Result<Self>;
    /// Sub-range of one axis.
    fn slice_axis(&self, axis: usize, range: Range<usize>) -> Result<Self>;
    /// Tensors joined along `axis`.
    fn concat(axis: usize, parts: &[&Self]) -> Result<Self>;
    /// Broadcast (numpy rules) to `shape`, materialised.
    fn broadcast_to(&self, shape: &[usize]) -> Result<Self>;

    /// Appends the compact little-endian encoding (`BYTES_PER_ELEMENT` bytes per element,
    /// row-major) to `out`.
    fn write_bytes(&self, out: &mut Vec<u8>);
    /// Decodes a tensor of `shape` from exactly `shape.product() * BYTES_PER_ELEMENT` bytes.
    /// Rejects residues that are not reduced (CRT), so every accepted buffer is canonical.
    fn from_bytes(shape: &[usize], bytes: &[u8]) -> Result<Self>;

    /// In-place `self += decode(bytes)`, where `bytes` is the encoding of a tensor of this
    /// tensor's shape (an opening's second half, without a decoded temporary where the ring
    /// allows). Errors as [`RingTensor::from_bytes`].
    fn add_from_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.add_assign(&Self::from_bytes(self.shape(), bytes)?)
    }

    /// 2-D matrix transpose (shortcut for `permute(&[1, 0])`).
    fn transpose(&self) -> Result<Self> {
        self.permute(&[1, 0])
    }
    /// The encoding as a fresh buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * Self::BYTES_PER_ELEMENT);
        self.write_bytes(&mut out);
        out
    }
}

/// Extra operations of the power-of-two rings Z_2^k, used by truncation and comparison.
pub trait PowerOfTwoTensor: RingTensor {
    /// k, the number of bits of an element.
    const BITS: u32;
    /// Logical right shift of the unsigned representative.
    fn shr_logical(&self, bits: u32) -> Self;
    /// Arithmetic right shift of the signed representative.
    fn shr_arith(&self, bits: u32) -> Self;
    /// Left shift (multiplication by 2^bits).
    fn shl(&self, bits: u32) -> Self;
    /// Most significant bit of each element, as 0 or 1 in the ring.
    fn msb(&self) -> Self;
    /// Each element reduced modulo 2^bits (the low `bits` bits).
    fn low_bits(&self, bits: u32) -> Self;
}
