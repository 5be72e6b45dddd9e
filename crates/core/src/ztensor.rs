//! Tensors over the power-of-two rings Z_2^64 and Z_2^128, stored as `u64` / `u128` with
//! wrapping arithmetic.

use crate::error::{CoreError, Result};
use crate::kernels::{self, im2col::ConvGeometry};
use crate::layout;
use crate::parallel::{map, zip3_assign, zip_assign, zip_assign_runs, zip_map, PARALLEL_MIN_ELEMENTS};
use crate::prg::{self, PrgKey};
use crate::ring::{Conv2dParams, PowerOfTwoTensor, Ring, RingTensor};
use ndarray::{Array2, ArrayD, ArrayViewD, Ix2, IxDyn};
use num_bigint::BigUint;
use rayon::prelude::*;
use std::fmt::Debug;
use std::ops::Range;

/// A machine word used as a ring element of Z_2^BITS, all arithmetic wrapping.
pub trait Word: Copy + Default + Debug + PartialEq + Send + Sync + 'static {
    /// Bits per word.
    const BITS: u32;
    /// Name of the ring.
    const RING: &'static str;
    /// Wrapping sum.
    fn wadd(self, other: Self) -> Self;
    /// Wrapping difference.
    fn wsub(self, other: Self) -> Self;
    /// Wrapping product.
    fn wmul(self, other: Self) -> Self;
    /// Wrapping negation.
    fn wneg(self) -> Self;
    /// `v mod 2^BITS`.
    fn from_i128(v: i128) -> Self;
    /// The two's-complement signed value.
    fn to_i128(self) -> i128;
    /// The unsigned value.
    fn to_biguint(self) -> BigUint;
    /// Logical right shift.
    fn shr_logical(self, bits: u32) -> Self;
    /// Arithmetic right shift.
    fn shr_arith(self, bits: u32) -> Self;
    /// Left shift.
    fn shl(self, bits: u32) -> Self;
    /// Fills `out` uniformly from a PRG stream.
    fn fill_random(key: &PrgKey, stream: u64, out: &mut [Self]);
    /// Wrapping matrix product (the fast kernel of this word size).
    fn gemm(a: ndarray::ArrayView2<'_, Self>, b: ndarray::ArrayView2<'_, Self>) -> Array2<Self>;
    /// Appends the little-endian bytes of `words`.
    fn extend_le(words: &[Self], out: &mut Vec<u8>);
    /// Reads one little-endian word from exactly `BITS / 8` bytes.
    fn read_le(bytes: &[u8]) -> Self;
    /// The words encoded little-endian in `bytes` (whose length is a multiple of `BITS / 8`):
    /// one copy on little-endian targets.
    fn vec_from_le(bytes: &[u8]) -> Vec<Self>;
}

macro_rules! impl_word {
    ($t:ty, $s:ty, $ring:literal, $fill:path, $gemm:path) => {
        impl Word for $t {
            const BITS: u32 = <$t>::BITS;
            const RING: &'static str = $ring;
            #[inline]
            fn wadd(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline]
            fn wsub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline]
            fn wmul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline]
            fn wneg(self) -> Self {
                self.wrapping_neg()
            }
            #[inline]
            fn from_i128(v: i128) -> Self {
                v as $t
            }
            #[inline]
            fn to_i128(self) -> i128 {
                self as $s as i128
            }
            fn to_biguint(self) -> BigUint {
                BigUint::from(self)
            }
            #[inline]
            fn shr_logical(self, bits: u32) -> Self {
                self.checked_shr(bits).unwrap_or(0)
            }
            #[inline]
            fn shr_arith(self, bits: u32) -> Self {
                ((self as $s) >> bits.min(<$t>::BITS - 1)) as $t
            }
            #[inline]
            fn shl(self, bits: u32) -> Self {
                self.checked_shl(bits).unwrap_or(0)
            }
            fn fill_random(key: &PrgKey, stream: u64, out: &mut [Self]) {
                $fill(key, stream, out)
            }
            fn gemm(a: ndarray::ArrayView2<'_, Self>, b: ndarray::ArrayView2<'_, Self>) -> Array2<Self> {
                $gemm(a, b)
            }
            #[inline]
            fn extend_le(words: &[Self], out: &mut Vec<u8>) {
                if cfg!(target_endian = "little") {
                    out.extend_from_slice(bytemuck::cast_slice(words));
                } else {
                    out.extend(words.iter().flat_map(|w| w.to_le_bytes()));
                }
            }
            #[inline]
            fn read_le(bytes: &[u8]) -> Self {
                let mut buf = [0u8; std::mem::size_of::<$t>()];
                buf.copy_from_slice(bytes);
                <$t>::from_le_bytes(buf)
            }
            fn vec_from_le(bytes: &[u8]) -> Vec<Self> {
                // Collected straight into the new vector (a plain copy on little-endian
                // targets), without zero-filling it first.
                bytes.chunks_exact(std::mem::size_of::<$t>()).map(Self::read_le).collect()
            }
        }
    };
}

impl_word!(u64, i64, "z64", prg::fill_u64, kernels::gemm_u64::gemm_u64);
impl_word!(u128, i128, "z128", prg::fill_u128, kernels::gemm_u128::gemm_u128);

/// A tensor over Z_2^BITS for a word type `W`.
#[derive(Clone, Debug, PartialEq)]
pub struct ZTensor<W: Word> {
    data: ArrayD<W>,
}

/// The ring Z_2^64 (tf-encrypted's int64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Z64;

/// The ring Z_2^128.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Z128;

impl Ring for Z64 {
    type Tensor = ZTensor<u64>;
    const NAME: &'static str = "z64";
    /// Dealer-assisted truncation is exact to 1 ulp for |x| < 2^62.
    const PRODUCT_BITS: u32 = 62;
    fn modulus() -> BigUint {
        BigUint::from(1u8) << 64
    }
}

impl Ring for Z128 {
    type Tensor = ZTensor<u128>;
    const NAME: &'static str = "z128";
    /// Local truncation fails with probability below 2^(k+1-128) for |x| < 2^k: k = 87 keeps it
    /// below 2^-40 per element.
    const PRODUCT_BITS: u32 = 87;
    fn modulus() -> BigUint {
        BigUint::from(1u8) << 128
    }
}

impl<W: Word> ZTensor<W> {
    /// Wraps an array of words.
    pub fn from_array(data: ArrayD<W>) -> Self {
        ZTensor { data }
    }

    /// The words.
    pub fn array(&self) -> &ArrayD<W> {
        &self.data
    }

    /// The words, owned.
    pub fn into_array(self) -> ArrayD<W> {
        self.data
    }

    fn as_matrix(&self, op: &'static str, other: &[usize]) -> Result<ndarray::ArrayView2<'_, W>> {
        self.data.view().into_dimensionality::<Ix2>().map_err(|_| CoreError::ShapeMismatch {
            op,
            left: self.shape().to_vec(),
            right: other.to_vec(),
        })
    }

    fn unary(&self, f: impl Fn(W) -> W + Sync + Send) -> Self {
        ZTensor { data: map(self.data.view(), f) }
    }

    fn binary(&self, op: &'static str, other: &Self, f: impl Fn(W, W) -> W + Sync + Send) -> Result<Self> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        Ok(ZTensor { data: zip_map(self.data.view(), other.data.view(), f) })
    }

    fn binary_assign(&mut self, op: &'static str, other: &Self, f: impl Fn(W, W) -> W + Sync + Send) -> Result<()> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        zip_assign(self.data.view_mut(), other.data.view(), f);
        Ok(())
    }
}

impl<W: Word> RingTensor for ZTensor<W> {
    const RING: &'static str = W::RING;
    const BYTES_PER_ELEMENT: usize = (W::BITS / 8) as usize;

    fn shape(&self) -> &[usize] {
        self.data.shape()
    }
    fn zeros(shape: &[usize]) -> Self {
        ZTensor { data: ArrayD::default(IxDyn(shape)) }
    }
    fn from_signed(values: ArrayViewD<'_, i128>) -> Self {
        ZTensor { data: map(values, W::from_i128) }
    }
    fn from_i64s(shape: &[usize], values: Vec<i64>) -> Result<Self> {
        let n = values.len();
        let words = values.into_iter().map(|v| W::from_i128(i128::from(v))).collect();
        let data = ArrayD::from_shape_vec(IxDyn(shape), words).map_err(|_| CoreError::InvalidShape {
            op: "from_i64s",
            shape: shape.to_vec(),
            tensor: vec![n],
            reason: "one value per element of the shape".into(),
        })?;
        Ok(ZTensor { data })
    }
    fn to_signed(&self) -> ArrayD<i128> {
        map(self.data.view(), W::to_i128)
    }
    fn to_biguint(&self) -> Vec<BigUint> {
        self.data.iter().map(|w| w.to_biguint()).collect()
    }
    fn random(key: &PrgKey, stream: u64, shape: &[usize]) -> Self {
        let mut words = vec![W::default(); shape.iter().product()];
        W::fill_random(key, stream, &mut words);
        ZTensor { data: ArrayD::from_shape_vec(IxDyn(shape), words).expect("length is the shape's product") }
    }

    fn add(&self, other: &Self) -> Result<Self> {
        self.binary("add", other, W::wadd)
    }
    fn sub(&self, other: &Self) -> Result<Self> {
        self.binary("sub", other, W::wsub)
    }
    fn mul(&self, other: &Self) -> Result<Self> {
        self.binary("mul", other, W::wmul)
    }
    fn neg(&self) -> Self {
        self.unary(W::wneg)
    }
    fn add_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("add", other, W::wadd)
    }
    fn sub_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("sub", other, W::wsub)
    }
    fn sub_from_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("sub_from", other, |x, y| y.wsub(x))
    }
    fn mul_add_assign(&mut self, a: &Self, b: &Self) -> Result<()> {
        layout::check_same_shape("mul_add", self.shape(), a.shape())?;
        layout::check_same_shape("mul_add", self.shape(), b.shape())?;
        zip3_assign(self.data.view_mut(), a.data.view(), b.data.view(), |acc, x, y| acc.wadd(x.wmul(y)));
        Ok(())
    }
    fn add_scaled_assign(&mut self, other: &Self, c: i128) -> Result<()> {
        let c = W::from_i128(c);
        self.binary_assign("add_scaled", other, |x, y| x.wadd(y.wmul(c)))
    }
    fn mul_add_pair_assign(&mut self, (a1, b1): (&Self, &Self), (a2, b2): (&Self, &Self)) -> Result<()> {
        for t in [a1, b1, a2, b2] {
            layout::check_same_shape("mul_add_pair", self.shape(), t.shape())?;
        }
        let operands = [a1, b1, a2, b2].map(|t| t.data.as_slice());
        let (Some(out), [Some(x1), Some(y1), Some(x2), Some(y2)]) = (self.data.as_slice_mut(), operands) else {
            self.mul_add_assign(a1, b1)?;
            return self.mul_add_assign(a2, b2);
        };
        crate::parallel::for_each_chunk_mut(out, PARALLEL_MIN_ELEMENTS, |c, out| {
            let at = c * PARALLEL_MIN_ELEMENTS..c * PARALLEL_MIN_ELEMENTS + out.len();
            let terms = x1[at.clone()].iter().zip(&y1[at.clone()]).zip(x2[at.clone()].iter().zip(&y2[at]));
            for (z, ((&x1, &y1), (&x2, &y2))) in out.iter_mut().zip(terms) {
                *z = z.wadd(x1.wmul(y1)).wadd(x2.wmul(y2));
            }
        });
        Ok(())
    }
    fn add_broadcast_assign(&mut self, other: &Self) -> Result<()> {
        let shape = self.shape().to_vec();
        if let (Some((_, _, inner)), Some(out), Some(values)) =
            (layout::broadcast_runs(other.shape(), &shape), self.data.as_slice_mut(), other.data.as_slice())
        {
            zip_assign_runs(out, values, inner, W::wadd);
            return Ok(());
        }
        zip_assign(self.data.view_mut(), layout::broadcast_view(&other.data, &shape)?, W::wadd);
        Ok(())
    }
    fn add_scalar(&self, c: i128) -> Self {
        let c = W::from_i128(c);
        self.unary(|x| x.wadd(c))
    }
    fn add_scalar_assign(&mut self, c: i128) {
        let c = W::from_i128(c);
        if self.len() >= PARALLEL_MIN_ELEMENTS {
            self.data.par_mapv_inplace(|x| x.wadd(c));
        } else {
            self.data.mapv_inplace(|x| x.wadd(c));
        }
    }
    fn mul_scalar(&self, c: i128) -> Self {
        let c = W::from_i128(c);
        self.unary(|x| x.wmul(c))
    }

    fn matmul(&self, other: &Self) -> Result<Self> {
        let a = self.as_matrix("matmul", other.shape())?;
        let b = other.as_matrix("matmul", self.shape())?;
        if a.ncols() != b.nrows() {
            return Err(CoreError::ShapeMismatch {
                op: "matmul",
                left: self.shape().to_vec(),
                right: other.shape().to_vec(),
            });
        }
        Ok(ZTensor { data: W::gemm(a, b).into_dyn() })
    }

    fn conv2d(&self, filters: &Self, params: Conv2dParams) -> Result<Self> {
        let g = ConvGeometry::new(self.shape(), filters.shape(), params)?;
        let patches = kernels::im2col::im2col(self.data.view(), &g);
        let w = layout::reshape(&filters.data, &[g.filters, g.patch_cols()])?;
        let w = w.into_dimensionality::<Ix2>().expect("reshaped to two axes");
        let product = W::gemm(patches.view(), w.t());
        Ok(ZTensor { data: kernels::im2col::patches_to_nchw(product.view(), &g) })
    }

    fn sum_axis(&self, axis: usize) -> Result<Self> {
        Ok(ZTensor { data: layout::sum_axis(&self.data, axis, W::wadd)? })
    }
    fn window_sum(&self, window: (usize, usize)) -> Result<Self> {
        Ok(ZTensor { data: layout::window_sum(&self.data, window, |a, b| a.wadd(b))? })
    }
    fn reshape(&self, shape: &[usize]) -> Result<Self> {
        Ok(ZTensor { data: layout::reshape(&self.data, shape)? })
    }
    fn into_reshaped(self, shape: &[usize]) -> Result<Self> {
        Ok(ZTensor { data: layout::into_reshaped(self.data, shape)? })
    }
    fn permute(&self, axes: &[usize]) -> Result<Self> {
        Ok(ZTensor { data: layout::permute(&self.data, axes)? })
    }
    fn slice_axis(&self, axis: usize, range: Range<usize>) -> Result<Self> {
        Ok(ZTensor { data: layout::slice_axis(&self.data, axis, range)? })
    }
    fn concat(axis: usize, parts: &[&Self]) -> Result<Self> {
        let arrays: Vec<&ArrayD<W>> = parts.iter().map(|p| &p.data).collect();
        Ok(ZTensor { data: layout::concat(axis, &arrays)? })
    }
    fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        Ok(ZTensor { data: layout::broadcast_to(&self.data, shape)? })
    }

    fn write_bytes(&self, out: &mut Vec<u8>) {
        match self.data.as_slice() {
            Some(words) => W::extend_le(words, out),
            None => W::extend_le(&self.data.iter().copied().collect::<Vec<_>>(), out),
        }
    }
    fn from_bytes(shape: &[usize], bytes: &[u8]) -> Result<Self> {
        let n: usize = shape.iter().product();
        let expected = n * Self::BYTES_PER_ELEMENT;
        if bytes.len() != expected {
            return Err(CoreError::BadEncoding { ring: W::RING, shape: shape.to_vec(), expected, got: bytes.len() });
        }
        let words = W::vec_from_le(bytes);
        Ok(ZTensor { data: ArrayD::from_shape_vec(IxDyn(shape), words).expect("length checked") })
    }
    fn add_from_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let width = Self::BYTES_PER_ELEMENT;
        let expected = self.len() * width;
        if bytes.len() != expected || !self.data.is_standard_layout() {
            return self.add_assign(&Self::from_bytes(self.shape(), bytes)?);
        }
        let words = self.data.as_slice_mut().expect("standard layout is contiguous");
        let add = |(dst, src): (&mut [W], &[u8])| {
            dst.iter_mut().zip(src.chunks_exact(width)).for_each(|(w, b)| *w = w.wadd(W::read_le(b)))
        };
        if words.len() >= PARALLEL_MIN_ELEMENTS {
            words
                .par_chunks_mut(PARALLEL_MIN_ELEMENTS)
                .zip(bytes.par_chunks(PARALLEL_MIN_ELEMENTS * width))
                .for_each(add);
        } else {
            add((words, bytes));
        }
        Ok(())
    }
}

impl<W: Word> PowerOfTwoTensor for ZTensor<W> {
    const BITS: u32 = W::BITS;
    fn shr_logical(&self, bits: u32) -> Self {
        self.unary(|x| x.shr_logical(bits))
    }
    fn shr_arith(&self, bits: u32) -> Self {
        self.unary(|x| x.shr_arith(bits))
    }
    fn shl(&self, bits: u32) -> Self {
        self.unary(|x| x.shl(bits))
    }
    fn msb(&self) -> Self {
        self.unary(|x| x.shr_logical(W::BITS - 1))
    }
    fn low_bits(&self, bits: u32) -> Self {
        let shift = W::BITS.saturating_sub(bits);
        self.unary(|x| if bits >= W::BITS { x } else { x.shl(shift).shr_logical(shift) })
    }
}
