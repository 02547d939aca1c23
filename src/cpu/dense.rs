//! One dense layer's forward and backward pass, side by side.

use crate::activation::Activation;
use crate::real::Real;

/// Forward: Z = A_prev · Wᵀ + b, A = f(Z).
///
/// `input` is rows × in, `weight` out × in, `bias` out; `z` and `a` are
/// rows × out.
pub fn dense_forward<T: Real>(
    input: &[T],
    weight: &[T],
    bias: &[T],
    activation: Activation,
    z: &mut [T],
    a: &mut [T],
) {
    let (outputs, inputs) = (bias.len(), weight.len() / bias.len());
    let rows = z.len() / outputs;
    for row in z.chunks_exact_mut(outputs) {
        row.copy_from_slice(bias);
    }
    let (o, i) = (outputs as isize, inputs as isize);
    T::gemm(
        rows,
        inputs,
        outputs,
        T::one(),
        input,
        (i, 1),
        weight,
        (1, i),
        T::one(),
        z,
        (o, 1),
    );
    for (a, &z) in a.iter_mut().zip(z.iter()) {
        *a = activation.forward(z);
    }
}

/// Backward, given dL/dA in `grad`:
///
/// ```text
/// dZ = dA ⊙ f'(Z)        (in place in `grad`)
/// dW = dZᵀ · A_prev      db = Σ_rows dZ
/// dA_prev = dZ · W       (when `input_grad` is given)
/// ```
#[allow(clippy::too_many_arguments)]
pub fn dense_backward<T: Real>(
    input: &[T],
    weight: &[T],
    z: &[T],
    activation: Activation,
    grad: &mut [T],
    weight_grad: &mut [T],
    bias_grad: &mut [T],
    input_grad: Option<&mut Vec<T>>,
) {
    let (outputs, inputs) = (bias_grad.len(), weight.len() / bias_grad.len());
    let rows = z.len() / outputs;
    if activation != Activation::Identity {
        for (g, &z) in grad.iter_mut().zip(z) {
            *g = *g * activation.derivative(z);
        }
    }
    let (o, i) = (outputs as isize, inputs as isize);
    T::gemm(
        outputs,
        rows,
        inputs,
        T::one(),
        grad,
        (1, o),
        input,
        (i, 1),
        T::zero(),
        weight_grad,
        (i, 1),
    );
    bias_grad.fill(T::zero());
    for row in grad.chunks_exact(outputs) {
        for (b, &g) in bias_grad.iter_mut().zip(row) {
            *b = *b + g;
        }
    }
    if let Some(input_grad) = input_grad {
        input_grad.resize(rows * inputs, T::zero());
        T::gemm(
            rows,
            outputs,
            inputs,
            T::one(),
            grad,
            (o, 1),
            weight,
            (i, 1),
            T::zero(),
            input_grad,
            (i, 1),
        );
    }
}
