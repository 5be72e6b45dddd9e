//! CRT matrix products whose left operand `A` has few rows (matrix-vector and the like): no
//! panels; each row of `A` streams once over `B`, with the sums of a block of columns held in
//! registers over the whole inner dimension.
//!
//! These products are bound by how fast `B` arrives from memory, so `B` comes in one of two
//! forms:
//! - residue planes, one `u32` matrix per modulus (any tensor, read as it is);
//! - [`PackedRows`], built once for a matrix that is the right operand again and again (a weight
//!   or its mask at batch size 1): per GEMM group of moduli (see [`gemm_groups`]) the group
//!   residues in [0, P), P ≤ 2^21, of three consecutive rows share one `u64` word. A group
//!   residue then costs 8/3 bytes to stream instead of 8 (two `u32` residues): net S's
//!   2304×100 weight over tf-encrypted's ten moduli is 3.1 MB packed, 9.2 MB as planes.
//!
//! Exactness: every entry of `A` and `B` is below P (a single modulus is its own group), so a
//! product is at most (P-1)^2 < 2^52 and a sum of `k` of them is exact in a `u64` while
//! k·(P-1)^2 ≤ 2^64 - 1 ([`exact_chunk`]); longer inner dimensions are split into chunks of that
//! length, each reduced before the chunks are added. With AVX-512 IFMA (detected at runtime)
//! each multiply-add is one lane of `vpmadd52luq` (the low 52 bits of the product, which is the
//! whole product), with AVX-512F alone one lane of `vpmuludq` and `vpaddq`; elsewhere a plain
//! loop computes the same sums.

#[cfg(target_arch = "x86_64")]
use super::ifma::Madd;
use super::{add_reduced, check_planes, exact_chunk, gemm_groups, lift_to_group, sums_below_2_52, Group, Isa};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use std::ops::Range;

/// `A` with at most this many rows takes this path.
pub const SMALL_M: usize = 8;

/// Products with at least this many multiply-adds (over all moduli) run in parallel pieces.
const PAR_WORK: usize = 1 << 19;

/// Bits of one group residue in a packed word: every GEMM group's modulus is at most 2^21.
const FIELD_BITS: u32 = 21;
/// The low [`FIELD_BITS`] bits.
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
/// Rows of `B` per packed word.
const PACKED_ROWS: usize = 3;

/// How the kernels read `B`: one row per `u32` word, or three per [`Packed`] word.
trait RowWord: Copy + Send + Sync + 'static {
    /// Rows of `B` per word.
    const ROWS: usize;

    /// Σ_t a[t]·(entry of row t in `w`) for t < `ROWS`, in wrapping `u64` arithmetic.
    fn dot(a: &[u64; PACKED_ROWS], w: Self) -> u64;

    /// `sum + Σ_t a[t]·(entries of row t in the 8 words at ptr)`, lane by lane, for t < `ROWS`,
    /// by `M`'s multiply-add.
    ///
    /// # Safety
    /// `ptr` must be valid for reading 8 words, the CPU must have `M`'s features (and the caller
    /// be compiled with them), and every entry must be below 2^26.
    #[cfg(target_arch = "x86_64")]
    unsafe fn madd8<M: Madd>(
        sum: std::arch::x86_64::__m512i,
        a: &[std::arch::x86_64::__m512i; PACKED_ROWS],
        ptr: *const Self,
    ) -> std::arch::x86_64::__m512i;
}

impl RowWord for u32 {
    const ROWS: usize = 1;

    #[inline(always)]
    fn dot(a: &[u64; PACKED_ROWS], w: u32) -> u64 {
        a[0].wrapping_mul(u64::from(w))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn madd8<M: Madd>(
        sum: std::arch::x86_64::__m512i,
        a: &[std::arch::x86_64::__m512i; PACKED_ROWS],
        ptr: *const u32,
    ) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 8 readable values (32 bytes) and the features.
        unsafe { M::madd(sum, a[0], _mm512_cvtepu32_epi64(_mm256_loadu_si256(ptr.cast()))) }
    }
}

/// Entries (3q, j), (3q + 1, j), (3q + 2, j) of a packed matrix, each below 2^21, in bits
/// 0..21, 21..42 and 42..63.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
struct Packed(u64);

impl RowWord for Packed {
    const ROWS: usize = PACKED_ROWS;

    #[inline(always)]
    fn dot(a: &[u64; PACKED_ROWS], w: Packed) -> u64 {
        let w = w.0;
        a[0].wrapping_mul(w & FIELD_MASK)
            .wrapping_add(a[1].wrapping_mul((w >> FIELD_BITS) & FIELD_MASK))
            .wrapping_add(a[2].wrapping_mul(w >> (2 * FIELD_BITS)))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn madd8<M: Madd>(
        sum: std::arch::x86_64::__m512i,
        a: &[std::arch::x86_64::__m512i; PACKED_ROWS],
        ptr: *const Packed,
    ) -> std::arch::x86_64::__m512i {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees 8 readable words (64 bytes; `Packed` is a transparent
        // `u64`) and the features.
        unsafe {
            let w = _mm512_loadu_si512(ptr.cast());
            let mask = _mm512_set1_epi64(FIELD_MASK as i64);
            let low = _mm512_and_si512(w, mask);
            let middle = _mm512_and_si512(_mm512_srli_epi64::<FIELD_BITS>(w), mask);
            let high = _mm512_srli_epi64::<{ 2 * FIELD_BITS }>(w);
            let sum = M::madd(sum, a[0], low);
            let sum = M::madd(sum, a[1], middle);
            M::madd(sum, a[2], high)
        }
    }
}

/// A matrix packed for few-row products (see the module docs): per GEMM group of its moduli,
/// ceil(k/3)·n row-major words, word (q, j) holding the group residues of entries (3q + t, j),
/// t < 3 (zero past row k).
#[derive(Debug)]
pub struct PackedRows {
    /// Rows and columns of the matrix.
    dim: (usize, usize),
    /// The moduli, in plane order.
    moduli: Vec<u32>,
    /// One packed matrix per GEMM group, with the group's range of moduli.
    groups: Vec<(Range<usize>, Vec<Packed>)>,
}

impl PackedRows {
    /// Packs the residue planes `b[i]` (entries in `[0, moduli[i])`) of one k×n matrix; `None` if
    /// a GEMM group's modulus is above 2^21 (it would not fit a 21-bit field). Panics unless
    /// there is one plane per modulus, all of the same shape.
    pub fn new(b: &[ArrayView2<'_, u32>], moduli: &[u32]) -> Option<Self> {
        assert!(b.len() == moduli.len() && b.iter().all(|p| p.dim() == b[0].dim()), "one plane per modulus");
        let groups = gemm_groups(moduli);
        if groups.iter().any(|g| Group::new(&moduli[g.clone()]).p > 1 << FIELD_BITS) {
            return None;
        }
        let (k, n) = b[0].dim();
        let flats: Vec<_> = b.iter().map(|p| p.as_standard_layout()).collect();
        let packed = groups
            .into_par_iter()
            .map(|g| {
                let planes: Vec<&[u32]> =
                    flats[g.clone()].iter().map(|p| p.as_slice().expect("standard layout")).collect();
                let lifted = lift_to_group(&planes, &moduli[g.clone()]);
                let mut words = vec![Packed(0); k.div_ceil(PACKED_ROWS) * n];
                for (row, entries) in lifted.chunks_exact(n.max(1)).enumerate().take(k) {
                    let shift = FIELD_BITS * (row % PACKED_ROWS) as u32;
                    let words = &mut words[row / PACKED_ROWS * n..][..n];
                    for (w, &r) in words.iter_mut().zip(entries) {
                        w.0 |= u64::from(r) << shift;
                    }
                }
                (g, words)
            })
            .collect();
        Some(PackedRows { dim: (k, n), moduli: moduli.to_vec(), groups: packed })
    }

    /// Rows and columns of the packed matrix.
    pub fn dim(&self) -> (usize, usize) {
        self.dim
    }
}

/// A_i·B mod m_i for every modulus `m_i` of `b`, for residue planes `a[i]` with at most
/// [`SMALL_M`] rows and entries in [0, m_i). Panics if `A` has more rows or does not match `B`.
pub fn few_rows_packed(a: &[ArrayView2<'_, u32>], b: &PackedRows) -> Vec<Array2<u32>> {
    packed_with(a, b, Isa::detect())
}

/// [`few_rows_packed`] with the instruction set chosen by the caller.
fn packed_with(a: &[ArrayView2<'_, u32>], b: &PackedRows, isa: Isa) -> Vec<Array2<u32>> {
    let (k, n) = b.dim;
    assert!(a.len() == b.moduli.len() && a.iter().all(|p| p.dim() == a[0].dim()), "one plane per modulus");
    assert!(a[0].nrows() <= SMALL_M && a[0].ncols() == k, "few rows, shapes checked by the caller");
    let sources: Vec<_> = b
        .groups
        .iter()
        .map(|(g, words)| Source {
            moduli: &b.moduli[g.clone()],
            a: lifted_rows(&a[g.clone()], &b.moduli[g.clone()]),
            b: words,
        })
        .collect();
    products(&sources, a[0].nrows(), n, isa)
}

/// A_i·B_i mod m_i for every modulus `m_i`, for residue planes with entries in [0, m_i) and
/// `A` with at most [`SMALL_M`] rows, read straight from the planes.
pub(super) fn planes(
    a: &[ArrayView2<'_, u32>],
    b: &[ArrayView2<'_, u32>],
    moduli: &[u32],
    isa: Isa,
) -> Vec<Array2<u32>> {
    check_planes(a, b, moduli);
    assert!(a[0].nrows() <= SMALL_M, "few rows");
    let b: Vec<_> = b.iter().map(|p| p.as_standard_layout()).collect();
    let sources: Vec<_> = (0..moduli.len())
        .map(|i| Source {
            moduli: &moduli[i..=i],
            a: a[i].as_standard_layout().into_owned(),
            b: b[i].as_slice().expect("standard layout"),
        })
        .collect();
    products(&sources, a[0].nrows(), b[0].ncols(), isa)
}

/// The rows of `A`'s planes `a` lifted to their group's residues (see [`lift_to_group`]), each
/// padded with zeros to a whole number of packed words.
fn lifted_rows(a: &[ArrayView2<'_, u32>], moduli: &[u32]) -> Array2<u32> {
    let (rows, k) = a[0].dim();
    let flats: Vec<_> = a.iter().map(|p| p.as_standard_layout()).collect();
    let planes: Vec<&[u32]> = flats.iter().map(|p| p.as_slice().expect("standard layout")).collect();
    let lifted = lift_to_group(&planes, moduli);
    let mut out = Array2::zeros((rows, k.div_ceil(PACKED_ROWS) * PACKED_ROWS));
    for (mut row, entries) in out.rows_mut().into_iter().zip(lifted.chunks_exact(k.max(1))) {
        row.slice_mut(ndarray::s![..k]).assign(&ndarray::aview1(entries));
    }
    out
}

/// One GEMM group's operands for [`products`].
struct Source<'a, W> {
    /// The group's moduli.
    moduli: &'a [u32],
    /// `A`'s rows as group residues, `ROWS` entries per word row of `b`.
    a: Array2<u32>,
    /// `B`'s words, row-major, `n` per word row.
    b: &'a [W],
}

/// A·B reduced modulo each modulus of each source, in plane order. Large products split every
/// source's inner dimension into as many pieces as there are threads and run the pieces in
/// parallel (two-thirds of the work on one of two threads if only the groups were split).
fn products<W: RowWord>(sources: &[Source<'_, W>], rows: usize, n: usize, isa: Isa) -> Vec<Array2<u32>> {
    let word_rows = if n == 0 { 0 } else { sources.first().map_or(0, |s| s.b.len() / n) };
    let work = rows * word_rows * W::ROWS * n * sources.iter().map(|s| s.moduli.len()).sum::<usize>();
    let parts = if work >= PAR_WORK { rayon::current_num_threads().max(1) } else { 1 };
    let pieces: Vec<(usize, Range<usize>)> = (0..sources.len())
        .flat_map(|s| (0..parts).map(move |p| (s, word_rows * p / parts..word_rows * (p + 1) / parts)))
        .collect();
    let piece = |(s, range): &(usize, Range<usize>)| piece_product(&sources[*s], range.clone(), rows, n, isa);
    let results: Vec<Vec<Array2<u32>>> =
        if parts > 1 { pieces.par_iter().map(piece).collect() } else { pieces.iter().map(piece).collect() };
    let mut results = results.into_iter();
    let mut out = Vec::new();
    for source in sources {
        let mut sum = results.next().expect("one result per piece");
        for part in results.by_ref().take(parts - 1) {
            for ((total, part), &m) in sum.iter_mut().zip(part).zip(source.moduli) {
                total.zip_mut_with(&part, |t, &p| *t = ((u64::from(*t) + u64::from(p)) % u64::from(m)) as u32);
            }
        }
        out.extend(sum);
    }
    out
}

/// A·B mod each modulus of `source`, over `B`'s word rows `range` only.
fn piece_product<W: RowWord>(
    source: &Source<'_, W>,
    range: Range<usize>,
    rows: usize,
    n: usize,
    isa: Isa,
) -> Vec<Array2<u32>> {
    let mut out: Vec<_> = source.moduli.iter().map(|_| Array2::<u32>::zeros((rows, n))).collect();
    if n == 0 {
        return out;
    }
    let p = Group::new(source.moduli).p;
    let chunk = (exact_chunk(p) / W::ROWS).max(1);
    let mut acc = vec![0u64; n];
    for (r, a_row) in source.a.rows().into_iter().enumerate() {
        let a_row = a_row.to_slice().expect("standard layout");
        for start in range.clone().step_by(chunk) {
            let end = (start + chunk).min(range.end);
            acc.fill(0);
            add_row_products(isa, &mut acc, &a_row[start * W::ROWS..end * W::ROWS], &source.b[start * n..end * n]);
            let narrow = sums_below_2_52((end - start) * W::ROWS, p);
            for (o, &m) in out.iter_mut().zip(source.moduli) {
                let mut o = o.row_mut(r);
                add_reduced(o.as_slice_mut().expect("standard layout"), &acc, m, narrow);
            }
        }
    }
    out
}

/// `acc[j] += Σ_q Σ_t a[q·ROWS + t]·(entry of row t in b[q·n + j])` with `n = acc.len()` (no
/// term or sum may exceed `u64`, no product 2^52).
fn add_row_products<W: RowWord>(isa: Isa, acc: &mut [u64], a: &[u32], b: &[W]) {
    match isa {
        Isa::Portable => add_columns(acc, a, b, 0..acc.len()),
        // SAFETY (both): the token exists only if its features were detected at runtime; callers
        // keep entries below 2^26.
        #[cfg(target_arch = "x86_64")]
        Isa::Ifma(_) => unsafe { ifma::add_row_products_ifma(acc, a, b) },
        #[cfg(target_arch = "x86_64")]
        Isa::Mul32(_) => unsafe { ifma::add_row_products_mul32(acc, a, b) },
    }
}

/// `ROWS` entries of `a` from `a_words` as `u64`, the rest zero.
#[inline(always)]
fn multipliers<W: RowWord>(a_words: &[u32]) -> [u64; PACKED_ROWS] {
    std::array::from_fn(|t| if t < W::ROWS { u64::from(a_words[t]) } else { 0 })
}

/// [`add_row_products`] in plain Rust, for columns `cols` of `acc` (its length is `b`'s row
/// length).
#[inline(always)]
fn add_columns<W: RowWord>(acc: &mut [u64], a: &[u32], b: &[W], cols: Range<usize>) {
    let n = acc.len();
    for (a_words, b_row) in a.chunks_exact(W::ROWS).zip(b.chunks_exact(n)) {
        let a = multipliers::<W>(a_words);
        for (s, &w) in acc[cols.clone()].iter_mut().zip(&b_row[cols.clone()]) {
            *s = s.wrapping_add(W::dot(&a, w));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod ifma {
    //! The few-rows kernel on AVX-512, with IFMA or AVX-512F's multiply-add (see [`Madd`]).
    use super::super::ifma::{Ifma, Madd, Mul32};
    use super::{add_columns, multipliers, RowWord, PACKED_ROWS};
    use std::arch::x86_64::*;

    /// [`add_row_products`] with IFMA.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512 IFMA, and every entry must be below 2^26.
    #[target_feature(enable = "avx512f,avx512ifma")]
    pub(super) unsafe fn add_row_products_ifma<W: RowWord>(acc: &mut [u64], a: &[u32], b: &[W]) {
        // SAFETY: forwarded from the caller.
        unsafe { add_row_products::<W, Ifma>(acc, a, b) }
    }

    /// [`add_row_products`] with AVX-512F alone.
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and every entry must be below 2^26.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_row_products_mul32<W: RowWord>(acc: &mut [u64], a: &[u32], b: &[W]) {
        // SAFETY: forwarded from the caller.
        unsafe { add_row_products::<W, Mul32>(acc, a, b) }
    }

    /// [`super::add_row_products`]: column blocks of up to 128 sums held in zmm registers over
    /// the whole of `a`, so `acc` is read and written once per block instead of once per word
    /// row. Blocks are 16 vectors of 8 sums, then one block of as many vectors as the remaining
    /// columns need: one pass over `b` for any `n` up to 128 (the block's last vector possibly
    /// only partly used), instead of several narrower passes whose last ones would be bound by
    /// the latency of too few independent sums.
    ///
    /// # Safety
    /// The CPU must have `M`'s features (and the caller be compiled with them), and every entry
    /// must be below 2^26.
    #[inline(always)]
    unsafe fn add_row_products<W: RowWord, M: Madd>(acc: &mut [u64], a: &[u32], b: &[W]) {
        let n = acc.len();
        debug_assert_eq!(b.len() * W::ROWS, a.len() * n);
        let mut j = 0;
        while j < n {
            // SAFETY: forwarded from the caller.
            j += unsafe {
                match (n - j).div_ceil(8) {
                    16.. => column_block::<W, M, 16>(acc, a, b, j),
                    15 => column_block::<W, M, 15>(acc, a, b, j),
                    14 => column_block::<W, M, 14>(acc, a, b, j),
                    13 => column_block::<W, M, 13>(acc, a, b, j),
                    12 => column_block::<W, M, 12>(acc, a, b, j),
                    11 => column_block::<W, M, 11>(acc, a, b, j),
                    10 => column_block::<W, M, 10>(acc, a, b, j),
                    9 => column_block::<W, M, 9>(acc, a, b, j),
                    8 => column_block::<W, M, 8>(acc, a, b, j),
                    7 => column_block::<W, M, 7>(acc, a, b, j),
                    6 => column_block::<W, M, 6>(acc, a, b, j),
                    5 => column_block::<W, M, 5>(acc, a, b, j),
                    4 => column_block::<W, M, 4>(acc, a, b, j),
                    3 => column_block::<W, M, 3>(acc, a, b, j),
                    2 => column_block::<W, M, 2>(acc, a, b, j),
                    _ => column_block::<W, M, 1>(acc, a, b, j),
                }
            };
        }
    }

    /// The sums of the `min(8·V, n - j)` columns from `j` (returned), in `V` zmm registers. A
    /// word row's vector loads may read past the block's last column into the next row (those
    /// lanes are not stored); the rows whose loads would pass the end of `b` take the plain loop.
    ///
    /// # Safety
    /// As [`add_row_products`].
    #[inline(always)]
    unsafe fn column_block<W: RowWord, M: Madd, const V: usize>(
        acc: &mut [u64],
        a: &[u32],
        b: &[W],
        j: usize,
    ) -> usize {
        let n = acc.len();
        let word_rows = b.len() / n;
        assert!(j < n && b.len() == word_rows * n && a.len() == word_rows * W::ROWS);
        let width = (n - j).min(8 * V);
        // Word rows q with q·n + j + 8·V ≤ len(b): their loads stay inside b.
        let vector_rows = if b.len() >= j + 8 * V { ((b.len() - j - 8 * V) / n + 1).min(word_rows) } else { 0 };
        let mut lanes = [[0u64; 8]; V];
        for (c, &s) in acc[j..j + width].iter().enumerate() {
            lanes[c / 8][c % 8] = s;
        }
        // SAFETY: lanes has 8·V values; row q < vector_rows reads b[q·n + j .. q·n + j + 8·V],
        // inside b by the choice of vector_rows; the features and the product bound come from
        // the caller.
        unsafe {
            let mut sums: [__m512i; V] = std::array::from_fn(|v| _mm512_loadu_si512(lanes[v].as_ptr().cast()));
            for (q, a_words) in a.chunks_exact(W::ROWS).take(vector_rows).enumerate() {
                let a = multipliers::<W>(a_words);
                let a: [__m512i; PACKED_ROWS] = std::array::from_fn(|t| _mm512_set1_epi64(a[t] as i64));
                let row = b.as_ptr().add(q * n + j);
                for (v, sum) in sums.iter_mut().enumerate() {
                    *sum = W::madd8::<M>(*sum, &a, row.add(8 * v));
                }
            }
            for (v, sum) in sums.iter().enumerate() {
                _mm512_storeu_si512(lanes[v].as_mut_ptr().cast(), *sum);
            }
        }
        for (c, s) in acc[j..j + width].iter_mut().enumerate() {
            *s = lanes[c / 8][c % 8];
        }
        let tail = vector_rows * W::ROWS..a.len();
        add_columns(acc, &a[tail], &b[vector_rows * n..], j..j + width);
        width
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm_mod_reference;
    use super::super::tests::{all_isas, planes, views};
    use super::*;
    use proptest::prelude::*;

    /// Both forms of `B`, on every instruction set, against the reference.
    fn check(a: &[Array2<u32>], b: &[Array2<u32>], moduli: &[u32]) {
        let expected: Vec<_> =
            (0..moduli.len()).map(|i| gemm_mod_reference(a[i].view(), b[i].view(), moduli[i])).collect();
        let packed = PackedRows::new(&views(b), moduli).expect("groups below 2^21");
        assert_eq!(packed.dim(), b[0].dim());
        let dims = (a[0].dim(), b[0].dim());
        assert_eq!(few_rows_packed(&views(a), &packed), expected, "packed, dispatching path, {dims:?}");
        for isa in all_isas() {
            assert_eq!(packed_with(&views(a), &packed, isa), expected, "packed, {dims:?}");
            assert_eq!(super::planes(&views(a), &views(b), moduli, isa), expected, "planes, {dims:?}");
        }
    }

    /// tf-encrypted's ten moduli (five pairs), the wide ones (five singles), and a pair plus a
    /// single.
    fn moduli() -> impl Strategy<Value = Vec<u32>> {
        prop::sample::select(vec![
            vec![1201u32, 1433, 1217, 1237, 1321, 1103, 1129, 1367, 1093, 1039],
            vec![2097143, 2097133, 2097131, 2097097, 2097091],
            vec![1433, 1367, 1039],
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Inner dimensions on both sides of multiples of three and of the parallel threshold,
        /// column counts on both sides of whole vectors and of the 128-column block.
        #[test]
        fn both_forms_match_reference(
            moduli in moduli(), rows in 1usize..=SMALL_M, k in 1usize..700, n in 1usize..300, seed in any::<u64>()
        ) {
            check(&planes(rows, k, &moduli, seed), &planes(k, n, &moduli, !seed), &moduli);
        }
    }

    #[test]
    fn net_s_dense_layer_shape_runs_in_parallel_pieces() {
        // 2304 x 100 with ten moduli is above the parallel threshold.
        let moduli = [1201u32, 1433, 1217, 1237, 1321, 1103, 1129, 1367, 1093, 1039];
        assert!(2304 * 100 * moduli.len() >= PAR_WORK);
        check(&planes(1, 2304, &moduli, 1), &planes(2304, 100, &moduli, 2), &moduli);
    }

    #[test]
    fn extreme_residues_stay_exact() {
        // Every entry at P - 1, the largest lifted value, over an inner dimension whose sums
        // pass 2^52 (so the wide reduction runs).
        let (m0, m1) = (1433u32, 1367u32);
        let p = m0 * m1;
        let k = 3 * 1024 + 2;
        assert!(!sums_below_2_52(k, u64::from(p)));
        let a = [Array2::from_elem((3, k), (p - 1) % m0), Array2::from_elem((3, k), (p - 1) % m1)];
        let b = [Array2::from_elem((k, 17), (p - 1) % m0), Array2::from_elem((k, 17), (p - 1) % m1)];
        check(&a, &b, &[m0, m1]);
    }

    #[test]
    fn empty_dimensions() {
        let moduli = [1201, 1433];
        for (m, k, n) in [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)] {
            check(&planes(m, k, &moduli, 1), &planes(k, n, &moduli, 2), &moduli);
        }
    }

    #[test]
    fn groups_above_2_21_are_not_packed() {
        let moduli = [(1u32 << 21) + 1];
        assert!(PackedRows::new(&views(&planes(3, 4, &moduli, 1)), &moduli).is_none());
    }
}
