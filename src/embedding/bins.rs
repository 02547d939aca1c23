//! The bin edges of piecewise-linear embeddings: `compute_bins` of the
//! `rtdl_num_embeddings` package (its quantile bins; not its tree bins),
//! and the package's checks of a list of bins.

use crate::error::{Error, Result};
use crate::real::Real;

/// Each column's bin edges from the quantiles of `x` (`[rows, features]`,
/// row-major), as `rtdl_num_embeddings.compute_bins(X, n_bins)`: the
/// column's quantiles at the levels `linspace(0, 1, n_bins + 1)`, by
/// `torch.quantile`'s linear interpolation, then its distinct values in
/// order (so a column has at most `n_bins + 1` edges, and at least two).
///
/// Computed in `T` as the package computes in `X`'s dtype, with the levels
/// of `torch.linspace` in torch's default dtype, float32 (the package
/// builds them so), widened to `T`: the same bits as the package for a
/// float64 or a float32 `X` on x86-64 with AVX2 or AVX-512 (where
/// torch's `linspace` and `lerp` contract to fused multiply-adds).
///
/// # Errors
/// As the package: fewer than two rows, no column, a NaN or an infinity
/// (by row and column), a column of one value (by column), `n_bins` not
/// in `2..rows`.
///
/// ```
/// use retroprop::embedding::compute_bins;
/// // One column 0, 1, …, 8, in quarters: edges at its quantiles.
/// let x: Vec<f64> = (0..9).map(f64::from).collect();
/// assert_eq!(compute_bins(&x, 1, 4)?, [vec![0.0, 2.0, 4.0, 6.0, 8.0]]);
/// # Ok::<(), retroprop::Error>(())
/// ```
pub fn compute_bins<T: Real>(x: &[T], features: usize, n_bins: usize) -> Result<Vec<Vec<f64>>> {
    let rows = check_input(x, features)?;
    if n_bins <= 1 || n_bins >= rows {
        return Err(Error::Setting {
            setting: "n_bins",
            message: format!(
                "compute_bins needs more than 1 bin and fewer bins than rows ({rows}), got {n_bins}"
            ),
        });
    }
    let levels = quantile_levels(n_bins + 1);
    let mut column = Vec::with_capacity(rows);
    let mut bins = Vec::with_capacity(features);
    for f in 0..features {
        column.clear();
        column.extend(x.iter().skip(f).step_by(features).copied());
        column.sort_by(|a, b| a.partial_cmp(b).expect("checked finite"));
        let mut edges: Vec<T> = levels.iter().map(|&q| quantile(&column, q)).collect();
        edges.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        edges.dedup();
        bins.push(edges.into_iter().map(T::f64).collect());
    }
    check_bins(&bins)?;
    Ok(bins)
}

/// The package's checks of `X`: its rows, given every value is finite and
/// no column holds one value only.
fn check_input<T: Real>(x: &[T], features: usize) -> Result<usize> {
    if features == 0 {
        return Err(Error::Empty {
            what: "compute_bins input (no column)".into(),
        });
    }
    if !x.len().is_multiple_of(features) {
        return Err(Error::Shape {
            what: format!("compute_bins input of {features} columns (values, a multiple)"),
            expected: x.len().next_multiple_of(features),
            got: x.len(),
        });
    }
    let rows = x.len() / features;
    if rows < 2 {
        return Err(Error::Config(format!(
            "compute_bins needs at least two rows, got {rows}"
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite {
            what: "compute_bins input".into(),
            row: i / features,
            column: i % features,
            value: x[i].f64(),
        });
    }
    let first = &x[..features];
    for (column, &value) in first.iter().enumerate() {
        if x.iter().skip(column).step_by(features).all(|&v| v == value) {
            return Err(Error::Config(format!(
                "compute_bins: column {column} holds one value ({}) in all {rows} rows; every column needs at least two distinct values",
                value.f64()
            )));
        }
    }
    Ok(rows)
}

/// `torch.linspace(0, 1, steps)` in float32, as torch's CPU kernel
/// computes it: the first half from 0 up, the second half down from 1 by
/// a fused multiply-add.
fn quantile_levels(steps: usize) -> Vec<f32> {
    let step = 1.0f32 / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step * i as f32
            } else {
                (-step).mul_add((steps - 1 - i) as f32, 1.0)
            }
        })
        .collect()
}

/// `torch.quantile(sorted, q)` with linear interpolation: rank q·(n − 1)
/// in f64 (torch's, whatever the dtype), the values below and above it,
/// and torch's `lerp` between them in `T` (from the nearer end, by a fused
/// multiply-add).
fn quantile<T: Real>(sorted: &[T], q: f32) -> T {
    let rank = f64::from(q) * (sorted.len() - 1) as f64;
    let below = rank.floor();
    let weight = T::of(rank - below);
    let (a, b) = (sorted[below as usize], sorted[rank.ceil() as usize]);
    if weight.abs() < T::of(0.5) {
        weight.mul_add(b - a, a)
    } else {
        (weight - T::one()).mul_add(b - a, b)
    }
}

/// The package's `_check_bins`: at least one feature, and each feature's
/// edges at least two, finite and strictly increasing. A feature of two
/// edges (one bin) is allowed: its encoding is min-max scaling.
pub fn check_bins(bins: &[Vec<f64>]) -> Result<()> {
    let bad = |message: String| Error::Setting {
        setting: "bins",
        message,
    };
    if bins.is_empty() {
        return Err(bad("the list of bins must not be empty".into()));
    }
    for (i, edges) in bins.iter().enumerate() {
        if edges.len() < 2 {
            return Err(bad(format!(
                "feature {i} has {} bin edges; every feature needs at least two",
                edges.len()
            )));
        }
        if let Some(v) = edges.iter().find(|v| !v.is_finite()) {
            return Err(bad(format!(
                "feature {i} has a bin edge that is not finite ({v})"
            )));
        }
        if let Some(j) = edges.windows(2).position(|w| w[0] >= w[1]) {
            return Err(bad(format!(
                "feature {i}'s bin edges are not strictly increasing: edge {j} is {}, edge {} is {}",
                edges[j],
                j + 1,
                edges[j + 1]
            )));
        }
    }
    Ok(())
}
