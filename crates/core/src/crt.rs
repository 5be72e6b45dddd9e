//! The CRT ring Z_M ("int100"): an element is its residues modulo pairwise-coprime moduli whose
//! product M is about 2^100, stored plane by plane (one `u64` array per modulus) so that a matrix
//! product is one exact f64 GEMM per modulus.

use crate::error::{CoreError, Result};
use crate::kernels::{self, im2col::ConvGeometry};
use crate::layout;
use crate::parallel::{map, zip_assign, zip_map};
use crate::prg::{self, PrgKey};
use crate::ring::{Conv2dParams, Ring, RingTensor};
use ndarray::{ArrayD, ArrayViewD, Axis, Ix2, IxDyn};
use num_bigint::BigUint;
use std::marker::PhantomData;
use std::ops::Range;
use strength_reduce::StrengthReducedU64;

/// A set of pairwise-coprime moduli, all below 2^21, with product below 2^127.
pub trait CrtModuli: Copy + Clone + std::fmt::Debug + Default + PartialEq + Send + Sync + 'static {
    /// The moduli.
    const MODULI: &'static [u64];
    /// Ring name.
    const NAME: &'static str;
    /// Bytes per residue in the wire encoding (enough for the largest modulus).
    const RESIDUE_BYTES: usize;
    /// floor(log2 M), checked by a test against the moduli.
    const MODULUS_BITS: u32;
}

/// tf-encrypted's int100 moduli: ten primes near 2^10.2, M about 2^102.4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TfeModuli;

impl CrtModuli for TfeModuli {
    const MODULI: &'static [u64] = &[1201, 1433, 1217, 1237, 1321, 1103, 1129, 1367, 1093, 1039];
    const NAME: &'static str = "crt10";
    const RESIDUE_BYTES: usize = 2;
    const MODULUS_BITS: u32 = 102;
}

/// Five primes just below 2^21, M about 2^105: half the GEMMs of [`TfeModuli`]; centred residue
/// products stay exact in f64 for inner dimensions up to 8192 (longer ones are split).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WideModuli;

impl CrtModuli for WideModuli {
    const MODULI: &'static [u64] = &[2097143, 2097133, 2097131, 2097097, 2097091];
    const NAME: &'static str = "crt5";
    const RESIDUE_BYTES: usize = 3;
    const MODULUS_BITS: u32 = 104;
}

/// The CRT ring over the moduli set `M`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Crt<M: CrtModuli>(PhantomData<M>);

impl<M: CrtModuli> Ring for Crt<M> {
    type Tensor = CrtTensor<M>;
    const NAME: &'static str = M::NAME;
    /// Statistical truncation shifts x (|x| < 2^k) to [0, 2^(k+1)) and masks it with r uniform
    /// in [0, 2^(k+41)) (40-bit statistical hiding); the sum must stay below M: k + 42 <= log2 M.
    const PRODUCT_BITS: u32 = M::MODULUS_BITS - 42;
    fn modulus() -> BigUint {
        M::MODULI.iter().map(|&m| BigUint::from(m)).product()
    }
}

/// A tensor over Z_M: `planes[i]` holds the residues modulo `M::MODULI[i]`, each in [0, m_i).
#[derive(Clone, Debug, PartialEq)]
pub struct CrtTensor<M: CrtModuli> {
    planes: Vec<ArrayD<u64>>,
    moduli: PhantomData<M>,
}

/// Reduces a signed integer modulo `m` into [0, m).
fn reduce_signed(v: i128, m: u64) -> u64 {
    match i64::try_from(v) {
        Ok(small) => small.rem_euclid(m as i64) as u64,
        Err(_) => v.rem_euclid(m as i128) as u64,
    }
}

/// (a^-1) mod m for coprime a, m, by the extended Euclidean algorithm.
fn inverse_mod(a: u64, m: u64) -> u64 {
    let (mut r0, mut r1) = (m as i128, (a % m) as i128);
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert_eq!(r0, 1, "moduli are pairwise coprime");
    t0.rem_euclid(m as i128) as u64
}

/// Precomputed constants for Garner's mixed-radix reconstruction.
struct Garner {
    /// inv[i][j] = m_j^-1 mod m_i for j < i.
    inv: Vec<Vec<u64>>,
    /// prefix[i] = m_0 * ... * m_{i-1}.
    prefix: Vec<u128>,
    modulus: u128,
}

impl Garner {
    fn new(moduli: &[u64]) -> Self {
        let inv = (0..moduli.len()).map(|i| (0..i).map(|j| inverse_mod(moduli[j], moduli[i])).collect()).collect();
        let mut prefix = Vec::with_capacity(moduli.len());
        let mut p = 1u128;
        for &m in moduli {
            prefix.push(p);
            p *= m as u128;
        }
        Garner { inv, prefix, modulus: p }
    }

    /// The value in [0, M) with the given residues.
    fn reconstruct(&self, moduli: &[u64], residues: &[u64]) -> u128 {
        let mut digits = [0u64; 16];
        let mut x = 0u128;
        for i in 0..moduli.len() {
            let m = moduli[i];
            let mut v = residues[i];
            for (d, inv) in digits[..i].iter().zip(&self.inv[i]) {
                v = (v + m - d % m) % m * inv % m;
            }
            digits[i] = v;
            x += v as u128 * self.prefix[i];
        }
        x
    }
}

impl<M: CrtModuli> CrtTensor<M> {
    /// The residue planes, one per modulus.
    pub fn planes(&self) -> &[ArrayD<u64>] {
        &self.planes
    }

    fn from_planes(planes: Vec<ArrayD<u64>>) -> Self {
        CrtTensor { planes, moduli: PhantomData }
    }

    fn map_planes(&self, f: impl Fn(&ArrayD<u64>, u64) -> ArrayD<u64>) -> Self {
        Self::from_planes(self.planes.iter().zip(M::MODULI).map(|(p, &m)| f(p, m)).collect())
    }

    fn try_map_planes(&self, f: impl Fn(&ArrayD<u64>) -> Result<ArrayD<u64>>) -> Result<Self> {
        Ok(Self::from_planes(self.planes.iter().map(f).collect::<Result<_>>()?))
    }

    fn binary(
        &self,
        op: &'static str,
        other: &Self,
        f: impl Fn(u64, u64, u64, &StrengthReducedU64) -> u64 + Sync + Send + Copy,
    ) -> Result<Self> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        let planes = self
            .planes
            .iter()
            .zip(&other.planes)
            .zip(M::MODULI)
            .map(|((a, b), &m)| {
                let r = StrengthReducedU64::new(m);
                zip_map(a.view(), b.view(), move |x, y| f(x, y, m, &r))
            })
            .collect();
        Ok(Self::from_planes(planes))
    }

    fn binary_assign(
        &mut self,
        op: &'static str,
        other: &Self,
        f: impl Fn(u64, u64, u64) -> u64 + Sync + Send + Copy,
    ) -> Result<()> {
        layout::check_same_shape(op, self.shape(), other.shape())?;
        for ((a, b), &m) in self.planes.iter_mut().zip(&other.planes).zip(M::MODULI) {
            zip_assign(a.view_mut(), b.view(), move |x, y| f(x, y, m));
        }
        Ok(())
    }

    fn matrices(&self, other: &Self) -> Result<()> {
        let (a, b) = (self.shape(), other.shape());
        if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
            return Err(CoreError::ShapeMismatch { op: "matmul", left: a.to_vec(), right: b.to_vec() });
        }
        Ok(())
    }
}

fn add_mod(x: u64, y: u64, m: u64) -> u64 {
    let s = x + y;
    if s >= m {
        s - m
    } else {
        s
    }
}

fn sub_mod(x: u64, y: u64, m: u64) -> u64 {
    if x >= y {
        x - y
    } else {
        x + m - y
    }
}

impl<M: CrtModuli> RingTensor for CrtTensor<M> {
    const RING: &'static str = M::NAME;
    const BYTES_PER_ELEMENT: usize = M::MODULI.len() * M::RESIDUE_BYTES;

    fn shape(&self) -> &[usize] {
        self.planes[0].shape()
    }
    fn zeros(shape: &[usize]) -> Self {
        Self::from_planes(M::MODULI.iter().map(|_| ArrayD::zeros(IxDyn(shape))).collect())
    }
    fn from_signed(values: ArrayViewD<'_, i128>) -> Self {
        Self::from_planes(M::MODULI.iter().map(|&m| map(values.view(), move |v| reduce_signed(v, m))).collect())
    }
    fn to_signed(&self) -> ArrayD<i128> {
        let garner = Garner::new(M::MODULI);
        let half = garner.modulus / 2;
        let mut out = ArrayD::<i128>::zeros(IxDyn(self.shape()));
        let lanes: Vec<_> = self.planes.iter().map(|p| p.as_standard_layout()).collect();
        let flat: Vec<&[u64]> = lanes.iter().map(|p| p.as_slice().expect("standard layout")).collect();
        let mut residues = vec![0u64; M::MODULI.len()];
        for (i, slot) in out.iter_mut().enumerate() {
            flat.iter().zip(residues.iter_mut()).for_each(|(p, r)| *r = p[i]);
            let x = garner.reconstruct(M::MODULI, &residues);
            *slot = if x > half { x as i128 - garner.modulus as i128 } else { x as i128 };
        }
        out
    }
    fn to_biguint(&self) -> Vec<BigUint> {
        let modulus = Crt::<M>::modulus();
        let coefficients: Vec<BigUint> = M::MODULI
            .iter()
            .map(|&m| {
                let rest = &modulus / m;
                let inv = inverse_mod((&rest % m).iter_u64_digits().next().unwrap_or(0), m);
                rest * inv
            })
            .collect();
        let standard: Vec<_> = self.planes.iter().map(|p| p.as_standard_layout().into_owned()).collect();
        (0..self.len())
            .map(|i| {
                let sum: BigUint = standard
                    .iter()
                    .zip(&coefficients)
                    .map(|(p, c)| c * p.as_slice().expect("standard layout")[i])
                    .sum();
                sum % &modulus
            })
            .collect()
    }
    fn random(key: &PrgKey, stream: u64, shape: &[usize]) -> Self {
        let n: usize = shape.iter().product();
        let planes = M::MODULI
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let mut r = vec![0u64; n];
                prg::fill_residues(key, stream, i as u64, m as u32, &mut r);
                ArrayD::from_shape_vec(IxDyn(shape), r).expect("length is the shape's product")
            })
            .collect();
        Self::from_planes(planes)
    }

    fn add(&self, other: &Self) -> Result<Self> {
        self.binary("add", other, |x, y, m, _| add_mod(x, y, m))
    }
    fn sub(&self, other: &Self) -> Result<Self> {
        self.binary("sub", other, |x, y, m, _| sub_mod(x, y, m))
    }
    fn mul(&self, other: &Self) -> Result<Self> {
        self.binary("mul", other, |x, y, _, r| (x * y) % *r)
    }
    fn neg(&self) -> Self {
        self.map_planes(|p, m| map(p.view(), move |x| sub_mod(0, x, m)))
    }
    fn add_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("add", other, add_mod)
    }
    fn sub_assign(&mut self, other: &Self) -> Result<()> {
        self.binary_assign("sub", other, sub_mod)
    }
    fn add_scalar(&self, c: i128) -> Self {
        self.map_planes(|p, m| {
            let c = reduce_signed(c, m);
            map(p.view(), move |x| add_mod(x, c, m))
        })
    }
    fn mul_scalar(&self, c: i128) -> Self {
        self.map_planes(|p, m| {
            let c = reduce_signed(c, m);
            let r = StrengthReducedU64::new(m);
            map(p.view(), move |x| (x * c) % r)
        })
    }

    fn matmul(&self, other: &Self) -> Result<Self> {
        self.matrices(other)?;
        let planes = self
            .planes
            .iter()
            .zip(&other.planes)
            .zip(M::MODULI)
            .map(|((a, b), &m)| {
                let a = a.view().into_dimensionality::<Ix2>().expect("checked 2-D");
                let b = b.view().into_dimensionality::<Ix2>().expect("checked 2-D");
                kernels::gemm_crt::gemm_mod(a, b, m).into_dyn()
            })
            .collect();
        Ok(Self::from_planes(planes))
    }

    fn conv2d(&self, filters: &Self, params: Conv2dParams) -> Result<Self> {
        let g = ConvGeometry::new(self.shape(), filters.shape(), params)?;
        let planes = self
            .planes
            .iter()
            .zip(&filters.planes)
            .zip(M::MODULI)
            .map(|((x, w), &m)| {
                let patches = kernels::im2col::im2col(x.view(), &g);
                let w = layout::reshape(w, &[g.filters, g.patch_cols()])?;
                let w = w.into_dimensionality::<Ix2>().expect("reshaped to two axes");
                let product = kernels::gemm_crt::gemm_mod(patches.view(), w.t(), m);
                Ok(kernels::im2col::patches_to_nchw(product, &g))
            })
            .collect::<Result<_>>()?;
        Ok(Self::from_planes(planes))
    }

    fn sum_axis(&self, axis: usize) -> Result<Self> {
        if axis >= self.shape().len() {
            return Err(CoreError::InvalidShape {
                op: "sum_axis",
                shape: vec![axis],
                tensor: self.shape().to_vec(),
                reason: "axis out of bounds".into(),
            });
        }
        Ok(self.map_planes(|p, m| {
            let mut shape = p.shape().to_vec();
            shape.remove(axis);
            let mut acc = ArrayD::<u64>::zeros(IxDyn(&shape));
            for lane in p.axis_iter(Axis(axis)) {
                ndarray::Zip::from(&mut acc).and(&lane).for_each(|s, &x| *s = add_mod(*s, x, m));
            }
            acc
        }))
    }
    fn reshape(&self, shape: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::reshape(p, shape))
    }
    fn permute(&self, axes: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::permute(p, axes))
    }
    fn slice_axis(&self, axis: usize, range: Range<usize>) -> Result<Self> {
        self.try_map_planes(|p| layout::slice_axis(p, axis, range.clone()))
    }
    fn concat(axis: usize, parts: &[&Self]) -> Result<Self> {
        let planes = (0..M::MODULI.len())
            .map(|i| {
                let arrays: Vec<&ArrayD<u64>> = parts.iter().map(|p| &p.planes[i]).collect();
                layout::concat(axis, &arrays)
            })
            .collect::<Result<_>>()?;
        Ok(Self::from_planes(planes))
    }
    fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        self.try_map_planes(|p| layout::broadcast_to(p, shape))
    }

    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.reserve(self.len() * Self::BYTES_PER_ELEMENT);
        for plane in &self.planes {
            for r in plane.iter() {
                out.extend_from_slice(&r.to_le_bytes()[..M::RESIDUE_BYTES]);
            }
        }
    }
    fn from_bytes(shape: &[usize], bytes: &[u8]) -> Result<Self> {
        let n: usize = shape.iter().product();
        let expected = n * Self::BYTES_PER_ELEMENT;
        if bytes.len() != expected {
            return Err(CoreError::BadEncoding { ring: M::NAME, shape: shape.to_vec(), expected, got: bytes.len() });
        }
        let plane_bytes = n * M::RESIDUE_BYTES;
        let planes = M::MODULI
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let residues = bytes[i * plane_bytes..(i + 1) * plane_bytes]
                    .chunks_exact(M::RESIDUE_BYTES)
                    .map(|c| {
                        let mut buf = [0u8; 8];
                        buf[..c.len()].copy_from_slice(c);
                        let r = u64::from_le_bytes(buf);
                        if r < m {
                            Ok(r)
                        } else {
                            Err(CoreError::InvalidConfig(format!(
                                "{} encoding: residue {r} is not reduced modulo {m}",
                                M::NAME
                            )))
                        }
                    })
                    .collect::<Result<Vec<u64>>>()?;
                Ok(ArrayD::from_shape_vec(IxDyn(shape), residues).expect("length checked"))
            })
            .collect::<Result<_>>()?;
        Ok(Self::from_planes(planes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor_log2(m: &BigUint) -> u32 {
        (m.bits() - 1) as u32
    }

    #[test]
    fn moduli_sets_are_pairwise_coprime_and_sized_as_declared() {
        fn check<M: CrtModuli>() {
            for (i, &a) in M::MODULI.iter().enumerate() {
                assert!(a < 1 << 21);
                for &b in &M::MODULI[i + 1..] {
                    assert_eq!(num_integer_gcd(a, b), 1, "{a} and {b} share a factor");
                }
                assert!(a < 1 << (8 * M::RESIDUE_BYTES));
            }
            assert_eq!(floor_log2(&Crt::<M>::modulus()), M::MODULUS_BITS);
            assert!(Crt::<M>::modulus() < BigUint::from(1u8) << 127);
        }
        fn num_integer_gcd(mut a: u64, mut b: u64) -> u64 {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        }
        check::<TfeModuli>();
        check::<WideModuli>();
    }

    #[test]
    fn garner_matches_bigint_reconstruction() {
        let key = PrgKey::from_seed(11);
        let t = CrtTensor::<TfeModuli>::random(&key, 0, &[200]);
        let big = t.to_biguint();
        let garner = Garner::new(TfeModuli::MODULI);
        for (i, b) in big.iter().enumerate() {
            let residues: Vec<u64> = t.planes.iter().map(|p| p[[i]]).collect();
            assert_eq!(BigUint::from(garner.reconstruct(TfeModuli::MODULI, &residues)), *b);
        }
    }
}
