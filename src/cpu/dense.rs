//! One dense layer's forward and backward pass, side by side.

use super::gemm::{Gemm, Shape};
use super::share::share;
use crate::activation::Activation;
use crate::real::Real;

/// Rows a backward elementwise job takes: about 64 Ki values, few enough
/// jobs that the pool's overhead stays small and enough to keep every core
/// busy on the standard work's batches. The bias gradient's partial sums
/// follow these jobs, so their size is part of its bits.
fn rows_per_job(width: usize) -> usize {
    ((1 << 16) / width.max(1)).max(1)
}

/// Rows a forward elementwise job takes: about 16 Ki values. The forward
/// pass sums nothing, so its jobs can be smaller than the backward's: the
/// bias and activation of a 200 × 256 layer, after a product whose blocks
/// left Z in both cores' caches, took 57 µs on one thread; in four jobs a
/// 64-256-256-10 step's forward pass went from 283–311 to 238–239 µs.
fn forward_rows_per_job(width: usize) -> usize {
    ((1 << 14) / width.max(1)).max(1)
}

/// Whether a layer's forward elementwise pass over `rows` rows of `width`
/// is shared among threads: from 32 Ki values (below, sharing costs more
/// than it saves; see `PARALLEL_WORK` in gemm/mod.rs).
pub(super) fn forward_splits(rows: usize, width: usize) -> bool {
    rows.saturating_mul(width) >= 1 << 15 && rows > forward_rows_per_job(width)
}

/// Runs `$loop::<T, KIND>(slope, args…)` for `$activation`'s kind,
/// compiled for the machine's SIMD level (AVX-512, AVX2) rather than the
/// baseline's four lanes: the same operations element by element, so the
/// same bits. The kind is a constant so that each loop is built for one
/// activation (a loop over a runtime activation was neither inlined into
/// the SIMD level's function nor vectorized).
macro_rules! dispatch_activation {
    ($activation:expr, $loop:ident::<$t:ty>($($arg:expr),*)) => {{
        let slope = match $activation {
            Activation::LeakyRelu { slope } => slope,
            _ => 0.0,
        };
        let arch = pulp::Arch::new();
        match $activation {
            Activation::Identity => arch.dispatch(#[inline(always)] || $loop::<$t, 0>(slope, $($arg),*)),
            Activation::Sigmoid => arch.dispatch(#[inline(always)] || $loop::<$t, 1>(slope, $($arg),*)),
            Activation::Tanh => arch.dispatch(#[inline(always)] || $loop::<$t, 2>(slope, $($arg),*)),
            Activation::Relu => arch.dispatch(#[inline(always)] || $loop::<$t, 3>(slope, $($arg),*)),
            Activation::LeakyRelu { .. } => arch.dispatch(#[inline(always)] || $loop::<$t, 4>(slope, $($arg),*)),
            Activation::Gelu => arch.dispatch(#[inline(always)] || $loop::<$t, 5>(slope, $($arg),*)),
            Activation::GeluTanh => arch.dispatch(#[inline(always)] || $loop::<$t, 6>(slope, $($arg),*)),
        }
    }};
}

/// The activation of kind `KIND` (see [`dispatch_activation`]).
#[inline(always)]
fn activation_of<const KIND: u8>(slope: f32) -> Activation {
    match KIND {
        0 => Activation::Identity,
        1 => Activation::Sigmoid,
        2 => Activation::Tanh,
        3 => Activation::Relu,
        4 => Activation::LeakyRelu { slope },
        5 => Activation::Gelu,
        _ => Activation::GeluTanh,
    }
}

/// Z += b and A = f(Z), row by row (`bias` is a row's width).
fn bias_and_activation_rows<T: Real>(activation: Activation, bias: &[T], z: &mut [T], a: &mut [T]) {
    dispatch_activation!(activation, bias_and_activation_loop::<T>(bias, z, a))
}

#[inline(always)]
fn bias_and_activation_loop<T: Real, const KIND: u8>(
    slope: f32,
    bias: &[T],
    z: &mut [T],
    a: &mut [T],
) {
    let f = activation_of::<KIND>(slope);
    let outputs = bias.len();
    for (z, a) in z.chunks_exact_mut(outputs).zip(a.chunks_exact_mut(outputs)) {
        for ((z, a), &b) in z.iter_mut().zip(a).zip(bias) {
            *z = *z + b;
            *a = f.forward(*z);
        }
    }
}

/// dZ = dA ⊙ f'(Z) in place in `grad`, row by row, and the column sums of
/// dZ (each column's rows added in order).
fn chain_and_sum_rows<T: Real>(
    activation: Activation,
    outputs: usize,
    grad: &mut [T],
    z: &[T],
) -> Vec<T> {
    let mut sum = vec![T::zero(); outputs];
    dispatch_activation!(activation, chain_and_sum_loop::<T>(&mut sum, grad, z));
    sum
}

#[inline(always)]
fn chain_and_sum_loop<T: Real, const KIND: u8>(slope: f32, sum: &mut [T], grad: &mut [T], z: &[T]) {
    let f = activation_of::<KIND>(slope);
    let outputs = sum.len();
    for (g, z) in grad.chunks_exact_mut(outputs).zip(z.chunks_exact(outputs)) {
        for ((g, &z), s) in g.iter_mut().zip(z).zip(sum.iter_mut()) {
            if f != Activation::Identity {
                *g = *g * f.derivative(z);
            }
            *s = *s + *g;
        }
    }
}

/// Whether a layer's backward elementwise pass over `rows` rows of
/// `width` is shared among threads.
pub(super) fn splits(rows: usize, width: usize) -> bool {
    rows > rows_per_job(width)
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
    let bias_and_activation =
        |(z, a): (&mut [T], &mut [T])| bias_and_activation_rows(activation, bias, z, a);
    let chunk = forward_rows_per_job(outputs) * outputs;
    if forward_splits(rows, outputs) {
        share(
            z.chunks_mut(chunk).zip(a.chunks_mut(chunk)).collect(),
            bias_and_activation,
        );
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
    let chain_and_sum =
        |(grad, z): (&mut [T], &[T])| chain_and_sum_rows(activation, outputs, grad, z);
    let chunk = rows_per_job * outputs;
    let partial_sums: Vec<Vec<T>> = if splits(rows, outputs) {
        share(
            grad.chunks_mut(chunk).zip(z.chunks(chunk)).collect(),
            chain_and_sum,
        )
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
    let grad: &[T] = grad;
    let weight_product = |weight_grad: &mut [T]| {
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
        )
    };
    let input_product = |input_grad: &mut [T]| {
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
        )
    };
    let Some(input_grad) = input_grad else {
        weight_product(weight_grad);
        return;
    };
    input_grad.resize(rows * inputs, T::zero());
    if side_by_side(rows, inputs, outputs) {
        share(
            vec![Gradient::Input(input_grad), Gradient::Weight(weight_grad)],
            |gradient| match gradient {
                Gradient::Input(c) => input_product(c),
                Gradient::Weight(c) => weight_product(c),
            },
        );
    } else {
        weight_product(weight_grad);
        input_product(input_grad);
    }
}

/// A product of the backward pass, with the matrix it writes.
enum Gradient<'a, T> {
    Weight(&'a mut [T]),
    Input(&'a mut [T]),
}

/// Whether a layer's weight and input gradients are computed side by side
/// (each still shared among threads where it is large): where they are
/// worth sharing, unless one goes to the BLAS library, whose own threads
/// already take the machine (two calls at once would contend for them).
fn side_by_side(rows: usize, inputs: usize, outputs: usize) -> bool {
    use super::gemm::{to_library, wants_threads};
    wants_threads(rows, inputs, outputs)
        && !to_library(outputs, rows, inputs)
        && !to_library(rows, outputs, inputs)
}

/// The products of a layer's training step over `rows` rows, in the
/// layouts [`dense_forward`] and [`dense_backward`] pass them: the forward
/// (X·Wᵀ), the weight gradient (dZᵀ·X) and, with `input_grad`, the input
/// gradient (dZ·W).
pub(super) fn layer_products<T>(
    rows: usize,
    inputs: usize,
    outputs: usize,
    input_grad: bool,
) -> Vec<Shape> {
    let product = |m, k, n, a_transposed, b_transposed| Shape {
        m,
        k,
        n,
        a_transposed,
        b_transposed,
        float_bytes: std::mem::size_of::<T>(),
    };
    let mut products = vec![
        product(rows, inputs, outputs, false, true),
        product(outputs, rows, inputs, true, false),
    ];
    if input_grad {
        products.push(product(rows, outputs, inputs, false, false));
    }
    products
}
