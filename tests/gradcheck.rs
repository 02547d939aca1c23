//! Backprop against central finite differences, in f64, for every activation
//! and every loss.

mod common;

use common::max_rel_error;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::cpu::Network;
use retroprop::{Activation, Init, Loss, Mlp, Sgd, TargetBatch};

/// Random inputs and targets for a batch of `rows` rows.
fn batch(
    rows: usize,
    inputs: usize,
    outputs: usize,
    loss: Loss,
    seed: u64,
) -> (Vec<f64>, Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..rows * inputs)
        .map(|_| rng.random_range(-1.5..1.5))
        .collect();
    let values = match loss {
        Loss::BceWithLogits => (0..rows * outputs)
            .map(|_| rng.random_range(0.0..1.0))
            .collect(),
        _ => (0..rows * outputs)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
    };
    let labels = (0..rows)
        .map(|_| rng.random_range(0..outputs as u32))
        .collect();
    (x, values, labels)
}

fn check(hidden: Activation, output: Activation, loss: Loss) {
    let sizes = [4, 6, 5, 3];
    let mlp = Mlp::new(&sizes, hidden, output).unwrap();
    let params: Vec<f64> = mlp
        .init(Init::XavierNormal, 11)
        .iter()
        .map(|&p| p as f64 * 1.5)
        .collect();
    let (x, values, labels) = batch(5, 4, 3, loss, 3);
    let targets = if loss.takes_classes() {
        TargetBatch::Classes(&labels)
    } else {
        TargetBatch::Values(&values)
    };
    let mut net = Network::new(mlp, params.clone(), Sgd::default().into());
    net.loss_and_gradients(&x, loss, targets);
    let analytic = net.grads().to_vec();

    // Fourth-order central differences: error O(h⁴) lets h be large
    // enough that rounding stays near 1e-13.
    let h = 1e-3;
    let mut numeric = vec![0.0; params.len()];
    for i in 0..params.len() {
        let mut at = |offset: f64| {
            net.params_mut()[i] = params[i] + offset;
            net.loss_and_gradients(&x, loss, targets)
        };
        let (p1, m1, p2, m2) = (at(h), at(-h), at(2.0 * h), at(-2.0 * h));
        net.params_mut()[i] = params[i];
        numeric[i] = (8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h);
    }
    // Gradients tinier than 1e-7 are compared absolutely (the floor).
    let (err, at) = max_rel_error(&analytic, &numeric, 1e-7);
    assert!(
        err < 1e-6,
        "{hidden} hidden, {output} output, {loss}: parameter {at}: backprop {} vs finite difference {} (relative error {err:.2e})",
        analytic[at],
        numeric[at]
    );
}

#[test]
fn every_activation_matches_finite_differences() {
    for activation in Activation::ALL {
        // Each activation as the hidden one, and as the output one.
        check(activation, Activation::Identity, Loss::Mse);
        check(Activation::Tanh, activation, Loss::Mse);
    }
    check(
        Activation::LeakyRelu { slope: 0.2 },
        Activation::Identity,
        Loss::Mse,
    );
}

#[test]
fn every_loss_matches_finite_differences() {
    for loss in Loss::ALL {
        for hidden in [Activation::Tanh, Activation::Gelu, Activation::Sigmoid] {
            check(hidden, Activation::Identity, loss);
        }
    }
}

#[test]
fn half_mse_gradient_is_half_of_mse() {
    let out = [0.5f64, -1.0, 2.0];
    let y = [0.0f32, 1.0, 1.0];
    let (mut g_full, mut g_half) = ([0.0; 3], [0.0; 3]);
    let full = Loss::Mse.forward_backward(&out, 3, TargetBatch::Values(&y), &mut g_full);
    let half = Loss::HalfMse.forward_backward(&out, 3, TargetBatch::Values(&y), &mut g_half);
    // By hand: squared errors 0.25, 4, 1 → mean 1.75.
    assert!((full - 1.75).abs() < 1e-12, "mse {full}");
    assert!((half - 0.875).abs() < 1e-12, "half_mse {half}");
    for i in 0..3 {
        assert!(
            (g_full[i] - 2.0 * g_half[i]).abs() < 1e-12,
            "element {i}: {} vs {}",
            g_full[i],
            g_half[i]
        );
    }
    assert!((g_half[1] - (-2.0 / 3.0)).abs() < 1e-12);
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let out = [1000.0f32, 0.0, -1000.0, 5000.0, 5000.0, 0.0];
    let mut grad = [0.0f32; 6];
    let loss =
        Loss::CrossEntropy.forward_backward(&out, 3, TargetBatch::Classes(&[0, 1]), &mut grad);
    // Row 1: loss 0. Row 2: two equal logits, the label is one of them: ln 2.
    let expected = (0.0 + std::f32::consts::LN_2) / 2.0;
    assert!(
        (loss - expected).abs() < 1e-6,
        "loss {loss}, expected {expected}"
    );
    assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    let bce = Loss::BceWithLogits.forward_backward(
        &[800.0f32, -800.0],
        2,
        TargetBatch::Values(&[1.0, 1.0]),
        &mut grad[..2],
    );
    // log(1 + e^-800) ≈ 0 and 800 + log(1 + e^-800) ≈ 800, averaged: 400.
    assert!((bce - 400.0).abs() < 1e-3, "bce {bce}");
}
