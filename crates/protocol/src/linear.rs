//! Local operations on shares: no communication, no dealer.

use crate::error::Result;
use crate::session::Session;
use crate::tensors::{MaskedForm, PrivateTensor, PublicTensor};
use crate::transport::Role;
use pond_core::{layout, Ring, RingTensor};
use std::ops::Range;

fn same_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    pond_core::layout::check_same_shape(op, a, b).map_err(Into::into)
}

/// A tensor of this shape without elements in memory (unit elements): cp, which holds no share,
/// runs a restructuring's layout function on it to check and compute the output shape.
type ShapeProxy = ndarray::ArrayD<()>;

/// Applies a shape-changing function to the share (servers), or its layout twin `shape_of` to
/// a [`ShapeProxy`] of the public shape (cp), so that cp checks shapes too without allocating
/// a tensor of the input's size.
fn restructure<R: Ring>(
    x: &PrivateTensor<R>,
    f: impl Fn(&R::Tensor) -> pond_core::Result<R::Tensor>,
    shape_of: impl Fn(&ShapeProxy) -> pond_core::Result<ShapeProxy>,
) -> Result<PrivateTensor<R>> {
    match x.share() {
        Some(xi) => {
            let y = f(xi)?;
            let shape = y.shape().to_vec();
            Ok(PrivateTensor::from_share(&shape, Some(y)))
        }
        None => {
            let y = shape_of(&ShapeProxy::default(ndarray::IxDyn(x.shape())))?;
            Ok(PrivateTensor::from_share(y.shape(), None))
        }
    }
}

impl Session {
    /// x + y.
    pub fn add<R: Ring>(&self, x: &PrivateTensor<R>, y: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        same_shape("add", x.shape(), y.shape())?;
        let share = match (x.share(), y.share()) {
            (Some(a), Some(b)) => Some(a.add(b)?),
            _ => None,
        };
        Ok(PrivateTensor::from_share(x.shape(), share))
    }

    /// x += y, in x's buffer.
    pub fn add_assign<R: Ring>(&self, x: &mut PrivateTensor<R>, y: &PrivateTensor<R>) -> Result<()> {
        same_shape("add_assign", x.shape(), y.shape())?;
        if let (Some(a), Some(b)) = (x.share_mut(), y.share()) {
            a.add_assign(b)?;
        }
        Ok(())
    }

    /// x += c * y for a ring scalar c, in x's buffer (no scaled copy of y).
    pub fn add_scaled_assign<R: Ring>(&self, x: &mut PrivateTensor<R>, y: &PrivateTensor<R>, c: i128) -> Result<()> {
        same_shape("add_scaled_assign", x.shape(), y.shape())?;
        if let (Some(a), Some(b)) = (x.share_mut(), y.share()) {
            a.add_scaled_assign(b, c)?;
        }
        Ok(())
    }

    /// x += y with y broadcast to x's shape, in x's buffer (no broadcast copy of y).
    pub fn add_broadcast_assign<R: Ring>(&self, x: &mut PrivateTensor<R>, y: &PrivateTensor<R>) -> Result<()> {
        match (x.share_mut(), y.share()) {
            (Some(a), Some(b)) => a.add_broadcast_assign(b)?,
            // cp holds no share but checks the shapes as the servers do.
            _ => {
                let proxy = ShapeProxy::default(ndarray::IxDyn(y.shape()));
                layout::broadcast_view(&proxy, x.shape())?;
            }
        }
        Ok(())
    }

    /// x - y.
    pub fn sub<R: Ring>(&self, x: &PrivateTensor<R>, y: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        same_shape("sub", x.shape(), y.shape())?;
        let share = match (x.share(), y.share()) {
            (Some(a), Some(b)) => Some(a.sub(b)?),
            _ => None,
        };
        Ok(PrivateTensor::from_share(x.shape(), share))
    }

    /// -x.
    pub fn neg<R: Ring>(&self, x: &PrivateTensor<R>) -> PrivateTensor<R> {
        PrivateTensor::from_share(x.shape(), x.share().map(|a| a.neg()))
    }

    /// x + p for a public p (server0 adds it to its share).
    pub fn add_public<R: Ring>(&self, x: &PrivateTensor<R>, p: &PublicTensor<R>) -> Result<PrivateTensor<R>> {
        same_shape("add_public", x.shape(), p.shape())?;
        let share = match x.share() {
            Some(a) if self.role() == Role::Server0 => Some(a.add(&p.value)?),
            other => other.cloned(),
        };
        Ok(PrivateTensor::from_share(x.shape(), share))
    }

    /// x + c for a ring scalar c (server0 adds it).
    pub fn add_scalar<R: Ring>(&self, x: &PrivateTensor<R>, c: i128) -> PrivateTensor<R> {
        let share = match x.share() {
            Some(a) if self.role() == Role::Server0 => Some(a.add_scalar(c)),
            other => other.cloned(),
        };
        PrivateTensor::from_share(x.shape(), share)
    }

    /// [`Session::add_scalar`] of a tensor the caller no longer needs, in its buffer.
    pub fn add_scalar_owned<R: Ring>(&self, mut x: PrivateTensor<R>, c: i128) -> PrivateTensor<R> {
        // share_mut drops the masked form, which the sum would make stale, on every party.
        if let Some(a) = x.share_mut().filter(|_| self.role() == Role::Server0) {
            a.add_scalar_assign(c);
        }
        x
    }

    /// c * x for a ring scalar c.
    pub fn mul_scalar<R: Ring>(&self, x: &PrivateTensor<R>, c: i128) -> PrivateTensor<R> {
        PrivateTensor::from_share(x.shape(), x.share().map(|a| a.mul_scalar(c)))
    }

    /// Sum over `axis`.
    pub fn sum_axis<R: Ring>(&self, x: &PrivateTensor<R>, axis: usize) -> Result<PrivateTensor<R>> {
        restructure(x, |t| t.sum_axis(axis), |p| layout::sum_axis(p, axis, |_, _| ()))
    }

    /// Same elements, new shape (a masked form is reshaped with them).
    pub fn reshape<R: Ring>(&self, x: &PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        self.reshape_owned(x.clone(), shape)
    }

    /// [`Session::reshape`] of a tensor the caller no longer needs: the share, and the masked
    /// form unless another copy of the tensor shares it, keep their buffers (no copy).
    pub fn reshape_owned<R: Ring>(&self, mut x: PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        let form = x.take_form();
        let from = x.shape().to_vec();
        let y = match x.into_share() {
            Some(share) => {
                let y = share.into_reshaped(shape)?;
                let shape = y.shape().to_vec();
                PrivateTensor::from_share(&shape, Some(y))
            }
            None => PrivateTensor::from_share(
                layout::reshape(&ShapeProxy::default(ndarray::IxDyn(&from)), shape)?.shape(),
                None,
            ),
        };
        let Some(form) = form else {
            return Ok(y);
        };
        let shape = y.shape().to_vec();
        Ok(y.with_form(MaskedForm {
            mask: form.mask.try_map_owned(|t| t.into_reshaped(&shape))?,
            masked: form.masked.map(|d| d.into_reshaped(&shape)).transpose()?,
        }))
    }

    /// Axes permuted.
    pub fn permute<R: Ring>(&self, x: &PrivateTensor<R>, axes: &[usize]) -> Result<PrivateTensor<R>> {
        restructure(x, |t| t.permute(axes), |p| layout::permute(p, axes))
    }

    /// 2-D transpose.
    pub fn transpose<R: Ring>(&self, x: &PrivateTensor<R>) -> Result<PrivateTensor<R>> {
        restructure(x, |t| t.transpose(), |p| layout::permute(p, &[1, 0]))
    }

    /// A range of one axis.
    pub fn slice_axis<R: Ring>(
        &self,
        x: &PrivateTensor<R>,
        axis: usize,
        range: Range<usize>,
    ) -> Result<PrivateTensor<R>> {
        restructure(x, |t| t.slice_axis(axis, range.clone()), |p| layout::slice_axis(p, axis, range.clone()))
    }

    /// Broadcast to `shape`.
    pub fn broadcast_to<R: Ring>(&self, x: &PrivateTensor<R>, shape: &[usize]) -> Result<PrivateTensor<R>> {
        restructure(x, |t| t.broadcast_to(shape), |p| layout::broadcast_to(p, shape))
    }
}
