//! Normalisation layers' forward and backward passes, side by side:
//! `torch.nn.LayerNorm(width, eps)` over each row and
//! `torch.nn.BatchNorm1d(width, eps, momentum)` over each column of a
//! batch, both with their affine weight γ and bias β (docs/DESIGN.md,
//! "Layer kinds"; a residual network's normalisations run them).
//!
//! Both normalise a group of values (a row's `width` values; a column's
//! `rows` values) the same way, so they share their arithmetic:
//!
//! ```text
//! forward:   μ = Σx / n     σ² = Σ(x − μ)² / n     r = 1 / √(σ² + eps)
//!            x̂ = (x − μ) · r                       y = γ x̂ + β
//! backward:  dβ = Σ dy      dγ = Σ dy · x̂          g = dy · γ
//!            dx = r / n · (n g − Σ g − x̂ Σ(g · x̂))
//! ```
//!
//! with γ, β indexed by column and the sums of dγ, dβ over the rows.
//! BatchNorm in training also moves its running statistics (the unbiased
//! variance, as torch), and in evaluation normalises by them instead.

use crate::backend::BatchSums;
use crate::error::{Error, Result};
use crate::real::Real;

/// What a normalisation's forward pass keeps for its backward pass: the
/// normalised values x̂ (`[rows, width]`) and each group's r = 1/√(σ² +
/// eps) (a row's for LayerNorm, a column's for BatchNorm).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormSaved<T> {
    /// x̂, row-major like the input.
    pub normalized: Vec<T>,
    /// 1/√(σ² + eps) of each group.
    pub rstd: Vec<T>,
    /// BatchNorm's: the rows its statistics were taken over (the whole
    /// batch's, where ranks share it).
    pub batch_rows: usize,
}

/// A normalisation layer's shape and parameters: the width it
/// normalises, its affine weight γ and bias β (each `width` long) and the
/// eps added to the variance.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a, T> {
    /// Values a row holds.
    pub width: usize,
    /// γ (torch's `weight`).
    pub weight: &'a [T],
    /// β (torch's `bias`).
    pub bias: &'a [T],
    /// Added to the variance before its square root.
    pub eps: f64,
}

/// BatchNorm's running statistics, torch's `running_mean`,
/// `running_var` and `num_batches_tracked`: state of the model, written
/// to checkpoints and model files, never touched by the optimizer.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningStats<T> {
    /// Each column's running mean (starts at 0).
    pub mean: Vec<T>,
    /// Each column's running unbiased variance (starts at 1).
    pub var: Vec<T>,
    /// How many training batches have moved them.
    pub batches: u64,
}

impl<T: Real> RunningStats<T> {
    /// torch's initial statistics for `width` columns: means 0, variances 1.
    pub fn new(width: usize) -> RunningStats<T> {
        RunningStats {
            mean: vec![T::zero(); width],
            var: vec![T::one(); width],
            batches: 0,
        }
    }
}

/// LayerNorm's forward pass over `x` (`[rows, width]`): each row
/// normalised by its own mean and (biased) variance, then scaled by γ and
/// shifted by β, into `y`.
///
/// ```
/// use retroprop::cpu::norm::{Norm, NormSaved, layer_norm_forward};
/// let x = [1.0f64, 2.0, 3.0, 10.0, 10.0, 10.0];
/// let norm = Norm { width: 3, weight: &[1.0; 3], bias: &[0.5; 3], eps: 1e-5 };
/// let (mut y, mut saved) = (vec![0.0; 6], NormSaved::default());
/// layer_norm_forward(&x, norm, &mut y, &mut saved);
/// assert!((y[0] + y[2] - 1.0).abs() < 1e-12); // symmetric about β
/// assert_eq!(&y[3..], &[0.5; 3]); // a constant row is β
/// ```
pub fn layer_norm_forward<T: Real>(
    x: &[T],
    norm: Norm<'_, T>,
    y: &mut [T],
    saved: &mut NormSaved<T>,
) {
    let Norm {
        width,
        weight,
        bias,
        eps,
    } = norm;
    let rows = x.len() / width;
    saved.normalized.resize(x.len(), T::zero());
    saved.rstd.resize(rows, T::zero());
    for r in 0..rows {
        let span = r * width..(r + 1) * width;
        let (mean, rstd) = group_statistics(x[span.clone()].iter().copied(), width, eps);
        saved.rstd[r] = rstd;
        for ((j, &v), (n, out)) in x[span.clone()]
            .iter()
            .enumerate()
            .zip(saved.normalized[span.clone()].iter_mut().zip(&mut y[span]))
        {
            *n = (v - mean) * rstd;
            *out = weight[j] * *n + bias[j];
        }
    }
}

/// LayerNorm's backward pass: from dL/dy (`[rows, width]`) and what the
/// forward pass kept, dL/dx into `dx` and the gradients of γ and β into
/// `dweight`, `dbias` (overwritten; summed over rows in order).
pub fn layer_norm_backward<T: Real>(
    dy: &[T],
    norm: Norm<'_, T>,
    saved: &NormSaved<T>,
    dx: &mut [T],
    dweight: &mut [T],
    dbias: &mut [T],
) {
    let Norm { width, weight, .. } = norm;
    affine_gradients(dy, width, &saved.normalized, dweight, dbias);
    let n = T::of(width as f64);
    for (r, &rstd) in saved.rstd.iter().enumerate() {
        let span = r * width..(r + 1) * width;
        let (dy, xhat) = (&dy[span.clone()], &saved.normalized[span.clone()]);
        let mut sum_g = T::zero();
        let mut sum_gx = T::zero();
        for j in 0..width {
            let g = dy[j] * weight[j];
            sum_g = sum_g + g;
            sum_gx = sum_gx + g * xhat[j];
        }
        for (j, out) in dx[span].iter_mut().enumerate() {
            let g = dy[j] * weight[j];
            *out = rstd / n * (n * g - sum_g - xhat[j] * sum_gx);
        }
    }
}

/// BatchNorm1d's forward pass in training: each column of `x` (`[rows,
/// width]`) normalised by the batch's mean and biased variance, scaled
/// and shifted, into `y`; the running statistics move towards the
/// batch's (`momentum` of the way; the unbiased variance, Σ(x − μ)² /
/// (rows − 1), as torch).
///
/// # Errors
/// A batch of one row, whose variance is not defined (torch raises
/// "Expected more than 1 value per channel when training").
pub fn batch_norm_forward_train<T: Real>(
    x: &[T],
    norm: Norm<'_, T>,
    momentum: f64,
    running: &mut RunningStats<T>,
    y: &mut [T],
    saved: &mut NormSaved<T>,
) -> Result<()> {
    let rows = x.len() / norm.width;
    let moments = column_moments(x, norm.width);
    batch_norm_train_by(x, norm, momentum, running, y, saved, (moments, rows))
}

/// [`batch_norm_forward_train`] on one rank's share of a batch, by the
/// whole batch's statistics: each column's sum and the rows, then its
/// squares about the mean, summed over the ranks by `across` (torch's
/// `SyncBatchNorm`), in f64. Every rank calls it, a rank with no rows too.
///
/// # Errors
/// A whole batch of one row.
pub fn batch_norm_forward_train_across<T: Real>(
    x: &[T],
    norm: Norm<'_, T>,
    momentum: f64,
    running: &mut RunningStats<T>,
    y: &mut [T],
    saved: &mut NormSaved<T>,
    across: &dyn BatchSums,
) -> Result<()> {
    let width = norm.width;
    let mut sums = vec![0f64; width + 1];
    for xr in x.chunks_exact(width) {
        for (s, &v) in sums.iter_mut().zip(xr) {
            *s += v.f64();
        }
    }
    sums[width] = (x.len() / width) as f64;
    across.sum(&mut sums);
    let rows = sums[width] as usize;
    let mean: Vec<f64> = sums[..width]
        .iter()
        .map(|s| s / rows.max(1) as f64)
        .collect();
    let mut squares = vec![0f64; width];
    for xr in x.chunks_exact(width) {
        for ((s, &v), &m) in squares.iter_mut().zip(xr).zip(&mean) {
            *s += (v.f64() - m) * (v.f64() - m);
        }
    }
    across.sum(&mut squares);
    let of = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::of).collect() };
    let var = squares.iter().map(|s| s / rows.max(1) as f64).collect();
    batch_norm_train_by(
        x,
        norm,
        momentum,
        running,
        y,
        saved,
        ((of(mean), of(var)), rows),
    )
}

/// BatchNorm's training pass given its batch's column means and biased
/// variances over `rows` rows.
fn batch_norm_train_by<T: Real>(
    x: &[T],
    norm: Norm<'_, T>,
    momentum: f64,
    running: &mut RunningStats<T>,
    y: &mut [T],
    saved: &mut NormSaved<T>,
    ((mean, var), rows): ((Vec<T>, Vec<T>), usize),
) -> Result<()> {
    let Norm {
        width,
        weight,
        bias,
        eps,
    } = norm;
    if rows < 2 {
        return Err(Error::Config(format!(
            "batch normalisation in training needs at least 2 rows a batch, got {rows}: a \
             batch's variance of one row is not defined"
        )));
    }
    saved.normalized.resize(x.len(), T::zero());
    saved.rstd.resize(width, T::zero());
    saved.batch_rows = rows;
    let m = T::of(momentum);
    let unbiased = T::of(rows as f64 / (rows - 1) as f64);
    for j in 0..width {
        saved.rstd[j] = T::one() / (var[j] + T::of(eps)).sqrt();
        running.mean[j] = (T::one() - m) * running.mean[j] + m * mean[j];
        running.var[j] = (T::one() - m) * running.var[j] + m * var[j] * unbiased;
    }
    running.batches += 1;
    for ((xr, nr), yr) in x
        .chunks_exact(width)
        .zip(saved.normalized.chunks_exact_mut(width))
        .zip(y.chunks_exact_mut(width))
    {
        for j in 0..width {
            nr[j] = (xr[j] - mean[j]) * saved.rstd[j];
            yr[j] = weight[j] * nr[j] + bias[j];
        }
    }
    Ok(())
}

/// BatchNorm1d's forward pass in evaluation: each column normalised by
/// the running statistics, scaled and shifted, into `y`.
pub fn batch_norm_forward_eval<T: Real>(
    x: &[T],
    norm: Norm<'_, T>,
    running: &RunningStats<T>,
    y: &mut [T],
) {
    let Norm {
        width,
        weight,
        bias,
        eps,
    } = norm;
    let rstd: Vec<T> = running
        .var
        .iter()
        .map(|&v| T::one() / (v + T::of(eps)).sqrt())
        .collect();
    for (xr, yr) in x.chunks_exact(width).zip(y.chunks_exact_mut(width)) {
        for j in 0..width {
            yr[j] = weight[j] * ((xr[j] - running.mean[j]) * rstd[j]) + bias[j];
        }
    }
}

/// BatchNorm1d's backward pass in training (the batch's statistics):
/// dL/dx into `dx` and the gradients of γ and β into `dweight`, `dbias`
/// (overwritten).
pub fn batch_norm_backward<T: Real>(
    dy: &[T],
    norm: Norm<'_, T>,
    saved: &NormSaved<T>,
    dx: &mut [T],
    dweight: &mut [T],
    dbias: &mut [T],
) {
    affine_gradients(dy, norm.width, &saved.normalized, dweight, dbias);
    let rows = dy.len() / norm.width;
    batch_norm_dx(dy, norm, saved, dx, (dweight, dbias), rows);
}

/// [`batch_norm_backward`] on one rank's share of a batch whose
/// statistics were the whole batch's
/// ([`batch_norm_forward_train_across`]): Σ dy and Σ dy · x̂ are summed
/// over the ranks by `across` for dL/dx; the gradients of γ and β stay
/// the share's (the ranks' gradients are summed after the pass).
pub fn batch_norm_backward_across<T: Real>(
    dy: &[T],
    norm: Norm<'_, T>,
    saved: &NormSaved<T>,
    dx: &mut [T],
    (dweight, dbias): (&mut [T], &mut [T]),
    across: &dyn BatchSums,
) {
    let width = norm.width;
    affine_gradients(dy, width, &saved.normalized, dweight, dbias);
    let mut sums: Vec<f64> = dbias
        .iter()
        .chain(dweight.iter())
        .map(|v| v.f64())
        .collect();
    across.sum(&mut sums);
    let whole: Vec<T> = sums.into_iter().map(T::of).collect();
    let (bias_sums, weight_sums) = whole.split_at(width);
    batch_norm_dx(
        dy,
        norm,
        saved,
        dx,
        (weight_sums, bias_sums),
        saved.batch_rows,
    );
}

/// dL/dx of BatchNorm from Σ dy · x̂ and Σ dy over the `rows` rows its
/// statistics were taken over: Σ g = γ Σ dy and Σ g x̂ = γ Σ dy x̂.
fn batch_norm_dx<T: Real>(
    dy: &[T],
    norm: Norm<'_, T>,
    saved: &NormSaved<T>,
    dx: &mut [T],
    (weight_sums, bias_sums): (&[T], &[T]),
    rows: usize,
) {
    let Norm { width, weight, .. } = norm;
    let n = T::of(rows as f64);
    for ((dyr, xr), dxr) in dy
        .chunks_exact(width)
        .zip(saved.normalized.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width))
    {
        for j in 0..width {
            let sum_g = bias_sums[j] * weight[j];
            let sum_gx = weight_sums[j] * weight[j];
            let g = dyr[j] * weight[j];
            dxr[j] = saved.rstd[j] / n * (n * g - sum_g - xr[j] * sum_gx);
        }
    }
}

/// dβ = Σ_rows dy and dγ = Σ_rows dy · x̂, rows added in order.
fn affine_gradients<T: Real>(
    dy: &[T],
    width: usize,
    normalized: &[T],
    dweight: &mut [T],
    dbias: &mut [T],
) {
    dweight.fill(T::zero());
    dbias.fill(T::zero());
    for (dyr, xr) in dy.chunks_exact(width).zip(normalized.chunks_exact(width)) {
        for j in 0..width {
            dbias[j] = dbias[j] + dyr[j];
            dweight[j] = dweight[j] + dyr[j] * xr[j];
        }
    }
}

/// A group's mean and 1/√(σ² + eps), σ² the biased variance, in two
/// passes (the mean first, then the squares about it).
fn group_statistics<T: Real>(
    values: impl Iterator<Item = T> + Clone,
    n: usize,
    eps: f64,
) -> (T, T) {
    let count = T::of(n as f64);
    let mean = values.clone().fold(T::zero(), |s, v| s + v) / count;
    let var = values.fold(T::zero(), |s, v| s + (v - mean) * (v - mean)) / count;
    (mean, T::one() / (var + T::of(eps)).sqrt())
}

/// Each column's mean and biased variance over the rows of `x`, in two
/// passes, rows added in order.
fn column_moments<T: Real>(x: &[T], width: usize) -> (Vec<T>, Vec<T>) {
    let rows = T::of((x.len() / width) as f64);
    let mut mean = vec![T::zero(); width];
    for xr in x.chunks_exact(width) {
        for (m, &v) in mean.iter_mut().zip(xr) {
            *m = *m + v;
        }
    }
    mean.iter_mut().for_each(|m| *m = *m / rows);
    let mut var = vec![T::zero(); width];
    for xr in x.chunks_exact(width) {
        for ((s, &v), &m) in var.iter_mut().zip(xr).zip(&mean) {
            *s = *s + (v - m) * (v - m);
        }
    }
    var.iter_mut().for_each(|s| *s = *s / rows);
    (mean, var)
}
