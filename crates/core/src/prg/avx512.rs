//! AVX-512 versions of the residue sampler: for 16-bit draws BW for the products and compares,
//! and VBMI2's 16-bit compression of the accepted candidates where the CPU has it (else they are
//! widened and compressed as 32-bit lanes); for 24-bit draws BW's byte shuffle to spread three
//! bytes to a 32-bit lane; for 32-bit draws F alone. They compute
//! exactly what the scalar sampler in the parent module computes (the tests compare them), so
//! streams do not depend on the CPU.

use crate::cpu::x86::{compress_store_u16, unpack3};
use crate::cpu::Avx512Tiers;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// 16-bit draws per register.
const LANES: usize = 32;
/// 32-bit draws per register.
const LANES32: usize = 16;

/// The sampler, callable once the CPU's features are proven ([`Avx512Tiers`]: the byte tier
/// for the 16-bit compression).
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(pub(super) Avx512Tiers);

impl Avx512 {
    /// Returns the token if the CPU has AVX-512 F, BW and VL (see [`Avx512Tiers`]).
    pub(super) fn detect() -> Option<Self> {
        Avx512Tiers::detect().map(Avx512)
    }

    /// Lemire's multiply-and-reject on 16-bit `draws` (see `residues`): writes the accepted
    /// candidates floor(w · modulus / 2^16), in draw order, to the front of `kept` and returns
    /// their number. `draws.len()` is a multiple of 32, `kept` has room for `draws.len() + 32`
    /// values (a compressed store writes a whole register), `modulus` is at most 2^12 and
    /// `threshold` = 2^16 mod `modulus`.
    pub(super) fn accept_draws16(self, draws: &[u16], modulus: u16, threshold: u16, kept: &mut [u16]) -> usize {
        assert!(draws.len().is_multiple_of(LANES) && kept.len() >= draws.len() + LANES, "accept_draws16 buffer sizes");
        // SAFETY: `self` exists only if the features of the tier called were detected at run
        // time; sizes checked above.
        unsafe {
            if self.0.bytes.is_some() {
                accept_draws16_compress16(draws, modulus, threshold, kept)
            } else {
                accept_draws16_compress32(draws, modulus, threshold, kept)
            }
        }
    }

    /// The same on 32-bit `draws`: candidates floor(w · modulus / 2^32), kept iff
    /// (w · modulus) mod 2^32 >= `threshold` = 2^32 mod `modulus`. `draws.len()` is a multiple of
    /// 16 and `kept` has room for `draws.len() + 16` values.
    pub(super) fn accept_draws32(
        self,
        draws: &[u32],
        modulus: u32,
        threshold: u32,
        kept: &mut [MaybeUninit<u32>],
    ) -> usize {
        assert!(
            draws.len().is_multiple_of(LANES32) && kept.len() >= draws.len() + LANES32,
            "accept_draws32 buffer sizes"
        );
        // SAFETY: `self` exists only if the features were detected at run time; sizes checked above.
        unsafe { accept_draws32(draws, modulus, threshold, kept) }
    }

    /// The same on the first `draws` 24-bit draws of `bytes`, three little-endian bytes each:
    /// candidates floor(w · modulus / 2^24), kept iff (w · modulus) mod 2^24 >= `threshold` =
    /// 2^24 mod `modulus`. `draws` is a multiple of 16, `bytes` holds 16 bytes beyond the draws
    /// (each step loads 64 bytes for 48), `modulus` is below 2^24 and `kept` has room for
    /// `draws + 16` values.
    pub(super) fn accept_draws24(
        self,
        bytes: &[u8],
        draws: usize,
        modulus: u32,
        threshold: u32,
        kept: &mut [MaybeUninit<u32>],
    ) -> usize {
        assert!(
            draws.is_multiple_of(LANES32)
                && bytes.len() >= 3 * draws + LANES32
                && kept.len() >= draws + LANES32
                && modulus < 1 << 24,
            "accept_draws24 buffer sizes"
        );
        // SAFETY: `self` exists only if the features were detected at run time; sizes checked above.
        unsafe { accept_draws24(bytes, draws, modulus, threshold, kept) }
    }
}

/// The candidates floor(w · modulus / 2^16) of 32 16-bit draws and the mask of the accepted ones.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn candidates16(chunk: &[u16], modulus: u16, threshold: u16) -> (__m512i, __mmask32) {
    let m = _mm512_set1_epi16(modulus as i16);
    // SAFETY: `chunk` holds 32 u16 (64 bytes); unaligned loads are allowed.
    let w = unsafe { _mm512_loadu_si512(chunk[..LANES].as_ptr().cast()) };
    // w · modulus < 2^28: its low 16 bits decide acceptance, its high 16 bits are the candidate.
    let keep = _mm512_cmpge_epu16_mask(_mm512_mullo_epi16(w, m), _mm512_set1_epi16(threshold as i16));
    (_mm512_mulhi_epu16(w, m), keep)
}

/// `accept_draws16` with VBMI2's 16-bit compression: one compressed store per 32 draws.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2")]
fn accept_draws16_compress16(draws: &[u16], modulus: u16, threshold: u16, kept: &mut [u16]) -> usize {
    let mut filled = 0;
    for chunk in draws.chunks_exact(LANES) {
        let (candidates, keep) = candidates16(chunk, modulus, threshold);
        // SAFETY: filled <= the draws seen so far, so 32 values from `filled` fit in `kept`
        // (room for draws.len() + 32, checked by the caller).
        unsafe {
            _mm512_storeu_si512(kept.as_mut_ptr().add(filled).cast(), _mm512_maskz_compress_epi16(keep, candidates))
        };
        filled += keep.count_ones() as usize;
    }
    filled
}

/// `accept_draws16` with AVX-512 F's 32-bit compression ([`compress_store_u16`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn accept_draws16_compress32(draws: &[u16], modulus: u16, threshold: u16, kept: &mut [u16]) -> usize {
    let mut filled = 0;
    for chunk in draws.chunks_exact(LANES) {
        let (candidates, keep) = candidates16(chunk, modulus, threshold);
        // SAFETY: filled <= the draws seen so far, so the 32 values from `filled` that the store
        // may write fit in `kept` (room for draws.len() + 32, checked by the caller).
        filled += unsafe { compress_store_u16(keep, candidates, kept.as_mut_ptr().add(filled)) };
    }
    filled
}

#[target_feature(enable = "avx512f")]
fn accept_draws32(draws: &[u32], modulus: u32, threshold: u32, kept: &mut [MaybeUninit<u32>]) -> usize {
    let m = _mm512_set1_epi64(i64::from(modulus));
    let t = _mm512_set1_epi32(threshold as i32);
    // Odd 32-bit lanes (the high halves of 64-bit lanes).
    const ODD: __mmask16 = 0xaaaa;
    let mut filled = 0;
    for chunk in draws.chunks_exact(LANES32) {
        // SAFETY: `chunk` holds 16 u32 (64 bytes); unaligned loads are allowed.
        let w = unsafe { _mm512_loadu_si512(chunk.as_ptr().cast()) };
        // The 64-bit products of the even draws and of the odd ones (`mul_epu32` reads the low
        // half of each 64-bit lane).
        let even = _mm512_mul_epu32(w, m);
        let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(w), m);
        // Each draw's product split back into draw order: low halves decide, high halves are
        // the candidates.
        let low = _mm512_mask_blend_epi32(ODD, even, _mm512_slli_epi64::<32>(odd));
        let high = _mm512_mask_blend_epi32(ODD, _mm512_srli_epi64::<32>(even), odd);
        let keep = _mm512_cmpge_epu32_mask(low, t);
        let candidates = _mm512_maskz_compress_epi32(keep, high);
        // SAFETY: filled <= the draws seen so far, so 16 values from `filled` fit in `kept`
        // (room for draws.len() + 16, checked by the caller).
        unsafe { _mm512_storeu_si512(kept.as_mut_ptr().add(filled).cast(), candidates) };
        filled += keep.count_ones() as usize;
    }
    filled
}

#[target_feature(enable = "avx512f,avx512bw")]
fn accept_draws24(bytes: &[u8], draws: usize, modulus: u32, threshold: u32, kept: &mut [MaybeUninit<u32>]) -> usize {
    let (m, t) = (_mm512_set1_epi64(i64::from(modulus)), _mm512_set1_epi32(threshold as i32));
    let low_bits = _mm512_set1_epi64(0x00ff_ffff);
    let mut filled = 0;
    for step in 0..draws / LANES32 {
        // SAFETY: bytes 48·step .. 48·step + 64 are in `bytes` (16 bytes of slack past the draws,
        // checked by the caller); the 16 past the step's 48 are not read by the unpacking.
        let packed = unsafe { _mm512_loadu_si512(bytes.as_ptr().add(3 * LANES32 * step).cast()) };
        let w = unpack3(packed);
        // w · modulus < 2^48: the products of the even and of the odd draws, each in a 64-bit
        // lane; low 24 bits decide, the bits above are the candidates (below 2^24).
        let even = _mm512_mul_epu32(w, m);
        let odd = _mm512_mul_epu32(_mm512_srli_epi64::<32>(w), m);
        let low =
            _mm512_or_si512(_mm512_and_si512(even, low_bits), _mm512_slli_epi64::<32>(_mm512_and_si512(odd, low_bits)));
        let high =
            _mm512_or_si512(_mm512_srli_epi64::<24>(even), _mm512_slli_epi64::<32>(_mm512_srli_epi64::<24>(odd)));
        let keep = _mm512_cmpge_epu32_mask(low, t);
        let candidates = _mm512_maskz_compress_epi32(keep, high);
        // SAFETY: filled <= the draws seen so far, so 16 values from `filled` fit in `kept`
        // (room for bytes.len() / 3 + 16, checked by the caller).
        unsafe { _mm512_storeu_si512(kept.as_mut_ptr().add(filled).cast(), candidates) };
        filled += keep.count_ones() as usize;
    }
    filled
}
