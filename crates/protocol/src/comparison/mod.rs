//! Exact comparisons: the sign of a shared value as a shared 0/1 in the ring, and on top of it
//! exact ReLU (with its 0/1 derivative), max of two, max-pool with its argmax mask, argmax over
//! the last axis and comparison with a public constant.
//!
//! # Construction
//! Sign extraction by masking and a private compare with cp's online help, after SecureNN
//! (Wagh, Gupta, Chandran 2019, "SecureNN: 3-Party Secure Computation for Neural Network
//! Training", Algorithms 1 and 3), reorganised so that the whole DReLU takes two rounds:
//!
//! 1. Offline, cp deals a uniform mask r in Z_2^l (seeded on both servers, free) and shares in
//!    Z_p of the bits r_0..r_{l-2} of r mod 2^(l-1) (server0's seeded, server1's sent by cp).
//!    p = 67 for l = 64, p = 131 for l = 128 (the smallest primes above l).
//! 2. Round 1: the servers open c = x + r. Writing c = (c_h, c_low) and r = (r_h, r_low) for
//!    the top bit and the l - 1 low bits, x = c - r gives
//!    msb(x) = c_h XOR r_h XOR \[c_low < r_low\], exactly, for every x in the ring.
//! 3. Round 2: the servers run SecureNN's PrivateCompare on c_low (public) and r_low (shared
//!    bits), blinded by a common random bit β: each sends cp l bytes per element (one term
//!    per bit plus an equality term, each multiplied by a random s_i in Z_p^*, masked by a
//!    zero-sharing and rotated by a random ρ) from which cp learns only
//!    β' = β XOR \[c_low < r_low\], as "one of the terms is zero". cp
//!    deals, seeded for server0 and as a correction for server1, shares in Z_2^l of
//!    γ = β' XOR r_h and of r·γ (and of a·γ for masked extra operands, below).
//! 4. Locally, with the public (to the servers) bit t = 1 XOR c_h XOR β:
//!    DReLU(x) = [x >= 0] = t XOR γ = t + (1 - 2t)γ, and
//!    ReLU(x) = x·DReLU(x) = t·x + (1 - 2t)(c·γ - r·γ), since x = c - r.
//!    The product needs no Beaver triple: cp knows γ when it answers, so it deals r·γ.
//!    Selecting other tensors v by the same bit (the argmax one-hot vectors) opens v - a in
//!    round 1 with a fresh mask a and gets a·γ from cp in round 2: still two rounds.
//!
//! Why this one (measured on the 2-core development machine, 1e6 Z64 elements): a distributed
//! comparison function (Boyle et al. 2021; AriaNN) needs 63 PRG expansions per element per
//! evaluation; fixed-key AES-128 (4 blocks per level) took 1.5 s per party on both cores just
//! for the servers' evaluation, about 6 s with cp's key generation, and about 3 GB of keys.
//! A dealer-assisted bit decomposition with a parallel-prefix adder needs log2(63) = 6 rounds of
//! ANDs plus the opening and the final product: 8 or more rounds, above the budget of 4. The
//! construction here has 2 rounds for DReLU and ReLU, no triples, and one byte per bit and
//! element as its main traffic. Measured with `pond bench protocol` (three local parties, 2
//! cores shared with other work, load about 9): exact ReLU on 1e6 Z64 elements 0.46 s (0.36 s
//! with the material pregenerated) against 0.76 s for the polynomial ReLU in the same run, 2
//! rounds against 6, and 72 / 72 / 79 bytes per element (server0 / server1 / cp) against
//! 64 / 64 / 80.
//!
//! # Local work
//! Per element and server: about 2l values of common randomness (blinding s_i, masks u_i) and,
//! on server0 and cp, l - 1 bit shares, all drawn exactly (two base-p digits per accepted 16-bit
//! draw; one keystream per chunk, read on from one sampling to the next), so ChaCha8 and the
//! kernel's page handling are the main costs. On CPUs with AVX-512 BW/VBMI/VBMI2 (runtime
//! detection) accepted draws are compressed in registers and a Z64 element's l terms are one
//! register of byte lanes (suffix sums by log-step permutes, mod p by min, the rotation one
//! permute); other CPUs run portable code with identical outputs. The servers send their terms
//! in pieces as they compute them, and cp tests each piece on arrival.
//!
//! # Security
//! Semi-honest, non-colluding, as the rest of the crate. server views: c = x + r (uniform),
//! server1's bit-share corrections (uniform in Z_p), cp's corrections for γ, r·γ, a·γ (uniform
//! in the ring, server0's shares being seeded). cp's view: both servers' blinded terms, each
//! masked by a common uniform u_i (so each is uniform in Z_p); their sum is l values uniform in
//! Z_p^* except that, with probability 1/2 (β is uniform), one of them is zero, at a uniform
//! position (the rotation ρ). Unlike the dealer's other work, cp's answer in round 2 cannot be
//! produced ahead of time: cp is an online party of the comparison. The argument needs every
//! random value exactly uniform and independent: each is drawn by rejection from keystream no
//! other value uses (each chunk of elements has its own ChaCha stream), and how the terms are
//! cut into messages depends on n only.
//!
//! # Range
//! The sign is exact for every ring element (no headroom is used). Everything built on
//! differences (max, max-pool, argmax, comparison with a constant) is exact when the
//! difference does not wrap, i.e. |a - b| < 2^(l-1): always true for in-range fixed-point
//! values (|x| < 2^`PRODUCT_BITS`, the truncation precondition).
//!
//! # Fewer bits for small values
//! [`Session::relu_exact_in_range`] (the private layers' ReLU) reads the sign of x as bit
//! m - 1 of x mod 2^m, with m = [`fixed_point_terms`] (32 on Z64, 64 on Z128): that bit is
//! the sign whenever |x| < 2^(m-1), which every in-range value of a valid
//! [`pond_core::FixedPoint`] is (|x| < 2^(PRODUCT_BITS / 2)). Step 2 is unchanged (c = x + r
//! opened in the whole ring, r uniform, so x·γ = (c - r)·γ still holds in the ring); steps 1
//! and 3 use the m - 1 bits below bit m - 1 of r and c, and steps 3 and 4 take
//! γ = β' XOR r_{m-1} and t = 1 XOR c_{m-1} XOR β. The m terms are SecureNN's for an m-bit
//! word, with the same p (p > m), so the security argument above holds with m for l. Half
//! the bit shares, half the terms and half the common randomness: Z64 ReLU costs 40 / 40 / 47
//! bytes per element instead of 72 / 72 / 79. Beyond the range the sign is wrong (a test
//! shows 2^31 on Z64 read as negative): `relu_exact` is the one for arbitrary ring elements.
//!
//! # Rings
//! Z64 and Z128. CRT rings (int100) have no binary form to compare in: every operation returns
//! [`ProtocolError::Usage`] naming the ring before any message is sent (a CRT-to-binary
//! conversion is future work).
//!
//! # Costs
//! Bytes sent per party and server rounds are given by [`cost`] and checked by the tests; for
//! n elements of Z64 (B = 8 bytes, l = 64): DReLU server n·(B + l) each, cp n·(l - 1 + B);
//! ReLU servers n·(B + l) each, cp n·(l - 1 + 2B), in range the same with m for l; two rounds
//! each. The round-2 terms travel as max(1, ceil(n / 32768)) messages per server, sent back to
//! back (one round).

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod cost;
mod kernels;
mod ops;

pub use ops::{ArgMax, ExactRelu, MaxPool};

use crate::dealer::{deal_uniform, deal_value, purpose};
use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::Held;
use crate::transport::Role;
use crate::truncation::ProtocolRing;
use ndarray::{ArrayD, IxDyn};
use pond_core::parallel::vec_written_by;
use pond_core::{Crt, CrtModuli, Word, ZTensor, Z128, Z64};
use rayon::prelude::*;
use std::borrow::Cow;

/// Fewest elements per piece of work in the elementwise loops below: a parallel loop entered from
/// a thread outside rayon's pool (a party of a QUIC deployment) hands its pieces to the pool and
/// waits for them, tens of microseconds on a busy machine, so a batch-1 ReLU's 128 elements stay
/// on the calling thread.
const MIN_LEN: usize = kernels::CHUNK;

/// A machine word of a power-of-two ring, with what the comparison needs.
pub trait ComparisonWord: Word + Into<u128> {
    /// The prime p of the private compare: the smallest prime above `BITS`, so the l terms
    /// (each in [0, l]) are zero mod p only when zero. Below 255, so a term fits in a byte.
    const PRIME: u8;
    /// Bit `i` as 0 or 1.
    fn bit(self, i: u32) -> u8;
    /// The word 0 or 1.
    fn from_bit(b: u8) -> Self;
    /// The same words as `u64`s, for the kernels specialised to Z64 (`None` for other widths).
    fn as_u64s(words: &[Self]) -> Option<&[u64]>;
}

impl ComparisonWord for u64 {
    const PRIME: u8 = 67;
    #[inline]
    fn bit(self, i: u32) -> u8 {
        ((self >> i) & 1) as u8
    }
    fn from_bit(b: u8) -> Self {
        u64::from(b)
    }
    fn as_u64s(words: &[u64]) -> Option<&[u64]> {
        Some(words)
    }
}

impl ComparisonWord for u128 {
    const PRIME: u8 = 131;
    #[inline]
    fn bit(self, i: u32) -> u8 {
        ((self >> i) & 1) as u8
    }
    fn from_bit(b: u8) -> Self {
        u128::from(b)
    }
    fn as_u64s(_: &[u128]) -> Option<&[u64]> {
        None
    }
}

/// A ring with exact comparisons: the power-of-two rings. The CRT rings implement it only to
/// refuse with a typed error (see the module docs).
pub trait ComparisonRing: ProtocolRing {
    /// The ring's machine word.
    type Word: ComparisonWord;
    /// `Ok` for rings with exact comparisons; for CRT, a [`ProtocolError::Usage`] for `op`.
    fn check_comparison(op: &'static str) -> Result<()>;
    /// The elements of `t` in row-major order.
    fn words(t: &Self::Tensor) -> Result<Cow<'_, [Self::Word]>>;
    /// A tensor of `shape` from its row-major words.
    fn from_words(shape: &[usize], words: Vec<Self::Word>) -> Result<Self::Tensor>;
}

fn zwords<W: Word>(t: &ZTensor<W>) -> Cow<'_, [W]> {
    match t.array().as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(t.array().iter().copied().collect()),
    }
}

fn from_zwords<W: Word>(shape: &[usize], words: Vec<W>) -> Result<ZTensor<W>> {
    let len = words.len();
    let array = ArrayD::from_shape_vec(IxDyn(shape), words).map_err(|_| ProtocolError::Usage {
        op: "comparison",
        reason: format!("{len} words do not fill shape {shape:?}"),
    })?;
    Ok(ZTensor::from_array(array))
}

impl ComparisonRing for Z64 {
    type Word = u64;
    fn check_comparison(_: &'static str) -> Result<()> {
        Ok(())
    }
    fn words(t: &ZTensor<u64>) -> Result<Cow<'_, [u64]>> {
        Ok(zwords(t))
    }
    fn from_words(shape: &[usize], words: Vec<u64>) -> Result<ZTensor<u64>> {
        from_zwords(shape, words)
    }
}

impl ComparisonRing for Z128 {
    type Word = u128;
    fn check_comparison(_: &'static str) -> Result<()> {
        Ok(())
    }
    fn words(t: &ZTensor<u128>) -> Result<Cow<'_, [u128]>> {
        Ok(zwords(t))
    }
    fn from_words(shape: &[usize], words: Vec<u128>) -> Result<ZTensor<u128>> {
        from_zwords(shape, words)
    }
}

fn crt_refusal<M: CrtModuli>(op: &'static str) -> ProtocolError {
    ProtocolError::Usage {
        op,
        reason: format!(
            "exact comparisons need a power-of-two ring (z64 or z128); {} has no binary form to compare in",
            <Crt<M> as pond_core::Ring>::NAME
        ),
    }
}

impl<M: CrtModuli> ComparisonRing for Crt<M> {
    /// Unused: every operation refuses CRT before touching words.
    type Word = u64;
    fn check_comparison(op: &'static str) -> Result<()> {
        Err(crt_refusal::<M>(op))
    }
    fn words(_: &Self::Tensor) -> Result<Cow<'_, [u64]>> {
        Err(crt_refusal::<M>("comparison"))
    }
    fn from_words(_: &[usize], _: Vec<u64>) -> Result<Self::Tensor> {
        Err(crt_refusal::<M>("comparison"))
    }
}

/// cp's offline material for `n` comparisons of `terms` terms: the mask r and the Z_p shares of
/// its low `terms - 1` bits.
#[derive(Debug, Clone)]
pub struct ComparisonMaterial<R: ComparisonRing> {
    /// r: a server's share, or cp's whole value.
    r: Vec<R::Word>,
    /// A server's shares in Z_p of bits 0..terms-2 of each r (terms - 1 bytes per element);
    /// empty on cp.
    bits: Vec<u8>,
    /// The comparison width it serves (see [`compare`]).
    terms: usize,
}

impl<R: ComparisonRing> ComparisonMaterial<R> {
    /// Number of comparisons it serves.
    pub fn len(&self) -> usize {
        self.r.len()
    }

    /// True if it serves no comparison.
    pub fn is_empty(&self) -> bool {
        self.r.is_empty()
    }

    /// Deals material for `n` comparisons of the whole word now (all three parties call this).
    /// Traffic: cp sends n·(l - 1) bytes to server1; no server rounds.
    pub fn deal(s: &mut Session, n: usize) -> Result<Self> {
        Self::deal_terms(s, n, whole_word::<R>())
    }

    /// [`ComparisonMaterial::deal`] for comparisons of `terms` terms: n·(terms - 1) bytes.
    fn deal_terms(s: &mut Session, n: usize, terms: usize) -> Result<Self> {
        R::check_comparison("comparison material")?;
        let tag = s.next_tag();
        let nb = terms - 1;
        let r: Held<R::Tensor> = deal_uniform(s, tag, purpose::EXTRA, &[n])?;
        let r = R::words(r.tensor())?.into_owned();
        let label = Session::stream(tag, purpose::EXTRA + 1);
        let bits = match s.role() {
            Role::Server0 => kernels::seeded_bit_shares::<R::Word>(&s.key_with(Role::Cp)?.derive(label), n, nb),
            Role::Server1 => {
                let bits = s.recv_bytes(Role::Cp, tag)?;
                // The largest byte by a branch-free max (vectorised), not a short-circuiting
                // scan: byte by byte, this check was a fifth of server1's comparison work.
                let largest = bits.iter().fold(0u8, |m, &b| m.max(b));
                if bits.len() != n * nb || largest >= R::Word::PRIME {
                    return Err(ProtocolError::BadMessage {
                        peer: Role::Cp,
                        reason: format!("expected {} bit shares below {}", n * nb, R::Word::PRIME),
                    });
                }
                bits
            }
            Role::Cp => {
                let mut bits = kernels::seeded_bit_shares::<R::Word>(&s.key_with(Role::Server0)?.derive(label), n, nb);
                kernels::bit_corrections(&r, &mut bits, nb);
                s.send_bytes(Role::Server1, tag, bits)?;
                Vec::new()
            }
        };
        Ok(ComparisonMaterial { r, bits, terms })
    }

    /// Splits off the first `n` comparisons' material, for comparisons of `terms` terms.
    fn take_front(&mut self, n: usize, terms: usize) -> Result<Self> {
        if n > self.len() || terms != self.terms {
            return Err(ProtocolError::Usage {
                op: "pregenerated comparisons",
                reason: format!(
                    "{} comparisons of {} bits left, the program asked for {n} of {terms} bits",
                    self.len(),
                    self.terms
                ),
            });
        }
        let nb = terms - 1;
        let rest_r = self.r.split_off(n);
        let r = std::mem::replace(&mut self.r, rest_r);
        let bits = if self.bits.is_empty() {
            Vec::new()
        } else {
            let rest_bits = self.bits.split_off(n * nb);
            std::mem::replace(&mut self.bits, rest_bits)
        };
        Ok(ComparisonMaterial { r, bits, terms })
    }
}

/// Where a comparison's offline material comes from.
#[derive(Debug)]
pub enum ComparisonSource<R: ComparisonRing> {
    /// Dealt by cp when the comparison runs (one extra tagged step; cp's message to server1
    /// travels during the operation).
    Online,
    /// Dealt ahead of time (the offline phase, see [`ComparisonSource::pregenerate`]); each
    /// comparison takes the next material in order, and running out is an error.
    Pregenerated(ComparisonMaterial<R>),
}

impl<R: ComparisonRing> ComparisonSource<R> {
    /// Deals material for `comparisons` element comparisons now (all parties call this with the
    /// same count; [`cost`] has the count each operation needs).
    pub fn pregenerate(s: &mut Session, comparisons: usize) -> Result<Self> {
        Ok(ComparisonSource::Pregenerated(ComparisonMaterial::deal(s, comparisons)?))
    }

    /// [`ComparisonSource::pregenerate`] for in-range comparisons
    /// ([`Session::relu_exact_in_range`]): material for [`fixed_point_terms`] terms.
    pub fn pregenerate_in_range(s: &mut Session, comparisons: usize) -> Result<Self> {
        Ok(ComparisonSource::Pregenerated(ComparisonMaterial::deal_terms(s, comparisons, fixed_point_terms::<R>())?))
    }

    /// Comparisons left in a pregenerated source (`None` when online).
    pub fn remaining(&self) -> Option<usize> {
        match self {
            ComparisonSource::Online => None,
            ComparisonSource::Pregenerated(m) => Some(m.len()),
        }
    }

    fn take(&mut self, s: &mut Session, n: usize, terms: usize) -> Result<ComparisonMaterial<R>> {
        match self {
            ComparisonSource::Online => ComparisonMaterial::deal_terms(s, n, terms),
            ComparisonSource::Pregenerated(m) => m.take_front(n, terms),
        }
    }
}

/// Terms of a comparison that reads the whole word: l, exact for every ring element.
fn whole_word<R: ComparisonRing>() -> usize {
    R::Word::BITS as usize
}

/// Terms of a comparison of in-range fixed-point values: a valid [`pond_core::FixedPoint`]
/// keeps |x| < 2^(PRODUCT_BITS / 2), so the sign is bit m - 1 for the smallest power of two
/// m > PRODUCT_BITS / 2 (at least 32): 32 on Z64, 64 on Z128 (see [`compare`]).
pub fn fixed_point_terms<R: ComparisonRing>() -> usize {
    ((R::PRODUCT_BITS / 2 + 1) as usize).next_power_of_two().clamp(32, whole_word::<R>())
}

/// Elements per message of blinded terms (2 MiB for Z64): each server sends its terms in pieces
/// as they are computed, so cp tests one piece while the servers compute the next, and buffers
/// of this size are reused by the allocator instead of being mapped (and faulted in) afresh.
const PIECE: usize = 16 * kernels::CHUNK;

/// The pieces of n elements: at least one (an empty one for n = 0, so that every comparison
/// sends its message).
fn pieces(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n.div_ceil(PIECE).max(1)).map(move |k| k * PIECE..n.min((k + 1) * PIECE))
}

/// What one batch of comparisons returns on a server: shares of δ = [z >= 0], of δ·z (if
/// asked), and of δ·v for the extra operand (`width` entries per element). Empty on cp.
struct Selected<W> {
    delta: Vec<W>,
    relu: Vec<W>,
    extras: Vec<W>,
}

/// The comparison protocol on n elements (see the module docs). `z` and `extra` are this
/// server's shares (`None` on cp); `extra` has `width` entries per element.
///
/// `terms` (m) is the number of low bits of each z whose top bit is read as the sign: the whole
/// word (l), or fewer when every z is known to be small. The opening of c = z + r is unchanged
/// (l bits, r uniform in the ring); the private compare runs on the m - 1 bits below bit m - 1,
/// and msb_m(x) = c_{m-1} XOR r_{m-1} XOR \[c mod 2^(m-1) < r mod 2^(m-1)\] is bit m - 1 of
/// x mod 2^m, which is the sign of x when |x| < 2^(m-1). m is a power of two from 32 to l.
#[allow(clippy::too_many_arguments)]
fn compare<R: ComparisonRing>(
    s: &mut Session,
    z: Option<&[R::Word]>,
    n: usize,
    want_relu: bool,
    extra: Option<&[R::Word]>,
    width: usize,
    source: &mut ComparisonSource<R>,
    terms: usize,
) -> Result<Selected<R::Word>> {
    R::check_comparison("comparison")?;
    let material = source.take(s, n, terms)?;
    let (nb, m) = (terms - 1, terms);
    let server0 = s.role() == Role::Server0;

    // Round 1: open c = z + r, and v - a for the extra operand.
    let tag = s.next_tag();
    let a: Option<Held<R::Tensor>> =
        if width > 0 { Some(deal_uniform(s, tag, purpose::LHS_MASK, &[n * width])?) } else { None };
    let a_words = a.as_ref().map(|a| R::words(a.tensor())).transpose()?;
    let opened = match z {
        Some(z) => {
            let mut msg: Vec<R::Word> = Vec::with_capacity(n * (1 + width));
            z.par_iter().zip(&material.r).with_min_len(MIN_LEN).map(|(&z, &r)| z.wadd(r)).collect_into_vec(&mut msg);
            if let (Some(v), Some(a)) = (extra, a_words.as_deref()) {
                msg.par_extend(v.par_iter().zip(a).with_min_len(MIN_LEN).map(|(&v, &a)| v.wsub(a)));
            }
            let msg = R::from_words(&[msg.len()], msg)?;
            Some(s.open(tag, &msg)?)
        }
        None => None,
    };
    let opened = opened.as_ref().map(R::words).transpose()?;

    // Round 2: blinded terms to cp; cp answers with shares of γ, r·γ and a·γ.
    let tag = s.next_tag();
    let relu_len = if want_relu { n } else { 0 };
    let dealt_len = n + relu_len + n * width;
    let top = terms as u32 - 1;
    let mut beta = Vec::new();
    if let Some(opened) = &opened {
        let peer = s.role().peer().ok_or_else(|| ProtocolError::Usage {
            op: "comparison",
            reason: "only servers hold opened values".into(),
        })?;
        let common = s.key_with(peer)?.derive(Session::stream(tag, purpose::EXTRA));
        beta = vec![0u8; n];
        for piece in pieces(n) {
            let (c, bits) = (&opened[piece.clone()], &material.bits[piece.start * nb..piece.end * nb]);
            let first_chunk = piece.start / kernels::CHUNK;
            let beta = &mut beta[piece.clone()];
            // SAFETY: `blinded_terms` writes every byte of its terms buffer (it checks that the
            // buffer holds exactly m terms per element).
            let d = unsafe {
                vec_written_by(piece.len() * m, |d| {
                    kernels::blinded_terms::<R::Word>(c, bits, &common, first_chunk, server0, d, beta, m)
                })
            };
            s.send_bytes(Role::Cp, tag, d)?;
        }
    }
    let value = if s.role() == Role::Cp {
        let mut zero = vec![0u8; n];
        for piece in pieces(n) {
            let zero = &mut zero[piece];
            let mut d = [Vec::new(), Vec::new()];
            for (slot, from) in d.iter_mut().zip([Role::Server0, Role::Server1]) {
                *slot = s.recv_bytes(from, tag)?;
                if slot.len() != zero.len() * m {
                    return Err(ProtocolError::BadMessage {
                        peer: from,
                        reason: format!("{} comparison bytes, expected {}", slot.len(), zero.len() * m),
                    });
                }
            }
            kernels::has_zero::<R::Word>(&d[0], &d[1], zero, m);
        }
        // γ, then r·γ, then a·γ (width entries per element), in one parallel pass per chunk.
        let mut value = vec![R::Word::default(); dealt_len];
        let (gamma, rest) = value.split_at_mut(n);
        let (rg, ag) = rest.split_at_mut(relu_len);
        gamma
            .par_chunks_mut(kernels::CHUNK)
            .zip(zero.par_chunks(kernels::CHUNK))
            .zip(material.r.par_chunks(kernels::CHUNK))
            .for_each(|((g, zero), r)| {
                for ((g, &z), &r) in g.iter_mut().zip(zero).zip(r) {
                    *g = R::Word::from_bit(z ^ r.bit(top));
                }
            });
        let gamma = &*gamma;
        rg.par_iter_mut().zip(gamma).zip(&material.r).with_min_len(MIN_LEN).for_each(|((o, &g), &r)| *o = g.wmul(r));
        if let Some(a) = a_words.as_deref() {
            ag.par_chunks_mut(width).zip(a.par_chunks(width)).zip(gamma).with_min_len(MIN_LEN).for_each(
                |((o, a), &g)| {
                    for (o, &a) in o.iter_mut().zip(a) {
                        *o = a.wmul(g);
                    }
                },
            );
        }
        Some(value)
    } else {
        None
    };
    let dealt =
        deal_value(s, tag, purpose::PRODUCT, &[dealt_len], || R::from_words(&[dealt_len], value.unwrap_or_default()))?;
    let (Some(opened), Some(z)) = (opened, z) else {
        return Ok(Selected { delta: Vec::new(), relu: Vec::new(), extras: Vec::new() });
    };
    let dealt = R::words(dealt.tensor())?;

    // Local: t = 1 XOR c_h XOR β; δ = t + (1 - 2t)γ; δ·z = t·z + (1 - 2t)(c·γ - r·γ);
    // δ·v = t·v + (1 - 2t)((v - a)·γ + a·γ).
    let one = R::Word::from_bit(u8::from(server0));
    let (gamma, rest) = dealt.split_at(n);
    let (rg, ag) = rest.split_at(relu_len);
    let (c, e) = opened.split_at(n);
    let flipped = |k: usize| (1 ^ c[k].bit(top) ^ beta[k]) == 1;
    let select = |t: bool, plain: R::Word, flipped: R::Word| if t { plain.wsub(flipped) } else { flipped };
    let mut delta = Vec::with_capacity(n);
    (0..n)
        .into_par_iter()
        .with_min_len(MIN_LEN)
        .map(|k| select(flipped(k), one, gamma[k]))
        .collect_into_vec(&mut delta);
    let mut relu = Vec::with_capacity(relu_len);
    (0..relu_len)
        .into_par_iter()
        .with_min_len(MIN_LEN)
        // x·γ = (c - r)·γ: c is public, r·γ was dealt.
        .map(|k| select(flipped(k), z[k], c[k].wmul(gamma[k]).wsub(rg[k])))
        .collect_into_vec(&mut relu);
    let mut extras = Vec::with_capacity(n * width);
    if let Some(v) = extra {
        (0..n * width)
            .into_par_iter()
            .with_min_len(MIN_LEN)
            .map(|j| {
                let k = j / width;
                select(flipped(k), v[j], e[j].wmul(gamma[k]).wadd(ag[j]))
            })
            .collect_into_vec(&mut extras);
    }
    Ok(Selected { delta, relu, extras })
}
