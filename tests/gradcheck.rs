//! Backprop against central finite differences in f64, for every activation
//! and every loss, on every backend: the f64 CPU reference
//! (`<test>::f64`), and the f32 trainers (`<test>::cpu`, `<test>::gpu`),
//! whose gradient is read back from one step of plain SGD.

mod common;

use common::{Backend, backend_tests, max_rel_error};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::cpu::Network;
use retroprop::{Activation, Dataset, Init, Loss, Mlp, Sgd, TargetBatch, Targets, TrainConfig};

/// A batch of `rows` rows: inputs (f32 values, so that every backend sees
/// the same numbers), targets and class labels.
struct Batch {
    x: Vec<f32>,
    values: Vec<f32>,
    labels: Vec<u32>,
}

fn batch(rows: usize, inputs: usize, outputs: usize, loss: Loss, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = (0..rows * inputs)
        .map(|_| rng.random_range(-1.5..1.5f64) as f32)
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
    Batch { x, values, labels }
}

impl Batch {
    fn targets(&self, loss: Loss) -> TargetBatch<'_> {
        if loss.takes_classes() {
            TargetBatch::Classes(&self.labels)
        } else {
            TargetBatch::Values(&self.values)
        }
    }

    fn dataset(&self, inputs: usize, outputs: usize, loss: Loss) -> Dataset {
        let targets = if loss.takes_classes() {
            Targets::Classes(self.labels.clone())
        } else {
            Targets::Values {
                values: self.values.clone(),
                width: outputs,
            }
        };
        Dataset::new(self.x.clone(), inputs, targets).unwrap()
    }
}

/// The gradient of the batch's mean loss at `params`, by backprop on
/// `backend`.
fn backprop(backend: Backend, mlp: &Mlp, params: &[f32], data: &Batch, loss: Loss) -> Vec<f64> {
    let widen = common::widen;
    match backend {
        Backend::F64 => {
            let mut net = Network::new(mlp.clone(), widen(params), Sgd::default().into());
            net.loss_and_gradients(&widen(&data.x), loss, data.targets(loss));
            net.grads().to_vec()
        }
        Backend::F32(device) => {
            // One full-batch step of plain SGD: θ' = θ − lr·g. With lr a
            // power of two lr·g is exact and θ' is mostly lr·g, so reading
            // g = (θ − θ') / lr back adds an error of at most
            // ulp(θ') / (2 lr) ≈ 6e-8 · (|θ| / lr + |g|), far under f32's
            // error in computing g itself.
            let lr = 1024.0;
            let (inputs, outputs) = (mlp.inputs(), mlp.outputs());
            let config = TrainConfig::default()
                .loss(loss)
                .optimizer(Sgd::default().lr(lr))
                .full_batch()
                .epochs(1);
            let mut trainer = common::trainer_with(mlp.clone(), params.to_vec(), config, device);
            trainer
                .fit(&data.dataset(inputs, outputs, loss), None)
                .unwrap();
            assert_eq!(trainer.steps(), 1, "one full-batch step");
            let stepped = trainer.parameters().unwrap();
            params
                .iter()
                .zip(&stepped)
                .map(|(&before, &after)| (before as f64 - after as f64) / lr)
                .collect()
        }
    }
}

fn check(backend: Backend, hidden: Activation, output: Activation, loss: Loss) {
    let sizes = [4, 6, 5, 3];
    let mlp = Mlp::new(&sizes, hidden, output).unwrap();
    let params: Vec<f32> = mlp
        .init(Init::XavierNormal, 11)
        .iter()
        .map(|&p| p * 1.5)
        .collect();
    let data = batch(5, 4, 3, loss, 3);
    let analytic = backprop(backend, &mlp, &params, &data, loss);

    // Fourth-order central differences, in f64: error O(h⁴) lets h be large
    // enough that rounding stays near 1e-13.
    let x = common::widen(&data.x);
    let targets = data.targets(loss);
    let params = common::widen(&params);
    let mut net = Network::new(mlp, params.clone(), Sgd::default().into());
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
    // In f64, gradients tinier than 1e-7 are compared absolutely (the
    // floor). In f32 (u = 2⁻²⁴ ≈ 6e-8) the gradients, of size ~1, carry
    // rounding of a few u times that scale, amplified where the output
    // error y − t cancels: gradients under 1e-2 are compared against 1e-2;
    // the worst case measured on either backend is 8e-6, and 1e-4 keeps a
    // margin of 10 while a wrong derivative (errors of order 1) fails.
    let (tolerance, floor) = match backend {
        Backend::F64 => (1e-6, 1e-7),
        Backend::F32(_) => (1e-4, 1e-2),
    };
    let (err, at) = max_rel_error(&analytic, &numeric, floor);
    println!("{hidden} hidden, {output} output, {loss}: max relative error {err:.2e}");
    assert!(
        err < tolerance,
        "{hidden} hidden, {output} output, {loss}: parameter {at}: backprop {} vs finite difference {} (relative error {err:.2e})",
        analytic[at],
        numeric[at]
    );
}

backend_tests! {
    fn every_activation_matches_finite_differences(backend: Backend) {
        for activation in Activation::ALL {
            // Each activation as the hidden one, and as the output one.
            check(backend, activation, Activation::Identity, Loss::Mse);
            check(backend, Activation::Tanh, activation, Loss::Mse);
        }
        check(
            backend,
            Activation::LeakyRelu { slope: 0.2 },
            Activation::Identity,
            Loss::Mse,
        );
    }

    fn every_loss_matches_finite_differences(backend: Backend) {
        for loss in Loss::ALL {
            for hidden in [Activation::Tanh, Activation::Gelu, Activation::Sigmoid] {
                check(backend, hidden, Activation::Identity, loss);
            }
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
