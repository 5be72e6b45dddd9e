//! The local, per-element work of the private comparison: exact sampling of small-field values
//! from ChaCha streams, the servers' blinded comparison terms and cp's zero test.
//!
//! Every loop runs over fixed chunks of elements in parallel (rayon); each chunk reads its own
//! PRG sub-stream, so outputs do not depend on the number of threads.

#[cfg(target_arch = "x86_64")]
use super::avx512::Avx512;
use super::ComparisonWord;
use pond_core::parallel::{vec_written_by, write_front};
use pond_core::prg::fill_u64;
use pond_core::PrgKey;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Elements per parallel chunk (each chunk has its own PRG sub-stream).
pub(crate) const CHUNK: usize = 2048;
/// 64-bit words drawn from the PRG per refill of a [`DrawStream`].
const BLOCK_WORDS: usize = 2048;
/// The unit in which keystream is consumed: 8 words, 64 bytes (32 16-bit draws, one AVX-512
/// register).
const GROUP: usize = 8;

/// The keystream of one chunk, uniform 64-bit words, a block at a time: chunk `c` reads
/// streams `(c << 24) | i` for blocks i = 0, 1, ..., so chunks never share a stream. It is
/// consumed in groups of [`GROUP`] words, and successive samplings continue where the previous
/// one stopped, so little keystream is discarded.
pub(crate) struct DrawStream<'k> {
    key: &'k PrgKey,
    chunk: u64,
    blocks: u64,
    words: Vec<u64>,
    /// Read position in `words`, a multiple of [`GROUP`].
    pos: usize,
}

impl<'k> DrawStream<'k> {
    pub(crate) fn new(key: &'k PrgKey, chunk: usize) -> Self {
        DrawStream { key, chunk: chunk as u64, blocks: 0, words: vec![0; BLOCK_WORDS], pos: BLOCK_WORDS }
    }

    /// The next at most `groups` groups of keystream (at least one).
    fn take_groups(&mut self, groups: usize) -> &[u64] {
        if self.pos == BLOCK_WORDS {
            fill_u64(self.key, (self.chunk << 24) | self.blocks, &mut self.words);
            self.blocks += 1;
            self.pos = 0;
        }
        let start = self.pos;
        self.pos = (start + groups.max(1) * GROUP).min(BLOCK_WORDS);
        &self.words[start..self.pos]
    }
}

/// Fills `out` with values uniform in [0, bound), exactly: each 16-bit draw v (the four 16-bit
/// halves of each word, low half first) below the largest multiple of bound^2 that fits yields the two
/// digits of v mod bound^2 in base `bound`, low digit first; other draws are rejected. For
/// bound 256 nothing is rejected and the values are the words' little-endian bytes. The keystream
/// is read in groups of 8 words up to the end of the group in which `out` is completed (the rest of
/// that group is discarded), so the output and the position afterwards depend only on the
/// stream.
///
/// The digits and the acceptance of a run of draws are computed in one vectorisable pass (u16
/// arithmetic, constant divisors) and the accepted pairs are compacted: by AVX-512 VBMI2's
/// 16-bit compression when the CPU has it, by AVX-512 F's 32-bit compression when it has
/// AVX-512 F, BW and VL, by branch-free scalar code otherwise.
pub(crate) fn sample_below(stream: &mut DrawStream<'_>, bound: u32, out: &mut [MaybeUninit<u8>]) {
    match bound {
        66 => sample_digits::<66>(stream, out),
        67 => sample_digits::<67>(stream, out),
        130 => sample_digits::<130>(stream, out),
        131 => sample_digits::<131>(stream, out),
        256 => sample_bytes(stream, out),
        _ => unreachable!("the comparison samples below p - 1, p (p = 67 or 131) and 256 only"),
    }
}

/// [`sample_below`] of `len` values into `buf` (its previous contents dropped, its buffer kept).
pub(crate) fn sample_into(stream: &mut DrawStream<'_>, bound: u32, buf: &mut Vec<u8>, len: usize) {
    buf.clear();
    buf.reserve(len);
    sample_below(stream, bound, &mut buf.spare_capacity_mut()[..len]);
    // SAFETY: `sample_below` writes every slot of `out` (it loops until `out` is full).
    unsafe { buf.set_len(len) };
}

/// Writes the first `out.len()` bytes of `src` to `out`.
#[inline(always)]
fn write_bytes(out: &mut [MaybeUninit<u8>], src: &[u8]) {
    for (o, &v) in out.iter_mut().zip(src) {
        o.write(v);
    }
}

/// [`sample_below`] for bound 256: the words' little-endian bytes.
fn sample_bytes(stream: &mut DrawStream<'_>, out: &mut [MaybeUninit<u8>]) {
    let mut filled = 0;
    while filled < out.len() {
        let words = stream.take_groups((out.len() - filled).div_ceil(8 * GROUP));
        for (o, w) in out[filled..].chunks_mut(8).zip(words) {
            write_bytes(o, &w.to_le_bytes());
        }
        filled = out.len().min(filled + 8 * words.len());
    }
}

/// [`sample_below`] for a bound B below 256 (so B^2 < 2^16 and a digit fits in a byte).
///
/// The accepted pairs are written straight into `out` while it has room for everything a run
/// of draws may write (its pairs plus a register of slack: bytes past the accepted ones are
/// scratch, overwritten by the next run); the last runs go through a side buffer and only
/// their accepted bytes are copied.
fn sample_digits<const B: u16>(stream: &mut DrawStream<'_>, out: &mut [MaybeUninit<u8>]) {
    #[cfg(target_arch = "x86_64")]
    let simd = Avx512::detect();
    let pairs = |draws: &[u64], dst: &mut [MaybeUninit<u8>]| {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = simd {
            return simd.digit_pairs::<B>(draws, dst);
        }
        digit_pairs::<B>(draws, dst)
    };
    let mut kept = Vec::new();
    let mut filled = 0;
    while filled < out.len() {
        // A group yields at most 64 bytes, so this many groups never read past the group that
        // completes `out`.
        let draws = stream.take_groups((out.len() - filled).div_ceil(8 * GROUP));
        // At most 8 bytes per word are accepted, plus one register of slack for the compressed
        // stores.
        let room = 8 * draws.len() + 64;
        if out.len() - filled < room {
            kept.resize(room, MaybeUninit::uninit());
        }
        filled += write_front(&mut out[filled..], room, &mut kept, |dst| pairs(draws, dst));
    }
}

/// The accepted digit pairs of the 16-bit draws in `words` in order, as bytes (low digit first),
/// in `kept` (room for 8·words.len() + 2 bytes); returns the number of bytes written.
fn digit_pairs<const B: u16>(words: &[u64], kept: &mut [MaybeUninit<u8>]) -> usize {
    let square: u16 = B * B;
    // The largest multiple of B^2 not above 2^16 is below 2^16 for every B < 256.
    let zone = ((1u32 << 16) / u32::from(square) * u32::from(square)) as u16;
    // Branch-free compaction: every candidate is written, the fill level advances only when
    // the draw is accepted.
    let mut filled = 0;
    for v in words.iter().flat_map(|&w| (0..4).map(move |half| (w >> (16 * half)) as u16)) {
        let r = v % square;
        let hi = r / B;
        kept[filled].write((r - hi * B) as u8);
        kept[filled + 1].write(hi as u8);
        filled += 2 * usize::from(v < zone);
    }
    filled
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

/// server0's seeded shares in Z_p of the low `nb` bits of r (nb = m - 1 for m terms): `n * nb`
/// values uniform in Z_p, drawn from `key` (shared by server0 and cp). cp calls it too, to
/// compute server1's share.
pub(crate) fn seeded_bit_shares<W: ComparisonWord>(key: &PrgKey, n: usize, nb: usize) -> Vec<u8> {
    // SAFETY: `sample_below` writes every slot of each chunk, and the chunks cover `out`.
    unsafe {
        vec_written_by(n * nb, |out| {
            out.par_chunks_mut(CHUNK * nb)
                .enumerate()
                .for_each(|(c, chunk)| sample_below(&mut DrawStream::new(key, c), u32::from(W::PRIME), chunk))
        })
    }
}

/// The bits of `v` (the low `out.len()` of them, at most 128), least significant first, as 0/1
/// bytes.
#[inline]
fn expand_bits(v: u128, out: &mut [u8; 128]) {
    for (j, byte) in out.chunks_exact_mut(8).enumerate() {
        byte.copy_from_slice(&BYTE_BITS[((v >> (8 * j)) & 0xff) as usize]);
    }
}

/// cp: server1's shares of the low `nb` bits, (r_i - share0_i) mod p, in place of server0's
/// shares.
pub(crate) fn bit_corrections<W: ComparisonWord>(r: &[W], share0: &mut [u8], nb: usize) {
    #[cfg(target_arch = "x86_64")]
    let simd = Avx512::detect();
    share0.par_chunks_mut(CHUNK * nb).zip(r.par_chunks(CHUNK)).for_each(|(share0, r)| {
        #[cfg(target_arch = "x86_64")]
        if let (Some(simd), Some(r)) = (simd, W::as_u64s(r)) {
            return simd.bit_corrections_z64(r, share0, nb);
        }
        bit_corrections_portable(r, share0, nb);
    });
}

/// [`bit_corrections`] for a run of elements, one bit at a time.
fn bit_corrections_portable<W: ComparisonWord>(r: &[W], share0: &mut [u8], nb: usize) {
    let p = W::PRIME;
    let mut rbits = [0u8; 128];
    for (bits, &rv) in share0.chunks_exact_mut(nb).zip(r) {
        expand_bits(rv.into(), &mut rbits);
        // share0 < p, so r_i + p - share0 is in [1, p + 1]: one conditional subtraction.
        for (b, &ri) in bits.iter_mut().zip(&rbits[..nb]) {
            let v = ri + (p - *b);
            *b = if v >= p { v - p } else { v };
        }
    }
}

/// The servers' common random draws for a run of comparisons.
#[derive(Clone, Copy)]
pub(crate) struct TermDraws<'a> {
    /// One byte per element: β in bit 0, the rotation ρ above it.
    pub(crate) heads: &'a [u8],
    /// m multipliers minus one per element, in [0, p - 1).
    pub(crate) s: &'a [u8],
    /// m zero-share masks per element, in [0, p).
    pub(crate) u: &'a [u8],
}

/// Where the blinded terms and the bits β of a run of comparisons go.
pub(crate) struct TermsOut<'a> {
    /// m terms per element, every byte of which the kernels write (it may start uninitialised).
    pub(crate) d: &'a mut [MaybeUninit<u8>],
    /// β per element.
    pub(crate) beta: &'a mut [u8],
}

/// A server's blinded terms of the private comparison (SecureNN's PrivateCompare, Wagh et al.
/// 2019, Algorithm 1, with the public/secret roles swapped and an explicit equality term).
///
/// For each element: c (public, opened), this server's shares of the bits r_0..r_{m-2} of the
/// low part of r in Z_p (m terms compare the m - 1 bits below bit m - 1: m = l for the whole
/// word, fewer for a value known to be small, see [`super::compare`]), and common randomness of
/// the two servers: a bit β, a rotation ρ, multipliers s_i in Z_p^* and zero-share masks u_i in
/// Z_p. With w_k = r_k XOR c_k and S_i = sum of w_k for m - 1 > k > i, the terms are
///
/// - e_i = (1 - 2β)(c_i - r_i) + 1 + S_i for i < m - 1: zero exactly at the first differing bit
///   when r > c (β = 0) or r < c (β = 1);
/// - e_{m-1} = 1 when β = 0, S_{-1} (zero iff r = c) when β = 1;
///
/// so a zero exists iff β XOR [r_low > c_low]. All terms lie in [0, m] < p, so they are zero
/// mod p only when zero. The server sends s_i · e_i ± u_i, rotated by ρ: cp learns only whether
/// one of the m uniform-looking values is zero, at a uniform position. Writes the terms to `d`
/// (n·m bytes) and β to `beta` (one byte per element). The elements are chunks `first_chunk`,
/// `first_chunk + 1`, ... of a longer run (each chunk reads its own stream of `common`). m is a
/// power of two, at least 32 and at most l.
///
/// Each chunk draws its randomness in bulk (β and ρ, then all s, then all u) into buffers that
/// stay in cache, then computes the terms element by element: on Z64 with AVX-512 one register
/// of byte lanes per element (suffix sums by log-step permutes, the rotation one permute),
/// otherwise [`terms_portable`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn blinded_terms<W: ComparisonWord>(
    c: &[W],
    bits: &[u8],
    common: &PrgKey,
    first_chunk: usize,
    server0: bool,
    d: &mut [MaybeUninit<u8>],
    beta: &mut [u8],
    m: usize,
) {
    assert!(m.is_power_of_two() && (32..=W::BITS as usize).contains(&m), "{m} comparison terms");
    let nb = m - 1;
    // Every byte of `d` is written: the kernels write each element's m terms.
    assert!(
        d.len() == m * c.len() && bits.len() == nb * c.len() && beta.len() == c.len(),
        "blinded_terms buffer sizes"
    );
    #[cfg(target_arch = "x86_64")]
    let simd = Avx512::detect();
    d.par_chunks_mut(CHUNK * m)
        .zip(bits.par_chunks(CHUNK * nb))
        .zip(c.par_chunks(CHUNK))
        .zip(beta.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(heads, s, u), (chunk, (((d, bits), c), beta))| {
                let p = u32::from(W::PRIME);
                let mut stream = DrawStream::new(common, first_chunk + chunk);
                sample_into(&mut stream, 256, heads, c.len());
                sample_into(&mut stream, p - 1, s, c.len() * m);
                sample_into(&mut stream, p, u, c.len() * m);
                let draws = TermDraws { heads, s, u };
                let out = TermsOut { d, beta };
                #[cfg(target_arch = "x86_64")]
                if let (Some(simd), Some(c)) = (simd, W::as_u64s(c)) {
                    return match m {
                        32 => simd.terms_z64::<32>(c, bits, draws, server0, out),
                        _ => simd.terms_z64::<64>(c, bits, draws, server0, out),
                    };
                }
                terms_portable(c, bits, draws, server0, out, m);
            },
        );
}

/// [`blinded_terms`] for a run of elements, over fixed-size arrays of small integers: the
/// per-bit terms and the blinding are branch-free loops the compiler vectorises (u16 lanes,
/// constant modulus), the suffix sums a short scalar scan, and the rotation one fixed-length
/// copy out of a doubled buffer.
fn terms_portable<W: ComparisonWord>(
    c: &[W],
    bits: &[u8],
    draws: TermDraws<'_>,
    server0: bool,
    out: TermsOut<'_>,
    m: usize,
) {
    let nb = m - 1;
    // Terms stay below l·(p + 1) + 2p < 2^16 before reduction, so u16 lanes suffice.
    let p = u16::from(W::PRIME);
    let own = u16::from(server0);
    let mut cbits = [0u8; 128];
    let (mut e, mut w) = ([0u16; 128], [0u16; 128]);
    let mut twice = [0u8; 256];
    let elements = out.d.chunks_exact_mut(m).zip(bits.chunks_exact(nb)).zip(c).zip(out.beta.iter_mut());
    let randomness = draws.heads.iter().zip(draws.s.chunks_exact(m)).zip(draws.u.chunks_exact(m));
    for ((((d, bits), &cv), be), ((&head, s), u)) in elements.zip(randomness) {
        let flip = head & 1 == 1;
        let rho = usize::from(head >> 1) & (m - 1);
        *be = head & 1;
        expand_bits(cv.into(), &mut cbits);
        // Per bit: (1 - 2β)(c_i - r_i) + 1 (server0 holding the public part) and
        // w_i = c_i + (1 - 2 c_i) r_i, as small integers (reduced once, at the end).
        let rows = e[..nb].iter_mut().zip(&mut w[..nb]).zip(bits).zip(&cbits[..nb]);
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
        // s_i · e_i ± u_i mod p, written twice so that the rotation is one copy.
        let (lo, hi) = twice[..2 * m].split_at_mut(m);
        for ((((lo, hi), &s), &u), &e) in lo.iter_mut().zip(hi).zip(s).zip(u).zip(&e[..m]) {
            let u = u16::from(u);
            let mask = if server0 { u } else { p - u };
            let v = (((u16::from(s) + 1) * (e % p) + mask) % p) as u8;
            *lo = v;
            *hi = v;
        }
        // Rotation by ρ: term i goes to position (i + ρ) mod m.
        write_bytes(d, &twice[m - rho..2 * m - rho]);
    }
}

/// cp: for each element, whether its `m` reconstructed terms d0 + d1 (mod p) contain a zero.
pub(crate) fn has_zero<W: ComparisonWord>(d0: &[u8], d1: &[u8], out: &mut [u8], m: usize) {
    #[cfg(target_arch = "x86_64")]
    let simd = Avx512::detect();
    out.par_chunks_mut(CHUNK).zip(d0.par_chunks(CHUNK * m).zip(d1.par_chunks(CHUNK * m))).for_each(
        |(out, (d0, d1))| {
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = simd {
                return simd.has_zero(W::PRIME, m, d0, d1, out);
            }
            has_zero_portable(W::PRIME, m, d0, d1, out);
        },
    );
}

/// [`has_zero`] for a run of elements of `m` terms each.
fn has_zero_portable(p: u8, m: usize, d0: &[u8], d1: &[u8], out: &mut [u8]) {
    let p = u16::from(p);
    for (o, (a, b)) in out.iter_mut().zip(d0.chunks_exact(m).zip(d1.chunks_exact(m))) {
        *o = a.iter().zip(b).fold(0u8, |acc, (&x, &y)| {
            let s = u16::from(x) + u16::from(y);
            acc | u8::from(s == 0) | u8::from(s == p)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition of [`sample_below`], one draw at a time, on the chunk's whole keystream
    /// `words` from word `pos` on: returns the values and moves `pos` past the group in which
    /// they were completed.
    fn reference_sample(words: &[u64], pos: &mut usize, bound: u32, count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = *pos;
        while out.len() < count {
            let w = words[next];
            next += 1;
            if bound == 256 {
                out.extend(w.to_le_bytes());
                continue;
            }
            let square = bound * bound;
            let zone = (1 << 16) / square * square;
            for half in 0..4 {
                let v = ((w >> (16 * half)) & 0xffff) as u32;
                if out.len() < count && v < zone {
                    out.extend([((v % square) % bound) as u8, ((v % square) / bound) as u8]);
                }
            }
        }
        if next > *pos {
            *pos = next.div_ceil(GROUP) * GROUP;
        }
        out.truncate(count);
        out
    }

    #[test]
    fn sampling_below_a_bound_is_exact_and_deterministic() {
        let key = PrgKey::from_seed(66);
        let mut words = vec![0u64; 40 * BLOCK_WORDS];
        for (i, block) in words.chunks_exact_mut(BLOCK_WORDS).enumerate() {
            fill_u64(&key, (3 << 24) | i as u64, block);
        }
        // Successive samplings of one stream continue where the previous one stopped.
        let plan: [(u32, usize); 12] = [
            (256, 2048),
            (66, 131_072),
            (67, 131_072),
            (130, 1),
            (131, 0),
            (256, 3),
            (67, 16_383),
            (256, 16_384),
            (131, 17),
            (66, 64),
            (67, 65),
            (256, 1),
        ];
        let mut stream = DrawStream::new(&key, 3);
        let mut pos = 0;
        for (bound, count) in plan {
            let mut a = vec![9u8; 3];
            sample_into(&mut stream, bound, &mut a, count);
            assert_eq!(a, reference_sample(&words, &mut pos, bound, count), "bound {bound}, count {count}");
            assert_eq!(((stream.blocks as usize - 1) * BLOCK_WORDS + stream.pos) % BLOCK_WORDS, pos % BLOCK_WORDS);
        }
        for bound in [66u32, 67, 130, 131, 256] {
            // Every pair of digits comes from the same number of accepted draws.
            let square = bound * bound;
            assert_eq!(((1 << 16) / square * square) % square, 0);
            let mut a = Vec::new();
            sample_into(&mut DrawStream::new(&key, 3), bound, &mut a, 40_000);
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
        has_zero::<u64>(&d0, &d1, &mut out, m);
        assert_eq!(out, vec![0, 1]);
        d0[0] = 0;
        d1[0] = 0;
        has_zero::<u64>(&d0, &d1, &mut out, m);
        assert_eq!(out, vec![1, 1]);
        // Read as four elements of 32 terms: the zeros are in the first and the third.
        let mut out = vec![0u8; 4];
        has_zero::<u64>(&d0, &d1, &mut out, 32);
        assert_eq!(out, vec![1, 0, 1, 0]);
    }

    /// Random bytes below `bound`, with the extremes first.
    fn below(key: &PrgKey, stream: usize, bound: u32, n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        sample_into(&mut DrawStream::new(key, stream), bound, &mut v, n);
        v[..2.min(n)].copy_from_slice(&[0, (bound - 1) as u8][..2.min(n)]);
        v
    }

    /// Every vector tier the CPU has (the byte-lane tier, when present, and the 16-bit tier).
    #[cfg(target_arch = "x86_64")]
    fn vector_tiers() -> Vec<Avx512> {
        let Some(simd) = Avx512::detect() else {
            eprintln!("no AVX-512 F/BW/VL on this CPU: only the portable kernels run");
            return Vec::new();
        };
        if simd.0.bytes.is_none() {
            eprintln!("no AVX-512 VBMI/VBMI2 on this CPU: the byte-lane kernels are not tested");
            return vec![simd];
        }
        vec![simd, Avx512(simd.0.words_only())]
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_kernels_equal_the_portable_ones() {
        for simd in vector_tiers() {
            vector_kernels_equal_the_portable_ones_on(simd);
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn vector_kernels_equal_the_portable_ones_on(simd: Avx512) {
        let key = PrgKey::from_seed(21);
        let mut draws = vec![0u64; BLOCK_WORDS];
        fill_u64(&key, 4, &mut draws);
        let draws = &draws[..];
        let check = |portable: usize, vector: usize, a: &[MaybeUninit<u8>], b: &[MaybeUninit<u8>]| {
            assert_eq!(portable, vector);
            // SAFETY: each kernel wrote the bytes it counted.
            let written = |k: &[MaybeUninit<u8>]| k.iter().map(|v| unsafe { v.assume_init() }).collect::<Vec<u8>>();
            assert_eq!(written(&a[..portable]), written(&b[..vector]));
        };
        let room = 8 * BLOCK_WORDS + 64;
        let (mut a, mut b) = (vec![MaybeUninit::uninit(); room], vec![MaybeUninit::uninit(); room]);
        check(digit_pairs::<66>(draws, &mut a), simd.digit_pairs::<66>(draws, &mut b), &a, &b);
        check(digit_pairs::<67>(draws, &mut a), simd.digit_pairs::<67>(draws, &mut b), &a, &b);
        check(digit_pairs::<130>(draws, &mut a), simd.digit_pairs::<130>(draws, &mut b), &a, &b);
        check(digit_pairs::<131>(draws, &mut a), simd.digit_pairs::<131>(draws, &mut b), &a, &b);

        // Terms: opened values at the edges (0, -1, the extremes, one ulp from them, the same
        // around bit 31 for 32 terms) and random.
        let n = 4001;
        let mut c = vec![0u64; n];
        fill_u64(&key, 5, &mut c);
        let edges = [0, 1, u64::MAX, 1 << 63, (1 << 63) - 1, (1 << 63) + 1, (1 << 62) - 1, 1 << 31, (1 << 31) - 1];
        c[..edges.len()].copy_from_slice(&edges);
        let mut r = vec![0u64; n];
        fill_u64(&key, 6, &mut r);
        r[..edges.len()].copy_from_slice(&edges);
        for m in [64, 32] {
            let bits = below(&key, 7, 67, (m - 1) * n);
            let (heads, s, u) = (below(&key, 8, 256, n), below(&key, 9, 66, m * n), below(&key, 10, 67, m * n));
            for server0 in [false, true] {
                let draws = TermDraws { heads: &heads, s: &s, u: &u };
                let (mut beta0, mut beta1) = (vec![0u8; n], vec![0u8; n]);
                // SAFETY: both kernels write all m terms of each of the n elements.
                let d0 = unsafe {
                    vec_written_by(m * n, |d| {
                        terms_portable(&c, &bits, draws, server0, TermsOut { d, beta: &mut beta0 }, m)
                    })
                };
                let vector = |d: &mut [MaybeUninit<u8>]| {
                    let out = TermsOut { d, beta: &mut beta1 };
                    match m {
                        32 => simd.terms_z64::<32>(&c, &bits, draws, server0, out),
                        _ => simd.terms_z64::<64>(&c, &bits, draws, server0, out),
                    }
                };
                // SAFETY: as above.
                let d1 = unsafe { vec_written_by(m * n, vector) };
                assert_eq!(beta0, beta1);
                assert_eq!(d0, d1, "m = {m}, server0: {server0}, {simd:?}");
            }

            let (mut a, mut b) = (bits.clone(), bits);
            bit_corrections_portable(&r, &mut a, m - 1);
            simd.bit_corrections_z64(&r, &mut b, m - 1);
            assert_eq!(a, b, "m = {m}");
        }

        // Zero test, including sums that pass 255 for p = 131.
        for (p, m) in [(67u8, 64), (131, 128), (67, 32)] {
            let mut d0 = below(&key, 11, u32::from(p), m * n);
            let d1 = below(&key, 12, u32::from(p), m * n);
            d0[..m].fill(p - 1);
            d0[m..2 * m].fill(0);
            d0[2 * m + 5] = (p - d1[2 * m + 5]) % p;
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            has_zero_portable(p, m, &d0, &d1, &mut a);
            simd.has_zero(p, m, &d0, &d1, &mut b);
            assert_eq!(a, b, "p = {p}");
            assert_eq!(a[2], 1);
        }
    }
}
