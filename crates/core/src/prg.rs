//! Seeded pseudo-random streams on ChaCha12 (`rand_chacha`).
//!
//! A [`PrgKey`] plus a 64-bit stream id (ChaCha's nonce) addresses an independent stream; tensors
//! are filled from it in parallel chunks, each chunk seeking to its own word position, so the
//! output is the same whatever the number of threads. Word-position map (32-bit words):
//! - `u64` / `u128` fills: element i starts at word 2i / 4i (one contiguous stream);
//! - residue fills (rejection sampling, so a chunk's word count varies): chunk c of plane j starts
//!   at word `((j << 24) | c) << 36`, giving every chunk 2^36 words of its own;
//! - key derivation: word 2^67, outside both.
//!
//! Limits that follow: a tensor has fewer than 2^38 elements and fewer than 64 residue planes.

use rand::{RngCore, SeedableRng, TryRngCore};
use rand_chacha::ChaCha12Rng;
use rayon::prelude::*;
use strength_reduce::StrengthReducedU32;

/// The stream cipher behind every pond PRG.
pub type PrgCipher = ChaCha12Rng;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;
/// Word position where derived keys are read, above every tensor fill.
const DERIVE_WORD_POS: u128 = 1 << 67;

/// A 256-bit PRG key. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrgKey([u8; 32]);

impl std::fmt::Debug for PrgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrgKey(..)")
    }
}

impl PrgKey {
    /// A fresh key from the operating system's randomness, for real sessions.
    ///
    /// Panics only if the OS cannot provide randomness (then nothing secure can run).
    pub fn from_os() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut key).expect("the operating system's random number generator failed");
        PrgKey(key)
    }

    /// A key derived from a user seed, for reproducible runs (not secret if the seed is not).
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = PrgCipher::seed_from_u64(seed);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        PrgKey(key)
    }

    /// A key from raw bytes (e.g. received from a peer).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PrgKey(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// An independent key for the purpose `label`.
    pub fn derive(&self, label: u64) -> PrgKey {
        let mut rng = self.rng(label);
        rng.set_word_pos(DERIVE_WORD_POS);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        PrgKey(key)
    }

    /// The cipher positioned at the start of `stream`.
    pub fn rng(&self, stream: u64) -> PrgCipher {
        let mut rng = PrgCipher::from_seed(self.0);
        rng.set_stream(stream);
        rng
    }
}

/// Fills `out` with uniform `u64`s from `stream` of `key`.
pub fn fill_u64(key: &PrgKey, stream: u64, out: &mut [u64]) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut rng = key.rng(stream);
        rng.set_word_pos(2 * (c * CHUNK) as u128);
        rng.fill_bytes(bytemuck::cast_slice_mut(chunk));
        chunk.iter_mut().for_each(|w| *w = u64::from_le(*w));
    });
}

/// Fills `out` with uniform `u128`s from `stream` of `key`.
pub fn fill_u128(key: &PrgKey, stream: u64, out: &mut [u128]) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut rng = key.rng(stream);
        rng.set_word_pos(4 * (c * CHUNK) as u128);
        rng.fill_bytes(bytemuck::cast_slice_mut(chunk));
        chunk.iter_mut().for_each(|w| *w = u128::from_le(*w));
    });
}

/// Fills `out` with residues uniform in [0, modulus) by rejection sampling of 32-bit words
/// (no modulo bias). `plane` separates the residue planes of one CRT tensor.
pub fn fill_residues(key: &PrgKey, stream: u64, plane: u64, modulus: u32, out: &mut [u64]) {
    assert!(modulus >= 2, "a residue modulus is at least 2");
    let reducer = StrengthReducedU32::new(modulus);
    // Largest multiple of the modulus that fits in 2^32: words at or above it are rejected.
    let zone = (1u64 << 32) / u64::from(modulus) * u64::from(modulus);
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut rng = key.rng(stream);
        rng.set_word_pos((((plane as u128) << 24) | c as u128) << 36);
        let mut words = [0u32; 64];
        let mut used = words.len();
        for slot in chunk.iter_mut() {
            loop {
                if used == words.len() {
                    rng.fill_bytes(bytemuck::cast_slice_mut(&mut words));
                    used = 0;
                }
                let w = u32::from_le(words[used]);
                used += 1;
                if u64::from(w) < zone {
                    *slot = u64::from(w % reducer);
                    break;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_independent() {
        let key = PrgKey::from_seed(7);
        let mut a = vec![0u64; 100_000];
        let mut b = vec![0u64; 100_000];
        fill_u64(&key, 3, &mut a);
        fill_u64(&key, 3, &mut b);
        assert_eq!(a, b);
        fill_u64(&key, 4, &mut b);
        assert_ne!(a, b);
        assert_ne!(key.derive(1), key.derive(2));
    }

    #[test]
    fn chunked_fill_equals_one_sequential_stream() {
        let key = PrgKey::from_seed(1);
        let mut parallel = vec![0u64; 3 * CHUNK + 5];
        fill_u64(&key, 9, &mut parallel);
        let mut rng = key.rng(9);
        let sequential: Vec<u64> = (0..parallel.len()).map(|_| rng.next_u64()).collect();
        assert_eq!(parallel, sequential);
    }

    #[test]
    fn residues_are_reduced_and_cover_the_range() {
        let key = PrgKey::from_seed(2);
        let mut r = vec![0u64; 50_000];
        fill_residues(&key, 0, 0, 1201, &mut r);
        assert!(r.iter().all(|&x| x < 1201));
        let mut seen = vec![false; 1201];
        r.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s), "50k draws hit every residue of 1201 with overwhelming probability");
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", PrgKey::from_seed(3)), "PrgKey(..)");
    }
}
