//! Seeded pseudo-random streams on ChaCha8 (`rand_chacha`).
//!
//! ChaCha with 8 rounds: the best known attack reaches 7 rounds (Aumasson, "Too Much Crypto",
//! 2019, recommends 8), and it is 1.5x faster than ChaCha12 here, where the PRG is the dealer's
//! and the comparison's main cost (`pond bench kernels` prints its throughput).
//!
//! The stream is `rand_chacha`'s [`ChaCha8Rng`]: 64-bit block counter, the stream id as the
//! 64-bit nonce. Tensor fills write the same bytes with RustCrypto's `chacha20` cipher, whose
//! AVX-512 backend (16 blocks per pass, chosen at run time when the build sets
//! `--cfg chacha20_avx512`, as this repository's `.cargo/config.toml` does) is 2.2x faster
//! here than `rand_chacha`'s AVX2 code. That cipher is the IETF layout (32-bit counter, 96-bit
//! nonce); with the nonce's first word set to the upper half of the 64-bit block counter, its
//! blocks are exactly `ChaCha8Rng`'s (see `Keystream`; tests compare the two).
//!
//! A [`PrgKey`] plus a 64-bit stream id (ChaCha's nonce) addresses an independent stream; tensors
//! are filled from it in parallel chunks, each chunk seeking to its own word position, so the
//! output is the same whatever the number of threads. Word-position map (32-bit words):
//! - `u64` / `u128` fills: element i starts at word 2i / 4i (one contiguous stream);
//! - residue fills (rejection sampling, so a chunk's word count varies): chunk c of plane j starts
//!   at word `((j << 24) | c) << 36`, giving every chunk 2^36 words of its own (it reads its words
//!   in order from there, in blocks of 1024 (768 for 24-bit draws), and discards what is left of
//!   the last block);
//! - key derivation: word 2^67, outside both.
//!
//! Limits that follow: a tensor has fewer than 2^38 elements and fewer than 64 residue planes.

#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::parallel::{for_each_chunk_mut, vec_written_by};
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use rand::{RngCore, SeedableRng, TryRngCore};
use rand_chacha::ChaCha8Rng;
use std::mem::MaybeUninit;

/// The stream cipher behind every pond PRG (ChaCha8, see the module docs).
pub type PrgCipher = ChaCha8Rng;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 14;
/// 32-bit words of keystream per block read by the residue sampler.
const BLOCK_WORDS: usize = 1024;
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

/// Bytes in one run of the IETF cipher's 32-bit block counter (2^32 blocks of 64 bytes).
const SEGMENT_BYTES: u128 = 1 << 38;
/// Bytes in the whole stream: `ChaCha8Rng`'s 64-bit block counter wraps after 2^64 blocks.
const STREAM_BYTES: u128 = 1 << 70;

/// The keystream of `stream` of `key` from a 32-bit word position on: the bytes
/// `key.rng(stream)` gives after `set_word_pos`, computed by `chacha20`.
///
/// The 64-bit block counter b maps to the IETF cipher as counter = b mod 2^32 and nonce =
/// (b >> 32, stream), so a new cipher starts wherever b >> 32 changes. The IETF cipher cannot
/// produce the last block of its counter range (b mod 2^32 = 2^32 - 1); that block, reached
/// only 256 GiB into a segment, comes from `rand_chacha`.
struct Keystream<'k> {
    key: &'k PrgKey,
    stream: u64,
    /// Byte position of the next output byte in the stream.
    pos: u128,
    /// The cipher of the current segment, positioned at `pos`.
    cipher: Option<chacha20::ChaCha8>,
}

impl<'k> Keystream<'k> {
    fn at(key: &'k PrgKey, stream: u64, word_pos: u128) -> Self {
        Keystream { key, stream, pos: (word_pos * 4) % STREAM_BYTES, cipher: None }
    }

    /// Writes the next `out.len()` keystream bytes into `out`.
    fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            let (segment, offset) = ((self.pos / SEGMENT_BYTES) as u32, (self.pos % SEGMENT_BYTES) as u64);
            let last_block = SEGMENT_BYTES as u64 - 64;
            let len = if offset < last_block {
                let len = out.len().min((last_block - offset) as usize);
                let stream = self.stream;
                let cipher = self.cipher.get_or_insert_with(|| {
                    let mut nonce = [0u8; 12];
                    nonce[..4].copy_from_slice(&segment.to_le_bytes());
                    nonce[4..].copy_from_slice(&stream.to_le_bytes());
                    let mut cipher = chacha20::ChaCha8::new(&self.key.0.into(), &nonce.into());
                    cipher.seek(offset);
                    cipher
                });
                cipher.write_keystream(&mut out[..len]);
                len
            } else {
                // At most one block, from the word holding `pos` on (`rand_chacha` reads whole words).
                let len = out.len().min((SEGMENT_BYTES as u64 - offset) as usize);
                let skip = (self.pos % 4) as usize;
                let mut rng = self.key.rng(self.stream);
                rng.set_word_pos(self.pos / 4);
                let mut block = [0u8; 68];
                rng.fill_bytes(&mut block[..skip + len]);
                out[..len].copy_from_slice(&block[skip..skip + len]);
                self.cipher = None;
                len
            };
            out = &mut out[len..];
            self.pos = (self.pos + len as u128) % STREAM_BYTES;
        }
    }
}

/// Fills `out` with uniform `u64`s from `stream` of `key`.
pub fn fill_u64(key: &PrgKey, stream: u64, out: &mut [u64]) {
    for_each_chunk_mut(out, CHUNK, |c, chunk| {
        Keystream::at(key, stream, 2 * (c * CHUNK) as u128).fill(bytemuck::cast_slice_mut(chunk));
        chunk.iter_mut().for_each(|w| *w = u64::from_le(*w));
    });
}

/// Fills `out` with uniform `u128`s from `stream` of `key`.
pub fn fill_u128(key: &PrgKey, stream: u64, out: &mut [u128]) {
    for_each_chunk_mut(out, CHUNK, |c, chunk| {
        Keystream::at(key, stream, 4 * (c * CHUNK) as u128).fill(bytemuck::cast_slice_mut(chunk));
        chunk.iter_mut().for_each(|w| *w = u128::from_le(*w));
    });
}

/// Fills `out` with residues uniform in [0, modulus), without modulo bias. `plane` separates the
/// residue planes of one CRT tensor.
///
/// Sampling is Lemire's multiply-and-reject on `L`-bit draws w: the candidate is
/// floor(w * modulus / 2^L), kept iff (w * modulus) mod 2^L >= 2^L mod modulus, so every residue
/// has exactly floor(2^L / modulus) accepted draws. Moduli up to 2^12 use L = 16 (rejection rate
/// below 1/16, half the keystream), two draws per 32-bit word, low half first; moduli up to 2^21
/// use L = 24 (rejection rate below 1/8; below 2^-15 for pond's moduli just under 2^21), three
/// little-endian keystream bytes per draw; larger moduli use
/// L = 32. Draws are read in order from the chunk's own word position (see the module doc), so
/// the output depends only on the key, stream, plane and modulus. On CPUs with AVX-512 F, BW and
/// VL a block's draws are tested 32 (L = 16) or 16 (L = 24, 32) at a time (`avx512`), same
/// output.
pub fn residues(key: &PrgKey, stream: u64, plane: u64, modulus: u32, n: usize) -> Vec<u32> {
    // SAFETY: `fill_residues` writes every slot of `out` (each chunk loops until it is full).
    unsafe { vec_written_by(n, |out| fill_residues(key, stream, plane, modulus, out)) }
}

/// [`residues`] into `out`, every slot of which it writes (and reads none).
fn fill_residues(key: &PrgKey, stream: u64, plane: u64, modulus: u32, out: &mut [MaybeUninit<u32>]) {
    assert!(modulus >= 2, "a residue modulus is at least 2");
    let bits = draw_bits(modulus);
    let threshold = (1u64 << bits) % u64::from(modulus);
    #[cfg(target_arch = "x86_64")]
    let vector = avx512::Avx512::detect();
    for_each_chunk_mut(out, CHUNK, |c, chunk| {
        let mut keystream = Keystream::at(key, stream, (((plane as u128) << 24) | c as u128) << 36);
        let mut words = [0u32; BLOCK_WORDS];
        #[cfg(target_arch = "x86_64")]
        let (mut kept16, mut kept32) = ([0u16; 2 * BLOCK_WORDS + 32], [MaybeUninit::<u32>::uninit(); BLOCK_WORDS + 16]);
        // 24-bit draws read whole draws per block: 3/4 of the words, 1024 draws (48 ChaCha
        // blocks, whole passes of the 16-block AVX-512 backend).
        let block_words = if bits == 24 { BLOCK_WORDS * 3 / 4 } else { BLOCK_WORDS };
        let mut filled = 0;
        while filled < chunk.len() {
            let block_words = piece_words(bits, chunk.len() - filled).min(block_words);
            keystream.fill(bytemuck::cast_slice_mut(&mut words[..block_words]));
            let (words, slack) = (&words[..block_words], &words[..]);
            #[cfg(target_arch = "x86_64")]
            if let Some(token) = vector {
                // On little-endian x86 the block's bytes are the draws in the scalar path's
                // order: 32-bit words, or 16-bit halves with each word's low half first.
                let rest = &mut chunk[filled..];
                filled += match bits {
                    16 => {
                        let draws = bytemuck::cast_slice(words);
                        let n = token.accept_draws16(draws, modulus as u16, threshold as u16, &mut kept16);
                        write_kept(rest, &kept16[..n])
                    }
                    24 => {
                        // The whole buffer: the kernel's 64-byte loads read past the block's end.
                        let draws = block_words * 4 / 3;
                        // The kernels' compressed stores write a register past the accepted values.
                        crate::parallel::write_front(rest, draws + 16, &mut kept32, |kept| {
                            token.accept_draws24(bytemuck::cast_slice(slack), draws, modulus, threshold as u32, kept)
                        })
                    }
                    _ => crate::parallel::write_front(rest, words.len() + 16, &mut kept32, |kept| {
                        token.accept_draws32(words, modulus, threshold as u32, kept)
                    }),
                };
                continue;
            }
            filled = match bits {
                16 => {
                    let words = words.iter().map(|&w| u32::from_le(w));
                    let draws = words.flat_map(|w| [u64::from(w & 0xffff), u64::from(w >> 16)]);
                    accept_draws(draws, 16, u64::from(modulus), threshold, chunk, filled)
                }
                24 => {
                    let bytes: &[u8] = bytemuck::cast_slice(words);
                    let draws =
                        bytes.chunks_exact(3).map(|b| u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16);
                    accept_draws(draws, 24, u64::from(modulus), threshold, chunk, filled)
                }
                _ => {
                    let draws = words.iter().map(|&w| u64::from(u32::from_le(w)));
                    accept_draws(draws, 32, u64::from(modulus), threshold, chunk, filled)
                }
            };
        }
    });
}

/// Keystream words that the residue sampler reads next for `wanted` more residues: enough for
/// `wanted` draws if none were rejected, in whole groups of 16 words (12 for 24-bit draws), so
/// that a short tensor reads a few ChaCha blocks and not a whole block of [`BLOCK_WORDS`]. The
/// draws are the stream's in order whatever the pieces, so the output does not depend on them.
fn piece_words(bits: u32, wanted: usize) -> usize {
    match bits {
        16 => wanted.div_ceil(2).next_multiple_of(16),
        24 => wanted.div_ceil(16) * 12,
        _ => wanted.next_multiple_of(16),
    }
}

/// Bits per draw of the residue sampler for `modulus` (see [`residues`]).
fn draw_bits(modulus: u32) -> u32 {
    if modulus <= 1 << 12 {
        16
    } else if modulus <= 1 << 21 {
        24
    } else {
        32
    }
}

/// Writes the first of `kept` to `out`, as many as fit; returns how many.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn write_kept(out: &mut [MaybeUninit<u32>], kept: &[u16]) -> usize {
    let take = kept.len().min(out.len());
    for (o, &v) in out[..take].iter_mut().zip(kept) {
        o.write(u32::from(v));
    }
    take
}

/// Appends the accepted candidates of `draws` to `out[filled..]` and returns the new fill level.
/// Branchless: every candidate is written, and the fill level advances only if it is accepted.
#[inline(always)]
fn accept_draws(
    draws: impl Iterator<Item = u64>,
    bits: u32,
    modulus: u64,
    threshold: u64,
    out: &mut [MaybeUninit<u32>],
    mut filled: usize,
) -> usize {
    let low = (1u64 << bits) - 1;
    for w in draws {
        let Some(slot) = out.get_mut(filled) else { break };
        let x = w * modulus;
        slot.write((x >> bits) as u32);
        filled += usize::from(x & low >= threshold);
    }
    filled
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

    /// `rand_chacha`'s bytes from `word_pos` on: the reference for `Keystream`.
    fn reference_bytes(key: &PrgKey, stream: u64, word_pos: u128, n: usize) -> Vec<u8> {
        let mut rng = key.rng(stream);
        rng.set_word_pos(word_pos);
        let mut out = vec![0u8; n];
        rng.fill_bytes(&mut out);
        out
    }

    #[test]
    fn keystream_equals_rand_chacha_everywhere() {
        let key = PrgKey::from_seed(12);
        let segment_words = 1u128 << 36;
        let stream_words = 1u128 << 68;
        // Starts: the origin, mid-block, inside a later segment, just before a segment's last
        // block (the `rand_chacha` fallback, then the next segment), the key-derivation
        // position, and the stream's wrap-around.
        let starts = [0, 5, 3 * segment_words + 1000, 2 * segment_words - 16 - 3, DERIVE_WORD_POS, stream_words - 20];
        for (i, &start) in starts.iter().enumerate() {
            for len in [1, 63, 64, 65, 1000, 4096 + 7] {
                let stream = 0x0123_4567_89ab_cdef ^ i as u64;
                let mut got = vec![0u8; len];
                Keystream::at(&key, stream, start).fill(&mut got);
                assert_eq!(got, reference_bytes(&key, stream, start, len), "word {start}, {len} bytes");
                // The same bytes in pieces from one `Keystream`.
                let mut pieces = vec![0u8; len];
                let mut ks = Keystream::at(&key, stream, start);
                pieces.chunks_mut(37).for_each(|piece| ks.fill(piece));
                assert_eq!(pieces, got, "word {start}, {len} bytes in pieces");
            }
        }
    }

    #[test]
    fn residues_are_reduced_and_cover_the_range() {
        let key = PrgKey::from_seed(2);
        let r = residues(&key, 0, 0, 1201, 50_000);
        assert!(r.iter().all(|&x| x < 1201));
        let mut seen = vec![false; 1201];
        r.iter().for_each(|&x| seen[x as usize] = true);
        assert!(seen.iter().all(|&s| s), "50k draws hit every residue of 1201 with overwhelming probability");
    }

    /// The values of slots that have been written.
    ///
    /// # Safety
    /// Every slot of `slots` must be initialised.
    unsafe fn written(slots: &[MaybeUninit<u32>]) -> Vec<u32> {
        // SAFETY: the caller guarantees that every slot is initialised.
        slots.iter().map(|e| unsafe { e.assume_init() }).collect()
    }

    /// The plain scalar reference of `fill_residues`: one chunk after the other, word by word.
    fn residues_reference(key: &PrgKey, stream: u64, plane: u64, modulus: u32, n: usize) -> Vec<u32> {
        let bits = draw_bits(modulus);
        let threshold = (1u64 << bits) % u64::from(modulus);
        let mut out = Vec::with_capacity(n);
        for c in 0..n.div_ceil(CHUNK) {
            let mut rng = key.rng(stream);
            rng.set_word_pos((((plane as u128) << 24) | c as u128) << 36);
            let want = (n - c * CHUNK).min(CHUNK);
            let mut got = 0;
            let mut pending = Vec::new();
            // 24-bit draws: the stream's bytes, three at a time, little-endian.
            let mut bytes = std::collections::VecDeque::new();
            while got < want {
                if pending.is_empty() && bits == 24 {
                    while bytes.len() < 3 {
                        bytes.extend(rng.next_u32().to_le_bytes());
                    }
                    let b: Vec<u32> = bytes.drain(..3).map(u32::from).collect();
                    pending = vec![b[0] | b[1] << 8 | b[2] << 16];
                }
                if pending.is_empty() {
                    let w = rng.next_u32();
                    pending = if bits == 16 { vec![w >> 16, w & 0xffff] } else { vec![w] };
                }
                let x = u64::from(pending.pop().unwrap()) * u64::from(modulus);
                if x % (1u64 << bits) >= threshold {
                    out.push((x >> bits) as u32);
                    got += 1;
                }
            }
        }
        out
    }

    #[test]
    fn residues_match_the_scalar_reference_for_any_thread_count() {
        let key = PrgKey::from_seed(5);
        let moduli = [
            (0, 1201u32),
            (3, 1039),
            (1, 2097143),
            (2, 4096),
            (4, 4097),
            (5, 2),
            (6, u32::MAX),
            (7, 1 << 21),
            (8, (1 << 21) + 1),
        ];
        for (plane, modulus) in moduli {
            let n = 2 * CHUNK + 77;
            let expected = residues_reference(&key, 4, plane, modulus, n);
            let parallel = residues(&key, 4, plane, modulus, n);
            assert_eq!(parallel, expected, "modulus {modulus}");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            let single = pool.install(|| residues(&key, 4, plane, modulus, n));
            assert_eq!(single, expected, "modulus {modulus}, one thread");
            // Short tensors read short pieces of keystream (`piece_words`), some ending within a
            // block of the sampler, some past one; each is a prefix of the long one.
            for short in [1, 15, 16, 17, 128, 700, 1000, 1100, 2049] {
                assert_eq!(residues(&key, 4, plane, modulus, short), expected[..short], "modulus {modulus}, {short}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_sampler_equals_the_scalar_one() {
        let Some(token) = avx512::Avx512::detect() else {
            eprintln!("no AVX-512 F/BW/VL on this CPU: only the scalar sampler runs");
            return;
        };
        if token.0.bytes.is_some() {
            vector_sampler_equals_the_scalar_one_on(avx512::Avx512(token.0.words_only()));
        } else {
            eprintln!("no AVX-512 VBMI/VBMI2 on this CPU: the 16-bit compression is not tested");
        }
        vector_sampler_equals_the_scalar_one_on(token);
    }

    #[cfg(target_arch = "x86_64")]
    fn vector_sampler_equals_the_scalar_one_on(token: avx512::Avx512) {
        let key = PrgKey::from_seed(13);
        let mut words = vec![0u64; 256];
        fill_u64(&key, 1, &mut words);
        // Draws at the edges of acceptance: all zeros, all ones, and values just around the
        // rejection threshold of each modulus, then uniform ones.
        let mut draws: Vec<u16> = bytemuck::cast_slice(&words).to_vec();
        draws[..32].fill(0);
        draws[32..64].fill(u16::MAX);
        for modulus in [2u32, 3, 67, 1201, 2039, 4095, 4096] {
            let threshold = (1u64 << 16) % u64::from(modulus);
            for (i, d) in draws[64..128].iter_mut().enumerate() {
                // w·m mod 2^16 lands just below or at the threshold for some of these.
                *d = ((threshold as usize + i) as u64 * 65521 % 65536) as u16;
            }
            let mut kept = vec![0u16; draws.len() + 32];
            let n = token.accept_draws16(&draws, modulus as u16, threshold as u16, &mut kept);
            let mut expected = vec![MaybeUninit::<u32>::uninit(); draws.len()];
            let filled =
                accept_draws(draws.iter().map(|&w| u64::from(w)), 16, u64::from(modulus), threshold, &mut expected, 0);
            // SAFETY: accept_draws wrote slots 0..filled (and possibly the next one).
            let expected = unsafe { written(&expected[..filled]) };
            assert_eq!(n, filled, "modulus {modulus}");
            assert!(kept[..n].iter().zip(&expected).all(|(&k, &e)| u32::from(k) == e), "modulus {modulus}");
        }
        // 24-bit draws, for moduli in (2^12, 2^21]: three bytes each.
        let mut bytes: Vec<u8> = bytemuck::cast_slice(&words).to_vec();
        bytes[..48].fill(0);
        bytes[48..96].fill(u8::MAX);
        for modulus in [4097u32, 65537, 2097091, 2097143, 1 << 21] {
            let threshold = (1u64 << 24) % u64::from(modulus);
            for (i, d) in bytes[96..288].chunks_exact_mut(3).enumerate() {
                // w·m mod 2^24 lands just below or at the threshold for some of these.
                let w = (threshold + i as u64) * 16777213 % (1 << 24);
                d.copy_from_slice(&w.to_le_bytes()[..3]);
            }
            let draws = (bytes.len() - 16) / 3 / 16 * 16;
            let mut kept = vec![MaybeUninit::<u32>::uninit(); draws + 16];
            let n = token.accept_draws24(&bytes, draws, modulus, threshold as u32, &mut kept);
            let bytes = &bytes[..3 * draws];
            let draws = bytes.chunks_exact(3).map(|b| u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16);
            let mut expected = vec![MaybeUninit::<u32>::uninit(); bytes.len() / 3];
            let filled = accept_draws(draws, 24, u64::from(modulus), threshold, &mut expected, 0);
            // SAFETY: accept_draws wrote slots 0..filled (and possibly the next one), the kernel
            // slots 0..n.
            let (expected, kept) = unsafe { (written(&expected[..filled]), written(&kept[..n])) };
            assert_eq!((n, kept), (filled, expected), "modulus {modulus}");
        }
        // 32-bit draws, for moduli above 2^21.
        let mut draws: Vec<u32> = bytemuck::cast_slice(&words).to_vec();
        draws[..16].fill(0);
        draws[16..32].fill(u32::MAX);
        for modulus in [4097u32, 2097091, 2097143, 1 << 31, u32::MAX] {
            let threshold = (1u64 << 32) % u64::from(modulus);
            for (i, d) in draws[32..96].iter_mut().enumerate() {
                // w·m mod 2^32 lands just below or at the threshold for some of these.
                *d = ((threshold + i as u64) * 4294967291 % (1 << 32)) as u32;
            }
            let mut kept = vec![MaybeUninit::<u32>::uninit(); draws.len() + 16];
            let n = token.accept_draws32(&draws, modulus, threshold as u32, &mut kept);
            let mut expected = vec![MaybeUninit::<u32>::uninit(); draws.len()];
            let filled =
                accept_draws(draws.iter().map(|&w| u64::from(w)), 32, u64::from(modulus), threshold, &mut expected, 0);
            // SAFETY: accept_draws wrote slots 0..filled (and possibly the next one), the kernel
            // slots 0..n.
            let (expected, kept) = unsafe { (written(&expected[..filled]), written(&kept[..n])) };
            assert_eq!((n, kept), (filled, expected), "modulus {modulus}");
        }
    }

    #[test]
    fn residue_planes_and_streams_differ() {
        let key = PrgKey::from_seed(6);
        let fill = |stream, plane| residues(&key, stream, plane, 1201, 1000);
        assert_ne!(fill(0, 0), fill(0, 1));
        assert_ne!(fill(0, 0), fill(1, 0));
        assert_eq!(fill(2, 3), fill(2, 3));
    }

    #[test]
    fn wide_residues_are_reduced_and_roughly_uniform() {
        let key = PrgKey::from_seed(8);
        let m = 2097143u32;
        let r = residues(&key, 0, 0, m, 200_000);
        assert!(r.iter().all(|&x| x < m));
        // Mean of 200k uniform draws: standard error m / sqrt(12 * 200k) ~ 0.0006 m; allow 5 sigma.
        let mean = r.iter().map(|&x| x as f64).sum::<f64>() / r.len() as f64;
        assert!((mean / m as f64 - 0.5).abs() < 0.0033, "mean {mean}");
        // Each eighth of the range holds 1/8 of the draws: standard error ~0.00074; allow 5 sigma.
        let mut bins = [0usize; 8];
        r.iter().for_each(|&x| bins[(x as u64 * 8 / m as u64) as usize] += 1);
        assert!(bins.iter().all(|&b| (b as f64 / r.len() as f64 - 0.125).abs() < 0.0037), "{bins:?}");
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", PrgKey::from_seed(3)), "PrgKey(..)");
    }
}
