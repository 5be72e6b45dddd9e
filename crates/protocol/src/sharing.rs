//! Getting secrets in and out: input sharing, masking, opening and revealing.

use crate::dealer::{deal_uniform, purpose};
use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::{MaskedTensor, PrivateTensor, PublicTensor};
use crate::transport::{Role, Tag};
use pond_core::{Ring, RingTensor};
use std::borrow::Cow;

fn need_value<'v, T: RingTensor>(s: &Session, value: Option<Cow<'v, T>>, shape: &[usize]) -> Result<Cow<'v, T>> {
    let v = value.ok_or_else(|| ProtocolError::Usage {
        op: "share_input",
        reason: format!("{} is the input owner but has no value", s.role()),
    })?;
    if v.shape() != shape {
        return Err(pond_core::CoreError::ShapeMismatch {
            op: "share_input (value vs declared shape)",
            left: v.shape().to_vec(),
            right: shape.to_vec(),
        }
        .into());
    }
    Ok(v)
}

impl Session {
    /// Secret-shares `value`, held by `owner` (other parties pass `None`), as a private tensor of
    /// the public `shape`. The share of the server other than the owner comes from a seed.
    ///
    /// Traffic: none when the owner is a server; when the owner is cp, cp sends n·B bytes to
    /// server1 (n elements, B bytes per element). Rounds: 0 or 1.
    pub fn share_input<R: Ring>(
        &mut self,
        owner: Role,
        value: Option<&R::Tensor>,
        shape: &[usize],
    ) -> Result<PrivateTensor<R>> {
        self.share_input_cow(owner, value.map(Cow::Borrowed), shape)
    }

    /// [`Session::share_input`] of a value the owner no longer needs: cp, which keeps its input
    /// for the products that use it without an opening, keeps this one instead of a copy.
    pub fn share_input_owned<R: Ring>(
        &mut self,
        owner: Role,
        value: Option<R::Tensor>,
        shape: &[usize],
    ) -> Result<PrivateTensor<R>> {
        self.share_input_cow(owner, value.map(Cow::Owned), shape)
    }

    fn share_input_cow<R: Ring>(
        &mut self,
        owner: Role,
        value: Option<Cow<'_, R::Tensor>>,
        shape: &[usize],
    ) -> Result<PrivateTensor<R>> {
        self.op("share_input", |s| {
            let tag = s.next_tag();
            let me = s.role();
            let mut cp_copy = None;
            let share = match (owner, me) {
                (Role::Cp, Role::Cp) => {
                    let x = need_value(s, value, shape)?;
                    let x0: R::Tensor = s.shared_random(Role::Server0, tag, purpose::INPUT, shape)?;
                    s.send_tensor(Role::Server1, tag, &x.sub(&x0)?)?;
                    cp_copy = Some(x.into_owned());
                    None
                }
                (Role::Cp, Role::Server0) => Some(s.shared_random(Role::Cp, tag, purpose::INPUT, shape)?),
                (Role::Cp, Role::Server1) => Some(s.recv_tensor(Role::Cp, tag, shape)?),
                (_, Role::Cp) => None,
                (owner, me) if owner == me => {
                    let x = need_value(s, value, shape)?;
                    let peer = me.peer().expect("servers have a peer");
                    let other: R::Tensor = s.shared_random(peer, tag, purpose::INPUT, shape)?;
                    Some(x.sub(&other)?)
                }
                (owner, _) => Some(s.shared_random(owner, tag, purpose::INPUT, shape)?),
            };
            let x = PrivateTensor::from_share(shape, share);
            // An input cp owns is marked on every party, with cp's copy on cp.
            Ok(if owner == Role::Cp { x.with_known_to_cp(cp_copy) } else { x })
        })
    }

    /// For servers: sends this server's `share` to the other and returns the sum (the opened
    /// value). Traffic: n·B bytes per server; 1 round.
    pub fn open<T: RingTensor>(&mut self, tag: Tag, share: &T) -> Result<T> {
        self.open_owned(tag, share.clone())
    }

    /// [`Session::open`] of a share this server no longer needs: the peer's share is added into
    /// it in place (no decoded temporary). Same traffic and round.
    pub fn open_owned<T: RingTensor>(&mut self, tag: Tag, mut share: T) -> Result<T> {
        let peer = self.peer_server("open")?;
        self.send_tensor(peer, tag, &share)?;
        self.recv_into(peer, tag, &mut share)?;
        Ok(share)
    }

    /// Reveals `x` to both servers (cp learns nothing and gets `None`).
    /// Traffic: n·B bytes per server; 1 round.
    pub fn reveal<R: Ring>(&mut self, x: &PrivateTensor<R>) -> Result<Option<PublicTensor<R>>> {
        self.op("reveal", |s| {
            let tag = s.next_tag();
            match x.share() {
                Some(share) => Ok(Some(PublicTensor::new(s.open(tag, share)?))),
                None => Ok(None),
            }
        })
    }

    /// Reveals `x` to `owner` only; everyone else gets `None`.
    /// Traffic: when the owner is a server, the other server sends n·B bytes; when it is cp,
    /// both servers do. 1 round.
    pub fn reveal_to<R: Ring>(&mut self, x: &PrivateTensor<R>, owner: Role) -> Result<Option<R::Tensor>> {
        self.op("reveal_to", |s| {
            let tag = s.next_tag();
            let me = s.role();
            match (x.share(), me == owner) {
                (Some(share), false) => {
                    s.send_tensor(owner, tag, share)?;
                    Ok(None)
                }
                (Some(share), true) => {
                    let peer = me.peer().expect("servers have a peer");
                    let other: R::Tensor = s.recv_tensor(peer, tag, x.shape())?;
                    Ok(Some(other.add(share)?))
                }
                (None, true) => {
                    let x0: R::Tensor = s.recv_tensor(Role::Server0, tag, x.shape())?;
                    let x1: R::Tensor = s.recv_tensor(Role::Server1, tag, x.shape())?;
                    Ok(Some(x0.add(&x1)?))
                }
                (None, false) => Ok(None),
            }
        })
    }

    /// Masks `x` once with a fresh mask a from cp and opens x - a to both servers, so later
    /// products with x reuse the mask (see [`MaskedTensor`]).
    /// Traffic: n·B bytes per server; 1 round.
    pub fn mask<R: Ring>(&mut self, x: &PrivateTensor<R>) -> Result<MaskedTensor<R>> {
        let mut masked = self.mask_many(vec![x.clone()])?;
        Ok(masked.pop().expect("one masked tensor per input"))
    }

    /// [`Session::mask`] of several tensors in one round: each gets its own fresh mask, and
    /// every opening is sent before any is received. The tensors are moved into the results.
    /// A tensor that carries its masked form ([`PrivateTensor::form`]) takes it, with no mask,
    /// traffic or round. Traffic: the sum of the others' n·B bytes per server; 1 round (none
    /// when every tensor carries its form).
    pub fn mask_many<R: Ring>(&mut self, xs: Vec<PrivateTensor<R>>) -> Result<Vec<MaskedTensor<R>>> {
        if xs.iter().any(|x| x.form().is_some()) {
            // Every party holds the same forms (the program decides them), so all take this path.
            let (formed, fresh): (Vec<_>, Vec<_>) = xs.into_iter().enumerate().partition(|(_, x)| x.form().is_some());
            let fresh_indices: Vec<usize> = fresh.iter().map(|(i, _)| *i).collect();
            let masked_fresh = match fresh.is_empty() {
                true => Vec::new(),
                false => self.mask_many(fresh.into_iter().map(|(_, x)| x).collect())?,
            };
            let mut out: Vec<(usize, MaskedTensor<R>)> = formed
                .into_iter()
                .map(|(i, x)| (i, MaskedTensor::from_form(x).expect("partitioned by form")))
                .chain(fresh_indices.into_iter().zip(masked_fresh))
                .collect();
            out.sort_by_key(|(i, _)| *i);
            return Ok(out.into_iter().map(|(_, m)| m).collect());
        }
        self.op("mask", |s| {
            let tags: Vec<Tag> = xs.iter().map(|_| s.next_tag()).collect();
            let masks = xs
                .iter()
                .zip(&tags)
                .map(|(x, &tag)| deal_uniform::<R::Tensor>(s, tag, purpose::LHS_MASK, x.shape()))
                .collect::<Result<Vec<_>>>()?;
            let shares: Option<Vec<&R::Tensor>> = xs.iter().map(|x| x.share()).collect();
            let Some(shares) = shares else {
                return Ok(xs
                    .into_iter()
                    .zip(masks)
                    .map(|(value, mask)| MaskedTensor { value, mask, masked: None })
                    .collect());
            };
            let peer = s.peer_server("mask")?;
            let mut diffs = Vec::with_capacity(xs.len());
            for ((share, mask), &tag) in shares.iter().zip(&masks).zip(&tags) {
                let diff = share.sub(mask.tensor())?;
                s.send_tensor(peer, tag, &diff)?;
                diffs.push(diff);
            }
            for (diff, &tag) in diffs.iter_mut().zip(&tags) {
                s.recv_into(peer, tag, diff)?;
            }
            Ok(xs
                .into_iter()
                .zip(masks)
                .zip(diffs)
                .map(|((value, mask), diff)| MaskedTensor { value, mask, masked: Some(diff) })
                .collect())
        })
    }
}
