//! The wire encoding of CRT tensors: plane after plane, each residue as `M::RESIDUE_BYTES`
//! little-endian bytes (two for tf-encrypted's moduli, three for int100's 21-bit ones), and its
//! decoding with the check that every residue is reduced.
//!
//! Three-byte residues do not vectorise as plain loops; on CPUs with AVX-512 F and BW (runtime
//! detection) 16 residues at a time are packed or unpacked by a byte shuffle within 128-bit
//! lanes and a 32-bit permutation across them (`avx512`), with the same bytes and values as the
//! plain loops (the tests compare them).

use super::{CrtModuli, Modulus};
#[cfg(target_arch = "x86_64")]
use crate::cpu::Avx512Words;
use crate::error::CoreError;
use std::mem::MaybeUninit;

/// Writes each residue of `src` as `M::RESIDUE_BYTES` little-endian bytes into `dst`, every byte
/// of which it writes (`dst.len()` is `src.len()` times the width).
#[inline(always)]
pub(super) fn encode_residues<M: CrtModuli>(src: &[u32], dst: &mut [MaybeUninit<u8>]) {
    #[cfg(target_arch = "x86_64")]
    if M::RESIDUE_BYTES == 3 {
        if let Some(token) = Avx512Words::detect() {
            let done = avx512::encode3(token, src, dst);
            return encode_scalar::<M>(&src[done..], &mut dst[3 * done..]);
        }
    }
    encode_scalar::<M>(src, dst)
}

/// Reads the `M::RESIDUE_BYTES`-byte residues of `src` into `out`; false if any is not below `m`.
#[inline(always)]
pub(super) fn decode_residues<M: CrtModuli>(src: &[u8], out: &mut [MaybeUninit<u32>], m: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    if M::RESIDUE_BYTES == 3 {
        if let Some(token) = Avx512Words::detect() {
            let (done, max) = avx512::decode3(token, src, out);
            return max.max(decode_scalar::<M>(&src[3 * done..], &mut out[done..])) < m;
        }
    }
    decode_scalar::<M>(src, out) < m
}

/// `acc[i] = (acc[i] + residue i of src) mod m`; false if any residue is not below `m` (then
/// `acc` holds garbage, and the caller reports the encoding as invalid).
#[inline(always)]
pub(super) fn decode_add_residues<M: CrtModuli>(src: &[u8], acc: &mut [u32], m: Modulus) -> bool {
    #[cfg(target_arch = "x86_64")]
    if M::RESIDUE_BYTES == 3 {
        if let Some(token) = Avx512Words::detect() {
            let (done, max) = avx512::decode_add3(token, src, acc, m.m);
            return max.max(decode_add_scalar::<M>(&src[3 * done..], &mut acc[done..], m)) < m.m;
        }
    }
    decode_add_scalar::<M>(src, acc, m) < m.m
}

/// The error for the first residue of an `n`-element encoding that is not reduced (slow: for
/// the message only, once decoding has flagged one).
pub(super) fn unreduced_residue<M: CrtModuli>(bytes: &[u8], n: usize) -> CoreError {
    let width = M::RESIDUE_BYTES;
    for (plane, &m) in bytes.chunks(n.max(1) * width).zip(M::MODULI) {
        for s in plane.chunks_exact(width) {
            let mut word = [0u8; 8];
            word[..width].copy_from_slice(s);
            let r = u64::from_le_bytes(word);
            if r >= m {
                return CoreError::InvalidConfig(format!(
                    "{} encoding: residue {r} is not reduced modulo {m}",
                    M::NAME
                ));
            }
        }
    }
    CoreError::InvalidConfig(format!("{} encoding: a residue is not reduced", M::NAME))
}

/// Writes each residue as `M::RESIDUE_BYTES` little-endian bytes.
#[inline(always)]
fn encode_scalar<M: CrtModuli>(src: &[u32], dst: &mut [MaybeUninit<u8>]) {
    for (d, &r) in dst.chunks_exact_mut(M::RESIDUE_BYTES).zip(src) {
        for (o, b) in d.iter_mut().zip(r.to_le_bytes()) {
            o.write(b);
        }
    }
}

/// The `M::RESIDUE_BYTES`-byte little-endian residue `s`.
#[inline(always)]
fn read_residue<M: CrtModuli>(s: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word[..M::RESIDUE_BYTES].copy_from_slice(s);
    u32::from_le_bytes(word)
}

/// Reads `M::RESIDUE_BYTES`-byte little-endian residues into `out`; returns the largest.
#[inline(always)]
fn decode_scalar<M: CrtModuli>(src: &[u8], out: &mut [MaybeUninit<u32>]) -> u32 {
    let mut max = 0u32;
    for (o, s) in out.iter_mut().zip(src.chunks_exact(M::RESIDUE_BYTES)) {
        let v = read_residue::<M>(s);
        max = max.max(v);
        o.write(v);
    }
    max
}

/// `acc[i] = (acc[i] + residue i of src) mod m` for residues below `m`; returns the largest
/// residue read (if it is not below `m`, `acc` holds garbage).
#[inline(always)]
fn decode_add_scalar<M: CrtModuli>(src: &[u8], acc: &mut [u32], m: Modulus) -> u32 {
    let mut max = 0u32;
    for (a, s) in acc.iter_mut().zip(src.chunks_exact(M::RESIDUE_BYTES)) {
        let v = read_residue::<M>(s);
        max = max.max(v);
        *a = m.add(*a, v);
    }
    max
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! Three-byte residues, 16 per register: a byte shuffle moves bytes 0-2 of each 32-bit lane
    //! to the front of its 128-bit lane and a 32-bit permutation joins the four 12-byte runs (or
    //! the reverse, zeroing byte 3); BW's masked byte loads and stores touch exactly 48 bytes.
    use crate::cpu::x86::{pack3, unpack3};
    use crate::cpu::Avx512Words;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// Residues per register.
    const LANES: usize = 16;
    /// The low 48 bytes of a register.
    const BYTES48: __mmask64 = (1 << 48) - 1;

    /// Writes the whole registers' worth of `src` (a multiple of 16 residues, each below 2^24) as
    /// three bytes each to `dst`; returns how many residues it wrote.
    pub(super) fn encode3(_token: Avx512Words, src: &[u32], dst: &mut [MaybeUninit<u8>]) -> usize {
        let n = src.len().min(dst.len() / 3) / LANES * LANES;
        // SAFETY: the token proves F and BW; 16·k residues and 48·k bytes are in bounds.
        unsafe { encode3_kernel(&src[..n], &mut dst[..3 * n]) };
        n
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn encode3_kernel(src: &[u32], dst: &mut [MaybeUninit<u8>]) {
        let steps = src.len() / LANES;
        // SAFETY (whole body): step i reads residues 16i.. of `src` (src.len() = 16·steps) and
        // writes bytes 48i.. of `dst` (dst.len() = 48·steps): 64 bytes, whose last 16 the next
        // step overwrites, except in the last step, which writes exactly 48.
        unsafe {
            for i in 0..steps {
                let v = pack3(_mm512_loadu_si512(src.as_ptr().add(LANES * i).cast()));
                let d = dst.as_mut_ptr().add(3 * LANES * i);
                if i + 1 < steps {
                    _mm512_storeu_si512(d.cast(), v);
                } else {
                    _mm512_mask_storeu_epi8(d.cast(), BYTES48, v);
                }
            }
        }
    }

    /// Reads the whole registers' worth of three-byte residues of `src` into `out`; returns how
    /// many it read and the largest.
    pub(super) fn decode3(_token: Avx512Words, src: &[u8], out: &mut [MaybeUninit<u32>]) -> (usize, u32) {
        let n = out.len().min(src.len() / 3) / LANES * LANES;
        // SAFETY: the token proves F and BW; 16·k residues and 48·k bytes are in bounds.
        let max = unsafe { decode3_kernel(&src[..3 * n], &mut out[..n]) };
        (n, max)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode3_kernel(src: &[u8], out: &mut [MaybeUninit<u32>]) -> u32 {
        // SAFETY (whole body): each step reads 48 bytes of `src` and writes 16 slots of `out`,
        // both in bounds since src.len() = 48·k and out.len() = 16·k.
        unsafe {
            let mut max = _mm512_setzero_si512();
            for (s, o) in src.chunks_exact(3 * LANES).zip(out.chunks_exact_mut(LANES)) {
                let v = unpack3(_mm512_maskz_loadu_epi8(BYTES48, s.as_ptr().cast()));
                max = _mm512_max_epu32(max, v);
                _mm512_storeu_si512(o.as_mut_ptr().cast(), v);
            }
            _mm512_reduce_max_epu32(max)
        }
    }

    /// `acc[i] = (acc[i] + residue i) mod m` over the whole registers' worth of `src`, for
    /// `acc` below `m` < 2^21; returns how many it added and the largest residue read.
    pub(super) fn decode_add3(_token: Avx512Words, src: &[u8], acc: &mut [u32], m: u32) -> (usize, u32) {
        let n = acc.len().min(src.len() / 3) / LANES * LANES;
        // SAFETY: the token proves F and BW; 16·k residues and 48·k bytes are in bounds.
        let max = unsafe { decode_add3_kernel(&src[..3 * n], &mut acc[..n], m) };
        (n, max)
    }

    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode_add3_kernel(src: &[u8], acc: &mut [u32], m: u32) -> u32 {
        // SAFETY (whole body): as in `decode3_kernel`, with `acc` for `out`.
        unsafe {
            let modulus = _mm512_set1_epi32(m as i32);
            let mut max = _mm512_setzero_si512();
            for (s, a) in src.chunks_exact(3 * LANES).zip(acc.chunks_exact_mut(LANES)) {
                let v = unpack3(_mm512_maskz_loadu_epi8(BYTES48, s.as_ptr().cast()));
                max = _mm512_max_epu32(max, v);
                // (a + v) mod m as `Modulus::add`: the smaller of the sum and the sum minus m
                // (which wraps above it when the sum is below m).
                let sum = _mm512_add_epi32(_mm512_loadu_si512(a.as_ptr().cast()), v);
                let sum = _mm512_min_epu32(sum, _mm512_sub_epi32(sum, modulus));
                _mm512_storeu_si512(a.as_mut_ptr().cast(), sum);
            }
            _mm512_reduce_max_epu32(max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crt::{TfeModuli, WideModuli};

    /// Deterministic residues below `m`, with the extremes 0 and m - 1 among them.
    fn residues(n: usize, m: u32, seed: u64) -> Vec<u32> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match i % 7 {
                    0 => 0,
                    1 => m - 1,
                    _ => (x % u64::from(m)) as u32,
                }
            })
            .collect()
    }

    /// Encoding, decoding and decode-and-add agree with the plain loops on every length around
    /// whole registers, and flag an unreduced residue wherever it is.
    fn round_trips<M: CrtModuli>() {
        let m = Modulus::new(M::MODULI[0]);
        for n in [0, 1, 15, 16, 17, 47, 48, 100, 1000] {
            let src = residues(n, m.m, n as u64 + 1);
            let encoded = |encode: fn(&[u32], &mut [MaybeUninit<u8>])| {
                let mut bytes = vec![MaybeUninit::new(0xa5u8); n * M::RESIDUE_BYTES];
                encode(&src, &mut bytes);
                // SAFETY: every byte was initialised above.
                bytes.iter().map(|b| unsafe { b.assume_init() }).collect::<Vec<u8>>()
            };
            let (fast, plain) = (encoded(encode_residues::<M>), encoded(encode_scalar::<M>));
            assert_eq!(fast, plain, "{} encode, n = {n}", M::NAME);
            assert!(fast
                .chunks_exact(M::RESIDUE_BYTES)
                .zip(&src)
                .all(|(b, &r)| b == &r.to_le_bytes()[..M::RESIDUE_BYTES]));
            let mut out = vec![MaybeUninit::new(0u32); n];
            assert!(decode_residues::<M>(&fast, &mut out, m.m));
            // SAFETY: every slot was initialised above.
            assert!(out.iter().zip(&src).all(|(o, &s)| unsafe { o.assume_init() } == s), "{} decode, n = {n}", M::NAME);
            let acc0 = residues(n, m.m, 99);
            let mut acc = acc0.clone();
            assert!(decode_add_residues::<M>(&fast, &mut acc, m));
            let expected: Vec<u32> = acc0.iter().zip(&src).map(|(&a, &s)| (a + s) % m.m).collect();
            assert_eq!(acc, expected, "{} decode-add, n = {n}", M::NAME);
            for bad in [0, n / 2, n.saturating_sub(1)] {
                if n == 0 {
                    continue;
                }
                let mut bytes = fast.clone();
                let first = bad * M::RESIDUE_BYTES;
                bytes[first..first + M::RESIDUE_BYTES].copy_from_slice(&m.m.to_le_bytes()[..M::RESIDUE_BYTES]);
                assert!(!decode_residues::<M>(&bytes, &mut out, m.m), "{} unreduced at {bad} of {n}", M::NAME);
                assert!(!decode_add_residues::<M>(&bytes, &mut acc0.clone(), m), "{} unreduced at {bad}", M::NAME);
            }
        }
    }

    #[test]
    fn vector_and_plain_encodings_agree() {
        round_trips::<WideModuli>();
        round_trips::<TfeModuli>();
    }
}
