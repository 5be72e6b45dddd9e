//! Traffic and rounds of the exact comparisons, as formulas (the style of [`crate::costs`]):
//! bytes sent by [server0, server1, cp] and server rounds. The tests check the measured counters
//! against these exactly.
//!
//! Notation: n comparisons, B bytes per ring element, l bits per element (64 or 128), m terms
//! of a comparison that reads fewer bits ([`crate::Session::relu_exact_in_range`]). Every
//! function of an operation assumes [`super::ComparisonSource::Online`], so it includes the
//! material ([`material`]); with pregenerated material subtract `material(comparisons)`, with the
//! count from the `*_comparisons` functions.
//!
//! Rounds are server1's, the critical path: server1 waits for cp's answer in every comparison.
//! server0's share of cp's answer is seeded, so it never waits for cp, and in a tournament its
//! message to cp and its next opening go out in one send phase: it counts levels + 1 rounds
//! ([`server0_rounds`]) where server1 counts 2 per level.
//!
//! For CRT rings the operations refuse to run; these formulas are meaningless there.

use super::ops::{tournament_levels, PoolGeometry};
use super::{fixed_point_terms, ComparisonRing};
use crate::costs::Cost;
use crate::error::Result;
use pond_core::{RingTensor, Word};

fn b<R: ComparisonRing>() -> u64 {
    R::Tensor::BYTES_PER_ELEMENT as u64
}

fn l<R: ComparisonRing>() -> u64 {
    u64::from(<R::Word as Word>::BITS)
}

/// cp's offline material for n comparisons: n·(l - 1) bytes (the Z_p bit shares) to server1.
pub fn material<R: ComparisonRing>(n: u64) -> Cost {
    material_terms(n, l::<R>())
}

/// [`material`] for comparisons of m terms: n·(m - 1) bytes.
fn material_terms(n: u64, m: u64) -> Cost {
    Cost { bytes: [0, 0, n * (m - 1)], rounds: 0 }
}

/// The online part of one batch of n comparisons that also returns δ·z when `relu`, and δ·v for
/// an extra operand of `width` entries per comparison: each server opens n·(1 + width) elements
/// and sends n·l bytes to cp; cp deals n·(1 + relu + width) elements. 2 rounds.
pub fn compare_online<R: ComparisonRing>(n: u64, relu: bool, width: u64) -> Cost {
    compare_online_terms::<R>(n, relu, width, l::<R>())
}

/// [`compare_online`] for comparisons of m terms: the servers send n·m bytes to cp.
fn compare_online_terms<R: ComparisonRing>(n: u64, relu: bool, width: u64, m: u64) -> Cost {
    let server = n * (1 + width) * b::<R>() + n * m;
    let cp = n * (1 + u64::from(relu) + width) * b::<R>();
    Cost { bytes: [server, server, cp], rounds: 2 }
}

/// [`crate::Session::drelu`] and [`crate::Session::sign_bit`] on n elements.
pub fn drelu<R: ComparisonRing>(n: u64) -> Cost {
    material::<R>(n) + compare_online::<R>(n, false, 0)
}

/// [`crate::Session::relu_exact`] on n elements (ReLU and its derivative).
pub fn relu_exact<R: ComparisonRing>(n: u64) -> Cost {
    material::<R>(n) + compare_online::<R>(n, true, 0)
}

/// [`crate::Session::relu_exact_in_range`] on n elements: [`relu_exact`] with
/// m = [`fixed_point_terms`] terms instead of l (Z64: servers n·(B + 32), cp n·(31 + 2B)).
pub fn relu_exact_in_range<R: ComparisonRing>(n: u64) -> Cost {
    let m = fixed_point_terms::<R>() as u64;
    material_terms(n, m) + compare_online_terms::<R>(n, true, 0, m)
}

/// [`crate::Session::truncate_relu_in_range`] on n elements. Where truncation is local (Z128),
/// [`relu_exact_in_range`]. Otherwise (Z64) the comparison's material carries the truncation's
/// corrections for r >> f and msb(r) (cp 2·n·B more), the opening is the truncation's, and cp
/// deals (r >> f)·γ and msb(r)·γ where it deals r·γ otherwise (n·B more): servers n·(B + m)
/// each, cp n·(m - 1 + 5B); Z64: 40 / 40 / 71 bytes per element, where a truncation and
/// [`relu_exact_in_range`] cost 48 / 48 / 63 and 3 rounds.
pub fn truncate_relu_in_range<R: ComparisonRing>(n: u64) -> Cost {
    if R::LOCAL_TRUNCATION {
        return relu_exact_in_range::<R>(n);
    }
    let extra = Cost { bytes: [0, 0, 3 * n * b::<R>()], rounds: 0 };
    relu_exact_in_range::<R>(n) + extra
}

/// [`crate::Session::max_exact`] on n elements.
pub fn max_exact<R: ComparisonRing>(n: u64) -> Cost {
    relu_exact::<R>(n)
}

/// [`crate::Session::greater_equal_scalar`], [`crate::Session::greater_equal_public`] and
/// [`crate::Session::less_than_scalar`] on n elements.
pub fn compare_public<R: ComparisonRing>(n: u64) -> Cost {
    drelu::<R>(n)
}

/// A tournament over `groups` groups of m candidates: per level with k pairs per group, one
/// batch of groups·k comparisons with ReLU, and (after the first level, when `track`) the
/// one-hot vectors of width m as extra operand. 2 rounds per level.
pub fn tournament<R: ComparisonRing>(groups: u64, m: usize, track: bool) -> Cost {
    tournament_levels(m).iter().enumerate().fold(Cost::default(), |acc, (level, &pairs)| {
        let n = groups * pairs as u64;
        let width = if track && level > 0 { m as u64 } else { 0 };
        acc + material::<R>(n) + compare_online::<R>(n, true, width)
    })
}

/// Comparisons a tournament over `groups` groups of m candidates makes: groups·(m - 1).
pub fn tournament_comparisons(groups: u64, m: usize) -> u64 {
    groups * tournament_levels(m).iter().sum::<usize>() as u64
}

/// [`crate::Session::maxpool_exact`] on an NCHW `shape`; errors as the operation does.
pub fn maxpool_exact<R: ComparisonRing>(
    shape: &[usize],
    window: (usize, usize),
    stride: (usize, usize),
    with_mask: bool,
) -> Result<Cost> {
    let g = PoolGeometry::new(shape, window, stride)?;
    Ok(tournament::<R>(g.windows() as u64, window.0 * window.1, with_mask))
}

/// Comparisons [`crate::Session::maxpool_exact`] makes (for pregenerating material).
pub fn maxpool_comparisons(shape: &[usize], window: (usize, usize), stride: (usize, usize)) -> Result<u64> {
    let g = PoolGeometry::new(shape, window, stride)?;
    Ok(tournament_comparisons(g.windows() as u64, window.0 * window.1))
}

/// [`crate::Session::argmax_exact`] on `shape` (m = the last axis).
pub fn argmax_exact<R: ComparisonRing>(shape: &[usize]) -> Cost {
    let m = shape.last().copied().unwrap_or(1).max(1);
    let groups = shape.iter().product::<usize>() / m;
    tournament::<R>(groups as u64, m, true)
}

/// Comparisons [`crate::Session::argmax_exact`] makes on `shape`.
pub fn argmax_comparisons(shape: &[usize]) -> u64 {
    let m = shape.last().copied().unwrap_or(1).max(1);
    tournament_comparisons((shape.iter().product::<usize>() / m) as u64, m)
}

/// Server rounds of a tournament over m candidates: 2·ceil(log2 m).
pub fn tournament_rounds(m: usize) -> u64 {
    2 * tournament_levels(m).len() as u64
}

/// server0's send phases for an operation of `levels` sequential comparison batches: levels + 1
/// (see the module docs), 0 for none.
pub fn server0_rounds(levels: u64) -> u64 {
    if levels == 0 {
        0
    } else {
        levels + 1
    }
}
