//! Traffic and rounds of every operation, as formulas in the tensor sizes. Tests check the
//! measured counters against these exactly; `pond bench` prints them as `expected_bytes`.
//!
//! Bytes are payload bytes sent by [server0, server1, cp]; rounds are server rounds (a server's
//! send phases: sends not separated by a receive). cp never waits for anyone, so it has no
//! rounds of its own: its messages are produced ahead of the servers' need.

use crate::dealer::Bilinear;
use crate::polynomial::{fresh_factors, masks_in_truncation, Polynomial, PowerPlan};
use crate::transport::Role;
use crate::truncation::ProtocolRing;
use pond_core::{Ring, RingTensor};

/// Traffic and rounds of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cost {
    /// Bytes sent by server0, server1, cp.
    pub bytes: [u64; 3],
    /// Server rounds.
    pub rounds: u64,
}

impl std::ops::Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost { bytes: std::array::from_fn(|i| self.bytes[i] + o.bytes[i]), rounds: self.rounds + o.rounds }
    }
}

impl std::ops::Mul<u64> for Cost {
    type Output = Cost;
    fn mul(self, k: u64) -> Cost {
        Cost { bytes: self.bytes.map(|b| b * k), rounds: self.rounds * k }
    }
}

fn b<R: Ring>() -> u64 {
    R::Tensor::BYTES_PER_ELEMENT as u64
}

fn count(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// Input sharing of n elements by `owner`: free from a server, n·B from cp to server1.
pub fn share_input<R: Ring>(owner: Role, n: u64) -> Cost {
    match owner {
        Role::Cp => Cost { bytes: [0, 0, n * b::<R>()], rounds: 0 },
        _ => Cost::default(),
    }
}

/// Opening n elements to both servers (reveal, mask): n·B per server, one round.
pub fn open<R: Ring>(n: u64) -> Cost {
    Cost { bytes: [n * b::<R>(), n * b::<R>(), 0], rounds: 1 }
}

/// Revealing n elements to `owner` only ([`crate::Session::reveal_to`]): the other server, or
/// both when the owner is cp, sends its n·B share; one round.
pub fn reveal_to<R: Ring>(n: u64, owner: Role) -> Cost {
    let sent = |r: Role| if r != owner && r != Role::Cp { n * b::<R>() } else { 0 };
    Cost { bytes: [sent(Role::Server0), sent(Role::Server1), 0], rounds: 1 }
}

/// A Beaver product `op` of operands with shapes `x`, `y`; a masked operand is not opened again.
/// An input cp owns, multiplied by a masked operand, is not opened at all
/// ([`crate::PrivateTensor::known_to_cp`]): pass it as masked.
pub fn product<R: Ring>(op: Bilinear, x: &[usize], x_masked: bool, y: &[usize], y_masked: bool) -> Cost {
    let out = op.output_shape(x, y).map(|s| count(&s)).unwrap_or(0);
    let opened = if x_masked { 0 } else { count(x) } + if y_masked { 0 } else { count(y) };
    Cost { bytes: [opened * b::<R>(), opened * b::<R>(), out * b::<R>()], rounds: u64::from(opened > 0) }
}

/// Square of n elements: n·B per server, n·B from cp, one round.
pub fn square<R: Ring>(n: u64) -> Cost {
    Cost { bytes: [n * b::<R>(), n * b::<R>(), n * b::<R>()], rounds: 1 }
}

/// Truncation of n elements (see [`crate::truncation`]).
pub fn truncation<R: ProtocolRing>(n: u64) -> Cost {
    R::truncation_cost(n)
}

/// Polynomial evaluation on n elements as ring `R` does it ([`ProtocolRing::polynomial_cost`]);
/// `input_masked` when the input carries its masked form.
pub fn polynomial<R: ProtocolRing>(p: &Polynomial, n: u64, input_masked: bool) -> Cost {
    R::polynomial_cost(p, n, input_masked)
}

/// Whether the output of [`crate::Session::polynomial`] carries its masked form: in rings whose
/// truncation masks for free, when p has a term beyond the constant (a final truncation).
pub fn polynomial_output_masked<R: ProtocolRing>(p: &Polynomial) -> bool {
    R::MASKED_TRUNCATION && has_terms(p)
}

fn has_terms(p: &Polynomial) -> bool {
    p.coeffs.iter().skip(1).any(|&c| c != 0.0)
}

/// The power tree of [`crate::polynomial`] in ring `R` itself, on n elements; an input that
/// carries its masked form (`input_masked`) is not opened.
pub fn power_tree<R: ProtocolRing>(p: &Polynomial, n: u64, input_masked: bool) -> Cost {
    let plan = PowerPlan::new(p.coeffs);
    let mut cost = Cost::default();
    let mut masked = std::collections::BTreeMap::new();
    if input_masked {
        masked.insert(1, ());
    }
    for level in 1..=plan.top_level() {
        let splits: Vec<(usize, usize)> = plan.at_level(level).into_iter().map(|i| plan.split(i)).collect();
        let fresh = fresh_factors(&splits, &masked);
        if !fresh.is_empty() {
            cost = cost + open::<R>(fresh.len() as u64 * n);
        }
        masked.extend(fresh.into_iter().map(|j| (j, ())));
        let m = splits.len() as u64;
        let each = [n as usize];
        cost = cost + product::<R>(Bilinear::Mul, &each, true, &each, true) * m;
        let at_level = plan.at_level(level);
        if masks_in_truncation::<R>(&plan, &at_level, level) {
            // The level's powers come masked from their truncation.
            cost = cost + R::masked_truncation_cost(m * n);
            masked.extend(at_level.into_iter().map(|i| (i, ())));
        } else {
            cost = cost + truncation::<R>(m * n);
        }
    }
    if has_terms(p) {
        cost = cost + if R::MASKED_TRUNCATION { R::masked_truncation_cost(n) } else { truncation::<R>(n) };
    }
    cost
}
