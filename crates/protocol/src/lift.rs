//! Lifting Z64 shares to Z128 and narrowing them back, so that a Z64 program can run a stretch
//! of multiplications in Z128, where truncation is local and costs no round (the polynomial
//! evaluation does this, see [`crate::polynomial`]).
//!
//! # Lift: one round
//! For x in Z64 with |x| < 2^62 as a signed value, y = x + 2^62 lies in [0, 2^63). The servers
//! open c = y + r mod 2^64, r uniform and seeded as for truncation. Over the integers
//! y = c - r + 2^64·w, with the wrap bit w = msb(r)·(1 - msb(c)) (the argument of
//! [`crate::truncation`]'s Z64 row: y < 2^63, so a wrap leaves msb(c) = 0 and needs msb(r) = 1).
//! So x = c - 2^62 - r + (1 - msb(c))·M with M = 2^64·msb(r). cp deals r and M as Z128 shares
//! (server0's seeded, server1's as corrections), and server i's Z128 share is
//! [i = 0](c - 2^62) - r_i + (1 - msb(c))·M_i. The lift is exact.
//!
//! Traffic: each server sends its share of c, n·8 bytes; cp sends server1 two Z128 corrections,
//! n·32 bytes. Security: c is uniform because r is; server1's corrections are uniform because
//! server0's shares are seeded and uniform.
//!
//! # Narrow: local
//! (x0 + x1 mod 2^128) mod 2^64 = (x0 mod 2^64 + x1 mod 2^64) mod 2^64, so each server keeps
//! the low 64 bits of its share. Exact for every value.
//!
//! The lift deals its material directly (not through a [`crate::TripleSource`]), so it is dealt
//! online even when pregenerated correlations are installed.

use crate::costs::Cost;
use crate::dealer::{deal_uniform, deal_values, purpose};
use crate::error::Result;
use crate::session::Session;
use crate::tensors::{Held, PrivateTensor};
use crate::transport::Role;
use pond_core::parallel::{map, zip3_assign, zip_map};
use pond_core::{ZTensor, Z128, Z64};

/// Traffic and rounds of [`Session::lift_to_z128`] on n elements.
pub fn lift_cost(n: u64) -> Cost {
    Cost { bytes: [8 * n, 8 * n, 32 * n], rounds: 1 }
}

impl Session {
    /// Z128 shares of the value of Z64-shared x, for |x| < 2^62 as a signed value (see the module
    /// docs). Cost: [`lift_cost`].
    pub fn lift_to_z128(&mut self, x: &PrivateTensor<Z64>) -> Result<PrivateTensor<Z128>> {
        self.op("lift", |s| {
            let deal_tag = s.next_tag();
            let shape = x.shape();
            let r: Held<ZTensor<u64>> = deal_uniform(s, deal_tag, purpose::EXTRA, shape)?;
            let wide = |f: fn(u64) -> u128| ZTensor::from_array(map(r.tensor().array().view(), f));
            let [r_wide, m] = deal_values(s, deal_tag, [purpose::EXTRA + 1, purpose::EXTRA + 2], shape, || {
                Ok([wide(u128::from), wide(|r| u128::from(r >> 63) << 64)])
            })?;
            let tag = s.next_tag();
            let Some(xi) = x.share() else {
                return Ok(PrivateTensor::from_share(shape, None));
            };
            let server0 = s.role() == Role::Server0;
            let offset = if server0 { 1u64 << 62 } else { 0 };
            let c =
                zip_map(xi.array().view(), r.tensor().array().view(), |x, r| x.wrapping_add(r).wrapping_add(offset));
            let c = s.open_owned(tag, ZTensor::from_array(c))?.into_array();
            let mut z = m.into_tensor().into_array();
            zip3_assign(z.view_mut(), r_wide.into_tensor().array().view(), c.view(), |m, r, c| {
                let share = u128::from(1 - (c >> 63)).wrapping_mul(m).wrapping_sub(r);
                if server0 {
                    share.wrapping_add(u128::from(c)).wrapping_sub(1 << 62)
                } else {
                    share
                }
            });
            Ok(PrivateTensor::from_share(shape, Some(ZTensor::from_array(z))))
        })
    }

    /// Z64 shares of x mod 2^64 for Z128-shared x: each server keeps the low 64 bits of its
    /// share (local, exact).
    pub fn narrow_to_z64(&self, x: &PrivateTensor<Z128>) -> PrivateTensor<Z64> {
        let share = x.share().map(|xi| ZTensor::from_array(map(xi.array().view(), |v| v as u64)));
        PrivateTensor::from_share(x.shape(), share)
    }
}
