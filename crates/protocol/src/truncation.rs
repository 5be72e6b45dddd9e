//! Truncation (division by 2^f of a shared fixed-point value), one protocol per ring.
//!
//! | ring | protocol | rounds | traffic per party (n elements, B bytes each) | error |
//! |---|---|---|---|---|
//! | Z64 | dealer-assisted (Escudero et al. 2020, dealer variant): open c = x + 2^62 + r, with cp dealing r, r >> f and msb(r) | 1 | servers n·8 each; cp 2·n·8 to server1 | result in {floor(x/2^f), floor(x/2^f)+1} for abs(x) < 2^62, always |
//! | Z128 | local (SecureML): server0 shifts its share, server1 negates, shifts, negates | 0 | none | same, except with probability below 2^(k+1-128) for abs(x) < 2^k |
//! | CRT | statistical: open c = x + 2^k + r with r uniform in [0, 2^(k+41)) from cp | 1 | servers n·B each; cp 2·n·B to server1 | same, for abs(x) < 2^k with k = PRODUCT_BITS; c hides x to statistical distance 2^-40 |
//!
//! A truncation can also return its result masked ([`Session::truncate_masked`]), ready to be a
//! factor of later Beaver products without an opening of its own. Z64 and Z128 mask the result
//! afterwards (one more round, n·B more per server). CRT gets the masked form for free: the
//! result is e + a with the public e = ((c + 2^k) >> f) - 2^(k-f) and the mask a = -(r >> f),
//! whose shares cp deals anyway. That mask is not uniform modulo M, but e is a function of c, so
//! the masked form shows no party anything beyond c, which hides x statistically as above; the
//! products that use it open nothing.

use crate::costs::Cost;
use crate::dealer::{deal_uniform, deal_value, deal_values, purpose, Correlation, Dealt};
use crate::error::Result;
use crate::polynomial::Polynomial;
use crate::session::Session;
use crate::tensors::{Held, MaskedTensor, PrivateTensor};
use crate::transport::{Role, Tag};
use pond_core::parallel::{zip3_assign, zip_map};
use pond_core::{Crt, CrtModuli, CrtTensor, FixedPoint, PowerOfTwoTensor, Ring, RingTensor, ZTensor, Z128, Z64};

/// A ring with a truncation protocol: what protocol code needs beyond ring arithmetic.
pub trait ProtocolRing: Ring {
    /// cp's material for truncating a tensor of `shape` by `frac_bits` (all parties call this).
    fn deal_truncation(s: &mut Session, tag: Tag, shape: &[usize], frac_bits: u32) -> Result<Dealt<Self::Tensor>>;

    /// Shares of x / 2^`frac_bits` (rounded down, or up by one ulp) from shares of x.
    fn truncate_shares(
        s: &mut Session,
        x: &PrivateTensor<Self>,
        frac_bits: u32,
        dealt: Dealt<Self::Tensor>,
    ) -> Result<PrivateTensor<Self>>;

    /// Whether truncation is local (no round, nothing dealt), as in Z128.
    const LOCAL_TRUNCATION: bool;

    /// Whether the truncation protocol opens a masked form of its result, so that
    /// [`ProtocolRing::truncate_masked_shares`] costs nothing beyond the truncation (CRT).
    const MASKED_TRUNCATION: bool = false;

    /// Shares of x / 2^`frac_bits` as a [`MaskedTensor`], ready to be a factor of later products
    /// without an opening of its own. By default the truncation followed by
    /// [`Session::mask`] (one more round, n·B more per server); rings with
    /// [`ProtocolRing::MASKED_TRUNCATION`] take the mask from the truncation itself.
    fn truncate_masked_shares(
        s: &mut Session,
        x: &PrivateTensor<Self>,
        frac_bits: u32,
        dealt: Dealt<Self::Tensor>,
    ) -> Result<MaskedTensor<Self>> {
        let z = Self::truncate_shares(s, x, frac_bits, dealt)?;
        s.mask(&z)
    }

    /// Traffic and rounds of [`ProtocolRing::truncate_masked_shares`] on n elements.
    fn masked_truncation_cost(n: u64) -> Cost {
        Self::truncation_cost(n) + crate::costs::open::<Self>(n)
    }

    /// Traffic and rounds of truncating n elements (the module table, as a formula).
    fn truncation_cost(n: u64) -> Cost;

    /// p(x) on shares, as this ring evaluates polynomials (see [`crate::polynomial`]): by
    /// default the power tree in the ring itself.
    fn polynomial(
        s: &mut Session,
        x: PrivateTensor<Self>,
        p: &Polynomial,
        fp: FixedPoint<Self>,
    ) -> Result<PrivateTensor<Self>> {
        s.power_tree(x, p, fp)
    }

    /// Traffic and rounds of [`ProtocolRing::polynomial`] on n elements; `input_masked` when
    /// the input carries its masked form ([`PrivateTensor::form`]).
    fn polynomial_cost(p: &Polynomial, n: u64, input_masked: bool) -> Cost {
        crate::costs::power_tree::<Self>(p, n, input_masked)
    }
}

/// The largest Z64 tensor whose polynomials run in Z128 ([`ProtocolRing::polynomial`]).
///
/// Z128 saves the truncation rounds but doubles the bytes of every opening and dealt value and
/// costs about twice the arithmetic, so it pays where rounds dominate: on small tensors.
/// Measured on the 2-core development machine (three local parties): the poly9 sigmoid of a
/// logistic-regression batch (100 elements) and net A's polynomial ReLUs at batch 1 got faster
/// (5 rounds instead of 9, 3 instead of 5), while the sigmoid of 1e6 elements went from 758 ms
/// to 1010 ms. Over a network, where a round costs a round trip, the cut-off would be higher.
pub const LIFT_MAX_ELEMENTS: usize = 4096;

/// Whether a Z64 polynomial of n elements runs in Z128 (the one place that decides, for the
/// protocol and its cost formula alike).
fn runs_lifted(n: usize) -> bool {
    n <= LIFT_MAX_ELEMENTS
}

fn into_tensors<T>(dealt: Dealt<T>) -> Vec<T> {
    dealt.into_iter().map(Held::into_tensor).collect()
}

impl ProtocolRing for Z64 {
    const LOCAL_TRUNCATION: bool = false;

    fn truncation_cost(n: u64) -> Cost {
        Cost { bytes: [8 * n, 8 * n, 16 * n], rounds: 1 }
    }

    /// Up to [`LIFT_MAX_ELEMENTS`] elements: lifts x to Z128 (one round), runs the power tree
    /// there, where truncation is local, and narrows the result back, 1 + levels rounds instead
    /// of 2·levels + 1. Larger tensors run the power tree in Z64.
    fn polynomial(
        s: &mut Session,
        x: PrivateTensor<Z64>,
        p: &Polynomial,
        fp: FixedPoint<Z64>,
    ) -> Result<PrivateTensor<Z64>> {
        if !runs_lifted(x.len()) {
            return s.power_tree(x, p, fp);
        }
        let wide = FixedPoint::<Z128>::new(fp.frac_bits(), fp.int_bits())?;
        let x = s.lift_to_z128(&x)?;
        let y = s.power_tree(x, p, wide)?;
        Ok(s.narrow_to_z64(&y))
    }

    /// The lift to Z128 does not carry a masked form over.
    fn polynomial_cost(p: &Polynomial, n: u64, input_masked: bool) -> Cost {
        if !runs_lifted(n as usize) {
            return crate::costs::power_tree::<Z64>(p, n, input_masked);
        }
        crate::lift::lift_cost(n) + crate::costs::power_tree::<Z128>(p, n, false)
    }

    /// Deals [r, r >> f, msb(r)]: r is seeded on both servers, the other two are corrections.
    fn deal_truncation(s: &mut Session, tag: Tag, shape: &[usize], f: u32) -> Result<Dealt<ZTensor<u64>>> {
        let r: Held<ZTensor<u64>> = deal_uniform(s, tag, purpose::EXTRA, shape)?;
        let [r_hi, r_msb] = deal_values(s, tag, [purpose::EXTRA + 1, purpose::EXTRA + 2], shape, || {
            Ok([r.tensor().shr_logical(f), r.tensor().msb()])
        })?;
        Ok(vec![r, r_hi, r_msb])
    }

    fn truncate_shares(
        s: &mut Session,
        x: &PrivateTensor<Z64>,
        f: u32,
        dealt: Dealt<ZTensor<u64>>,
    ) -> Result<PrivateTensor<Z64>> {
        let tag = s.next_tag();
        let Some(xi) = x.share() else {
            return Ok(PrivateTensor::from_share(x.shape(), None));
        };
        let [r, r_hi, r_msb]: [ZTensor<u64>; 3] = into_tensors(dealt).try_into().map_err(|_| {
            crate::ProtocolError::Usage { op: "truncate", reason: "Z64 truncation needs three dealt tensors".into() }
        })?;
        let server0 = s.role() == Role::Server0;
        // y = x + 2^62 lies in [0, 2^63) when abs(x) < 2^62, so msb(y) = 0; open c = y + r.
        let offset = if server0 { 1u64 << 62 } else { 0 };
        let c_share = zip_map(xi.array().view(), r.array().view(), |x, r| x.wrapping_add(r).wrapping_add(offset));
        let mut z = s.open_owned(tag, ZTensor::from_array(c_share))?.into_array();
        // y = c - r + 2^64 w, where the wrap bit is w = msb(r) * (1 - msb(c)), and
        // floor(y / 2^f) = (c >> f) - (r >> f) + 2^(64-f) w - borrow, borrow in {0, 1};
        // server0 adds the public terms, including -2^(62-f) for the offset. One pass, in place.
        let lift = 1u64 << (62 - f);
        zip3_assign(z.view_mut(), r_hi.array().view(), r_msb.array().view(), |c, r_hi, r_msb| {
            let w = r_msb.wrapping_mul(1 - (c >> 63));
            let share = w.checked_shl(64 - f).unwrap_or(0).wrapping_sub(r_hi);
            if server0 {
                share.wrapping_add((c >> f).wrapping_sub(lift))
            } else {
                share
            }
        });
        let z = ZTensor::from_array(z);
        Ok(PrivateTensor::from_share(x.shape(), Some(z)))
    }
}

impl ProtocolRing for Z128 {
    const LOCAL_TRUNCATION: bool = true;

    fn truncation_cost(_: u64) -> Cost {
        Cost::default()
    }

    /// Local truncation needs nothing from cp.
    fn deal_truncation(_: &mut Session, _: Tag, _: &[usize], _: u32) -> Result<Dealt<ZTensor<u128>>> {
        Ok(Vec::new())
    }

    fn truncate_shares(
        s: &mut Session,
        x: &PrivateTensor<Z128>,
        f: u32,
        _: Dealt<ZTensor<u128>>,
    ) -> Result<PrivateTensor<Z128>> {
        let share = x.share().map(|xi| match s.role() {
            Role::Server0 => xi.shr_logical(f),
            _ => xi.neg().shr_logical(f).neg(),
        });
        Ok(PrivateTensor::from_share(x.shape(), share))
    }
}

impl<M: CrtModuli> ProtocolRing for Crt<M> {
    const LOCAL_TRUNCATION: bool = false;

    /// The opened c = x + 2^k + r gives e = ((c + 2^k) >> f) - 2^(k-f), and the result is
    /// e - (r >> f): masked by a = -(r >> f), whose shares are dealt anyway, with the opened
    /// difference e a function of c (so no party sees more than the truncation shows it).
    const MASKED_TRUNCATION: bool = true;

    fn truncation_cost(n: u64) -> Cost {
        let b = (M::MODULI.len() * M::RESIDUE_BYTES) as u64;
        Cost { bytes: [n * b, n * b, 2 * n * b], rounds: 1 }
    }

    fn masked_truncation_cost(n: u64) -> Cost {
        Self::truncation_cost(n)
    }

    /// Deals [r, -(r >> f)] as corrections, r uniform in [0, 2^(k+41)) from cp's private
    /// randomness, both reduced from cp's random words in one pass
    /// ([`CrtTensor::truncation_masks`]). cp keeps -(r >> f), the mask of a masked truncation's
    /// result, and not r.
    fn deal_truncation(s: &mut Session, tag: Tag, shape: &[usize], f: u32) -> Result<Dealt<CrtTensor<M>>> {
        let masks = if s.role() == Role::Cp {
            let words: ZTensor<u128> = s.private_random(tag, purpose::EXTRA, shape);
            let words = words.array().as_slice().expect("fresh random tensors are contiguous");
            Some(CrtTensor::truncation_masks(shape, words, Self::PRODUCT_BITS + 41, f)?)
        } else {
            None
        };
        let (mut r, mut neg_r_hi) = masks.map_or((None, None), |(r, neg)| (Some(r), Some(neg)));
        let server = s.role() != Role::Cp;
        // Only cp builds the values, and it built both above.
        let r = deal_value(s, tag, purpose::EXTRA, shape, || Ok(r.take().expect("cp built r")))?;
        let r = server.then_some(r);
        let neg_r_hi =
            deal_value(s, tag, purpose::EXTRA + 1, shape, || Ok(neg_r_hi.take().expect("cp built -(r >> f)")))?;
        Ok(r.into_iter().chain([neg_r_hi]).collect())
    }

    /// Opens c = x + r (server0 adds the public 2^k to the opened value, not to its share), then
    /// server0's share is (c + 2^k) >> f - 2^(k-f) - (r >> f) and server1's is -(r >> f), fused
    /// into one pass over the dealt -(r >> f).
    fn truncate_shares(
        s: &mut Session,
        x: &PrivateTensor<Self>,
        f: u32,
        dealt: Dealt<CrtTensor<M>>,
    ) -> Result<PrivateTensor<Self>> {
        let tag = s.next_tag();
        let Some(xi) = x.share() else {
            return Ok(PrivateTensor::from_share(x.shape(), None));
        };
        let (c, mut z) = open_crt_truncation(s, tag, xi, dealt)?;
        if s.role() == Role::Server0 {
            add_truncated_opening(&mut z, &c, f)?;
        }
        Ok(PrivateTensor::from_share(x.shape(), Some(z)))
    }

    /// As [`ProtocolRing::truncate_shares`], with both servers computing the public
    /// e = (c + 2^k) >> f - 2^(k-f) (one more pass on server1): the result is e + a with the
    /// mask a = -(r >> f), shared by the dealt tensor and held whole by cp.
    fn truncate_masked_shares(
        s: &mut Session,
        x: &PrivateTensor<Self>,
        f: u32,
        dealt: Dealt<CrtTensor<M>>,
    ) -> Result<MaskedTensor<Self>> {
        let tag = s.next_tag();
        let Some(xi) = x.share() else {
            let mask = dealt.into_iter().next_back().ok_or_else(|| crate::ProtocolError::Usage {
                op: "truncate",
                reason: "a masked CRT truncation needs cp's mask".into(),
            })?;
            return Ok(MaskedTensor { value: PrivateTensor::from_share(x.shape(), None), mask, masked: None });
        };
        let (c, mask) = open_crt_truncation(s, tag, xi, dealt)?;
        let e = truncated_opening(&c, f)?;
        let value = if s.role() == Role::Server0 { mask.add(&e)? } else { mask.clone() };
        Ok(MaskedTensor {
            value: PrivateTensor::from_share(x.shape(), Some(value)),
            mask: Held::Share(mask),
            masked: Some(e),
        })
    }
}

/// A server's part of the CRT truncation up to the opening: opens c = x + r (x's share `xi`,
/// under `tag`) and returns it with the dealt share of -(r >> f).
fn open_crt_truncation<M: CrtModuli>(
    s: &mut Session,
    tag: Tag,
    xi: &CrtTensor<M>,
    dealt: Dealt<CrtTensor<M>>,
) -> Result<(CrtTensor<M>, CrtTensor<M>)> {
    let [r, neg_r_hi]: [CrtTensor<M>; 2] = into_tensors(dealt).try_into().map_err(|_| crate::ProtocolError::Usage {
        op: "truncate",
        reason: "CRT truncation needs two dealt tensors".into(),
    })?;
    let mut c = r;
    c.add_assign(xi)?;
    Ok((s.open_owned(tag, c)?, neg_r_hi))
}

/// `z += (c + 2^k) >> f - 2^(k-f)`: the public part of the CRT truncation's result.
fn add_truncated_opening<M: CrtModuli>(z: &mut CrtTensor<M>, c: &CrtTensor<M>, f: u32) -> Result<()> {
    let k = Crt::<M>::PRODUCT_BITS;
    // x + 2^k + r < 2^(k+42) <= M as an integer, so it is (c + 2^k) mod M.
    Ok(z.add_shifted(c, 1u128 << k, f, -(1i128 << (k - f)))?)
}

/// `(c + 2^k) >> f - 2^(k-f)` as a new tensor (see [`add_truncated_opening`]).
fn truncated_opening<M: CrtModuli>(c: &CrtTensor<M>, f: u32) -> Result<CrtTensor<M>> {
    let k = Crt::<M>::PRODUCT_BITS;
    Ok(CrtTensor::shifted(c, 1u128 << k, f, -(1i128 << (k - f)))?)
}

impl Session {
    /// Shares of x / 2^`frac_bits` from shares of x, by the ring's protocol (see the module
    /// table for rounds, traffic and error).
    pub fn truncate<R: ProtocolRing>(&mut self, x: &PrivateTensor<R>, frac_bits: u32) -> Result<PrivateTensor<R>> {
        self.op("truncate", |s| {
            let dealt = s.deal::<R>(&Correlation::Truncation { shape: x.shape(), frac_bits })?;
            R::truncate_shares(s, x, frac_bits, dealt)
        })
    }

    /// [`Session::truncate`], the result carrying its masked form where that is free
    /// ([`ProtocolRing::MASKED_TRUNCATION`], via [`Session::truncate_masked`]) and plain
    /// elsewhere: a product or polynomial that takes the result then opens nothing for it.
    /// Traffic and rounds are those of the truncation in every ring.
    pub fn truncate_keeping_form<R: ProtocolRing>(
        &mut self,
        x: &PrivateTensor<R>,
        frac_bits: u32,
    ) -> Result<PrivateTensor<R>> {
        if R::MASKED_TRUNCATION {
            Ok(self.truncate_masked(x, frac_bits)?.into_private())
        } else {
            self.truncate(x, frac_bits)
        }
    }

    /// [`Session::truncate`] with the result masked ([`ProtocolRing::truncate_masked_shares`]):
    /// free where the ring's truncation opens the masked form (CRT), one more opening elsewhere.
    pub fn truncate_masked<R: ProtocolRing>(
        &mut self,
        x: &PrivateTensor<R>,
        frac_bits: u32,
    ) -> Result<MaskedTensor<R>> {
        self.op("truncate", |s| {
            let dealt = s.deal::<R>(&Correlation::Truncation { shape: x.shape(), frac_bits })?;
            R::truncate_masked_shares(s, x, frac_bits, dealt)
        })
    }
}
