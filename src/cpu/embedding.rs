//! A numerical-feature embedding's forward and backward passes
//! (src/embedding.rs says what each kind is), side by side: x `[rows, F]`
//! in, `[rows, F, d]` out (each row's features side by side, TabM's
//! `flatten(1, -1)`); the parameters' gradients out of the backward pass,
//! in the flat layout of the parameters (`Embedding::parameter_ranges`).
//! The inputs are data, so no dL/dx.
//!
//! Piecewise-linear, version B (P the encoding `[rows, F, B]`, Wᵢ
//! feature i's `[B, d]`, w₀ and b₀ `[F, d]`, f ReLU or the identity):
//!
//! ```text
//! forward:   Zᵢ = Pᵢ · Wᵢ        Yᵢ = xᵢ ⊗ w₀ᵢ + b₀ᵢ + f(Zᵢ)
//! backward:  db₀ᵢ = Σ_rows dYᵢ   dw₀ᵢ = Σ_rows dYᵢ · xᵢ
//!            dZᵢ = dYᵢ ⊙ f'(Zᵢ)  dWᵢ = Pᵢᵀ · dZᵢ
//! ```
//!
//! Periodic (c `[F, k]` the frequencies, Wᵢ `[2k, d]`, bᵢ `[d]`; lite:
//! one W `[d, 2k]` and b `[d]` for every feature, Z = C · Wᵀ + b):
//!
//! ```text
//! forward:   Vᵢ = (2π·cᵢ) ⊗ xᵢ   Cᵢ = [cos Vᵢ, sin Vᵢ]   Zᵢ = Cᵢ · Wᵢ + bᵢ   Yᵢ = f(Zᵢ)
//! backward:  dZᵢ = dYᵢ ⊙ f'(Zᵢ)  dbᵢ = Σ_rows dZᵢ       dWᵢ = Cᵢᵀ · dZᵢ
//!            dCᵢ = dZᵢ · Wᵢᵀ     dVᵢ = −dcosᵢ ⊙ sin Vᵢ + dsinᵢ ⊙ cos Vᵢ
//!            dcᵢ = 2π · Σ_rows dVᵢ ⊙ xᵢ
//! ```

use super::gemm::Gemm;
use crate::embedding::{Embedding, EmbeddingKind, Periodic, PiecewiseLinearEncoding};

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbeddingSaved<T> {
    /// The encoding: piecewise-linear `[rows, F, B]`, periodic (cos,
    /// then sin) `[rows, F, 2k]`.
    pub encoded: Vec<T>,
    /// Z, before the activation, `[rows, F, d]`.
    pub z: Vec<T>,
}

/// The shapes of one pass.
#[derive(Debug, Clone, Copy)]
struct Dims {
    rows: usize,
    features: usize,
    d: usize,
}

impl Dims {
    fn of<T>(embedding: &Embedding, x: &[T]) -> Dims {
        let features = embedding.n_features();
        Dims {
            rows: x.len() / features,
            features,
            d: embedding.d_embedding(),
        }
    }
}

/// The forward pass of `embedding` with `params` (its flat vector) over
/// `x` (`[rows, n_features]`) into `out` (`[rows, n_features ·
/// d_embedding]`), keeping what the backward pass needs in `saved`.
///
/// ```
/// use retroprop::cpu::embedding::{EmbeddingSaved, embedding_forward};
/// use retroprop::embedding::Embedding;
/// // One feature, bins [0, 1, 2], d = 1: linear0 (w₀ = 1, b₀ = 0) plus
/// // the encoding through W = [10, 100].
/// let e = Embedding::piecewise_linear(vec![vec![0.0, 1.0, 2.0]], 1, false)?;
/// let params = [1.0f64, 0.0, 10.0, 100.0];
/// let mut out = [0.0; 2];
/// embedding_forward(&e, &params, &[0.5, 1.5], &mut out, &mut EmbeddingSaved::default());
/// assert_eq!(out, [0.5 + 10.0 * 0.5, 1.5 + 10.0 + 100.0 * 0.5]);
/// # Ok::<(), retroprop::Error>(())
/// ```
///
/// # Panics
/// If `params`, `x` or `out` do not fit the embedding.
pub fn embedding_forward<T: Gemm>(
    embedding: &Embedding,
    params: &[T],
    x: &[T],
    out: &mut [T],
    saved: &mut EmbeddingSaved<T>,
) {
    check_sizes(embedding, params, x, out.len());
    let dims = Dims::of(embedding, x);
    match embedding.kind() {
        EmbeddingKind::PiecewiseLinear(p) => {
            let [w0, b0, linear_weight] = tensors(embedding, params);
            saved.encoded = piecewise_linear_encode(p.encoding(), x, dims);
            let bins = p.encoding().max_n_bins;
            saved.z = per_feature_product(&saved.encoded, bins, linear_weight, dims);
            let d = dims.d;
            // linear0 (addcmul: b₀ + w₀ · x), plus f(Z).
            for (f, (y, z)) in out
                .chunks_exact_mut(d)
                .zip(saved.z.chunks_exact(d))
                .enumerate()
            {
                let (i, xi) = (f % dims.features, x[f]);
                let (w0, b0) = (&w0[i * d..(i + 1) * d], &b0[i * d..(i + 1) * d]);
                for (((y, &z), &w), &b) in y.iter_mut().zip(z).zip(w0).zip(b0) {
                    *y = (b + w * xi) + activate(p.activation(), z);
                }
            }
        }
        EmbeddingKind::Periodic(p) => {
            let [frequencies, weight, bias] = tensors(embedding, params);
            saved.encoded = periodic_encode(frequencies, x, p.n_frequencies, dims);
            saved.z = if p.lite {
                shared_product(&saved.encoded, 2 * p.n_frequencies, weight, bias, dims)
            } else {
                let mut z = per_feature_product(&saved.encoded, 2 * p.n_frequencies, weight, dims);
                for row in z.chunks_exact_mut(dims.features * dims.d) {
                    row.iter_mut().zip(bias).for_each(|(z, &b)| *z = *z + b);
                }
                z
            };
            for (y, &z) in out.iter_mut().zip(&saved.z) {
                *y = activate(p.activation, z);
            }
        }
    }
}

/// The backward pass, given dL/dY in `grad` (`[rows, n_features ·
/// d_embedding]`, overwritten by dL/dZ): every parameter's gradient, into
/// `gradients` (overwritten), laid out as the parameters.
///
/// # Panics
/// If `params`, `x`, `grad` or `gradients` do not fit the embedding.
pub fn embedding_backward<T: Gemm>(
    embedding: &Embedding,
    params: &[T],
    x: &[T],
    saved: &EmbeddingSaved<T>,
    grad: &mut [T],
    gradients: &mut [T],
) {
    check_sizes(embedding, params, x, grad.len());
    assert_eq!(gradients.len(), params.len(), "embedding gradients");
    let dims = Dims::of(embedding, x);
    let [first, second, third] = tensors_mut(embedding, gradients);
    match embedding.kind() {
        EmbeddingKind::PiecewiseLinear(p) => {
            let (w0_grad, b0_grad, linear_weight_grad) = (first, second, third);
            // linear0 sees dY itself; the encoding's product sees dZ.
            w0_grad.copy_from_slice(&feature_sums(grad, Some(x), dims));
            b0_grad.copy_from_slice(&feature_sums(grad, None, dims));
            chain_activation(p.activation(), grad, &saved.z);
            let bins = p.encoding().max_n_bins;
            linear_weight_grad.copy_from_slice(&per_feature_weight_grad(
                &saved.encoded,
                bins,
                grad,
                dims,
            ));
        }
        EmbeddingKind::Periodic(p) => {
            let [_, weight, _] = tensors(embedding, params);
            let (frequencies_grad, weight_grad, bias_grad) = (first, second, third);
            chain_activation(p.activation, grad, &saved.z);
            let width = 2 * p.n_frequencies;
            let encoded_grad = if p.lite {
                shared_backward(
                    &saved.encoded,
                    width,
                    weight,
                    grad,
                    dims,
                    weight_grad,
                    bias_grad,
                )
            } else {
                weight_grad.copy_from_slice(&per_feature_weight_grad(
                    &saved.encoded,
                    width,
                    grad,
                    dims,
                ));
                bias_grad.copy_from_slice(&feature_sums(grad, None, dims));
                per_feature_input_grad(grad, weight, width, dims)
            };
            frequencies_grad.copy_from_slice(&frequency_grad(
                &saved.encoded,
                &encoded_grad,
                x,
                p,
                dims,
            ));
        }
    }
}

fn check_sizes<T>(embedding: &Embedding, params: &[T], x: &[T], out: usize) {
    assert_eq!(
        params.len(),
        embedding.parameter_count(),
        "embedding parameters"
    );
    assert_eq!(x.len() % embedding.n_features(), 0, "embedding input width");
    let rows = x.len() / embedding.n_features();
    assert_eq!(
        out,
        rows * embedding.output_width(),
        "embedding output size"
    );
}

/// The three trained tensors either kind has, in `state_dict` order
/// (piecewise-linear: `linear0.weight`, `linear0.bias`, `linear.weight`;
/// periodic: `periodic.weight`, `linear.weight`, `linear.bias`).
fn tensors<'a, T>(embedding: &Embedding, params: &'a [T]) -> [&'a [T]; 3] {
    let ranges = embedding.parameter_ranges();
    std::array::from_fn(|t| &params[ranges[t].1.clone()])
}

/// [`tensors`], writable.
fn tensors_mut<'a, T>(embedding: &Embedding, params: &'a mut [T]) -> [&'a mut [T]; 3] {
    let ranges = embedding.parameter_ranges();
    let (first, rest) = params.split_at_mut(ranges[1].1.start);
    let (second, third) = rest.split_at_mut(ranges[1].1.len());
    [first, second, third]
}

/// f(z): ReLU when `activation`, else z.
fn activate<T: Gemm>(activation: bool, z: T) -> T {
    if activation { z.max(T::zero()) } else { z }
}

/// dZ = dY ⊙ f'(Z) in place: ReLU passes where Z > 0 (torch's
/// `threshold_backward`, 0 at Z = 0).
fn chain_activation<T: Gemm>(activation: bool, grad: &mut [T], z: &[T]) {
    if activation {
        for (g, &z) in grad.iter_mut().zip(z) {
            if z <= T::zero() {
                *g = T::zero();
            }
        }
    }
}

/// `_PiecewiseLinearEncodingImpl.forward`: each feature's components
/// w · x + b, clamped as [`PiecewiseLinearEncoding`] says.
fn piecewise_linear_encode<T: Gemm>(
    encoding: &PiecewiseLinearEncoding,
    x: &[T],
    dims: Dims,
) -> Vec<T> {
    let bins = encoding.max_n_bins;
    let weight: Vec<T> = encoding.weight.iter().map(|&w| T::of(w)).collect();
    let bias: Vec<T> = encoding.bias.iter().map(|&b| T::of(b)).collect();
    let (zero, one) = (T::zero(), T::one());
    let mut encoded = Vec::with_capacity(dims.rows * dims.features * bins);
    for row in x.chunks_exact(dims.features) {
        for (i, &xi) in row.iter().enumerate() {
            let (w, b) = (
                &weight[i * bins..(i + 1) * bins],
                &bias[i * bins..(i + 1) * bins],
            );
            encoded.extend(w.iter().zip(b).enumerate().map(|(j, (&w, &b))| {
                let v = b + w * xi;
                match j {
                    _ if bins == 1 => v,
                    0 => v.min(one),
                    _ if j + 1 < bins => v.max(zero).min(one),
                    _ if encoding.single_bin[i] => v,
                    _ => v.max(zero),
                }
            }));
        }
    }
    encoded
}

/// `_Periodic.forward`: V = (2π · c) ⊗ x, then cos V and sin V side by
/// side, each feature's `[2k]`.
fn periodic_encode<T: Gemm>(frequencies: &[T], x: &[T], k: usize, dims: Dims) -> Vec<T> {
    let two_pi = T::of(2.0 * std::f64::consts::PI);
    let scaled: Vec<T> = frequencies.iter().map(|&c| two_pi * c).collect();
    let mut encoded = vec![T::zero(); dims.rows * dims.features * 2 * k];
    for (f, (block, &xi)) in encoded.chunks_exact_mut(2 * k).zip(x).enumerate() {
        let c = &scaled[(f % dims.features) * k..(f % dims.features + 1) * k];
        let (cos, sin) = block.split_at_mut(k);
        for ((cos, sin), &c) in cos.iter_mut().zip(sin).zip(c) {
            let v = c * xi;
            *cos = v.cos();
            *sin = v.sin();
        }
    }
    encoded
}

/// Z[r, i] = A[r, i] · Wᵢ for each feature i: A `[rows, F, width]`, W
/// `[F, width, d]`, Z `[rows, F, d]` (`_NLinear`, its bias left out).
fn per_feature_product<T: Gemm>(a: &[T], width: usize, weight: &[T], dims: Dims) -> Vec<T> {
    let Dims { rows, features, d } = dims;
    let mut z = vec![T::zero(); rows * features * d];
    for i in 0..features {
        T::gemm(
            rows,
            width,
            d,
            T::one(),
            &a[i * width..],
            ((features * width) as isize, 1),
            &weight[i * width * d..(i + 1) * width * d],
            (d as isize, 1),
            T::zero(),
            &mut z[i * d..],
            ((features * d) as isize, 1),
        );
    }
    z
}

/// dWᵢ = Aᵢᵀ · dZᵢ for each feature i: `[F, width, d]`.
fn per_feature_weight_grad<T: Gemm>(a: &[T], width: usize, dz: &[T], dims: Dims) -> Vec<T> {
    let Dims { rows, features, d } = dims;
    let mut grad = vec![T::zero(); features * width * d];
    for i in 0..features {
        T::gemm(
            width,
            rows,
            d,
            T::one(),
            &a[i * width..],
            (1, (features * width) as isize),
            &dz[i * d..],
            ((features * d) as isize, 1),
            T::zero(),
            &mut grad[i * width * d..(i + 1) * width * d],
            (d as isize, 1),
        );
    }
    grad
}

/// dAᵢ = dZᵢ · Wᵢᵀ for each feature i: `[rows, F, width]`.
fn per_feature_input_grad<T: Gemm>(dz: &[T], weight: &[T], width: usize, dims: Dims) -> Vec<T> {
    let Dims { rows, features, d } = dims;
    let mut grad = vec![T::zero(); rows * features * width];
    for i in 0..features {
        T::gemm(
            rows,
            d,
            width,
            T::one(),
            &dz[i * d..],
            ((features * d) as isize, 1),
            &weight[i * width * d..(i + 1) * width * d],
            (1, d as isize),
            T::zero(),
            &mut grad[i * width..],
            ((features * width) as isize, 1),
        );
    }
    grad
}

/// Z = A · Wᵀ + b over every row and feature (torch's `nn.Linear`, W
/// `[d, width]`): the lite periodic embedding's one layer.
fn shared_product<T: Gemm>(a: &[T], width: usize, weight: &[T], bias: &[T], dims: Dims) -> Vec<T> {
    let n = dims.rows * dims.features;
    let mut z = vec![T::zero(); n * dims.d];
    T::gemm(
        n,
        width,
        dims.d,
        T::one(),
        a,
        (width as isize, 1),
        weight,
        (1, width as isize),
        T::zero(),
        &mut z,
        (dims.d as isize, 1),
    );
    for row in z.chunks_exact_mut(dims.d) {
        row.iter_mut().zip(bias).for_each(|(z, &b)| *z = *z + b);
    }
    z
}

/// The lite layer's backward: dW = dZᵀ · A `[d, width]` and db = Σ dZ
/// `[d]` into `weight_grad` and `bias_grad`, and dA = dZ · W returned,
/// over every row and feature.
fn shared_backward<T: Gemm>(
    a: &[T],
    width: usize,
    weight: &[T],
    dz: &[T],
    dims: Dims,
    weight_grad: &mut [T],
    bias_grad: &mut [T],
) -> Vec<T> {
    let (n, d) = (dims.rows * dims.features, dims.d);
    T::gemm(
        d,
        n,
        width,
        T::one(),
        dz,
        (1, d as isize),
        a,
        (width as isize, 1),
        T::zero(),
        weight_grad,
        (width as isize, 1),
    );
    bias_grad.fill(T::zero());
    for row in dz.chunks_exact(d) {
        bias_grad
            .iter_mut()
            .zip(row)
            .for_each(|(s, &g)| *s = *s + g);
    }
    let mut input_grad = vec![T::zero(); n * width];
    T::gemm(
        n,
        d,
        width,
        T::one(),
        dz,
        (d as isize, 1),
        weight,
        (width as isize, 1),
        T::zero(),
        &mut input_grad,
        (width as isize, 1),
    );
    input_grad
}

/// dc = 2π · Σ_rows dV ⊙ x, dV = −dcos ⊙ sin V + dsin ⊙ cos V: `[F, k]`.
fn frequency_grad<T: Gemm>(
    encoded: &[T],
    encoded_grad: &[T],
    x: &[T],
    p: &Periodic,
    dims: Dims,
) -> Vec<T> {
    let k = p.n_frequencies;
    let mut grad = vec![T::zero(); dims.features * k];
    for (f, ((block, block_grad), &xi)) in encoded
        .chunks_exact(2 * k)
        .zip(encoded_grad.chunks_exact(2 * k))
        .zip(x)
        .enumerate()
    {
        let i = f % dims.features;
        let (cos, sin) = block.split_at(k);
        let (dcos, dsin) = block_grad.split_at(k);
        for (j, g) in grad[i * k..(i + 1) * k].iter_mut().enumerate() {
            let dv = dsin[j] * cos[j] - dcos[j] * sin[j];
            *g = *g + dv * xi;
        }
    }
    let two_pi = T::of(2.0 * std::f64::consts::PI);
    grad.iter_mut().for_each(|g| *g = two_pi * *g);
    grad
}

/// Each feature's Σ_rows of dY (`[F, d]`), of dY · xᵢ when `x` is given.
fn feature_sums<T: Gemm>(grad: &[T], x: Option<&[T]>, dims: Dims) -> Vec<T> {
    let Dims { features, d, .. } = dims;
    let mut sums = vec![T::zero(); features * d];
    for (r, row) in grad.chunks_exact(features * d).enumerate() {
        for (i, (sum, g)) in sums
            .chunks_exact_mut(d)
            .zip(row.chunks_exact(d))
            .enumerate()
        {
            let factor = x.map_or(T::one(), |x| x[r * features + i]);
            sum.iter_mut()
                .zip(g)
                .for_each(|(s, &g)| *s = *s + g * factor);
        }
    }
    sums
}
