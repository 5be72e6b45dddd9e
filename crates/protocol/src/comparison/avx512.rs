//! AVX-512 versions of the comparison kernels, in two tiers:
//!
//! - F, BW and VL (every AVX-512 CPU since Skylake-SP): 16-bit lanes for the terms, with 16-bit
//!   permutes for the suffix sums and the rotation, and 32-bit compression of accepted draws;
//! - with VBMI and VBMI2 as well (Ice Lake and later, Zen 4): one byte lane per term, byte
//!   permutes, and 16-bit compression.
//!
//! Every entry point takes an [`Avx512`] token, which exists only after runtime detection of the
//! first tier and records whether the second is there. Each one computes exactly what its portable
//! counterpart in `kernels` computes (the tests compare every tier the CPU has on random inputs),
//! so the protocol's messages do not depend on the CPU.

use super::kernels::{TermDraws, TermsOut};
use pond_core::cpu::x86::compress_store_u16;
use pond_core::cpu::Avx512Tiers;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// The prime of the Z64 comparison (the only one with a vector kernel for the terms: its
/// m = 64 or 32 terms fill one register of bytes, or its lower half).
const P: u8 = 67;

/// The comparison kernels, callable once the CPU's features are proven ([`Avx512Tiers`]: the
/// byte tier for the byte-lane kernels).
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(pub(super) Avx512Tiers);

impl Avx512 {
    /// Returns the token if the CPU has AVX-512 F, BW and VL (see [`Avx512Tiers`]).
    pub(super) fn detect() -> Option<Self> {
        Avx512Tiers::detect().map(Avx512)
    }

    /// The accepted digit pairs of the 16-bit draws in `words` (see `kernels::sample_below`),
    /// written to `kept` in order; returns the number of bytes written. `words.len()` is a
    /// multiple of 8 and `kept` has room for 8·words.len() + 64 bytes (a compressed store writes
    /// a whole register).
    pub(super) fn digit_pairs<const B: u16>(self, words: &[u64], kept: &mut [MaybeUninit<u8>]) -> usize {
        assert!(words.len().is_multiple_of(8) && kept.len() >= 8 * words.len() + 64, "digit_pairs buffer sizes");
        // SAFETY: `self` exists only if the features of the tier called were detected at runtime;
        // sizes checked above.
        unsafe {
            if self.0.bytes.is_some() {
                digit_pairs_compress16::<B>(words, kept)
            } else {
                digit_pairs_compress32::<B>(words, kept)
            }
        }
    }

    /// The blinded terms of Z64 comparisons with `M` terms (64, or 32 for values below 2^31;
    /// see `kernels::blinded_terms`): per element one opened word of `c`, M - 1 bit shares, one
    /// random byte of `heads` and M draws each of `s` (multiplier minus one) and `u` (zero-share
    /// mask); writes M terms to `d` and β to `beta`.
    pub(super) fn terms_z64<const M: usize>(
        self,
        c: &[u64],
        bits: &[u8],
        draws: TermDraws<'_>,
        server0: bool,
        out: TermsOut<'_>,
    ) {
        let n = c.len();
        assert!(
            (M == 32 || M == 64)
                && bits.len() == (M - 1) * n
                && draws.heads.len() == n
                && draws.s.len() == M * n
                && draws.u.len() == M * n
                && out.d.len() == M * n
                && out.beta.len() == n,
            "terms_z64 buffer sizes"
        );
        // SAFETY: `self` exists only if the features of the tier called were detected at runtime;
        // sizes checked above.
        unsafe {
            match (self.0.bytes.is_some(), M) {
                (true, _) => terms_z64_bytes::<M>(c, bits, draws, server0, out),
                (false, 32) => terms_z64_words::<1>(c, bits, draws, server0, out),
                (false, _) => terms_z64_words::<2>(c, bits, draws, server0, out),
            }
        }
    }

    /// cp's zero test (see `kernels::has_zero`) for `m` terms per element, m 32 or a multiple
    /// of 64.
    pub(super) fn has_zero(self, p: u8, m: usize, d0: &[u8], d1: &[u8], out: &mut [u8]) {
        assert!(
            (m == 32 || m.is_multiple_of(64)) && d0.len() == m * out.len() && d1.len() == d0.len(),
            "has_zero buffer sizes"
        );
        // SAFETY: `self` exists only if the features were detected at runtime; sizes checked above.
        unsafe {
            if m == 32 {
                has_zero_32(p, d0, d1, out)
            } else {
                has_zero(p, m, d0, d1, out)
            }
        }
    }

    /// cp's bit-share corrections for Z64 (see `kernels::bit_corrections`) of the low `nb` bits
    /// (nb < 64), in place.
    pub(super) fn bit_corrections_z64(self, r: &[u64], share0: &mut [u8], nb: usize) {
        assert!(nb < 64 && share0.len() == nb * r.len(), "bit_corrections_z64 buffer sizes");
        // SAFETY: `self` exists only if the features were detected at runtime; sizes checked above.
        unsafe { bit_corrections_z64(r, share0, nb) }
    }
}

/// The digit pairs (high digit in the high byte) of the 32 16-bit draws of a group of 8 words,
/// and the mask of the accepted ones.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn digits_of_group<const B: u16>(group: &[u64]) -> (__m512i, __mmask32) {
    let square = B * B;
    let zone = ((1u32 << 16) / u32::from(square) * u32::from(square)) as u16;
    // The 16-bit lanes of the words are their halves, low half first (x86 is little-endian).
    // SAFETY: `group` is 8 words, 64 readable bytes; unaligned loads are allowed.
    let v = unsafe { _mm512_loadu_si512(group[..8].as_ptr().cast()) };
    let mut draws = [0u16; 32];
    // SAFETY: `draws` is 64 writable bytes.
    unsafe { _mm512_storeu_si512(draws.as_mut_ptr().cast(), v) };
    let mut digits = [0u16; 32];
    // Constant divisors: the compiler turns this loop into 16-bit multiply-highs.
    for (d, &v) in digits.iter_mut().zip(&draws) {
        let r = v % square;
        let hi = r / B;
        *d = (hi << 8) | (r - hi * B);
    }
    // SAFETY: `digits` is 64 readable bytes.
    let digits = unsafe { _mm512_loadu_si512(digits.as_ptr().cast()) };
    (digits, _mm512_cmplt_epu16_mask(v, _mm512_set1_epi16(zone as i16)))
}

/// `digit_pairs` with VBMI2's 16-bit compression: one compressed store per group.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2")]
fn digit_pairs_compress16<const B: u16>(words: &[u64], kept: &mut [MaybeUninit<u8>]) -> usize {
    let mut filled = 0;
    for group in words.chunks_exact(8) {
        let (digits, keep) = digits_of_group::<B>(group);
        // SAFETY: filled <= the bytes of the groups before this one, so kept[filled..filled + 64]
        // is in bounds by the caller's size check.
        unsafe { _mm512_storeu_si512(kept.as_mut_ptr().add(filled).cast(), _mm512_maskz_compress_epi16(keep, digits)) };
        filled += 2 * keep.count_ones() as usize;
    }
    filled
}

/// `digit_pairs` with AVX-512 F's 32-bit compression ([`compress_store_u16`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn digit_pairs_compress32<const B: u16>(words: &[u64], kept: &mut [MaybeUninit<u8>]) -> usize {
    let mut filled = 0;
    for group in words.chunks_exact(8) {
        let (digits, keep) = digits_of_group::<B>(group);
        // SAFETY: filled <= the bytes of the groups before this one, so the 64 bytes from
        // kept[filled] that the store may write are in bounds by the caller's size check.
        filled += 2 * unsafe { compress_store_u16(keep, digits, kept.as_mut_ptr().add(filled).cast()) };
    }
    filled
}

/// x mod p for byte lanes x < 2p.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn reduce(x: __m512i, p: __m512i) -> __m512i {
    _mm512_min_epu8(x, _mm512_sub_epi8(x, p))
}

/// x mod p for 16-bit lanes x < 2p.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn reduce16(x: __m512i, p: __m512i) -> __m512i {
    _mm512_min_epu16(x, _mm512_sub_epi16(x, p))
}

/// (e·s + mask) mod 67 for 16-bit lanes with e, s, mask < 67: the quotient estimate
/// x·979 >> 16 is the quotient or one above it for x < 2^13, and the wrapped remainder is fixed
/// by a minimum.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn mul_add_mod16(e: __m512i, s: __m512i, mask: __m512i) -> __m512i {
    let x = _mm512_add_epi16(_mm512_mullo_epi16(e, s), mask);
    let q = _mm512_mulhi_epu16(x, _mm512_set1_epi16(979));
    let r = _mm512_sub_epi16(x, _mm512_mullo_epi16(q, _mm512_set1_epi16(i16::from(P))));
    _mm512_min_epu16(r, _mm512_add_epi16(r, _mm512_set1_epi16(i16::from(P))))
}

/// [`mul_add_mod16`] on 32 byte lanes, giving bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn mul_add_mod(e: __m256i, s: __m256i, mask: __m256i) -> __m256i {
    let wide = _mm512_cvtepu8_epi16;
    _mm512_cvtepi16_epi8(mul_add_mod16(wide(e), wide(s), wide(mask)))
}

/// `terms_z64` with one byte lane per term (VBMI's byte permutes).
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
fn terms_z64_bytes<const M: usize>(c: &[u64], bits: &[u8], draws: TermDraws<'_>, server0: bool, out: TermsOut<'_>) {
    // The lanes of the compared bits, and of all M terms.
    const { assert!(M == 32 || M == 64) };
    let low: u64 = u64::MAX >> (65 - M);
    let lanes: u64 = u64::MAX >> (64 - M);
    let p = _mm512_set1_epi8(P as i8);
    let own = _mm512_set1_epi8(i8::from(server0));
    let one = _mm512_set1_epi8(1);
    let iota = _mm512_set_epi8(
        63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36,
        35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8,
        7, 6, 5, 4, 3, 2, 1, 0,
    );
    // Lane i of `shift[j]` reads lane i + 2^j.
    let shift: [__m512i; 6] = std::array::from_fn(|j| _mm512_add_epi8(iota, _mm512_set1_epi8(1 << j)));
    let elements = out.d.chunks_exact_mut(M).zip(out.beta.iter_mut()).zip(c).zip(bits.chunks_exact(M - 1));
    let randomness = draws.heads.iter().zip(draws.s.chunks_exact(M)).zip(draws.u.chunks_exact(M));
    for ((((d, beta), &cv), bits), ((&head, s), u)) in elements.zip(randomness) {
        let flip = head & 1 == 1;
        let rho = (head >> 1) & (M as u8 - 1);
        *beta = head & 1;
        let cm: __mmask64 = cv & low;
        // SAFETY: lanes M - 1 and up are masked out, so only the M - 1 bytes of `bits` are read.
        let r = unsafe { _mm512_maskz_loadu_epi8(low, bits.as_ptr().cast()) };
        let pr = _mm512_sub_epi8(p, r);
        // w_i = r_i XOR c_i (server0 adds the public part); lanes M - 1 and up stay 0.
        let w = _mm512_mask_blend_epi8(cm, r, reduce(_mm512_add_epi8(pr, own), p));
        // Inclusive suffix sums U_i = sum of w_k for k >= i, mod p (the lanes from M - 1 up add
        // nothing).
        let mut suffix = w;
        for (j, idx) in shift.iter().enumerate().take(M.trailing_zeros() as usize) {
            suffix =
                reduce(_mm512_add_epi8(suffix, _mm512_maskz_permutexvar_epi8(u64::MAX >> (1 << j), *idx, suffix)), p);
        }
        // S_i = U_{i+1}; the equality term's total is U_0.
        let later = _mm512_maskz_permutexvar_epi8(u64::MAX >> 1, shift[0], suffix);
        let total = _mm512_permutexvar_epi8(_mm512_setzero_si512(), suffix);
        // (1 - 2β)(c_i - r_i) + 1 with server0 holding the public part, plus S_i, mod p.
        let (base, adj, last) = if flip {
            (r, _mm512_maskz_mov_epi8(!cm, own), total)
        } else {
            (pr, _mm512_add_epi8(own, _mm512_maskz_mov_epi8(cm, own)), own)
        };
        let e = reduce(_mm512_add_epi8(reduce(_mm512_add_epi8(base, adj), p), later), p);
        let e = _mm512_mask_blend_epi8(1 << (M - 1), e, last);
        // SAFETY: `s` and `u` are M readable bytes each, the lanes read.
        let (sv, uv) = unsafe {
            (_mm512_maskz_loadu_epi8(lanes, s.as_ptr().cast()), _mm512_maskz_loadu_epi8(lanes, u.as_ptr().cast()))
        };
        let sv = _mm512_add_epi8(sv, one);
        let mask = if server0 { uv } else { _mm512_sub_epi8(p, uv) };
        // A server1 mask of p (u = 0) is p mod p: reduce before the 16-bit products.
        let mask = reduce(mask, p);
        let half =
            |v: __m512i, hi: bool| if hi { _mm512_extracti64x4_epi64::<1>(v) } else { _mm512_castsi512_si256(v) };
        let lo = mul_add_mod(half(e, false), half(sv, false), half(mask, false));
        let v = if M == 64 {
            let hi = mul_add_mod(half(e, true), half(sv, true), half(mask, true));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        } else {
            _mm512_zextsi256_si512(lo)
        };
        // Rotation by ρ: term i goes to position (i + ρ) mod M.
        let idx = _mm512_and_si512(_mm512_sub_epi8(iota, _mm512_set1_epi8(rho as i8)), _mm512_set1_epi8(M as i8 - 1));
        // SAFETY: `d` is M writable bytes, the lanes written.
        unsafe { _mm512_mask_storeu_epi8(d.as_mut_ptr().cast(), lanes, _mm512_permutexvar_epi8(idx, v)) };
    }
}

/// `terms_z64` in 16-bit lanes, H = M / 32 registers per element (lane i of register h is term
/// 32h + i): for CPUs without byte permutes. Two-source 16-bit permutes move lanes across the
/// registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn terms_z64_words<const H: usize>(c: &[u64], bits: &[u8], draws: TermDraws<'_>, server0: bool, out: TermsOut<'_>) {
    const { assert!(H == 1 || H == 2) };
    let m = 32 * H;
    // The compared bits: M - 1 lanes.
    let low: u64 = u64::MAX >> (65 - m);
    let p = _mm512_set1_epi16(i16::from(P));
    let own = _mm512_set1_epi16(i16::from(server0));
    let one = _mm512_set1_epi16(1);
    let iota = _mm512_set_epi16(
        31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
        1, 0,
    );
    // Lane i of register h of `later(v, k)` reads lane 32h + i + k of the M lanes (0 past them):
    // the two-source permute's index bit 5 selects the next register.
    let zero = _mm512_setzero_si512();
    let shifted = |v: &[__m512i; H], k: i16| -> [__m512i; H] {
        let idx = _mm512_add_epi16(iota, _mm512_set1_epi16(k));
        std::array::from_fn(|h| _mm512_permutex2var_epi16(v[h], idx, *v.get(h + 1).unwrap_or(&zero)))
    };
    // Loads 32 bytes at `at` of `src` (the lanes of `mask` only) as 16-bit lanes.
    let widen = |src: &[u8], at: usize, mask: __mmask32| -> __m512i {
        // SAFETY: the callers' masks cover bytes of `src` only (checked by `terms_z64`'s sizes).
        unsafe { _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, src.as_ptr().add(at).cast())) }
    };
    let elements = out.d.chunks_exact_mut(m).zip(out.beta.iter_mut()).zip(c).zip(bits.chunks_exact(m - 1));
    let randomness = draws.heads.iter().zip(draws.s.chunks_exact(m)).zip(draws.u.chunks_exact(m));
    for ((((d, beta), &cv), bits), ((&head, s), u)) in elements.zip(randomness) {
        let flip = head & 1 == 1;
        let rho = i16::from(head >> 1) & (m as i16 - 1);
        *beta = head & 1;
        let cm = |h: usize| ((cv & low) >> (32 * h)) as __mmask32;
        let r: [__m512i; H] = std::array::from_fn(|h| widen(bits, 32 * h, (low >> (32 * h)) as __mmask32));
        let pr = r.map(|r| _mm512_sub_epi16(p, r));
        // w_i = r_i XOR c_i (server0 adds the public part); lane M - 1 stays 0.
        let mut suffix: [__m512i; H] =
            std::array::from_fn(|h| _mm512_mask_blend_epi16(cm(h), r[h], reduce16(_mm512_add_epi16(pr[h], own), p)));
        // Inclusive suffix sums U_i = sum of w_k for k >= i, mod p.
        for j in 0..m.trailing_zeros() {
            let moved = shifted(&suffix, 1 << j);
            suffix = std::array::from_fn(|h| reduce16(_mm512_add_epi16(suffix[h], moved[h]), p));
        }
        // S_i = U_{i+1}; the equality term's total is U_0.
        let later = shifted(&suffix, 1);
        let total = _mm512_permutexvar_epi16(zero, suffix[0]);
        let last = if flip { total } else { own };
        // `s` and `u` are M bytes each, the lanes read.
        let sv: [__m512i; H] = std::array::from_fn(|h| _mm512_add_epi16(widen(s, 32 * h, u32::MAX), one));
        let uv: [__m512i; H] = std::array::from_fn(|h| widen(u, 32 * h, u32::MAX));
        let v: [__m512i; H] = std::array::from_fn(|h| {
            // (1 - 2β)(c_i - r_i) + 1 with server0 holding the public part, plus S_i, mod p.
            let (base, adj) = if flip {
                (r[h], _mm512_maskz_mov_epi16(!cm(h), own))
            } else {
                (pr[h], _mm512_add_epi16(own, _mm512_maskz_mov_epi16(cm(h), own)))
            };
            let e = reduce16(_mm512_add_epi16(reduce16(_mm512_add_epi16(base, adj), p), later[h]), p);
            let e = if h == H - 1 { _mm512_mask_blend_epi16(1 << 31, e, last) } else { e };
            // A server1 mask of p (u = 0) is p mod p: reduce before the products.
            let mask = if server0 { uv[h] } else { reduce16(_mm512_sub_epi16(p, uv[h]), p) };
            mul_add_mod16(e, sv[h], mask)
        });
        // Rotation by ρ: term i goes to position (i + ρ) mod M.
        for h in 0..H {
            let at = _mm512_add_epi16(iota, _mm512_set1_epi16(32 * h as i16 - rho));
            let idx = _mm512_and_si512(at, _mm512_set1_epi16(m as i16 - 1));
            let terms = _mm512_cvtepi16_epi8(_mm512_permutex2var_epi16(v[0], idx, v[H - 1]));
            // SAFETY: `d` is M writable bytes, 32 per register.
            unsafe { _mm256_storeu_si256(d.as_mut_ptr().add(32 * h).cast(), terms) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn has_zero(p: u8, m: usize, d0: &[u8], d1: &[u8], out: &mut [u8]) {
    let pv = _mm512_set1_epi8(p as i8);
    for ((o, a), b) in out.iter_mut().zip(d0.chunks_exact(m)).zip(d1.chunks_exact(m)) {
        let mut found: __mmask64 = 0;
        for (a, b) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
            // Saturating: d0 + d1 <= 2(p - 1) may pass 255 (p = 131), and must not wrap to 0 or p.
            // SAFETY: both are 64 readable bytes.
            let s = unsafe {
                _mm512_adds_epu8(_mm512_loadu_si512(a.as_ptr().cast()), _mm512_loadu_si512(b.as_ptr().cast()))
            };
            found |= _mm512_cmpeq_epi8_mask(s, _mm512_setzero_si512()) | _mm512_cmpeq_epi8_mask(s, pv);
        }
        *o = u8::from(found != 0);
    }
}

/// [`has_zero`] for 32 terms per element: two elements per register.
#[target_feature(enable = "avx512f,avx512bw")]
fn has_zero_32(p: u8, d0: &[u8], d1: &[u8], out: &mut [u8]) {
    let pv = _mm512_set1_epi8(p as i8);
    for ((o, a), b) in out.chunks_mut(2).zip(d0.chunks(64)).zip(d1.chunks(64)) {
        let lanes: u64 = u64::MAX >> (64 - a.len());
        // Saturating as in `has_zero`. SAFETY: the masks read only the `a.len()` bytes of each.
        let s = unsafe {
            _mm512_adds_epu8(
                _mm512_maskz_loadu_epi8(lanes, a.as_ptr().cast()),
                _mm512_maskz_loadu_epi8(lanes, b.as_ptr().cast()),
            )
        };
        let found = (_mm512_cmpeq_epi8_mask(s, _mm512_setzero_si512()) | _mm512_cmpeq_epi8_mask(s, pv)) & lanes;
        for (k, o) in o.iter_mut().enumerate() {
            *o = u8::from((found >> (32 * k)) as u32 != 0);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn bit_corrections_z64(r: &[u64], share0: &mut [u8], nb: usize) {
    let low: u64 = u64::MAX >> (64 - nb);
    let p = _mm512_set1_epi8(P as i8);
    let one = _mm512_set1_epi8(1);
    for (bits, &rv) in share0.chunks_exact_mut(nb).zip(r) {
        // SAFETY: lanes nb and up are masked out, so exactly the nb bytes of `bits` are read and
        // written.
        unsafe {
            let s = _mm512_maskz_loadu_epi8(low, bits.as_ptr().cast());
            let v = reduce(_mm512_add_epi8(_mm512_sub_epi8(p, s), _mm512_maskz_mov_epi8(rv & low, one)), p);
            _mm512_mask_storeu_epi8(bits.as_mut_ptr().cast(), low, v);
        }
    }
}
