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
/// 64-bit words drawn from the PRG per refill of a [`ByteStream`].
const REFILL_WORDS: usize = 512;

/// Uniform bytes from one sub-stream of a derived key: chunk `c` reads streams `(c << 24) | i`
/// for refills i = 0, 1, ..., so chunks never share a stream.
pub(crate) struct ByteStream<'k> {
    key: &'k PrgKey,
    chunk: u64,
    refills: u64,
    words: Vec<u64>,
    pos: usize,
}

impl<'k> ByteStream<'k> {
    pub(crate) fn new(key: &'k PrgKey, chunk: usize) -> Self {
        ByteStream { key, chunk: chunk as u64, refills: 0, words: vec![0; REFILL_WORDS], pos: REFILL_WORDS * 8 }
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> u8 {
        if self.pos == REFILL_WORDS * 8 {
            fill_u64(self.key, (self.chunk << 24) | self.refills, &mut self.words);
            self.refills += 1;
            self.pos = 0;
        }
        let b = (self.words[self.pos >> 3] >> ((self.pos & 7) * 8)) as u8;
        self.pos += 1;
        b
    }
}

/// Exact uniform sampling below a small bound by rejection of bytes: a table maps each byte to
/// its residue, or to `REJECT` above the largest multiple of the bound (no modulo bias).
pub(crate) struct Below {
    table: [u8; 256],
}

const REJECT: u8 = u8::MAX;

impl Below {
    pub(crate) fn new(bound: u8) -> Self {
        debug_assert!(bound >= 2 && bound < REJECT);
        let zone = 256 / u16::from(bound) * u16::from(bound);
        let mut table = [REJECT; 256];
        for (b, slot) in table.iter_mut().enumerate() {
            if (b as u16) < zone {
                *slot = (b as u16 % u16::from(bound)) as u8;
            }
        }
        Below { table }
    }

    #[inline]
    pub(crate) fn sample(&self, bytes: &mut ByteStream<'_>) -> u8 {
        loop {
            let v = self.table[bytes.byte() as usize];
            if v != REJECT {
                return v;
            }
        }
    }
}

/// Number of compared bits (l - 1) and of blinded terms (l) for word type `W`.
pub(crate) fn widths<W: ComparisonWord>() -> (usize, usize) {
    let l = W::BITS as usize;
    (l - 1, l)
}

/// server0's seeded shares in Z_p of the low l - 1 bits of r: `n * (l-1)` values uniform in
/// Z_p, drawn from `key` (shared by server0 and cp). cp calls it too, to compute server1's share.
pub(crate) fn seeded_bit_shares<W: ComparisonWord>(key: &PrgKey, n: usize) -> Vec<u8> {
    let (nb, _) = widths::<W>();
    let zp = Below::new(W::PRIME);
    let mut out = vec![0u8; n * nb];
    out.par_chunks_mut(CHUNK * nb).enumerate().for_each(|(c, chunk)| {
        let mut bytes = ByteStream::new(key, c);
        chunk.iter_mut().for_each(|v| *v = zp.sample(&mut bytes));
    });
    out
}

/// cp: server1's shares of the bits, (r_i - share0_i) mod p, in place of server0's shares.
pub(crate) fn bit_corrections<W: ComparisonWord>(r: &[W], share0: &mut [u8]) {
    let (nb, _) = widths::<W>();
    let p = W::PRIME;
    share0.par_chunks_mut(nb).zip(r.par_iter()).for_each(|(bits, &rv)| {
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
    let p = u32::from(W::PRIME);
    let zp = Below::new(W::PRIME);
    let zp_star = Below::new(W::PRIME - 1);
    let own = u32::from(server0);
    d.par_chunks_mut(CHUNK * m)
        .zip(bits.par_chunks(CHUNK * nb))
        .zip(c.par_chunks(CHUNK))
        .zip(beta.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, (((d, bits), c), beta))| {
            let mut bytes = ByteStream::new(common, chunk);
            let mut terms = [0u32; 128];
            for (((d, bits), &cv), be) in d.chunks_exact_mut(m).zip(bits.chunks_exact(nb)).zip(c).zip(beta.iter_mut()) {
                let head = bytes.byte();
                let flip = head & 1 == 1;
                let rho = usize::from(head >> 1) & (m - 1);
                *be = head & 1;
                let mut suffix = 0u32;
                for i in (0..nb).rev() {
                    let ci = u32::from(cv.bit(i as u32));
                    let r = u32::from(bits[i]);
                    // (1 - 2β)(c_i - r_i) + 1, server0 holding the public part.
                    let e = if flip { r + own * (p - ci + 1) } else { (p - r) + own * (ci + 1) };
                    terms[i] = (e + suffix) % p;
                    // w_i = c_i + (1 - 2 c_i) r_i.
                    let w = if ci == 1 { (p - r) + own } else { r };
                    suffix = (suffix + w) % p;
                }
                terms[nb] = if flip { suffix } else { own };
                for (i, &e) in terms[..m].iter().enumerate() {
                    let s = u32::from(zp_star.sample(&mut bytes)) + 1;
                    let u = u32::from(zp.sample(&mut bytes));
                    let mask = if server0 { u } else { p - u };
                    d[(i + rho) & (m - 1)] = ((s * e + mask) % p) as u8;
                }
            }
        });
}

/// cp: for each element, whether the reconstructed terms d0 + d1 (mod p) contain a zero.
pub(crate) fn has_zero<W: ComparisonWord>(d0: &[u8], d1: &[u8], out: &mut [u8]) {
    let (_, m) = widths::<W>();
    let p = u16::from(W::PRIME);
    out.par_iter_mut().zip(d0.par_chunks(m).zip(d1.par_chunks(m))).for_each(|(o, (a, b))| {
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
    fn rejection_tables_are_exact() {
        for bound in [66u8, 67, 130, 131] {
            let t = Below::new(bound);
            let mut counts = vec![0u32; bound as usize];
            t.table.iter().filter(|&&v| v != REJECT).for_each(|&v| counts[v as usize] += 1);
            assert!(counts.iter().all(|&c| c == counts[0]), "every residue of {bound} equally often");
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
