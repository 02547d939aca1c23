//! The passes of TabM's layers other than BatchEnsemble's
//! (`ensemble.rs`), over activations `[k, rows, width]`: the members'
//! own linear layers (the `tabm` package's `LinearEnsemble`, a weight
//! `[k, in, out]` a member), `tabm-mini`'s per-member scaling, the view
//! that gives every member the batch, and the mean that makes the
//! ensemble's prediction of the members'.

use super::gemm::Gemm;
use crate::activation::Activation;
use crate::model::EnsembleMean;

/// The members' own linear layers: member m's `Z = X_m · W_m + b_m`, `A =
/// f(Z)`, W `[k, inputs, outputs]`, b `[k, outputs]`.
#[derive(Debug, Clone, Copy)]
pub struct MemberLinear<'a, T> {
    /// The members, k.
    pub members: usize,
    /// Width of the input.
    pub inputs: usize,
    /// Every member's W.
    pub weight: &'a [T],
    /// Every member's b.
    pub bias: &'a [T],
    /// f.
    pub activation: Activation,
}

impl<T> MemberLinear<'_, T> {
    fn outputs(&self) -> usize {
        self.bias.len() / self.members
    }
}

/// The forward pass over `x` (`[k, rows, inputs]`): Z into `z`, f(Z) into
/// `a` (`[k, rows, outputs]`).
///
/// ```
/// use retroprop::Activation;
/// use retroprop::cpu::members_layers::{MemberLinear, member_linear_forward};
/// // Two members of a 2 → 1 layer, one row each.
/// let layer = MemberLinear { members: 2, inputs: 2, weight: &[1.0f64, 1.0, 2.0, 0.0],
///     bias: &[0.0, 0.5], activation: Activation::Identity };
/// let (mut z, mut a) = (vec![0.0; 2], vec![0.0; 2]);
/// member_linear_forward(&[1.0, 2.0, 1.0, 2.0], layer, &mut z, &mut a);
/// assert_eq!(a, [3.0, 2.5]);
/// ```
pub fn member_linear_forward<T: Gemm>(
    x: &[T],
    layer: MemberLinear<'_, T>,
    z: &mut [T],
    a: &mut [T],
) {
    let (k, inputs, outputs) = (layer.members, layer.inputs, layer.outputs());
    let rows = x.len() / inputs / k;
    let (i, o) = (inputs as isize, outputs as isize);
    for m in 0..k {
        let z = &mut z[m * rows * outputs..(m + 1) * rows * outputs];
        let bias = &layer.bias[m * outputs..(m + 1) * outputs];
        for row in z.chunks_exact_mut(outputs) {
            row.copy_from_slice(bias);
        }
        T::gemm(
            rows,
            inputs,
            outputs,
            T::one(),
            &x[m * rows * inputs..(m + 1) * rows * inputs],
            (i, 1),
            &layer.weight[m * inputs * outputs..(m + 1) * inputs * outputs],
            (o, 1),
            T::one(),
            z,
            (o, 1),
        );
    }
    for (a, &z) in a.iter_mut().zip(z.iter()) {
        *a = layer.activation.forward(z);
    }
}

/// The backward pass, given dL/dA in `grad` (overwritten by dL/dZ): each
/// member's dW and db into `weight_grad` and `bias_grad`, and dL/dX into
/// `input_grad` when given.
pub fn member_linear_backward<T: Gemm>(
    x: &[T],
    layer: MemberLinear<'_, T>,
    z: &[T],
    grad: &mut [T],
    (weight_grad, bias_grad): (&mut [T], &mut [T]),
    input_grad: Option<&mut Vec<T>>,
) {
    let (k, inputs, outputs) = (layer.members, layer.inputs, layer.outputs());
    let rows = x.len() / inputs / k;
    if layer.activation != Activation::Identity {
        for (g, &z) in grad.iter_mut().zip(z) {
            *g = *g * layer.activation.derivative(z);
        }
    }
    let (i, o) = (inputs as isize, outputs as isize);
    let mut input_grad = input_grad;
    if let Some(g) = input_grad.as_deref_mut() {
        g.clear();
        g.resize(k * rows * inputs, T::zero());
    }
    for m in 0..k {
        let dz = &grad[m * rows * outputs..(m + 1) * rows * outputs];
        let xm = &x[m * rows * inputs..(m + 1) * rows * inputs];
        let w = m * inputs * outputs..(m + 1) * inputs * outputs;
        let db = &mut bias_grad[m * outputs..(m + 1) * outputs];
        db.fill(T::zero());
        for row in dz.chunks_exact(outputs) {
            for (d, &g) in db.iter_mut().zip(row) {
                *d = *d + g;
            }
        }
        // dW_m = X_mᵀ · dZ_m, [inputs, outputs].
        T::gemm(
            inputs,
            rows,
            outputs,
            T::one(),
            xm,
            (1, i),
            dz,
            (o, 1),
            T::zero(),
            &mut weight_grad[w.clone()],
            (o, 1),
        );
        // dX_m = dZ_m · W_mᵀ.
        if let Some(dx) = input_grad.as_deref_mut() {
            T::gemm(
                rows,
                outputs,
                inputs,
                T::one(),
                dz,
                (o, 1),
                &layer.weight[w],
                (1, o),
                T::zero(),
                &mut dx[m * rows * inputs..(m + 1) * rows * inputs],
                (i, 1),
            );
        }
    }
}

/// Each member's rows of `x` (`[k, rows, width]`) times its own row of
/// `scale` (`[k, width]`), into `out`.
pub fn scale_forward<T: Gemm>(x: &[T], scale: &[T], members: usize, out: &mut Vec<T>) {
    let width = scale.len() / members;
    let per_member = x.len() / members;
    out.clear();
    for (m, block) in x.chunks_exact(per_member).enumerate() {
        let scale = &scale[m * width..(m + 1) * width];
        for row in block.chunks_exact(width) {
            out.extend(row.iter().zip(scale).map(|(&a, &b)| a * b));
        }
    }
}

/// The scaling's backward pass: d scale = each member's Σ_rows dY ⊙ X into
/// `scale_grad`; dX = dY ⊙ scale into `input_grad` when given.
pub fn scale_backward<T: Gemm>(
    (x, grad): (&[T], &[T]),
    scale: &[T],
    members: usize,
    scale_grad: &mut [T],
    input_grad: Option<&mut Vec<T>>,
) {
    let width = scale.len() / members;
    let per_member = x.len() / members;
    scale_grad.fill(T::zero());
    for m in 0..members {
        let sum = &mut scale_grad[m * width..(m + 1) * width];
        let block = m * per_member..(m + 1) * per_member;
        for (xr, gr) in x[block.clone()]
            .chunks_exact(width)
            .zip(grad[block].chunks_exact(width))
        {
            for ((s, &x), &g) in sum.iter_mut().zip(xr).zip(gr) {
                *s = *s + g * x;
            }
        }
    }
    if let Some(dx) = input_grad {
        scale_forward(grad, scale, members, dx);
    }
}

/// The view's backward pass: a row's gradient is the sum of every
/// member's, members in order.
pub fn view_backward<T: Gemm>(grad: &[T], members: usize, input_grad: &mut Vec<T>) {
    let per_member = grad.len() / members;
    input_grad.clear();
    input_grad.extend_from_slice(&grad[..per_member]);
    for block in grad.chunks_exact(per_member).skip(1) {
        for (d, &g) in input_grad.iter_mut().zip(block) {
            *d = *d + g;
        }
    }
}

/// The ensemble's output of the members' (`[k, rows, width]`) into `out`
/// (`[rows, width]`): for [`EnsembleMean::Probabilities`] log(mean of the
/// members' softmax), taken as log-sum-exp of their log-softmax less log
/// k, so that its softmax is the mean; for [`EnsembleMean::Sigmoid`] the
/// logit of the mean sigmoid, log(mean σ(z)) − log(mean σ(−z)) by the same
/// sums; for [`EnsembleMean::Values`] the mean.
pub fn ensemble_mean<T: Gemm>(
    outputs: &[T],
    members: usize,
    width: usize,
    mean: EnsembleMean,
    out: &mut Vec<T>,
) {
    let per_member = outputs.len() / members;
    let k = T::of(members as f64);
    out.clear();
    out.resize(per_member, T::zero());
    let member_row = |m: usize, r: usize| &outputs[m * per_member + r * width..][..width];
    for (r, row) in out.chunks_exact_mut(width).enumerate() {
        match mean {
            EnsembleMean::Values => {
                for m in 0..members {
                    for (o, &v) in row.iter_mut().zip(member_row(m, r)) {
                        *o = *o + v;
                    }
                }
                for o in row.iter_mut() {
                    *o = *o / k;
                }
            }
            EnsembleMean::Probabilities => {
                let log_softmax: Vec<Vec<T>> = (0..members)
                    .map(|m| log_softmax(member_row(m, r)))
                    .collect();
                for (j, o) in row.iter_mut().enumerate() {
                    *o = log_sum_exp(log_softmax.iter().map(|l| l[j])) - k.ln();
                }
            }
            EnsembleMean::Sigmoid => {
                for (j, o) in row.iter_mut().enumerate() {
                    let z = (0..members).map(|m| member_row(m, r)[j]);
                    let up = log_sum_exp(z.clone().map(|z| -softplus(-z)));
                    let down = log_sum_exp(z.map(|z| -softplus(z)));
                    *o = up - down;
                }
            }
        }
    }
}

/// log(1 + eᶻ), without overflow.
fn softplus<T: Gemm>(z: T) -> T {
    if z > T::zero() {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn log_softmax<T: Gemm>(row: &[T]) -> Vec<T> {
    let lse = log_sum_exp(row.iter().copied());
    row.iter().map(|&v| v - lse).collect()
}

/// log Σ eᵛ, by the largest.
fn log_sum_exp<T: Gemm>(values: impl Iterator<Item = T> + Clone) -> T {
    let max = values.clone().fold(T::neg_infinity(), T::max);
    if max == T::neg_infinity() {
        return max;
    }
    let sum = values.fold(T::zero(), |s, v| s + (v - max).exp());
    max + sum.ln()
}
