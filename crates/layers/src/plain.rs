//! The plaintext backend: f64 arrays, the reference every private layer is tested against.

use crate::backend::{Backend, Input};
use crate::error::{shape_error, Result};
use ndarray::{ArrayD, Axis, Ix2, IxDyn, Slice};
use pond_core::kernels::im2col::{col2im, im2col, ConvGeometry};
use pond_core::layout::materialise;
use pond_protocol::polynomial::Polynomial;
use pond_protocol::Role;
use std::ops::Range;

/// Plaintext computation in f64 (no parties, no encoding).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainBackend;

fn same(op: &'static str, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(shape_error(op, format!("shapes {:?} and {:?} differ", a.shape(), b.shape())))
    }
}

fn matrix<'a>(op: &'static str, x: &'a ArrayD<f64>) -> Result<ndarray::ArrayView2<'a, f64>> {
    x.view().into_dimensionality::<Ix2>().map_err(|_| shape_error(op, format!("{:?} is not a matrix", x.shape())))
}

fn reshaped(op: &'static str, x: &ArrayD<f64>, shape: &[usize]) -> Result<ArrayD<f64>> {
    materialise(x.view())
        .into_shape_with_order(IxDyn(shape))
        .map_err(|_| shape_error(op, format!("cannot reshape {:?} to {shape:?}", x.shape())))
}

impl Backend for PlainBackend {
    type Tensor = ArrayD<f64>;
    type Operand = ArrayD<f64>;

    fn name(&self) -> &'static str {
        "plaintext"
    }

    fn shape<'a>(&self, x: &'a ArrayD<f64>) -> &'a [usize] {
        x.shape()
    }

    fn input(&mut self, _owner: Role, value: Option<&ArrayD<f64>>, shape: &[usize]) -> Result<ArrayD<f64>> {
        let v = value.ok_or_else(|| shape_error("input", "the plaintext backend needs the value"))?;
        if v.shape() != shape {
            return Err(shape_error("input", format!("value of shape {:?}, declared {shape:?}", v.shape())));
        }
        Ok(v.clone())
    }

    fn output(&mut self, x: &ArrayD<f64>, _owner: Role) -> Result<Option<ArrayD<f64>>> {
        Ok(Some(x.clone()))
    }

    fn prepare(&mut self, x: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        Ok(x.clone())
    }

    fn prepared_value<'a>(&self, x: &'a ArrayD<f64>) -> &'a ArrayD<f64> {
        x
    }

    /// The transpose as a strided (column-major) copy, not reordered: prepared operands only
    /// feed [`Backend::matmul`], whose GEMM packs either layout at the same speed.
    fn transpose_prepared(&mut self, x: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        matrix("transpose_prepared", x)?;
        Ok(x.clone().reversed_axes())
    }

    fn matmul(&mut self, a: Input<'_, Self>, b: Input<'_, Self>) -> Result<ArrayD<f64>> {
        let (Input::Value(a) | Input::Prepared(a)) = a;
        let (Input::Value(b) | Input::Prepared(b)) = b;
        let (ma, mb) = (matrix("matmul", a)?, matrix("matmul", b)?);
        if ma.ncols() != mb.nrows() {
            return Err(shape_error("matmul", format!("{:?} @ {:?}", a.shape(), b.shape())));
        }
        Ok(ma.dot(&mb).into_dyn())
    }

    fn mul(&mut self, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        same("mul", a, b)?;
        Ok(a * b)
    }

    fn gate(&mut self, x: &ArrayD<f64>, bits: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        self.mul(x, bits)
    }

    fn add(&mut self, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        same("add", a, b)?;
        Ok(a + b)
    }

    fn sub(&mut self, a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        same("sub", a, b)?;
        Ok(a - b)
    }

    fn scale(&mut self, x: &ArrayD<f64>, c: f64) -> Result<ArrayD<f64>> {
        Ok(x * c)
    }

    fn axpby_many(&mut self, a: f64, xs: &[&ArrayD<f64>], b: f64, ys: &[&ArrayD<f64>]) -> Result<Vec<ArrayD<f64>>> {
        if xs.len() != ys.len() {
            return Err(shape_error("axpby_many", format!("{} x tensors, {} y tensors", xs.len(), ys.len())));
        }
        xs.iter()
            .zip(ys)
            .map(|(x, y)| {
                same("axpby_many", x, y)?;
                Ok(ndarray::Zip::from(*x).and(*y).map_collect(|&x, &y| a * x + b * y))
            })
            .collect()
    }

    fn add_row(&mut self, x: &ArrayD<f64>, row: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let bx = row
            .broadcast(x.raw_dim())
            .ok_or_else(|| shape_error("add_row", format!("row {:?} for {:?}", row.shape(), x.shape())))?;
        Ok(x + &bx)
    }

    fn sum_axis(&mut self, x: &ArrayD<f64>, axis: usize) -> Result<ArrayD<f64>> {
        if axis >= x.ndim() {
            return Err(shape_error("sum_axis", format!("axis {axis} of {:?}", x.shape())));
        }
        Ok(x.sum_axis(Axis(axis)))
    }

    fn reshape(&mut self, x: &ArrayD<f64>, shape: &[usize]) -> Result<ArrayD<f64>> {
        reshaped("reshape", x, shape)
    }

    fn reshape_owned(&mut self, x: ArrayD<f64>, shape: &[usize]) -> Result<ArrayD<f64>> {
        let from = x.shape().to_vec();
        pond_core::layout::into_reshaped(x, shape)
            .map_err(|_| shape_error("reshape", format!("cannot reshape {from:?} to {shape:?}")))
    }

    fn permute(&mut self, x: &ArrayD<f64>, axes: &[usize]) -> Result<ArrayD<f64>> {
        let mut seen = vec![false; x.ndim()];
        let valid =
            axes.len() == x.ndim() && axes.iter().all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
        if !valid {
            return Err(shape_error("permute", format!("{axes:?} for {:?}", x.shape())));
        }
        Ok(materialise(x.view().permuted_axes(IxDyn(axes))))
    }

    fn broadcast(&mut self, x: &ArrayD<f64>, shape: &[usize]) -> Result<ArrayD<f64>> {
        x.broadcast(IxDyn(shape))
            .map(materialise)
            .ok_or_else(|| shape_error("broadcast", format!("{:?} to {shape:?}", x.shape())))
    }

    fn slice_rows(&mut self, x: &ArrayD<f64>, rows: Range<usize>) -> Result<ArrayD<f64>> {
        if x.ndim() == 0 || rows.end > x.shape()[0] || rows.start > rows.end {
            return Err(shape_error("slice_rows", format!("rows {rows:?} of {:?}", x.shape())));
        }
        Ok(x.slice_axis(Axis(0), Slice::from(rows)).to_owned())
    }

    fn conv2d(&mut self, x: Input<'_, Self>, w: Input<'_, Self>, g: &ConvGeometry) -> Result<ArrayD<f64>> {
        let (Input::Value(x) | Input::Prepared(x)) = x;
        let (Input::Value(w) | Input::Prepared(w)) = w;
        let patches = self.im2col(x, g)?;
        let filters = reshaped("conv2d", w, &[g.filters, g.patch_cols()])?;
        let product =
            patches.into_dimensionality::<Ix2>().expect("im2col is 2-D").dot(&matrix("conv2d", &filters)?.t());
        Ok(pond_core::kernels::im2col::patches_to_nchw(product.view(), g))
    }

    fn window_sum(&mut self, x: &ArrayD<f64>, window: (usize, usize)) -> Result<ArrayD<f64>> {
        crate::backend::window_sum_shape(x.shape(), window)?;
        Ok(pond_core::layout::window_sum(x, window, |a, b| a + b)?)
    }

    fn im2col(&mut self, x: &ArrayD<f64>, g: &ConvGeometry) -> Result<ArrayD<f64>> {
        if x.shape() != [g.batch, g.channels, g.input.0, g.input.1] {
            return Err(shape_error("im2col", format!("input {:?} for geometry {g:?}", x.shape())));
        }
        Ok(im2col(x.view(), g).into_dyn())
    }

    fn col2im(&mut self, patches: &ArrayD<f64>, g: &ConvGeometry) -> Result<ArrayD<f64>> {
        let p = matrix("col2im", patches)?;
        if p.dim() != (g.patch_rows(), g.patch_cols()) {
            return Err(shape_error("col2im", format!("patches {:?} for geometry {g:?}", patches.shape())));
        }
        Ok(col2im(p, g, |a, b| a + b))
    }

    fn polynomial(&mut self, x: &ArrayD<f64>, p: &Polynomial) -> Result<ArrayD<f64>> {
        Ok(x.mapv(|v| p.eval(v)))
    }

    fn relu(&mut self, x: &ArrayD<f64>) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
        Ok((x.mapv(|v| v.max(0.0)), x.mapv(|v| if v >= 0.0 { 1.0 } else { 0.0 })))
    }

    fn max_rows(&mut self, x: &ArrayD<f64>) -> Result<(ArrayD<f64>, ArrayD<f64>)> {
        let m = matrix("max_rows", x)?;
        let mut max = ndarray::Array1::<f64>::zeros(m.nrows());
        let mut onehot = ndarray::Array2::<f64>::zeros(m.dim());
        for (i, row) in m.rows().into_iter().enumerate() {
            let (arg, best) =
                row.iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |(ai, av), (j, &v)| if v > av { (j, v) } else { (ai, av) });
            max[i] = best;
            if m.ncols() > 0 {
                onehot[[i, arg]] = 1.0;
            }
        }
        Ok((max.into_dyn(), onehot.into_dyn()))
    }
}
