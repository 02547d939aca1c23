//! The dense layer's elementwise passes (bias and activation forward; the
//! activation's derivative and the bias gradient backward) give the bits
//! of a plain scalar loop, whatever SIMD level they are compiled for
//! (src/cpu/dense.rs dispatches them per machine: AVX-512, AVX2, baseline).
//!
//! The products are made exact so that only the elementwise passes are
//! compared: one input, x = ±2^e, so X·Wᵀ = x·w with no rounding.

use retroprop::cpu::{Gemm, dense_backward, dense_forward};
use retroprop::{Activation, Real};

const ACTIVATIONS: [Activation; 7] = [
    Activation::Identity,
    Activation::Sigmoid,
    Activation::Tanh,
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.01 },
    Activation::Gelu,
    Activation::GeluTanh,
];

/// A value in about ±12 (sigmoid and tanh saturate there) from `i`.
fn value<T: Real>(i: usize, salt: usize) -> T {
    let h = (i.wrapping_mul(2_654_435_761).wrapping_add(salt * 40_503)) % 10_007;
    T::of(h as f64 / 10_007.0 * 24.0 - 12.0)
}

fn check<T: Gemm>(kind: &str) {
    for activation in ACTIVATIONS {
        // Widths with and without a SIMD tail; rows up to one job's
        // (the bias gradient adds each column's rows in order).
        for (rows, width) in [(1, 1), (3, 7), (40, 37), (200, 256), (5, 1000)] {
            let input: Vec<T> = (0..rows)
                .map(|r| T::of(2f64.powi(r as i32 % 7 - 3) * if r % 2 == 0 { 1.0 } else { -1.0 }))
                .collect();
            let weight: Vec<T> = (0..width).map(|o| value(o, 1)).collect();
            let bias: Vec<T> = (0..width).map(|o| value(o, 2)).collect();
            let mut z = vec![T::zero(); rows * width];
            let mut a = vec![T::zero(); rows * width];
            dense_forward(&input, &weight, &bias, activation, &mut z, &mut a);
            let mut grad: Vec<T> = (0..rows * width).map(|i| value(i, 3)).collect();
            let incoming = grad.clone();
            let mut weight_grad = vec![T::zero(); width];
            let mut bias_grad = vec![T::zero(); width];
            dense_backward(
                &input,
                &weight,
                &z,
                activation,
                &mut grad,
                &mut weight_grad,
                &mut bias_grad,
                None,
            );
            let mut sums = vec![T::zero(); width];
            for (r, &x) in input.iter().enumerate() {
                for o in 0..width {
                    let i = r * width + o;
                    let want_z = x * weight[o] + bias[o];
                    let want_a = activation.forward(want_z);
                    let want_g = if activation == Activation::Identity {
                        incoming[i]
                    } else {
                        incoming[i] * activation.derivative(want_z)
                    };
                    sums[o] = sums[o] + want_g;
                    let same = |got: T, want: T| got == want || (got.is_nan() && want.is_nan());
                    assert!(
                        same(z[i], want_z) && same(a[i], want_a) && same(grad[i], want_g),
                        "{kind} {activation:?} {rows}×{width} row {r} column {o}: \
                         Z {:?} A {:?} dZ {:?}, a scalar loop gives {want_z:?} {want_a:?} {want_g:?}",
                        z[i],
                        a[i],
                        grad[i]
                    );
                }
            }
            assert_eq!(
                bias_grad, sums,
                "{kind} {activation:?} {rows}×{width}: the bias gradient"
            );
        }
    }
}

#[test]
fn elementwise_passes_give_a_scalar_loops_bits_f32() {
    check::<f32>("f32");
}

#[test]
fn elementwise_passes_give_a_scalar_loops_bits_f64() {
    check::<f64>("f64");
}
