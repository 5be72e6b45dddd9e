//! The local, per-element work of the private comparison: exact sampling of small-field values
//! from ChaCha streams, the servers' blinded comparison terms and cp's zero test.
//!
//! Every loop runs over fixed chunks of elements in parallel (rayon); each chunk reads its own
//! PRG sub-stream, so outputs do not depend on the number of threads.

use super::ComparisonWord;
use pond_core::prg::fill_u64;
use pond_core::PrgKey;
use rayon::prelude::*;

/// Elements per parallel chunk (each chunk has its own PRG sub-stream).
pub(crate) const CHUNK: usize = 2048;
/// 64-bit words drawn from the PRG per refill of a [`BlockStream`].
const BLOCK_WORDS: usize = 2048;
/// Values one block can yield at most (two per 16-bit draw).
const BLOCK_VALUES: usize = BLOCK_WORDS * 8;

/// Uniform 64-bit words from one sub-stream of a derived key, a block at a time: chunk `c`
/// reads streams `(c << 24) | i` for blocks i = 0, 1, ..., so chunks never share a stream.
pub(crate) struct BlockStream<'k> {
    key: &'k PrgKey,
    chunk: u64,
    blocks: u64,
    words: Vec<u64>,
}

impl<'k> BlockStream<'k> {
    pub(crate) fn new(key: &'k PrgKey, chunk: usize) -> Self {
        BlockStream { key, chunk: chunk as u64, blocks: 0, words: vec![0; BLOCK_WORDS] }
    }

    fn next_block(&mut self) -> &[u64] {
        fill_u64(self.key, (self.chunk << 24) | self.blocks, &mut self.words);
        self.blocks += 1;
        &self.words
    }
}

/// For a bound b, each 16-bit draw's two base-b digits of (v mod b^2), packed little-endian
/// into a u16, or [`REJECTED`] when v is at or above the largest multiple of b^2 below 2^16.
struct DigitTable {
    entries: Vec<u16>,
}

/// Marks a rejected draw (no pair of digits below 256 packs to it, as digits are below 255
/// for every bound but 256, which rejects nothing).
const REJECTED: u16 = u16::MAX;

impl DigitTable {
    fn new(bound: u32) -> Self {
        let square = bound * bound;
        let zone = (1 << 16) / square * square;
        let entries = (0..1u32 << 16)
            .map(|v| {
                let r = v % square;
                if v < zone {
                    ((r / bound) << 8 | (r % bound)) as u16
                } else {
                    REJECTED
                }
            })
            .collect();
        DigitTable { entries }
    }

    /// The table of `bound` (built once per bound and kept).
    fn get(bound: u32) -> &'static DigitTable {
        static TABLES: [std::sync::OnceLock<DigitTable>; 5] = [const { std::sync::OnceLock::new() }; 5];
        let slot = match bound {
            66 => 0,
            67 => 1,
            130 => 2,
            131 => 3,
            256 => 4,
            _ => unreachable!("the comparison samples below p - 1, p (p = 67 or 131) and 256 only"),
        };
        TABLES[slot].get_or_init(|| DigitTable::new(bound))
    }
}

/// Fills `out[..count]` (growing `out` as needed, with slack) with values uniform in
/// [0, bound), exactly: each 16-bit draw v below the largest multiple of bound^2 that fits
/// yields the two digits of v mod bound^2 in base `bound`; other draws are rejected. The loop is
/// branch-free (every candidate is written, the fill level advances only when accepted), and
/// what is left of the last block is discarded, so the output depends only on the stream.
pub(crate) fn sample_below(stream: &mut BlockStream<'_>, bound: u32, count: usize, out: &mut Vec<u8>) {
    let table = &DigitTable::get(bound).entries;
    // Acceptance from the draw itself rather than the table entry keeps the table load off the
    // loop-carried chain through `filled`.
    let zone = (1u32 << 16) / (bound * bound) * (bound * bound);
    out.resize(count + BLOCK_VALUES + 2, 0);
    let mut filled = 0;
    while filled < count {
        for &w in stream.next_block() {
            for half in 0..4 {
                let v = ((w >> (16 * half)) & 0xffff) as u32;
                out[filled..filled + 2].copy_from_slice(&table[v as usize].to_le_bytes());
                filled += 2 * usize::from(v < zone);
            }
        }
    }
    out.truncate(count);
}

/// The bits of each byte value, least significant first, as 0/1 bytes.
const BYTE_BITS: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut v = 0;
    while v < 256 {
        let mut i = 0;
        while i < 8 {
            table[v][i] = ((v >> i) & 1) as u8;
            i += 1;
        }
        v += 1;
    }
    table
};

/// Number of compared bits (l - 1) and of blinded terms (l) for word type `W`.
pub(crate) fn widths<W: ComparisonWord>() -> (usize, usize) {
    let l = W::BITS as usize;
    (l - 1, l)
}

/// server0's seeded shares in Z_p of the low l - 1 bits of r: `n * (l-1)` values uniform in
/// Z_p, drawn from `key` (shared by server0 and cp). cp calls it too, to compute server1's share.
pub(crate) fn seeded_bit_shares<W: ComparisonWord>(key: &PrgKey, n: usize) -> Vec<u8> {
    let (nb, _) = widths::<W>();
    let mut out = vec![0u8; n * nb];
    out.par_chunks_mut(CHUNK * nb).enumerate().for_each(|(c, chunk)| {
        let mut pool = Vec::new();
        sample_below(&mut BlockStream::new(key, c), u32::from(W::PRIME), chunk.len(), &mut pool);
        chunk.copy_from_slice(&pool);
    });
    out
}

/// cp: server1's shares of the bits, (r_i - share0_i) mod p, in place of server0's shares.
pub(crate) fn bit_corrections<W: ComparisonWord>(r: &[W], share0: &mut [u8]) {
    let (nb, _) = widths::<W>();
    share0.par_chunks_mut(nb).zip(r.par_iter()).for_each(|(bits, &rv)| {
        let p = W::PRIME;
        for (i, b) in bits.iter_mut().enumerate() {
            *b = (rv.bit(i as u32) + p - *b) % p;
        }
    });
}

/// A server's blinded terms of the private comparison (SecureNN's PrivateCompare, Wagh et al.
/// 2019, Algorithm 1, with the public/secret roles swapped and an explicit equality term).
///
/// For each element: c (public, opened), this server's shares of the bits r_0..r_{l-2} of the
/// low part of r in Z_p, and common randomness of the two servers: a bit β, a rotation ρ,
/// multipliers s_i in Z_p^* and zero-share masks u_i in Z_p. With w_k = r_k XOR c_k and
/// S_i = sum of w_k for k > i, the terms are
///
/// - e_i = (1 - 2β)(c_i - r_i) + 1 + S_i for i < l - 1: zero exactly at the first differing bit
///   when r > c (β = 0) or r < c (β = 1);
/// - e_{l-1} = 1 when β = 0, S_{-1} (zero iff r = c) when β = 1;
///
/// so a zero exists iff β XOR [r_low > c_low]. All terms lie in [0, l] < p, so they are zero
/// mod p only when zero. The server sends s_i · e_i ± u_i, rotated by ρ: cp learns only whether
/// one of the l uniform-looking values is zero, at a uniform position. Writes the terms to `d`
/// (n·l bytes) and β to `beta` (one byte per element).
pub(crate) fn blinded_terms<W: ComparisonWord>(
    c: &[W],
    bits: &[u8],
    common: &PrgKey,
    server0: bool,
    d: &mut [u8],
    beta: &mut [u8],
) {
    let (nb, m) = widths::<W>();
    d.par_chunks_mut(CHUNK * m)
        .zip(bits.par_chunks(CHUNK * nb))
        .zip(c.par_chunks(CHUNK))
        .zip(beta.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, (((d, bits), c), beta))| {
            // W::PRIME inside the closure, so the compiler sees the modulus as a constant.
            // Terms stay below l·(p + 1) + 2p < 2^16 before reduction, so u16 lanes suffice.
            let p = u16::from(W::PRIME);
            let own = u16::from(server0);
            let mut stream = BlockStream::new(common, chunk);
            let (mut heads, mut s, mut u) = (Vec::new(), Vec::new(), Vec::new());
            sample_below(&mut stream, 256, c.len(), &mut heads);
            sample_below(&mut stream, u32::from(p) - 1, c.len() * m, &mut s);
            sample_below(&mut stream, u32::from(p), c.len() * m, &mut u);
            let (mut cbits, mut e, mut w, mut blinded) = ([0u8; 128], [0u16; 128], [0u16; 128], [0u8; 128]);
            for (k, (((d, bits), &cv), be)) in
                d.chunks_exact_mut(m).zip(bits.chunks_exact(nb)).zip(c).zip(beta.iter_mut()).enumerate()
            {
                let head = heads[k];
                let flip = head & 1 == 1;
                let rho = usize::from(head >> 1) & (m - 1);
                *be = head & 1;
                let cw: u128 = cv.into();
                for (j, byte) in cbits[..m].chunks_exact_mut(8).enumerate() {
                    byte.copy_from_slice(&BYTE_BITS[((cw >> (8 * j)) & 0xff) as usize]);
                }
                // Per bit: (1 - 2β)(c_i - r_i) + 1 (server0 holding the public part) and
                // w_i = c_i + (1 - 2 c_i) r_i, as small integers (reduced once, at the end).
                let rows = e[..nb].iter_mut().zip(w[..nb].iter_mut()).zip(bits).zip(&cbits[..nb]);
                if flip {
                    for (((e, w), &r), &ci) in rows {
                        let (r, ci) = (u16::from(r), u16::from(ci));
                        *e = r + own * (p + 1) - own * ci;
                        *w = if ci == 1 { (p - r) + own } else { r };
                    }
                } else {
                    for (((e, w), &r), &ci) in rows {
                        let (r, ci) = (u16::from(r), u16::from(ci));
                        *e = (p - r) + own * (ci + 1);
                        *w = if ci == 1 { (p - r) + own } else { r };
                    }
                }
                // e_i += S_i = sum of w_k for k > i.
                let mut suffix = 0u16;
                for (e, &w) in e[..nb].iter_mut().zip(&w[..nb]).rev() {
                    *e += suffix;
                    suffix += w;
                }
                e[nb] = if flip { suffix } else { own };
                let (s, u) = (&s[k * m..(k + 1) * m], &u[k * m..(k + 1) * m]);
                let sign = if server0 { 0 } else { p };
                for (((b, &s), &u), &e) in blinded[..m].iter_mut().zip(s).zip(u).zip(&e[..m]) {
                    let mask = sign.abs_diff(u16::from(u));
                    *b = (((u16::from(s) + 1) * (e % p) + mask) % p) as u8;
                }
                // Rotation by ρ: term i goes to position (i + ρ) mod l.
                d[rho..].copy_from_slice(&blinded[..m - rho]);
                d[..rho].copy_from_slice(&blinded[m - rho..m]);
            }
        });
}

/// cp: for each element, whether the reconstructed terms d0 + d1 (mod p) contain a zero.
pub(crate) fn has_zero<W: ComparisonWord>(d0: &[u8], d1: &[u8], out: &mut [u8]) {
    let (_, m) = widths::<W>();
    out.par_iter_mut().zip(d0.par_chunks(m).zip(d1.par_chunks(m))).for_each(|(o, (a, b))| {
        let p = u16::from(W::PRIME);
        let zero = a.iter().zip(b).fold(false, |acc, (&x, &y)| {
            let s = u16::from(x) + u16::from(y);
            acc | (s == 0) | (s == p)
        });
        *o = u8::from(zero);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_below_a_bound_is_exact_and_deterministic() {
        for bound in [66u32, 67, 130, 131, 256] {
            // Every pair of digits comes from the same number of accepted draws.
            let mut counts = vec![0u32; (bound * bound) as usize];
            for &e in &DigitTable::get(bound).entries {
                if e != REJECTED || bound == 256 {
                    counts[(u32::from(e >> 8) * bound + u32::from(e & 0xff)) as usize] += 1;
                }
            }
            assert!(counts.iter().all(|&c| c == counts[0]), "bound {bound}");
            let key = PrgKey::from_seed(bound as u64);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            sample_below(&mut BlockStream::new(&key, 3), bound, 40_000, &mut a);
            sample_below(&mut BlockStream::new(&key, 3), bound, 40_000, &mut b);
            assert_eq!(a, b);
            assert_eq!(a.len(), 40_000);
            assert!(a.iter().all(|&v| u32::from(v) < bound));
            let mut seen = vec![false; bound as usize];
            a.iter().for_each(|&v| seen[v as usize] = true);
            assert!(seen.iter().all(|&s| s));
        }
    }

    #[test]
    fn zero_test_matches_the_definition() {
        let m = 64;
        let mut d0 = vec![5u8; 2 * m];
        let mut d1 = vec![7u8; 2 * m];
        d0[m + 3] = 60;
        d1[m + 3] = 7;
        let mut out = vec![0u8; 2];
        has_zero::<u64>(&d0, &d1, &mut out);
        assert_eq!(out, vec![0, 1]);
        d0[0] = 0;
        d1[0] = 0;
        has_zero::<u64>(&d0, &d1, &mut out);
        assert_eq!(out, vec![1, 1]);
    }
}
