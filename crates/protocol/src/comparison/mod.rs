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
//! kernel's page handling are the main costs. On CPUs with AVX-512 (runtime detection) accepted
//! draws are compressed in registers and a Z64 element's l terms are one register of byte lanes
//! with VBMI and VBMI2, or l/32 registers of 16-bit lanes with BW and VL alone (suffix sums by
//! log-step permutes, mod p by min, the rotation one permute); other CPUs run portable code with
//! identical outputs. The servers send their terms in pieces as they compute them, and cp tests
//! each piece on arrival.
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
//! # Truncation fused with the comparison
//! A ReLU usually follows a product's truncation, and in Z64 both open a masked value.
//! [`Session::truncate_relu_in_range`] opens only the truncation's c = x + 2^62 + r
//! ([`crate::truncation`]): the truncated y is C - (r >> f) + 2^(64-f)·w for the public
//! C = (c >> f) - 2^(62-f) and the wrap bit w, so y ≡ C - (r >> f) (mod 2^32) for f <= 32,
//! and the private compare on C against the bits of r >> f (which cp deals instead of those of
//! r) gives the sign of y exactly. r >> f is uniform mod 2^32 (bits f..f+31 of a uniform r),
//! so the argument above holds unchanged. The ReLU is y·γ = C·γ - (r >> f)·γ +
//! 2^(64-f)·(1 - msb(c))·msb(r)·γ, with cp dealing the last two products; the truncation's
//! shares of r >> f and msb(r) come with the material. 2 rounds where a truncation and a ReLU
//! take 3; 40 / 40 / 71 bytes per element instead of 48 / 48 / 63.
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

use crate::dealer::{deal_uniform, deal_value, deal_values, purpose};
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

/// How a comparison reads its input x: the sign is bit `terms - 1` of y mod 2^terms, where y is
/// x itself (`shift` 0) or x / 2^shift, truncated in the comparison's own opening (see
/// [`compare`] and [`Session::truncate_relu_in_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// m: the number of low bits of y read, the top one as the sign; a power of two.
    pub(crate) terms: usize,
    /// Bits x is shifted right by before it is compared (0: no truncation).
    pub(crate) shift: u32,
}

impl Reading {
    /// Reads the sign at bit `terms - 1` of x itself.
    pub(crate) fn plain(terms: usize) -> Self {
        Reading { terms, shift: 0 }
    }
}

/// cp's offline material for `n` comparisons read as `reading` says: the mask r and the Z_p
/// shares of bits shift..shift+terms-2 of r (the low terms - 1 bits of r >> shift), and with a
/// shift the truncation's shares of r >> shift and msb(r).
#[derive(Debug, Clone)]
pub struct ComparisonMaterial<R: ComparisonRing> {
    /// r: a server's share, or cp's whole value.
    r: Vec<R::Word>,
    /// A server's shares in Z_p of the low terms - 1 bits of each r >> shift (terms - 1 bytes
    /// per element); empty on cp.
    bits: Vec<u8>,
    /// A server's shares of r >> shift and of msb(r) when `reading.shift` > 0; empty otherwise
    /// and on cp.
    r_hi: Vec<R::Word>,
    r_msb: Vec<R::Word>,
    /// The reading it serves (see [`compare`]).
    reading: Reading,
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
        Self::deal_reading(s, n, Reading::plain(whole_word::<R>()))
    }

    /// [`ComparisonMaterial::deal`] for comparisons read as `reading` says: n·(terms - 1) bytes,
    /// and with a shift 2·n·B more (the corrections for r >> shift and msb(r)).
    fn deal_reading(s: &mut Session, n: usize, reading: Reading) -> Result<Self> {
        R::check_comparison("comparison material")?;
        let tag = s.next_tag();
        let (nb, shift) = (reading.terms - 1, reading.shift);
        let r: Held<R::Tensor> = deal_uniform(s, tag, purpose::EXTRA, &[n])?;
        let r = R::words(r.tensor())?.into_owned();
        let label = Session::stream(tag, purpose::EXTRA + 1);
        // cp's r >> shift: the compared bits come from it, and with a shift it is dealt too.
        let mut r_hi: Option<Vec<R::Word>> = (shift > 0 && s.role() == Role::Cp)
            .then(|| r.par_iter().with_min_len(MIN_LEN).map(|w| w.shr_logical(shift)).collect());
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
                kernels::bit_corrections(r_hi.as_deref().unwrap_or(&r), &mut bits, nb);
                s.send_bytes(Role::Server1, tag, bits)?;
                Vec::new()
            }
        };
        if shift == 0 {
            return Ok(ComparisonMaterial { r, bits, r_hi: Vec::new(), r_msb: Vec::new(), reading });
        }
        let msb = R::Word::BITS - 1;
        let [hi, top] = deal_values(s, tag, [purpose::EXTRA + 2, purpose::EXTRA + 3], &[n], || {
            let hi = r_hi.take().unwrap_or_default();
            let top = r.par_iter().with_min_len(MIN_LEN).map(|w| R::Word::from_bit(w.bit(msb))).collect();
            Ok([R::from_words(&[n], hi)?, R::from_words(&[n], top)?])
        })?;
        let (r_hi, r_msb) = match (hi, top) {
            (Held::Share(hi), Held::Share(top)) => (R::words(&hi)?.into_owned(), R::words(&top)?.into_owned()),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(ComparisonMaterial { r, bits, r_hi, r_msb, reading })
    }

    /// Splits off the first `n` comparisons' material, for comparisons read as `reading` says.
    fn take_front(&mut self, n: usize, reading: Reading) -> Result<Self> {
        if n > self.len() || reading != self.reading {
            let describe = |r: Reading| match r.shift {
                0 => format!("{} bits", r.terms),
                shift => format!("{} bits after a shift by {shift}", r.terms),
            };
            return Err(ProtocolError::Usage {
                op: "pregenerated comparisons",
                reason: format!(
                    "{} comparisons of {} left, the program asked for {n} of {}",
                    self.len(),
                    describe(self.reading),
                    describe(reading)
                ),
            });
        }
        /// The first `len` entries of `v` (all of an empty `v`, which cp's parts are).
        fn front<T>(v: &mut Vec<T>, len: usize) -> Vec<T> {
            if v.is_empty() {
                return Vec::new();
            }
            let rest = v.split_off(len);
            std::mem::replace(v, rest)
        }
        Ok(ComparisonMaterial {
            r: front(&mut self.r, n),
            bits: front(&mut self.bits, n * (reading.terms - 1)),
            r_hi: front(&mut self.r_hi, n),
            r_msb: front(&mut self.r_msb, n),
            reading,
        })
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
        let reading = Reading::plain(fixed_point_terms::<R>());
        Ok(ComparisonSource::Pregenerated(ComparisonMaterial::deal_reading(s, comparisons, reading)?))
    }

    /// [`ComparisonSource::pregenerate_in_range`] for [`Session::truncate_relu_in_range`] by
    /// `frac_bits` in a ring whose truncation is not local (Z64).
    pub fn pregenerate_truncating(s: &mut Session, comparisons: usize, frac_bits: u32) -> Result<Self> {
        let reading = truncating_reading::<R>(frac_bits);
        Ok(ComparisonSource::Pregenerated(ComparisonMaterial::deal_reading(s, comparisons, reading)?))
    }

    /// Comparisons left in a pregenerated source (`None` when online).
    pub fn remaining(&self) -> Option<usize> {
        match self {
            ComparisonSource::Online => None,
            ComparisonSource::Pregenerated(m) => Some(m.len()),
        }
    }

    fn take(&mut self, s: &mut Session, n: usize, reading: Reading) -> Result<ComparisonMaterial<R>> {
        match self {
            ComparisonSource::Online => ComparisonMaterial::deal_reading(s, n, reading),
            ComparisonSource::Pregenerated(m) => m.take_front(n, reading),
        }
    }
}

/// The reading of [`Session::truncate_relu_in_range`] by `frac_bits`: the truncation fused in
/// where the ring's truncation opens a value (Z64), none where it is local (Z128), whose
/// truncation runs first.
fn truncating_reading<R: ComparisonRing>(frac_bits: u32) -> Reading {
    let shift = if R::LOCAL_TRUNCATION { 0 } else { frac_bits };
    Reading { terms: fixed_point_terms::<R>(), shift }
}

/// Terms of a comparison that reads the whole word: l, exact for every ring element.
fn whole_word<R: ComparisonRing>() -> usize {
    R::Word::BITS as usize
}

/// Terms of a comparison of in-range fixed-point values: a valid [`pond_core::FixedPoint`]
/// keeps |x| < 2^(PRODUCT_BITS / 2), so the sign is bit m - 1 for the smallest power of two
/// m > PRODUCT_BITS / 2 (at least 32): 32 on Z64, 64 on Z128 (see the `compare` function of
/// this module).
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

/// The truncation fused into a comparison's opening, Z64's dealer-assisted truncation
/// ([`crate::truncation`]): the opened c = x + 2^(l-2) + r gives the public C = (c >> f) -
/// 2^(l-2-f) and this server's share of y = C - (r >> f) + 2^(l-f)·w, w = msb(r)·(1 - msb(c)),
/// with y in {floor(x / 2^f), floor(x / 2^f) + 1} for |x| < 2^(l-2).
///
/// For f <= l - m, y ≡ C - (r >> f) (mod 2^m): 2^(l-f)·w vanishes there. So the sign of an
/// in-range y is compared exactly as that of a value opened as C with mask r >> f, whose low
/// bits cp shares (the material's reading), and no second opening is needed.
struct Truncated<W> {
    /// C, public to the servers.
    public: Vec<W>,
    /// This server's share of y.
    share: Vec<W>,
}

/// [`Truncated`] from the opened `c` and this server's shares `r_hi` of r >> f and `r_msb` of
/// msb(r), in one parallel pass.
fn truncated<W: ComparisonWord>(c: &[W], r_hi: &[W], r_msb: &[W], f: u32, server0: bool) -> Truncated<W> {
    let lift = W::from_i128(1i128 << (W::BITS - 2 - f));
    let n = c.len();
    let (mut public, mut share) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let outputs = public.spare_capacity_mut()[..n]
        .par_chunks_mut(kernels::CHUNK)
        .zip(share.spare_capacity_mut()[..n].par_chunks_mut(kernels::CHUNK));
    outputs.enumerate().for_each(|(i, (public, share))| {
        let k = i * kernels::CHUNK..i * kernels::CHUNK + public.len();
        let inputs = c[k.clone()].iter().zip(&r_hi[k.clone()]).zip(&r_msb[k]);
        for ((p, s), ((&c, &hi), &msb)) in public.iter_mut().zip(share.iter_mut()).zip(inputs) {
            let open = c.shr_logical(f).wsub(lift);
            let wrap = W::from_bit(1 ^ c.bit(W::BITS - 1)).wmul(msb).shl(W::BITS - f);
            let own = wrap.wsub(hi);
            p.write(open);
            s.write(if server0 { own.wadd(open) } else { own });
        }
    });
    // SAFETY: the chunks cover the first n slots of both, and each chunk's loop writes all of its
    // slots.
    unsafe {
        public.set_len(n);
        share.set_len(n);
    }
    Truncated { public, share }
}

/// The comparison protocol on n elements (see the module docs). `z` and `extra` are this
/// server's shares (`None` on cp); `extra` has `width` entries per element.
///
/// `reading.terms` (m) is the number of low bits of each z whose top bit is read as the sign:
/// the whole word (l), or fewer when every z is known to be small. The opening of c = z + r is
/// unchanged (l bits, r uniform in the ring); the private compare runs on the m - 1 bits below
/// bit m - 1, and msb_m(x) = c_{m-1} XOR r_{m-1} XOR \[c mod 2^(m-1) < r mod 2^(m-1)\] is bit
/// m - 1 of x mod 2^m, which is the sign of x when |x| < 2^(m-1). m is a power of two from 32
/// to l.
///
/// With `reading.shift` = f > 0 (no extra operand), z is truncated by f in the same opening
/// ([`Truncated`]: server0 adds 2^(l-2) to its share of c) and the sign, ReLU and derivative are
/// those of the truncated y: the compare runs on C and r >> f, γ takes bit f + m - 1 of r, and
/// y·γ = C·γ - (r >> f)·γ + 2^(l-f)·(1 - msb(c))·msb(r)·γ, with cp dealing (r >> f)·γ and
/// msb(r)·γ where it deals r·γ otherwise.
#[allow(clippy::too_many_arguments)]
fn compare<R: ComparisonRing>(
    s: &mut Session,
    z: Option<&[R::Word]>,
    n: usize,
    want_relu: bool,
    extra: Option<&[R::Word]>,
    width: usize,
    source: &mut ComparisonSource<R>,
    reading: Reading,
) -> Result<Selected<R::Word>> {
    R::check_comparison("comparison")?;
    let (m, shift) = (reading.terms, reading.shift);
    if shift > 0 && (width > 0 || shift as usize > R::Word::BITS as usize - m) {
        return Err(ProtocolError::Usage {
            op: "comparison",
            reason: format!("a truncation by {shift} fuses with a comparison of {m} bits and no extra operand only"),
        });
    }
    let material = source.take(s, n, reading)?;
    let nb = m - 1;
    let server0 = s.role() == Role::Server0;

    // Round 1: open c = z + r (+ 2^(l-2) when truncating), and v - a for the extra operand.
    let tag = s.next_tag();
    let a: Option<Held<R::Tensor>> =
        if width > 0 { Some(deal_uniform(s, tag, purpose::LHS_MASK, &[n * width])?) } else { None };
    let a_words = a.as_ref().map(|a| R::words(a.tensor())).transpose()?;
    let offset = R::Word::from_i128(if shift > 0 && server0 { 1i128 << (R::Word::BITS - 2) } else { 0 });
    let opened = match z {
        Some(z) => {
            let mut msg: Vec<R::Word> = Vec::with_capacity(n * (1 + width));
            z.par_iter()
                .zip(&material.r)
                .with_min_len(MIN_LEN)
                .map(|(&z, &r)| z.wadd(r).wadd(offset))
                .collect_into_vec(&mut msg);
            if let (Some(v), Some(a)) = (extra, a_words.as_deref()) {
                msg.par_extend(v.par_iter().zip(a).with_min_len(MIN_LEN).map(|(&v, &a)| v.wsub(a)));
            }
            let msg = R::from_words(&[msg.len()], msg)?;
            Some(s.open(tag, &msg)?)
        }
        None => None,
    };
    let opened = opened.as_ref().map(R::words).transpose()?;
    let truncated = match &opened {
        Some(c) if shift > 0 => Some(truncated(c, &material.r_hi, &material.r_msb, shift, server0)),
        _ => None,
    };
    // The values the private compare reads: c, or C when truncating.
    let compared = truncated.as_ref().map(|t| &t.public[..]).or(opened.as_deref());

    // Round 2: blinded terms to cp; cp answers with shares of γ, r·γ (or (r >> f)·γ and
    // msb(r)·γ) and a·γ.
    let tag = s.next_tag();
    let relu_len = if want_relu { n } else { 0 };
    let relu_parts = if shift > 0 { 2 } else { 1 };
    let dealt_len = n + relu_parts * relu_len + n * width;
    let top = m as u32 - 1;
    let mut beta = Vec::new();
    if let Some(compared) = compared {
        let peer = s.role().peer().ok_or_else(|| ProtocolError::Usage {
            op: "comparison",
            reason: "only servers hold opened values".into(),
        })?;
        let common = s.key_with(peer)?.derive(Session::stream(tag, purpose::EXTRA));
        beta = vec![0u8; n];
        for piece in pieces(n) {
            let (c, bits) = (&compared[piece.clone()], &material.bits[piece.start * nb..piece.end * nb]);
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
        // γ, then r·γ (or (r >> f)·γ and msb(r)·γ), then a·γ (width entries per element), in one
        // parallel pass per chunk.
        let mut value = vec![R::Word::default(); dealt_len];
        let (gamma, rest) = value.split_at_mut(n);
        let (rg, ag) = rest.split_at_mut(relu_parts * relu_len);
        gamma
            .par_chunks_mut(kernels::CHUNK)
            .zip(zero.par_chunks(kernels::CHUNK))
            .zip(material.r.par_chunks(kernels::CHUNK))
            .for_each(|((g, zero), r)| {
                for ((g, &z), &r) in g.iter_mut().zip(zero).zip(r) {
                    *g = R::Word::from_bit(z ^ r.bit(top + shift));
                }
            });
        let gamma = &*gamma;
        let (rg, msb_g) = rg.split_at_mut(relu_len);
        rg.par_iter_mut()
            .zip(gamma)
            .zip(&material.r)
            .with_min_len(MIN_LEN)
            .for_each(|((o, &g), &r)| *o = g.wmul(r.shr_logical(shift)));
        msb_g.par_iter_mut().zip(gamma).zip(&material.r).with_min_len(MIN_LEN).for_each(|((o, &g), &r)| {
            *o = g.wmul(R::Word::from_bit(r.bit(R::Word::BITS - 1)));
        });
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
    let (Some(opened), Some(compared), Some(z)) = (opened.as_deref(), compared, z) else {
        return Ok(Selected { delta: Vec::new(), relu: Vec::new(), extras: Vec::new() });
    };
    let z = truncated.as_ref().map_or(z, |t| &t.share[..]);
    let dealt = R::words(dealt.tensor())?;

    // Local: t = 1 XOR c_h XOR β; δ = t + (1 - 2t)γ; δ·z = t·z + (1 - 2t)(c·γ - r·γ);
    // δ·v = t·v + (1 - 2t)((v - a)·γ + a·γ). When truncating, c·γ - r·γ becomes
    // C·γ - (r >> f)·γ + 2^(l-f)·(1 - msb(c))·msb(r)·γ (see [`Truncated`]).
    let one = R::Word::from_bit(u8::from(server0));
    let (gamma, rest) = dealt.split_at(n);
    let (rg, ag) = rest.split_at(relu_parts * relu_len);
    let (rg, msb_g) = rg.split_at(relu_len);
    let (c, e) = opened.split_at(n);
    // t in β's buffer; select(t, plain, flipped) = t ? plain - flipped : flipped, branch-free.
    let mut t = beta;
    t.par_chunks_mut(kernels::CHUNK).zip(compared.par_chunks(kernels::CHUNK)).for_each(|(t, c)| {
        for (t, c) in t.iter_mut().zip(c) {
            *t ^= 1 ^ c.bit(top);
        }
    });
    let select = |t: u8, plain: R::Word, flipped: R::Word| {
        flipped.wadd(R::Word::from_bit(t).wmul(plain.wsub(flipped.wadd(flipped))))
    };
    // SAFETY (both): each chunk's loop writes every slot of its chunk.
    let delta = unsafe {
        vec_written_by(n, |out| {
            out.par_chunks_mut(kernels::CHUNK)
                .zip(t.par_chunks(kernels::CHUNK))
                .zip(gamma.par_chunks(kernels::CHUNK))
                .for_each(|((out, t), gamma)| {
                    for ((o, &t), &g) in out.iter_mut().zip(t).zip(gamma) {
                        o.write(select(t, one, g));
                    }
                })
        })
    };
    let relu = unsafe {
        vec_written_by(relu_len, |out| {
            out.par_chunks_mut(kernels::CHUNK).enumerate().for_each(|(i, out)| {
                let k = i * kernels::CHUNK..i * kernels::CHUNK + out.len();
                let values = compared[k.clone()].iter().zip(&gamma[k.clone()]).zip(&rg[k.clone()]);
                let inputs = out.iter_mut().zip(&t[k.clone()]).zip(&z[k.clone()]);
                if shift == 0 {
                    // x·γ = (c - r)·γ: c is public, r·γ was dealt.
                    for (((o, &t), &z), ((&c, &g), &rg)) in inputs.zip(values) {
                        o.write(select(t, z, c.wmul(g).wsub(rg)));
                    }
                } else {
                    let wraps = c[k.clone()].iter().zip(&msb_g[k]);
                    for ((((o, &t), &z), ((&cv, &g), &rg)), (&c, &mg)) in inputs.zip(values).zip(wraps) {
                        let wrap = R::Word::from_bit(1 ^ c.bit(R::Word::BITS - 1)).wmul(mg).shl(R::Word::BITS - shift);
                        o.write(select(t, z, cv.wmul(g).wsub(rg).wadd(wrap)));
                    }
                }
            })
        })
    };
    let mut extras = Vec::with_capacity(n * width);
    if let Some(v) = extra {
        (0..n * width)
            .into_par_iter()
            .with_min_len(MIN_LEN)
            .map(|j| {
                let k = j / width;
                select(t[k], v[j], e[j].wmul(gamma[k]).wadd(ag[j]))
            })
            .collect_into_vec(&mut extras);
    }
    Ok(Selected { delta, relu, extras })
}
