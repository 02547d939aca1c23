//! A BatchEnsemble dense layer's forward and backward passes, side by
//! side: k members share one weight W and each has its own input scaling
//! r, output scaling s and bias b (the `tabm` package's
//! `LinearBatchEnsemble`), so member i computes
//!
//! ```text
//! forward:   X̃ᵢ = Xᵢ ⊙ rᵢ      Uᵢ = X̃ᵢ · Wᵀ      Zᵢ = Uᵢ ⊙ sᵢ + bᵢ      Aᵢ = f(Zᵢ)
//! backward:  dZᵢ = dAᵢ ⊙ f'(Zᵢ)          dbᵢ = Σ_rows dZᵢ      dsᵢ = Σ_rows dZᵢ ⊙ Uᵢ
//!            dUᵢ = dZᵢ ⊙ sᵢ              dW = Σᵢ dUᵢᵀ · X̃ᵢ
//!            dX̃ᵢ = dUᵢ · W               drᵢ = Σ_rows dX̃ᵢ ⊙ Xᵢ   dXᵢ = dX̃ᵢ ⊙ rᵢ
//! ```
//!
//! Activations are `[k, rows, width]`, a member's rows together (the
//! members axis of docs/DESIGN.md's layer kinds), so each product is one
//! product over every member's rows: `k · rows` rows times the shared W.
//! The first piece of TabM's layers; the network does not run it yet.

use super::gemm::Gemm;
use crate::activation::Activation;

/// A BatchEnsemble layer's parameters: W `[outputs, inputs]` shared, and
/// each member's r `[k, inputs]`, s `[k, outputs]` and bias `[k,
/// outputs]` (the `tabm` package's `weight`, `r`, `s`, `bias`).
#[derive(Debug, Clone, Copy)]
pub struct Ensemble<'a, T> {
    /// The members, k.
    pub members: usize,
    /// W, shared.
    pub weight: &'a [T],
    /// Each member's input scaling.
    pub r: &'a [T],
    /// Each member's output scaling.
    pub s: &'a [T],
    /// Each member's bias.
    pub bias: &'a [T],
    /// f, applied to Z.
    pub activation: Activation,
}

impl<T> Ensemble<'_, T> {
    fn inputs(&self) -> usize {
        self.r.len() / self.members
    }

    fn outputs(&self) -> usize {
        self.s.len() / self.members
    }
}

/// What the forward pass keeps for the backward pass: X̃ = X ⊙ r, U =
/// X̃ · Wᵀ and Z, each `[k, rows, width]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnsembleSaved<T> {
    /// X ⊙ r.
    pub scaled: Vec<T>,
    /// X̃ · Wᵀ, before the output scaling.
    pub product: Vec<T>,
    /// U ⊙ s + b, before the activation.
    pub z: Vec<T>,
}

/// The gradients of a BatchEnsemble layer's parameters, shaped as they.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnsembleGradients<T> {
    /// dW, summed over every member's rows.
    pub weight: Vec<T>,
    /// Each member's dr.
    pub r: Vec<T>,
    /// Each member's ds.
    pub s: Vec<T>,
    /// Each member's db.
    pub bias: Vec<T>,
}

/// The forward pass over `x` (`[k, rows, inputs]`) into `a` (`[k, rows,
/// outputs]`), keeping what the backward pass needs in `saved`.
///
/// ```
/// use retroprop::Activation;
/// use retroprop::cpu::ensemble::{Ensemble, EnsembleSaved, ensemble_forward};
/// // Two members of a 2 → 1 layer: W = [1, 1]; member 1 doubles its input.
/// let layer = Ensemble { members: 2, weight: &[1.0f64, 1.0], r: &[1.0, 1.0, 2.0, 2.0],
///     s: &[1.0, 1.0], bias: &[0.0, 0.5], activation: Activation::Identity };
/// let x = [1.0, 2.0, 1.0, 2.0]; // one row each
/// let (mut a, mut saved) = (vec![0.0; 2], EnsembleSaved::default());
/// ensemble_forward(&x, layer, &mut a, &mut saved);
/// assert_eq!(a, [3.0, 6.5]);
/// ```
pub fn ensemble_forward<T: Gemm>(
    x: &[T],
    layer: Ensemble<'_, T>,
    a: &mut [T],
    saved: &mut EnsembleSaved<T>,
) {
    let (inputs, outputs) = (layer.inputs(), layer.outputs());
    let rows = x.len() / inputs / layer.members;
    saved.scaled = scale_by_member(x, layer.r, layer.members);
    saved
        .product
        .resize(layer.members * rows * outputs, T::zero());
    let (i, o) = (inputs as isize, outputs as isize);
    T::gemm(
        layer.members * rows,
        inputs,
        outputs,
        T::one(),
        &saved.scaled,
        (i, 1),
        layer.weight,
        (1, i),
        T::zero(),
        &mut saved.product,
        (o, 1),
    );
    saved.z = scale_by_member(&saved.product, layer.s, layer.members);
    let per_member = rows * outputs;
    for (m, (z, a)) in saved
        .z
        .chunks_exact_mut(per_member)
        .zip(a.chunks_exact_mut(per_member))
        .enumerate()
    {
        let bias = &layer.bias[m * outputs..(m + 1) * outputs];
        for (zr, ar) in z.chunks_exact_mut(outputs).zip(a.chunks_exact_mut(outputs)) {
            for ((z, a), &b) in zr.iter_mut().zip(ar).zip(bias) {
                *z = *z + b;
                *a = layer.activation.forward(*z);
            }
        }
    }
}

/// The backward pass, given dL/dA in `grad` (`[k, rows, outputs]`,
/// overwritten by dL/dZ): the parameters' gradients, and dL/dX
/// (`[k, rows, inputs]`) when `input_grad` is given.
pub fn ensemble_backward<T: Gemm>(
    x: &[T],
    layer: Ensemble<'_, T>,
    saved: &EnsembleSaved<T>,
    grad: &mut [T],
    gradients: &mut EnsembleGradients<T>,
    input_grad: Option<&mut Vec<T>>,
) {
    let (inputs, outputs, k) = (layer.inputs(), layer.outputs(), layer.members);
    let rows = grad.len() / outputs / k;
    chain_activation(layer.activation, grad, &saved.z);
    gradients.bias = member_column_sums(grad, None, k, outputs);
    gradients.s = member_column_sums(grad, Some(&saved.product), k, outputs);
    let du = scale_by_member(grad, layer.s, k);
    let (i, o) = (inputs as isize, outputs as isize);
    gradients.weight.resize(outputs * inputs, T::zero());
    T::gemm(
        outputs,
        k * rows,
        inputs,
        T::one(),
        &du,
        (1, o),
        &saved.scaled,
        (i, 1),
        T::zero(),
        &mut gradients.weight,
        (i, 1),
    );
    let mut scaled_grad = vec![T::zero(); k * rows * inputs];
    T::gemm(
        k * rows,
        outputs,
        inputs,
        T::one(),
        &du,
        (o, 1),
        layer.weight,
        (i, 1),
        T::zero(),
        &mut scaled_grad,
        (i, 1),
    );
    gradients.r = member_column_sums(&scaled_grad, Some(x), k, inputs);
    if let Some(input_grad) = input_grad {
        *input_grad = scale_by_member(&scaled_grad, layer.r, k);
    }
}

/// v ⊙ scale, each member's rows (`[k, rows, width]`) by its own row of
/// `scale` (`[k, width]`).
fn scale_by_member<T: Gemm>(v: &[T], scale: &[T], members: usize) -> Vec<T> {
    let width = scale.len() / members;
    let per_member = v.len() / members;
    let mut out = Vec::with_capacity(v.len());
    for (m, block) in v.chunks_exact(per_member).enumerate() {
        let scale = &scale[m * width..(m + 1) * width];
        for row in block.chunks_exact(width) {
            out.extend(row.iter().zip(scale).map(|(&a, &b)| a * b));
        }
    }
    out
}

/// dZ = dA ⊙ f'(Z), in place.
fn chain_activation<T: Gemm>(activation: Activation, grad: &mut [T], z: &[T]) {
    if activation == Activation::Identity {
        return;
    }
    for (g, &z) in grad.iter_mut().zip(z) {
        *g = *g * activation.derivative(z);
    }
}

/// Each member's column sums of `v` (`[k, rows, width]`), of `v ⊙ by`
/// when `by` is given, rows added in order: `[k, width]`.
fn member_column_sums<T: Gemm>(v: &[T], by: Option<&[T]>, members: usize, width: usize) -> Vec<T> {
    let per_member = v.len() / members;
    let mut sums = vec![T::zero(); members * width];
    for (m, sum) in sums.chunks_exact_mut(width).enumerate() {
        let block = &v[m * per_member..(m + 1) * per_member];
        for (r, row) in block.chunks_exact(width).enumerate() {
            for (j, (s, &g)) in sum.iter_mut().zip(row).enumerate() {
                let factor = by.map_or(T::one(), |by| by[m * per_member + r * width + j]);
                *s = *s + g * factor;
            }
        }
    }
    sums
}
