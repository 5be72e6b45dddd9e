//! The values a protocol program works with. Shapes are public; contents depend on the role.
//!
//! | type | server0 / server1 hold | cp holds |
//! |---|---|---|
//! | [`PublicTensor`] | the value | the value, when it was made public to cp too |
//! | [`PrivateTensor`] | an additive share (x = x0 + x1) | nothing |
//! | [`MaskedTensor`] | a share of x, a share of its mask a, and the opened x - a | the mask a |

use pond_core::{Ring, RingTensor};
use std::sync::Arc;

/// A tensor every server knows in the clear.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicTensor<R: Ring> {
    /// The value.
    pub value: R::Tensor,
}

impl<R: Ring> PublicTensor<R> {
    /// Wraps a value.
    pub fn new(value: R::Tensor) -> Self {
        PublicTensor { value }
    }

    /// Its shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}

/// A secret held as additive shares by the two servers.
///
/// It may carry its masked form ([`MaskedForm`]) when the operation that produced it got one for
/// free (a CRT polynomial's final truncation, [`crate::Session::polynomial`]): masking it then
/// costs nothing ([`crate::Session::mask`]). Operations that change the value drop the form;
/// reshaping keeps it.
///
/// It may also be marked as known to cp ([`PrivateTensor::known_to_cp`]): an input that cp
/// shared as its owner, whose products with masked operands then need no opening
/// ([`crate::Session::product`]). Only [`crate::Session::share_input`] sets the mark.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateTensor<R: Ring> {
    shape: Vec<usize>,
    share: Option<R::Tensor>,
    form: Option<Arc<MaskedForm<R::Tensor>>>,
    known: Option<Arc<KnownToCp<R::Tensor>>>,
}

/// The mark of a private tensor whose value cp knows in the clear because it shared it as the
/// input owner. Every party carries the mark (who owns an input is public, so the three agree);
/// cp's holds the value, the servers' nothing.
#[derive(Debug, Clone, PartialEq)]
struct KnownToCp<T> {
    value: Option<T>,
}

/// The masked form of a private tensor x: the parts of a [`MaskedTensor`] besides x itself.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedForm<T> {
    /// The mask a (shares on servers, whole on cp).
    pub mask: Held<T>,
    /// x - a, known to both servers; `None` on cp.
    pub masked: Option<T>,
}

impl<R: Ring> PrivateTensor<R> {
    /// A server's share (`Some`) or cp's placeholder (`None`) for a tensor of `shape`.
    pub fn from_share(shape: &[usize], share: Option<R::Tensor>) -> Self {
        debug_assert!(share.as_ref().is_none_or(|s| s.shape() == shape));
        PrivateTensor { shape: shape.to_vec(), share, form: None, known: None }
    }

    /// This tensor with its masked `form` attached. The caller guarantees that the form's mask
    /// and difference add up to this tensor's value.
    pub(crate) fn with_form(mut self, form: MaskedForm<R::Tensor>) -> Self {
        self.form = Some(Arc::new(form));
        self
    }

    /// This tensor marked as known to cp: `value` is cp's copy of it on cp and `None` on the
    /// servers. The caller guarantees that cp's copy is the value the shares add up to.
    pub(crate) fn with_known_to_cp(mut self, value: Option<R::Tensor>) -> Self {
        self.known = Some(Arc::new(KnownToCp { value }));
        self
    }

    /// Whether cp knows this value in the clear (it shared it as the input owner); the same on
    /// every party.
    pub fn known_to_cp(&self) -> bool {
        self.known.is_some()
    }

    /// cp's copy of a value it knows in the clear; `None` on the servers and for other tensors.
    pub(crate) fn cp_value(&self) -> Option<&R::Tensor> {
        self.known.as_ref().and_then(|k| k.value.as_ref())
    }

    /// Its masked form, if the operation that produced it kept one.
    pub fn form(&self) -> Option<&MaskedForm<R::Tensor>> {
        self.form.as_deref()
    }

    /// The masked form, taken out (cloned only if another copy of the tensor shares it).
    pub(crate) fn take_form(&mut self) -> Option<MaskedForm<R::Tensor>> {
        self.form.take().map(|f| Arc::try_unwrap(f).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// The public shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This server's share; `None` on cp.
    pub fn share(&self) -> Option<&R::Tensor> {
        self.share.as_ref()
    }

    /// This server's share, mutable (an in-place update keeps the shape, and drops the masked
    /// form and the known-to-cp mark, which it would make stale); `None` on cp.
    pub(crate) fn share_mut(&mut self) -> Option<&mut R::Tensor> {
        self.form = None;
        self.known = None;
        self.share.as_mut()
    }

    /// This server's share, owned; `None` on cp.
    pub fn into_share(self) -> Option<R::Tensor> {
        self.share
    }
}

/// A mask dealt by cp: servers hold additive shares of it, cp holds it whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Held<T> {
    /// A server's additive share.
    Share(T),
    /// cp's copy of the whole value.
    Whole(T),
}

impl<T> Held<T> {
    /// The tensor, whichever form this party holds.
    pub fn tensor(&self) -> &T {
        match self {
            Held::Share(t) | Held::Whole(t) => t,
        }
    }

    /// The tensor, owned, whichever form this party holds.
    pub fn into_tensor(self) -> T {
        match self {
            Held::Share(t) | Held::Whole(t) => t,
        }
    }

    /// `f` applied to the owned tensor, in the same form (share or whole).
    pub fn try_map_owned<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Held<U>, E> {
        Ok(match self {
            Held::Share(t) => Held::Share(f(t)?),
            Held::Whole(t) => Held::Whole(f(t)?),
        })
    }

    /// `f` applied to the tensor, in the same form (share or whole).
    pub fn try_map<U, E>(&self, f: impl FnOnce(&T) -> Result<U, E>) -> Result<Held<U>, E> {
        Ok(match self {
            Held::Share(t) => Held::Share(f(t)?),
            Held::Whole(t) => Held::Whole(f(t)?),
        })
    }
}

/// A private tensor kept with its mask and the opened masked value, Pond-style: a weight is
/// masked once and every product with it afterwards opens only the other operand. The mask is
/// uniform ([`crate::Session::mask`]) or, from a CRT truncation
/// ([`crate::Session::truncate_masked`]), the truncation's statistically hiding -(r >> f).
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedTensor<R: Ring> {
    /// The private value x.
    pub value: PrivateTensor<R>,
    /// The mask a (shares on servers, whole on cp).
    pub mask: Held<R::Tensor>,
    /// x - a, known to both servers; `None` on cp.
    pub masked: Option<R::Tensor>,
}

impl<R: Ring> MaskedTensor<R> {
    /// The public shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// The private value with this mask and difference attached as its masked form.
    pub fn into_private(self) -> PrivateTensor<R> {
        self.value.with_form(MaskedForm { mask: self.mask, masked: self.masked })
    }

    /// The masked tensor of a private tensor that carries its masked form (`None` otherwise).
    pub fn from_form(mut value: PrivateTensor<R>) -> Option<Self> {
        let form = value.take_form()?;
        Some(MaskedTensor { value, mask: form.mask, masked: form.masked })
    }
}
