//! One dense layer's forward and backward pass, side by side.

use super::gemm::Gemm;
use crate::activation::Activation;
use rayon::prelude::*;

/// Runs `$body` with `$f` bound to `$activation` as a constant of each
/// match arm, so that the elementwise loops inside are compiled once per
/// activation and vectorised, rather than matching on it per element.
macro_rules! each_activation {
    ($activation:expr, |$f:ident| $body:block) => {
        match $activation {
            Activation::Identity => {
                let $f = Activation::Identity;
                $body
            }
            Activation::Sigmoid => {
                let $f = Activation::Sigmoid;
                $body
            }
            Activation::Tanh => {
                let $f = Activation::Tanh;
                $body
            }
            Activation::Relu => {
                let $f = Activation::Relu;
                $body
            }
            Activation::LeakyRelu { slope } => {
                let $f = Activation::LeakyRelu { slope };
                $body
            }
            Activation::Gelu => {
                let $f = Activation::Gelu;
                $body
            }
            Activation::GeluTanh => {
                let $f = Activation::GeluTanh;
                $body
            }
        }
    };
}

/// Rows an elementwise job takes: about 64 Ki values, few enough jobs that
/// the pool's overhead stays small and enough to keep every core busy on
/// the standard work's batches.
fn rows_per_job(width: usize) -> usize {
    ((1 << 16) / width.max(1)).max(1)
}

/// Forward: Z = A_prev · Wᵀ + b, A = f(Z).
///
/// `input` is rows × in, `weight` out × in, `bias` out; `z` and `a` are
/// rows × out.
pub fn dense_forward<T: Gemm>(
    input: &[T],
    weight: &[T],
    bias: &[T],
    activation: Activation,
    z: &mut [T],
    a: &mut [T],
) {
    let (outputs, inputs) = (bias.len(), weight.len() / bias.len());
    let rows = z.len() / outputs;
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
        T::zero(),
        z,
        (o, 1),
    );
    // The bias and the activation in one pass over Z.
    let rows_per_job = rows_per_job(outputs);
    let bias_and_activation = |(z, a): (&mut [T], &mut [T])| {
        each_activation!(activation, |f| {
            for (z, a) in z.chunks_exact_mut(outputs).zip(a.chunks_exact_mut(outputs)) {
                for ((z, a), &b) in z.iter_mut().zip(a).zip(bias) {
                    *z = *z + b;
                    *a = f.forward(*z);
                }
            }
        })
    };
    let chunk = rows_per_job * outputs;
    if rows > rows_per_job {
        z.par_chunks_mut(chunk)
            .zip(a.par_chunks_mut(chunk))
            .for_each(bias_and_activation);
    } else {
        bias_and_activation((z, a));
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
pub fn dense_backward<T: Gemm>(
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
    // dZ and the column sums of dZ in one pass, in blocks of rows whose
    // partial sums are added in block order: the same bits on any number
    // of threads.
    let rows_per_job = rows_per_job(outputs);
    let chain_and_sum = |(grad, z): (&mut [T], &[T])| {
        let mut sum = vec![T::zero(); outputs];
        each_activation!(activation, |f| {
            for (g, z) in grad.chunks_exact_mut(outputs).zip(z.chunks_exact(outputs)) {
                for ((g, &z), s) in g.iter_mut().zip(z).zip(sum.iter_mut()) {
                    if f != Activation::Identity {
                        *g = *g * f.derivative(z);
                    }
                    *s = *s + *g;
                }
            }
        });
        sum
    };
    let chunk = rows_per_job * outputs;
    let partial_sums: Vec<Vec<T>> = if rows > rows_per_job {
        grad.par_chunks_mut(chunk)
            .zip(z.par_chunks(chunk))
            .map(chain_and_sum)
            .collect()
    } else {
        vec![chain_and_sum((grad, z))]
    };
    bias_grad.fill(T::zero());
    for sum in partial_sums {
        for (b, s) in bias_grad.iter_mut().zip(sum) {
            *b = *b + s;
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
