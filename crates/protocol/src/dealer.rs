//! The crypto producer's part: correlated randomness dealt with seeds.
//!
//! Every dealt value follows one pattern. cp knows the value v; server0's share v0 comes from the
//! PRG key server0 shares with cp; server1's share is either also seeded (when v itself is
//! uniform and cp can pick it as v0 + v1) or the correction v - v0, which cp sends to server1.
//! So a Beaver triple costs one tensor of traffic (the product's correction), and masks cost
//! nothing.
//!
//! [`TripleSource`] decides when cp's work happens: [`OnlineDealer`] deals during the operation,
//! [`PregeneratedTriples`] deals a known list of correlations beforehand (the offline phase), so
//! the online phase only receives nothing from cp and can be timed on its own.

use crate::error::{ProtocolError, Result};
use crate::session::Session;
use crate::tensors::Held;
use crate::transport::{Role, Tag};
use crate::truncation::ProtocolRing;
use pond_core::{Conv2dParams, Ring, RingTensor};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// PRG purposes within one step (the low 4 bits of a stream id).
pub mod purpose {
    /// Mask of the left operand.
    pub const LHS_MASK: u64 = 1;
    /// Mask of the right operand.
    pub const RHS_MASK: u64 = 2;
    /// server0's share of a dealt product or correction.
    pub const PRODUCT: u64 = 3;
    /// Input sharing.
    pub const INPUT: u64 = 4;
    /// Further dealt values (truncation and comparison material), numbered from here.
    pub const EXTRA: u64 = 5;
}

/// A bilinear operation that Beaver's trick computes on shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bilinear {
    /// Elementwise product.
    Mul,
    /// Matrix product.
    Matmul,
    /// 2-D convolution, NCHW input by OIHW filters.
    Conv2d(Conv2dParams),
    /// 2-D convolution followed by the sums of non-overlapping `window`s (kh, kw) that tile its
    /// output (average pooling before its division): still bilinear, so cp deals shares of the
    /// pooled product, and neither party builds the convolution's full output.
    PooledConv2d {
        /// Stride and padding of the convolution.
        params: Conv2dParams,
        /// The summed windows.
        window: (usize, usize),
    },
}

impl Bilinear {
    /// The operation on plain ring tensors.
    pub fn apply<T: RingTensor>(&self, a: &T, b: &T) -> pond_core::Result<T> {
        match self {
            Bilinear::Mul => a.mul(b),
            Bilinear::Matmul => a.matmul(b),
            Bilinear::Conv2d(p) => a.conv2d(b, *p),
            Bilinear::PooledConv2d { .. } => {
                let mut out = T::zeros(&self.output_shape(a.shape(), b.shape())?);
                self.add_apply(&mut out, a, b)?;
                Ok(out)
            }
        }
    }

    /// In place `acc += a ∘ b`, without a temporary of the product's size where the ring's
    /// kernels allow it (elementwise products and convolutions).
    pub fn add_apply<T: RingTensor>(&self, acc: &mut T, a: &T, b: &T) -> pond_core::Result<()> {
        match self {
            Bilinear::Mul => acc.mul_add_assign(a, b),
            Bilinear::Matmul => acc.add_assign(&a.matmul(b)?),
            Bilinear::Conv2d(p) => acc.pooled_conv2d_add_assign(a, b, *p, (1, 1)),
            Bilinear::PooledConv2d { params, window } => acc.pooled_conv2d_add_assign(a, b, *params, *window),
        }
    }

    /// In place `acc += a1 ∘ b1 + a2 ∘ b2` (a server's two local products in a Beaver product).
    /// Convolutions run as one: the sum of two convolutions with equal geometry is the
    /// convolution of the inputs joined along the channel axis with the filters joined along
    /// their input-channel axis, so the filter widening, patch matrix, GEMM and output pass are
    /// paid once; elementwise products take one pass ([`RingTensor::mul_add_pair_assign`]).
    /// Matrix products are two [`Bilinear::add_apply`] calls.
    pub fn add_apply_pair<T: RingTensor>(
        &self,
        acc: &mut T,
        (a1, b1): (&T, &T),
        (a2, b2): (&T, &T),
    ) -> pond_core::Result<()> {
        match self {
            Bilinear::Mul => acc.mul_add_pair_assign((a1, b1), (a2, b2)),
            Bilinear::Conv2d(_) | Bilinear::PooledConv2d { .. }
                if a1.shape() == a2.shape() && b1.shape() == b2.shape() =>
            {
                self.add_apply(acc, &T::concat(1, &[a1, a2])?, &T::concat(1, &[b1, b2])?)
            }
            _ => {
                self.add_apply(acc, a1, b1)?;
                self.add_apply(acc, a2, b2)
            }
        }
    }

    /// Output shape for operand shapes `a`, `b`, or the typed shape error.
    pub fn output_shape(&self, a: &[usize], b: &[usize]) -> pond_core::Result<Vec<usize>> {
        let mismatch = |op| pond_core::CoreError::ShapeMismatch { op, left: a.to_vec(), right: b.to_vec() };
        match self {
            Bilinear::Mul if a == b => Ok(a.to_vec()),
            Bilinear::Mul => Err(mismatch("mul")),
            Bilinear::Matmul => match (a, b) {
                (&[m, k], &[k2, n]) if k == k2 => Ok(vec![m, n]),
                _ => Err(mismatch("matmul")),
            },
            Bilinear::Conv2d(p) => {
                let g = pond_core::kernels::im2col::ConvGeometry::new(a, b, *p)?;
                Ok(vec![g.batch, g.filters, g.output.0, g.output.1])
            }
            Bilinear::PooledConv2d { params, window: (kh, kw) } => {
                let g = pond_core::kernels::im2col::ConvGeometry::new(a, b, *params)?;
                let (oh, ow) = g.output;
                if *kh == 0 || *kw == 0 || oh % kh != 0 || ow % kw != 0 {
                    return Err(mismatch("pooled conv2d (windows must tile the output)"));
                }
                Ok(vec![g.batch, g.filters, oh / kh, ow / kw])
            }
        }
    }

    /// The operation's name in statistics, traces and correlation signatures.
    pub fn name(&self) -> &'static str {
        match self {
            Bilinear::Mul => "mul",
            Bilinear::Matmul => "matmul",
            Bilinear::Conv2d(_) => "conv2d",
            Bilinear::PooledConv2d { .. } => "pooled_conv2d",
        }
    }
}

/// One operand of a product as the dealer sees it.
#[derive(Debug)]
pub enum MaskSide<'a, T> {
    /// Needs a fresh mask of this shape.
    Fresh(&'a [usize]),
    /// Already masked (a [`crate::MaskedTensor`]): the product reuses its mask.
    Reused(&'a Held<T>),
}

impl<T> Clone for MaskSide<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for MaskSide<'_, T> {}

impl<T: RingTensor> MaskSide<'_, T> {
    fn shape(&self) -> &[usize] {
        match self {
            MaskSide::Fresh(s) => s,
            MaskSide::Reused(m) => m.tensor().shape(),
        }
    }
}

/// Correlated randomness that an operation asks the dealer for.
#[derive(Debug)]
pub enum Correlation<'a, R: Ring> {
    /// A Beaver triple for `op`: masks for the fresh sides and shares of op(lhs mask, rhs mask).
    Product {
        /// The product.
        op: Bilinear,
        /// Left operand.
        lhs: MaskSide<'a, R::Tensor>,
        /// Right operand.
        rhs: MaskSide<'a, R::Tensor>,
    },
    /// A square pair: a fresh mask a and shares of a*a.
    Square {
        /// Shape of a.
        shape: &'a [usize],
    },
    /// The ring's truncation material for a tensor of `shape` (see [`ProtocolRing`]).
    Truncation {
        /// Shape of the truncated tensor.
        shape: &'a [usize],
        /// Bits to shift away.
        frac_bits: u32,
    },
}

impl<R: Ring> Clone for Correlation<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: Ring> Copy for Correlation<'_, R> {}

impl<R: Ring> Correlation<'_, R> {
    /// A description (kind and shapes) used to check that a pregenerated item is the one asked for.
    pub fn signature(&self) -> String {
        match self {
            Correlation::Product { op, lhs, rhs } => {
                let side = |s: &MaskSide<'_, R::Tensor>| match s {
                    MaskSide::Fresh(shape) => format!("fresh{shape:?}"),
                    MaskSide::Reused(m) => format!("reused{:?}", m.tensor().shape()),
                };
                format!("{} {} x {}", op.name(), side(lhs), side(rhs))
            }
            Correlation::Square { shape } => format!("square {shape:?}"),
            Correlation::Truncation { shape, frac_bits } => {
                format!("truncation {shape:?} by {frac_bits}")
            }
        }
    }
}

/// What the dealer hands one party for one correlation, in an order each operation documents:
/// for a product, [lhs mask if fresh, rhs mask if fresh, product]. Servers get shares; cp gets
/// whole values (or nothing it does not need).
pub type Dealt<T> = Vec<Held<T>>;

/// A fresh uniform mask: server i's share from the key it shares with cp, cp's whole value the
/// sum of both. No traffic.
pub fn deal_uniform<T: RingTensor>(s: &Session, tag: Tag, purpose: u64, shape: &[usize]) -> Result<Held<T>> {
    match s.role() {
        Role::Server0 | Role::Server1 => Ok(Held::Share(s.shared_random(Role::Cp, tag, purpose, shape)?)),
        Role::Cp => {
            let mut a: T = s.shared_random(Role::Server0, tag, purpose, shape)?;
            a.add_assign(&s.shared_random(Role::Server1, tag, purpose, shape)?)?;
            Ok(Held::Whole(a))
        }
    }
}

/// Shares of a value cp computes: server0's share is seeded, server1 receives the correction.
/// `value` runs on cp only. Traffic: cp sends one tensor of `shape` to server1.
pub fn deal_value<T: RingTensor>(
    s: &mut Session,
    tag: Tag,
    purpose: u64,
    shape: &[usize],
    value: impl FnOnce() -> Result<T>,
) -> Result<Held<T>> {
    let [dealt] = deal_values(s, tag, [purpose], shape, || Ok([value()?]))?;
    Ok(dealt)
}

/// A product correlation as an operation uses it: the fresh masks (in [`Dealt`]'s order) and the
/// product share.
pub type DealtProduct<T> = (Dealt<T>, ProductShare<T>);

/// A party's share of a dealt product: the last value of a product or square correlation,
/// which the operation adds into its result.
#[derive(Debug)]
pub enum ProductShare<T> {
    /// In hand: server0's seeded share, a share dealt ahead of time, or cp's whole value.
    Dealt(Held<T>),
    /// server1's share while cp deals online: cp's correction, sent under this tag and received
    /// only when the operation adds it in, so that server1 computes its local products while cp
    /// computes the product (rather than waiting for cp first).
    FromCp(Tag),
}

impl<T: RingTensor> ProductShare<T> {
    /// The share plus what `local` adds into it: `local` runs on the share in place, or, for
    /// [`ProductShare::FromCp`], on zeros of `shape` before cp's correction is received and added.
    pub fn accumulate(
        self,
        s: &mut Session,
        shape: &[usize],
        local: impl FnOnce(&mut T) -> pond_core::Result<()>,
    ) -> Result<T> {
        match self {
            ProductShare::Dealt(share) => {
                let mut z = share.into_tensor();
                local(&mut z)?;
                Ok(z)
            }
            ProductShare::FromCp(tag) => {
                let mut z = T::zeros(shape);
                local(&mut z)?;
                s.recv_into(Role::Cp, tag, &mut z)?;
                Ok(z)
            }
        }
    }
}

/// [`deal_value`] for a product share that the operation adds in last: dealt now, except that
/// with `later` server1 gets [`ProductShare::FromCp`] and receives cp's correction then.
pub fn deal_product_value<T: RingTensor>(
    s: &mut Session,
    tag: Tag,
    shape: &[usize],
    later: bool,
    value: impl FnOnce() -> Result<T>,
) -> Result<ProductShare<T>> {
    if later && s.role() == Role::Server1 {
        return Ok(ProductShare::FromCp(tag));
    }
    deal_value(s, tag, purpose::PRODUCT, shape, value).map(ProductShare::Dealt)
}

/// [`deal_value`] of K values of one shape, the K corrections in one message to server1 (one
/// message where K would cost K; the same bytes). `purposes` must be distinct.
pub fn deal_values<T: RingTensor, const K: usize>(
    s: &mut Session,
    tag: Tag,
    purposes: [u64; K],
    shape: &[usize],
    values: impl FnOnce() -> Result<[T; K]>,
) -> Result<[Held<T>; K]> {
    match s.role() {
        Role::Server0 => {
            let shares = purposes.map(|p| s.shared_random(Role::Cp, tag, p, shape));
            Ok(try_array(shares)?.map(Held::Share))
        }
        Role::Server1 => {
            let bytes = s.recv_bytes(Role::Cp, tag)?;
            let width = shape.iter().product::<usize>() * T::BYTES_PER_ELEMENT;
            if bytes.len() != K * width {
                return Err(ProtocolError::BadMessage {
                    peer: Role::Cp,
                    reason: format!("{} bytes for {K} dealt tensors of shape {shape:?}", bytes.len()),
                });
            }
            let decoded = std::array::from_fn(|k| {
                T::from_bytes(shape, &bytes[k * width..(k + 1) * width])
                    .map_err(|e| ProtocolError::BadMessage { peer: Role::Cp, reason: e.to_string() })
            });
            Ok(try_array(decoded)?.map(Held::Share))
        }
        Role::Cp => {
            let values = values()?;
            let mut message = Vec::with_capacity(values.iter().map(|v| v.len() * T::BYTES_PER_ELEMENT).sum());
            for (v, &p) in values.iter().zip(&purposes) {
                // The correction v - v0, computed in v0's buffer.
                let mut correction: T = s.shared_random(Role::Server0, tag, p, shape)?;
                correction.sub_from_assign(v)?;
                correction.write_bytes(&mut message);
            }
            s.send_bytes(Role::Server1, tag, message)?;
            Ok(values.map(Held::Whole))
        }
    }
}

/// The array of results, or the first error.
fn try_array<T, const K: usize>(results: [Result<T>; K]) -> Result<[T; K]> {
    let mut out = Vec::with_capacity(K);
    for r in results {
        out.push(r?);
    }
    Ok(out.try_into().unwrap_or_else(|_| unreachable!("K results give K values")))
}

/// The mask of one operand on cp: freshly dealt or the reused one.
fn mask<'t, T: RingTensor>(dealt: &'t Option<Held<T>>, side: &'t MaskSide<'_, T>) -> &'t T {
    match (dealt, side) {
        (Some(h), _) => h.tensor(),
        (None, MaskSide::Reused(m)) => m.tensor(),
        (None, MaskSide::Fresh(_)) => unreachable!("fresh sides are dealt before the product"),
    }
}

/// Decides when cp's work for a correlation happens.
pub trait TripleSource<R: ProtocolRing>: Send {
    /// The dealt values for `c`, for this party.
    fn deal(&mut self, s: &mut Session, c: &Correlation<'_, R>) -> Result<Dealt<R::Tensor>>;
}

/// Deals each correlation when the operation asks for it (cp computes and sends during the
/// online phase).
#[derive(Debug, Clone, Copy, Default)]
pub struct OnlineDealer;

impl<R: ProtocolRing> TripleSource<R> for OnlineDealer {
    fn deal(&mut self, s: &mut Session, c: &Correlation<'_, R>) -> Result<Dealt<R::Tensor>> {
        if let Correlation::Truncation { shape, frac_bits } = *c {
            let tag = s.next_tag();
            return R::deal_truncation(s, tag, shape, frac_bits);
        }
        let (mut dealt, share) = deal_product_online(s, c, false)?;
        match share {
            ProductShare::Dealt(share) => dealt.push(share),
            ProductShare::FromCp(_) => unreachable!("a product share dealt with `later` false is in hand"),
        }
        Ok(dealt)
    }
}

/// A product or square correlation dealt now: the fresh masks ([lhs if fresh, rhs if fresh] or
/// [a]) and the product share (see [`deal_product_value`] for `later`).
fn deal_product_online<R: ProtocolRing>(
    s: &mut Session,
    c: &Correlation<'_, R>,
    later: bool,
) -> Result<DealtProduct<R::Tensor>> {
    let tag = s.next_tag();
    match *c {
        Correlation::Product { op, lhs, rhs } => {
            let fresh = |s: &Session, side: &MaskSide<'_, R::Tensor>, p| match side {
                MaskSide::Fresh(shape) => deal_uniform::<R::Tensor>(s, tag, p, shape).map(Some),
                MaskSide::Reused(_) => Ok(None),
            };
            let a = fresh(s, &lhs, purpose::LHS_MASK)?;
            let b = fresh(s, &rhs, purpose::RHS_MASK)?;
            let shape = op.output_shape(lhs.shape(), rhs.shape())?;
            let c = deal_product_value(s, tag, &shape, later, || {
                let a = mask(&a, &lhs);
                let b = mask(&b, &rhs);
                Ok(op.apply(a, b)?)
            })?;
            Ok((a.into_iter().chain(b).collect(), c))
        }
        Correlation::Square { shape } => {
            let a: Held<R::Tensor> = deal_uniform(s, tag, purpose::LHS_MASK, shape)?;
            let c = deal_product_value(s, tag, shape, later, || Ok(a.tensor().mul(a.tensor())?))?;
            Ok((vec![a], c))
        }
        Correlation::Truncation { .. } => Err(ProtocolError::Usage {
            op: "deal",
            reason: format!("`{}` is not a product correlation", c.signature()),
        }),
    }
}

/// Correlations dealt ahead of time (the offline phase), handed out in order during the online
/// phase. Asking for a different correlation than the next one prepared is an error naming both.
pub struct PregeneratedTriples<R: ProtocolRing> {
    queue: VecDeque<(String, Dealt<R::Tensor>)>,
}

impl<R: ProtocolRing> PregeneratedTriples<R> {
    /// Deals every correlation of `plan` now (all three parties call this with the same plan).
    pub fn generate(s: &mut Session, plan: &[Correlation<'_, R>]) -> Result<Self> {
        let mut queue = VecDeque::with_capacity(plan.len());
        for c in plan {
            queue.push_back((c.signature(), OnlineDealer.deal(s, c)?));
        }
        Ok(PregeneratedTriples { queue })
    }

    /// Correlations left.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl<R: ProtocolRing> TripleSource<R> for PregeneratedTriples<R> {
    fn deal(&mut self, _s: &mut Session, c: &Correlation<'_, R>) -> Result<Dealt<R::Tensor>> {
        let wanted = c.signature();
        match self.queue.pop_front() {
            Some((sig, dealt)) if sig == wanted => Ok(dealt),
            Some((sig, _)) => Err(ProtocolError::Usage {
                op: "pregenerated triples",
                reason: format!("next prepared correlation is `{sig}`, but the program asked for `{wanted}`"),
            }),
            None => Err(ProtocolError::Usage {
                op: "pregenerated triples",
                reason: format!("exhausted; the program asked for `{wanted}`"),
            }),
        }
    }
}

impl Session {
    /// Makes `source` deal the correlations of ring `R` from now on (replacing any previous one).
    pub fn use_triple_source<R: ProtocolRing>(&mut self, source: Box<dyn TripleSource<R>>) {
        self.set_triple_source(Some(Box::new(source)));
    }

    /// Removes the installed source; correlations are dealt online again.
    pub fn use_online_dealer(&mut self) {
        self.set_triple_source(None);
    }

    /// The online time of `op`: runs it once with a [`RecordingDealer`] for ring `R`, then again
    /// with the recorded correlations installed, and returns how long that second run took (the
    /// parties [`Session::sync`] before it, so all three start it together); the online dealer
    /// is installed again afterwards. `op` must ask for the same correlations both
    /// times (a deterministic program does).
    ///
    /// Only the time is returned, and only the time is meaningful: masks that `op` deals itself
    /// ([`Session::mask`], [`Session::mask_many`], as the polynomials do) are not recorded, so a
    /// replayed product of such masked tensors uses a correction recorded for the first run's
    /// masks and computes a wrong value (with the same traffic, rounds and work).
    pub fn time_replayed<R: ProtocolRing, T>(
        &mut self,
        mut op: impl FnMut(&mut Session) -> Result<T>,
    ) -> Result<std::time::Duration> {
        let (recorder, recording) = RecordingDealer::<R>::new();
        self.use_triple_source::<R>(Box::new(recorder));
        let recorded = op(self);
        self.use_online_dealer();
        recorded?;
        self.use_triple_source::<R>(Box::new(recording.into_pregenerated()));
        self.sync()?;
        let start = std::time::Instant::now();
        let replayed = op(self);
        let elapsed = start.elapsed();
        self.use_online_dealer();
        replayed.map(|_| elapsed)
    }

    /// Deals `c` through the installed source for ring `R`, or online.
    pub fn deal<R: ProtocolRing>(&mut self, c: &Correlation<'_, R>) -> Result<Dealt<R::Tensor>> {
        self.deal_installed(c).unwrap_or_else(|| OnlineDealer.deal(self, c))
    }

    /// Deals a product or square correlation `c` for an operation that adds the product share
    /// into its result last: the fresh masks (in [`Dealt`]'s order) and the product share. With
    /// cp dealing online, server1's share is [`ProductShare::FromCp`].
    pub fn deal_product<R: ProtocolRing>(&mut self, c: &Correlation<'_, R>) -> Result<DealtProduct<R::Tensor>> {
        match self.deal_installed(c) {
            Some(dealt) => {
                let mut dealt = dealt?;
                let share = dealt.pop().ok_or_else(|| ProtocolError::Usage {
                    op: "deal",
                    reason: format!("the source dealt nothing for `{}`", c.signature()),
                })?;
                Ok((dealt, ProductShare::Dealt(share)))
            }
            None => deal_product_online(self, c, true),
        }
    }

    /// Deals `c` through the installed source for ring `R`; `None` when there is none.
    fn deal_installed<R: ProtocolRing>(&mut self, c: &Correlation<'_, R>) -> Option<Result<Dealt<R::Tensor>>> {
        let mut installed = self.set_triple_source(None)?;
        let out = installed.downcast_mut::<Box<dyn TripleSource<R>>>().map(|source| source.deal(self, c));
        self.set_triple_source(Some(installed));
        out
    }
}

/// Deals every correlation twice: one copy for the operation now, one stored for a later run
/// of the same operations. Running a program once with a recorder and then again with the
/// recorded correlations installed (see [`Recording::into_pregenerated`]) measures the online
/// phase of any program without writing its correlation plan by hand; each stored correlation
/// is fresh and used once.
pub struct RecordingDealer<R: ProtocolRing> {
    stored: SharedQueue<R>,
}

/// Correlations (with their signatures) shared between a recorder and its recording.
type SharedQueue<R> = Arc<Mutex<VecDeque<(String, Dealt<<R as Ring>::Tensor>)>>>;

/// The correlations a [`RecordingDealer`] stored.
pub struct Recording<R: ProtocolRing> {
    stored: SharedQueue<R>,
}

impl<R: ProtocolRing> RecordingDealer<R> {
    /// A recorder and the handle to its recording.
    pub fn new() -> (Self, Recording<R>) {
        let stored = Arc::new(Mutex::new(VecDeque::new()));
        (RecordingDealer { stored: stored.clone() }, Recording { stored })
    }
}

impl<R: ProtocolRing> Recording<R> {
    /// The stored correlations as a pregenerated source, in the order the program asked for them.
    pub fn into_pregenerated(self) -> PregeneratedTriples<R> {
        // A poisoned lock only means the recording run panicked; what it stored is still whole.
        let queue = std::mem::take(&mut *self.stored.lock().unwrap_or_else(|e| e.into_inner()));
        PregeneratedTriples { queue }
    }
}

impl<R: ProtocolRing> TripleSource<R> for RecordingDealer<R> {
    fn deal(&mut self, s: &mut Session, c: &Correlation<'_, R>) -> Result<Dealt<R::Tensor>> {
        let spare = OnlineDealer.deal(s, c)?;
        self.stored.lock().unwrap_or_else(|e| e.into_inner()).push_back((c.signature(), spare));
        OnlineDealer.deal(s, c)
    }
}
