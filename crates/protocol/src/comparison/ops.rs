//! The operations built on the comparison: sign and DReLU, exact ReLU, max of two, comparison
//! with a public value, max-pool with its argmax mask, argmax over the last axis.
//!
//! Max-pool and argmax run a tournament over the m candidates of each group: level by level,
//! neighbours (2j, 2j+1) are compared, the left one winning ties (so the result is the first
//! maximum, as numpy's argmax), and an odd last candidate waits for the next level. Every level
//! is one batched comparison, 2 rounds: ceil(log2 m) levels. The one-hot mask of the winner is
//! carried along: after the first level (where the candidates' one-hot vectors are public) it is
//! selected by the same comparison with a masked extra operand, so it costs traffic but no rounds.

use super::{
    compare, fixed_point_terms, truncating_reading, whole_word, ComparisonRing, ComparisonSource, ComparisonWord,
    Reading,
};
use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::{PrivateTensor, PublicTensor};
use crate::transport::Role;
use pond_core::{RingTensor, Word};

/// Exact ReLU and its derivative.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactRelu<R: ComparisonRing> {
    /// max(x, 0).
    pub output: PrivateTensor<R>,
    /// [x >= 0] as 0 or 1 in the ring (not fixed-point scaled): the backward mask.
    pub derivative: PrivateTensor<R>,
}

/// Max-pool output and, when asked for, the argmax mask for backward.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPool<R: ComparisonRing> {
    /// [N, C, OH, OW]: the maximum of each window.
    pub output: PrivateTensor<R>,
    /// [N, C, OH, OW, kh·kw]: one-hot (0/1 in the ring) at the first maximum of each window, in
    /// row-major window order.
    pub mask: Option<PrivateTensor<R>>,
}

/// Maximum over the last axis and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgMax<R: ComparisonRing> {
    /// [..]: the maximum of each row.
    pub max: PrivateTensor<R>,
    /// [.., m]: one-hot (0/1 in the ring) at the first maximum of each row.
    pub one_hot: PrivateTensor<R>,
    /// [..]: the index of the first maximum, as a plain ring integer (not fixed-point).
    pub index: PrivateTensor<R>,
}

/// A server's words of x; `None` on cp.
fn share_words<R: ComparisonRing>(x: &PrivateTensor<R>) -> Result<Option<Vec<R::Word>>> {
    x.share().map(|t| R::words(t).map(|w| w.into_owned())).transpose()
}

fn private<R: ComparisonRing>(shape: &[usize], words: Option<Vec<R::Word>>) -> Result<PrivateTensor<R>> {
    let share = words.map(|w| R::from_words(shape, w)).transpose()?;
    Ok(PrivateTensor::from_share(shape, share))
}

/// The winner of each group after a tournament, on a server (empty on cp).
struct Winners<W> {
    max: Vec<W>,
    one_hot: Vec<W>,
}

/// Number of comparisons a tournament over `m` candidates makes per group, level by level.
pub(crate) fn tournament_levels(m: usize) -> Vec<usize> {
    let mut levels = Vec::new();
    let mut k = m;
    while k > 1 {
        levels.push(k / 2);
        k = k / 2 + k % 2;
    }
    levels
}

/// Tournament maximum of `groups` groups of `m` candidates (row-major [groups, m]).
fn tournament<R: ComparisonRing>(
    s: &mut Session,
    candidates: Option<Vec<R::Word>>,
    groups: usize,
    m: usize,
    track: bool,
    source: &mut ComparisonSource<R>,
) -> Result<Winners<R::Word>> {
    let zero = R::Word::default();
    let one = R::Word::from_bit(u8::from(s.role() == Role::Server0));
    let mut vals = candidates;
    // One-hot vectors of the current candidates, [groups, k, m]; `None` before the first level,
    // when candidate j's vector is the public e_j.
    let mut idx: Option<Vec<R::Word>> = None;
    let mut k = m;
    let mut first = true;
    while k > 1 {
        let (pairs, carry) = (k / 2, k % 2);
        let next = pairs + carry;
        let n = groups * pairs;
        let at = |g: usize, j: usize| g * k + j;
        let z: Option<Vec<R::Word>> = vals.as_ref().map(|v| {
            (0..n).map(|q| v[at(q / pairs, 2 * (q % pairs))].wsub(v[at(q / pairs, 2 * (q % pairs) + 1)])).collect()
        });
        let width = if track && !first { m } else { 0 };
        let extra: Option<Vec<R::Word>> = match (&idx, width) {
            (Some(ix), w) if w > 0 => Some(
                (0..n * m)
                    .map(|e| {
                        let (q, i) = (e / m, e % m);
                        let (g, j) = (q / pairs, q % pairs);
                        ix[at(g, 2 * j) * m + i].wsub(ix[at(g, 2 * j + 1) * m + i])
                    })
                    .collect(),
            ),
            _ => None,
        };
        let sel =
            compare(s, z.as_deref(), n, true, extra.as_deref(), width, source, Reading::plain(whole_word::<R>()))?;
        if let Some(v) = &vals {
            let mut new_vals = vec![zero; groups * next];
            for g in 0..groups {
                for j in 0..pairs {
                    new_vals[g * next + j] = v[at(g, 2 * j + 1)].wadd(sel.relu[g * pairs + j]);
                }
                if carry == 1 {
                    new_vals[g * next + pairs] = v[at(g, k - 1)];
                }
            }
            if track {
                let mut new_idx = vec![zero; groups * next * m];
                for g in 0..groups {
                    for j in 0..pairs {
                        let q = g * pairs + j;
                        let out = &mut new_idx[(g * next + j) * m..(g * next + j + 1) * m];
                        match &idx {
                            None => {
                                out[2 * j] = sel.delta[q];
                                out[2 * j + 1] = one.wsub(sel.delta[q]);
                            }
                            Some(ix) => {
                                let b = &ix[at(g, 2 * j + 1) * m..at(g, 2 * j + 2) * m];
                                for ((o, &b), &d) in out.iter_mut().zip(b).zip(&sel.extras[q * m..(q + 1) * m]) {
                                    *o = b.wadd(d);
                                }
                            }
                        }
                    }
                    if carry == 1 {
                        let out = &mut new_idx[(g * next + pairs) * m..(g * next + next) * m];
                        match &idx {
                            None => out[k - 1] = one,
                            Some(ix) => out.copy_from_slice(&ix[at(g, k - 1) * m..at(g, k) * m]),
                        }
                    }
                }
                idx = Some(new_idx);
            }
            vals = Some(new_vals);
        }
        k = next;
        first = false;
    }
    let max = vals.unwrap_or_default();
    let one_hot = match idx {
        Some(ix) => ix,
        // m == 1: the only candidate wins.
        None if track && !max.is_empty() => vec![one; groups],
        None => Vec::new(),
    };
    Ok(Winners { max, one_hot })
}

impl Session {
    /// [x >= 0] (the derivative of ReLU) as 0 or 1 in the ring, exact for every ring element.
    /// Cost: [`super::cost::drelu`]; 2 rounds.
    pub fn drelu<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        self.op("drelu", |s| {
            let z = share_words(x)?;
            let sel = compare(s, z.as_deref(), x.len(), false, None, 0, source, Reading::plain(whole_word::<R>()))?;
            private(x.shape(), z.map(|_| sel.delta))
        })
    }

    /// \[x < 0\] (the most significant bit, the sign) as 0 or 1 in the ring, exact for every
    /// ring element. Cost: [`super::cost::drelu`]; 2 rounds.
    pub fn sign_bit<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        let d = self.drelu(x, source)?;
        Ok(self.add_scalar(&self.neg(&d), 1))
    }

    /// Exact ReLU, max(x, 0), with its derivative [x >= 0] for backward, exact for every ring
    /// element. Cost: [`super::cost::relu_exact`]; 2 rounds, no Beaver triple.
    pub fn relu_exact<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<ExactRelu<R>> {
        self.exact_relu_op("relu_exact", x, source, Reading::plain(whole_word::<R>()))
    }

    /// [`Session::relu_exact`] of fixed-point values: exact when |x| < 2^(PRODUCT_BITS / 2),
    /// which every in-range value of every valid [`pond_core::FixedPoint`] configuration is
    /// (|x| < 2^31 on Z64, 2^43 on Z128). The private compare then reads only the low bits
    /// below [`fixed_point_terms`] (32 of Z64's 64), which halves the comparison's local work
    /// and its terms traffic. For larger |x| the result is wrong: use `relu_exact` there.
    /// Cost: [`super::cost::relu_exact_in_range`]; 2 rounds.
    pub fn relu_exact_in_range<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<ExactRelu<R>> {
        self.exact_relu_op("relu_exact", x, source, Reading::plain(fixed_point_terms::<R>()))
    }

    /// [`Session::relu_exact_in_range`] of x / 2^`frac_bits` (x a product at scale 2^(2f), say),
    /// the truncation fused with the comparison: ReLU(y) and [y >= 0] for y the truncation of x
    /// (floor(x / 2^f) or one more, as [`Session::truncate`] gives).
    ///
    /// In Z64, whose truncation opens c = x + 2^62 + r (one round), the comparison reads the
    /// sign of y from that same c: the private compare runs on C = (c >> f) - 2^(62-f) against
    /// the bits of r >> f, which y ≡ C - (r >> f) (mod 2^32) makes exact (see the module docs
    /// of [`crate::comparison`]). 2 rounds instead of 3, and servers send n·(B + 32) bytes
    /// instead of n·(2B + 32). Needs |x| < 2^62 (the truncation's range), |y| < 2^31 (the
    /// in-range comparison's) and 1 <= `frac_bits` <= 32. In Z128, whose truncation is local,
    /// this is the truncation followed by [`Session::relu_exact_in_range`].
    /// Cost: [`super::cost::truncate_relu_in_range`]; 2 rounds.
    pub fn truncate_relu_in_range<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        frac_bits: u32,
        source: &mut ComparisonSource<R>,
    ) -> Result<ExactRelu<R>> {
        let reading = truncating_reading::<R>(frac_bits);
        if reading.shift == 0 {
            let y = self.truncate(x, frac_bits)?;
            return self.relu_exact_in_range(&y, source);
        }
        self.exact_relu_op("truncate_relu", x, source, reading)
    }

    /// The operation `name`: exact ReLU of x read as `reading` says (see [`compare`]).
    fn exact_relu_op<R: ComparisonRing>(
        &mut self,
        name: &'static str,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
        reading: Reading,
    ) -> Result<ExactRelu<R>> {
        self.op(name, |s| {
            let z = share_words(x)?;
            let sel = compare(s, z.as_deref(), x.len(), true, None, 0, source, reading)?;
            let (delta, relu) = match z {
                Some(_) => (Some(sel.delta), Some(sel.relu)),
                None => (None, None),
            };
            Ok(ExactRelu { output: private(x.shape(), relu)?, derivative: private(x.shape(), delta)? })
        })
    }

    /// Elementwise max(x, y) = y + ReLU(x - y), exact when |x - y| < 2^(l-1) (always for
    /// in-range fixed-point values). Cost: [`super::cost::max_exact`]; 2 rounds.
    pub fn max_exact<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        y: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        self.op("max_exact", |s| {
            let diff = s.sub(x, y)?;
            let z = share_words(&diff)?;
            let sel = compare(s, z.as_deref(), x.len(), true, None, 0, source, Reading::plain(whole_word::<R>()))?;
            let relu = private(x.shape(), z.map(|_| sel.relu))?;
            s.add(y, &relu)
        })
    }

    /// [x >= p] for a public tensor p, as 0 or 1 in the ring; exact when |x - p| < 2^(l-1).
    /// Cost: [`super::cost::compare_public`]; 2 rounds.
    pub fn greater_equal_public<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        p: &PublicTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        let neg = PublicTensor::new(p.value.neg());
        let diff = self.add_public(x, &neg)?;
        self.op("compare_public", |s| s.drelu(&diff, source))
    }

    /// [x >= c] for a ring constant c (a fixed-point encoding, for fixed-point x), as 0 or 1 in
    /// the ring; exact when |x - c| < 2^(l-1). Cost: [`super::cost::compare_public`]; 2 rounds.
    pub fn greater_equal_scalar<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        c: i128,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        let diff = self.add_scalar(x, c.wrapping_neg());
        self.op("compare_public", |s| s.drelu(&diff, source))
    }

    /// \[x < c\] = 1 - [x >= c], as [`Session::greater_equal_scalar`].
    pub fn less_than_scalar<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        c: i128,
        source: &mut ComparisonSource<R>,
    ) -> Result<PrivateTensor<R>> {
        let ge = self.greater_equal_scalar(x, c, source)?;
        Ok(self.add_scalar(&self.neg(&ge), 1))
    }

    /// Max-pool of an NCHW tensor over `window` (kh, kw) with `stride` (sh, sw), no padding;
    /// with `with_mask`, also the one-hot argmax mask of each window for backward.
    /// Cost: [`super::cost::maxpool_exact`]; 2·ceil(log2(kh·kw)) rounds.
    pub fn maxpool_exact<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        window: (usize, usize),
        stride: (usize, usize),
        with_mask: bool,
        source: &mut ComparisonSource<R>,
    ) -> Result<MaxPool<R>> {
        R::check_comparison("maxpool_exact")?;
        let geometry = PoolGeometry::new(x.shape(), window, stride)?;
        self.op("maxpool_exact", |s| {
            let m = window.0 * window.1;
            let candidates = share_words(x)?.map(|w| geometry.gather(&w));
            let winners = tournament(s, candidates, geometry.windows(), m, with_mask, source)?;
            let out_shape = geometry.output_shape();
            let server = x.share().is_some();
            let output = private(&out_shape, server.then_some(winners.max))?;
            let mask = if with_mask {
                let mut mask_shape = out_shape.clone();
                mask_shape.push(m);
                Some(private(&mask_shape, server.then_some(winners.one_hot))?)
            } else {
                None
            };
            Ok(MaxPool { output, mask })
        })
    }

    /// Maximum over the last axis, its one-hot position and its index (first maximum on ties).
    /// Cost: [`super::cost::argmax_exact`]; 2·ceil(log2 m) rounds for m entries per row.
    pub fn argmax_exact<R: ComparisonRing>(
        &mut self,
        x: &PrivateTensor<R>,
        source: &mut ComparisonSource<R>,
    ) -> Result<ArgMax<R>> {
        R::check_comparison("argmax_exact")?;
        let (&m, rows) = x
            .shape()
            .split_last()
            .ok_or_else(|| ProtocolError::Usage { op: "argmax_exact", reason: "a scalar has no last axis".into() })?;
        if m == 0 {
            return Err(pond_core::CoreError::InvalidShape {
                op: "argmax_exact",
                shape: x.shape().to_vec(),
                tensor: x.shape().to_vec(),
                reason: "the last axis is empty".into(),
            }
            .into());
        }
        self.op("argmax_exact", |s| {
            let groups = x.len() / m;
            let winners = tournament(s, share_words(x)?, groups, m, true, source)?;
            let server = x.share().is_some();
            let index = server.then(|| {
                winners
                    .one_hot
                    .chunks_exact(m)
                    .map(|row| {
                        row.iter().enumerate().fold(R::Word::default(), |acc, (i, &b)| {
                            acc.wadd(b.wmul(<R::Word as Word>::from_i128(i as i128)))
                        })
                    })
                    .collect()
            });
            Ok(ArgMax {
                max: private(rows, server.then_some(winners.max))?,
                one_hot: private(x.shape(), server.then_some(winners.one_hot))?,
                index: private(rows, index)?,
            })
        })
    }
}

/// Where the windows of a max-pool are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolGeometry {
    pub(crate) input: [usize; 4],
    pub(crate) window: (usize, usize),
    pub(crate) stride: (usize, usize),
    pub(crate) output: (usize, usize),
}

impl PoolGeometry {
    pub(crate) fn new(shape: &[usize], window: (usize, usize), stride: (usize, usize)) -> Result<Self> {
        let bad = |reason: &str| -> ProtocolError {
            pond_core::CoreError::InvalidShape {
                op: "maxpool_exact",
                shape: vec![window.0, window.1, stride.0, stride.1],
                tensor: shape.to_vec(),
                reason: reason.into(),
            }
            .into()
        };
        let &[n, c, h, w] = shape else {
            return Err(bad("input must be NCHW"));
        };
        if window.0 == 0 || window.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(bad("window and stride must be positive"));
        }
        if h < window.0 || w < window.1 {
            return Err(bad("window larger than the input"));
        }
        let output = ((h - window.0) / stride.0 + 1, (w - window.1) / stride.1 + 1);
        Ok(PoolGeometry { input: [n, c, h, w], window, stride, output })
    }

    pub(crate) fn windows(&self) -> usize {
        self.input[0] * self.input[1] * self.output.0 * self.output.1
    }

    pub(crate) fn output_shape(&self) -> Vec<usize> {
        vec![self.input[0], self.input[1], self.output.0, self.output.1]
    }

    /// The candidates of every window, [windows, kh·kw], row-major within a window.
    fn gather<W: Copy>(&self, x: &[W]) -> Vec<W> {
        let [n, c, h, w] = self.input;
        let (kh, kw) = self.window;
        let (oh, ow) = self.output;
        let mut out = Vec::with_capacity(self.windows() * kh * kw);
        for plane in 0..n * c {
            let base = plane * h * w;
            for i in 0..oh {
                for j in 0..ow {
                    for a in 0..kh {
                        let row = base + (i * self.stride.0 + a) * w + j * self.stride.1;
                        out.extend_from_slice(&x[row..row + kw]);
                    }
                }
            }
        }
        out
    }
}
