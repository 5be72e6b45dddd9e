//! Products of private tensors by Beaver's trick, with fresh or reused (Pond) masks.
//!
//! For a bilinear op ∘ (elementwise, matmul, conv2d) and operands x = a + E, y = b + F, where cp
//! dealt masks a, b and shares of c = a ∘ b and the servers opened E = x - a and F = y - b:
//!
//!   x ∘ y = c + E ∘ b + a ∘ F + E ∘ F = c + E ∘ y + a ∘ F   (since b + F = y)
//!
//! so server i computes ci + E ∘ yi + a_i ∘ F from its share yi of y: two local products each,
//! the same on both servers, with no public term to add. A [`MaskedTensor`] operand already has
//! its E opened, so only the other operand is opened: a weight masked once costs nothing per
//! batch. The mirror form x ∘ y = c + x ∘ F + E ∘ b (ci + xi ∘ F + E ∘ b_i) reads y's mask
//! share instead of x's; a product reads the larger operand's opened difference and mask share,
//! not its value share (a fresh operand's value share is read once more, to form x - a), so a
//! masked training batch used as the left operand of the forward product and the right operand
//! of the weight gradient is read from the same two arrays.
//!
//! Costs (B bytes per element; |x| element count of x): each server sends |x| (if x is not
//! masked) + |y| (if y is not masked) elements, cp sends |x ∘ y| elements to server1; one round
//! when something is opened, none when both operands are masked.
//!
//! With cp dealing online, server1 receives cp's product correction only after its local
//! products ([`crate::ProductShare::FromCp`]): server1 computes while cp computes the product,
//! instead of waiting for it first. Same messages and bytes; only the order of work changes.
//!
//! # Inputs cp owns
//! When one operand is an input that cp shared as its owner ([`PrivateTensor::known_to_cp`]) and
//! the other is masked (y = F + b, F opened, cp holding b), cp knows x and b, so
//!
//!   x ∘ y = x ∘ F + x ∘ b
//!
//! with x ∘ F local on each server's share xi, and x ∘ b dealt by cp like a triple's product
//! (server0's share seeded, server1's the correction). Nothing is opened: no server round, no
//! server traffic, cp's |x ∘ y| elements to server1, and one local product per server instead of
//! two (cp's product replaces the triple's a ∘ b). cp learns nothing it did not know (its own
//! input and its own mask); server1's correction is uniform. This is pond's prediction client
//! (cp) feeding the first layer: the layer's input is never opened.

use crate::dealer::{deal_product_value, Bilinear, Correlation, MaskSide};
use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::{Held, MaskedTensor, PrivateTensor, PublicTensor};
use crate::transport::Role;
use crate::truncation::ProtocolRing;
use pond_core::RingTensor;
use std::borrow::Cow;

/// An operand of a private product.
#[derive(Debug, Clone, Copy)]
pub enum Operand<'a, R: ProtocolRing> {
    /// A private tensor: a fresh mask is dealt and x - a is opened.
    Private(&'a PrivateTensor<R>),
    /// A masked tensor: its mask and opened difference are reused.
    Masked(&'a MaskedTensor<R>),
}

impl<'a, R: ProtocolRing> Operand<'a, R> {
    fn shape(&self) -> &'a [usize] {
        match self {
            Operand::Private(x) => x.shape(),
            Operand::Masked(x) => x.shape(),
        }
    }

    fn side(&self) -> MaskSide<'a, R::Tensor> {
        match self {
            Operand::Private(x) => MaskSide::Fresh(x.shape()),
            Operand::Masked(x) => MaskSide::Reused(&x.mask),
        }
    }
}

impl<'a, R: ProtocolRing> From<&'a PrivateTensor<R>> for Operand<'a, R> {
    fn from(x: &'a PrivateTensor<R>) -> Self {
        Operand::Private(x)
    }
}

impl<'a, R: ProtocolRing> From<&'a MaskedTensor<R>> for Operand<'a, R> {
    fn from(x: &'a MaskedTensor<R>) -> Self {
        Operand::Masked(x)
    }
}

/// A server's view of one operand during a product: its mask share and the opened difference,
/// borrowed from a masked tensor or owned when fresh.
struct Opened<'a, T: Clone> {
    mask: Cow<'a, T>,
    diff: Cow<'a, T>,
}

/// Elements of a tensor of `shape`.
fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl<'a, R: ProtocolRing> Operand<'a, R> {
    /// This server's share of the operand's value.
    fn value_share(&self) -> &'a R::Tensor {
        let value = match self {
            Operand::Private(p) => p,
            Operand::Masked(m) => &m.value,
        };
        value.share().expect("servers hold shares")
    }
}

impl Session {
    /// x ∘ y on shares, for any bilinear `op` (see the module docs for the formula and costs).
    /// The result is at scale 2^(2f) for fixed-point inputs: truncate it afterwards.
    pub fn product<'a, R: ProtocolRing>(
        &mut self,
        op: Bilinear,
        x: impl Into<Operand<'a, R>>,
        y: impl Into<Operand<'a, R>>,
    ) -> Result<PrivateTensor<R>> {
        let (x, y) = (x.into(), y.into());
        let out_shape = op.output_shape(x.shape(), y.shape())?;
        let name = op.name();
        match (x, y) {
            (Operand::Private(k), Operand::Masked(m)) if k.known_to_cp() => {
                return self.known_product(op, k, true, m, &out_shape)
            }
            (Operand::Masked(m), Operand::Private(k)) if k.known_to_cp() => {
                return self.known_product(op, k, false, m, &out_shape)
            }
            _ => {}
        }
        self.op(name, |s| {
            let (masks, c) = s.deal_product::<R>(&Correlation::Product { op, lhs: x.side(), rhs: y.side() })?;
            let tag = s.next_tag();
            if s.role() == Role::Cp {
                return Ok(PrivateTensor::from_share(&out_shape, None));
            }
            let mut masks = masks.into_iter().map(Held::into_tensor);
            let mut fresh = |operand: Operand<'a, R>| -> Result<Option<(R::Tensor, R::Tensor)>> {
                match operand {
                    Operand::Private(p) => {
                        let mask = masks.next().expect("one mask per fresh operand");
                        let diff = p.share().expect("servers hold shares").sub(&mask)?;
                        Ok(Some((mask, diff)))
                    }
                    Operand::Masked(_) => Ok(None),
                }
            };
            let (x_fresh, y_fresh) = (fresh(x)?, fresh(y)?);
            // Open both differences in one round: send both, then receive both.
            let peer = s.peer_server(name)?;
            for (_, diff) in x_fresh.iter().chain(y_fresh.iter()) {
                s.send_tensor(peer, tag, diff)?;
            }
            let mut open =
                |f: Option<(R::Tensor, R::Tensor)>, operand: Operand<'a, R>| -> Result<Opened<'a, R::Tensor>> {
                    match (f, operand) {
                        (Some((mask, mut diff)), _) => {
                            s.recv_into(peer, tag, &mut diff)?;
                            Ok(Opened { mask: Cow::Owned(mask), diff: Cow::Owned(diff) })
                        }
                        (None, Operand::Masked(m)) => Ok(Opened {
                            mask: Cow::Borrowed(m.mask.tensor()),
                            diff: Cow::Borrowed(m.masked.as_ref().expect("servers hold the opened difference")),
                        }),
                        (None, Operand::Private(_)) => unreachable!("private operands are fresh"),
                    }
                };
            let (e, f) = (open(x_fresh, x)?, open(y_fresh, y)?);
            // Both products accumulate into the product share in place, in the form that reads
            // the larger operand's mask share rather than its value share (see the module docs).
            let z = c.accumulate(s, &out_shape, |z| {
                if count(y.shape()) > count(x.shape()) {
                    op.add_apply_pair(z, (x.value_share(), &f.diff), (&e.diff, &f.mask))
                } else {
                    op.add_apply_pair(z, (&e.diff, y.value_share()), (&e.mask, &f.diff))
                }
            })?;
            Ok(PrivateTensor::from_share(&out_shape, Some(z)))
        })
    }

    /// x ∘ y (`left`) or y ∘ x for an input x cp owns and a `masked` operand y: x ∘ F + x ∘ b,
    /// the second term dealt by cp (see the module docs).
    fn known_product<R: ProtocolRing>(
        &mut self,
        op: Bilinear,
        x: &PrivateTensor<R>,
        left: bool,
        masked: &MaskedTensor<R>,
        out_shape: &[usize],
    ) -> Result<PrivateTensor<R>> {
        let ordered = |k, m| if left { (k, m) } else { (m, k) };
        self.op(op.name(), |s| {
            let tag = s.next_tag();
            let share = deal_product_value(s, tag, out_shape, true, || {
                let value = x.cp_value().ok_or_else(|| ProtocolError::Usage {
                    op: op.name(),
                    reason: "cp has no copy of the input it owns".into(),
                })?;
                let (a, b) = ordered(value, masked.mask.tensor());
                Ok(op.apply(a, b)?)
            })?;
            if s.role() == Role::Cp {
                return Ok(PrivateTensor::from_share(out_shape, None));
            }
            let diff = masked.masked.as_ref().expect("servers hold the opened difference");
            let (a, b) = ordered(x.share().expect("servers hold shares"), diff);
            let z = share.accumulate(s, out_shape, |z| op.add_apply(z, a, b))?;
            Ok(PrivateTensor::from_share(out_shape, Some(z)))
        })
    }

    /// Elementwise product x * y (Beaver).
    pub fn mul<'a, R: ProtocolRing>(
        &mut self,
        x: impl Into<Operand<'a, R>>,
        y: impl Into<Operand<'a, R>>,
    ) -> Result<PrivateTensor<R>> {
        self.product(Bilinear::Mul, x, y)
    }

    /// Matrix product x @ y (Beaver).
    pub fn matmul<'a, R: ProtocolRing>(
        &mut self,
        x: impl Into<Operand<'a, R>>,
        y: impl Into<Operand<'a, R>>,
    ) -> Result<PrivateTensor<R>> {
        self.product(Bilinear::Matmul, x, y)
    }

    /// Convolution of an NCHW input with OIHW filters (Beaver).
    pub fn conv2d<'a, R: ProtocolRing>(
        &mut self,
        x: impl Into<Operand<'a, R>>,
        filters: impl Into<Operand<'a, R>>,
        params: pond_core::Conv2dParams,
    ) -> Result<PrivateTensor<R>> {
        self.product(Bilinear::Conv2d(params), x, filters)
    }

    /// Window sums (kh, kw) of the convolution of an NCHW input with OIHW filters (Beaver, one
    /// product whose output, and cp's correction, have the pooled size; see
    /// [`Bilinear::PooledConv2d`]).
    pub fn pooled_conv2d<'a, R: ProtocolRing>(
        &mut self,
        x: impl Into<Operand<'a, R>>,
        filters: impl Into<Operand<'a, R>>,
        params: pond_core::Conv2dParams,
        window: (usize, usize),
    ) -> Result<PrivateTensor<R>> {
        self.product(Bilinear::PooledConv2d { params, window }, x, filters)
    }

    /// x * x with a square pair (a, a*a): x^2 = a^2 + 2aE + E^2 = c + E(a + x), so server i
    /// computes ci + E·ai + E·xi.
    /// Traffic: servers n·B each, cp n·B to server1; one round.
    pub fn square<R: ProtocolRing>(&mut self, x: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        self.op("square", |s| {
            let (masks, c) = s.deal_product::<R>(&Correlation::Square { shape: x.shape() })?;
            let tag = s.next_tag();
            let Some(xi) = x.share() else {
                return Ok(PrivateTensor::from_share(x.shape(), None));
            };
            let [a]: [R::Tensor; 1] =
                masks.into_iter().map(Held::into_tensor).collect::<Vec<_>>().try_into().map_err(|_| {
                    crate::ProtocolError::Usage { op: "square", reason: "square needs one dealt mask".into() }
                })?;
            let e = s.open_owned(tag, xi.sub(&a)?)?;
            // z = c + E·a + E·x on each server's shares, accumulated in place in one pass.
            let z = c.accumulate(s, x.shape(), |z| z.mul_add_pair_assign((&a, &e), (xi, &e)))?;
            Ok(PrivateTensor::from_share(x.shape(), Some(z)))
        })
    }

    /// Public times private, elementwise (local, no traffic).
    pub fn mul_public<R: ProtocolRing>(
        &mut self,
        x: &PrivateTensor<R>,
        p: &PublicTensor<R>,
    ) -> Result<PrivateTensor<R>> {
        let share = x.share().map(|xi| xi.mul(&p.value)).transpose()?;
        Ok(PrivateTensor::from_share(x.shape(), share))
    }

    /// Private x @ public p (local, no traffic).
    pub fn matmul_public<R: ProtocolRing>(
        &mut self,
        x: &PrivateTensor<R>,
        p: &PublicTensor<R>,
    ) -> Result<PrivateTensor<R>> {
        let shape = Bilinear::Matmul.output_shape(x.shape(), p.shape())?;
        let share = x.share().map(|xi| xi.matmul(&p.value)).transpose()?;
        Ok(PrivateTensor::from_share(&shape, share))
    }

    /// Public p @ private x (local, no traffic).
    pub fn public_matmul<R: ProtocolRing>(
        &mut self,
        p: &PublicTensor<R>,
        x: &PrivateTensor<R>,
    ) -> Result<PrivateTensor<R>> {
        let shape = Bilinear::Matmul.output_shape(p.shape(), x.shape())?;
        let share = x.share().map(|xi| p.value.matmul(xi)).transpose()?;
        Ok(PrivateTensor::from_share(&shape, share))
    }
}
