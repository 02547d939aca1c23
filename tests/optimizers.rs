//! Every optimizer against values derived by hand and against an independent
//! scalar transcription of the pseudo-code in the `torch.optim` docs.

mod common;

use common::max_rel_error;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::cpu::{clip_gradients, optimizer_step};
use retroprop::{Adagrad, Adam, AdamW, Optimizer, RmsProp, Sgd};

/// Runs `optimizer` on one parameter θ₀ with the gradient sequence `grads`.
fn trajectory(optimizer: Optimizer, theta0: f64, grads: &[f64]) -> Vec<f64> {
    let mut theta = [theta0];
    let mut state = vec![optimizer.initial_state(); optimizer.state_slots()];
    grads
        .iter()
        .enumerate()
        .map(|(t, &g)| {
            optimizer_step(
                &optimizer,
                &mut theta,
                &[g],
                &mut state,
                t as u64 + 1,
                optimizer.lr(),
            );
            theta[0]
        })
        .collect()
}

fn assert_close(got: &[f64], expected: &[f64], what: &str) {
    for (t, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() < 1e-9,
            "{what}: step {}: got {g}, expected {e}",
            t + 1
        );
    }
}

#[test]
fn sgd_momentum_matches_hand_computed_steps() {
    // θ = 1, g = 1 each step, lr 0.1, momentum 0.9: buffers 1, 1.9, 2.71.
    let got = trajectory(Sgd::default().lr(0.1).momentum(0.9).into(), 1.0, &[1.0; 3]);
    assert_close(&got, &[0.9, 0.71, 0.439], "sgd momentum");
    // Nesterov: steps of g + 0.9·buf = 1.9, 2.71.
    let got = trajectory(
        Sgd::default().lr(0.1).momentum(0.9).nesterov(true).into(),
        1.0,
        &[1.0; 2],
    );
    assert_close(&got, &[0.81, 0.539], "sgd nesterov");
    // Dampening 0.5: buffers 1 (first step undamped, as torch), 0.9 + 0.5 = 1.4.
    let got = trajectory(
        Sgd::default().lr(0.1).momentum(0.9).dampening(0.5).into(),
        1.0,
        &[1.0; 2],
    );
    assert_close(&got, &[0.9, 0.76], "sgd dampening");
    // Weight decay 0.5 with θ = 2: g = 1 + 1 = 2, then θ = 1.8; g = 1 + 0.9.
    let got = trajectory(
        Sgd::default().lr(0.1).weight_decay(0.5).into(),
        2.0,
        &[1.0; 2],
    );
    assert_close(&got, &[1.8, 1.61], "sgd weight decay");
}

#[test]
fn adam_matches_hand_computed_steps() {
    // With a constant gradient the bias-corrected moments are g and g², so
    // each step moves θ by lr · g / (|g| + eps) ≈ lr.
    let got = trajectory(Adam::default().lr(0.1).into(), 1.0, &[2.0; 3]);
    let step = 0.1 * 2.0 / (2.0 + 1e-8);
    assert_close(
        &got,
        &[1.0 - step, 1.0 - 2.0 * step, 1.0 - 3.0 * step],
        "adam",
    );
    // AdamW: θ · (1 − lr · wd) first: 1 · 0.95 − 0.1.
    let got = trajectory(
        AdamW::default().lr(0.1).weight_decay(0.5).into(),
        1.0,
        &[2.0],
    );
    assert_close(&got, &[0.95 - step], "adamw");
}

#[test]
fn adagrad_and_rmsprop_match_hand_computed_steps() {
    // Sums of squares 1, 2: steps 0.1/√1, 0.1/√2.
    let got = trajectory(Adagrad::default().lr(0.1).into(), 1.0, &[1.0; 2]);
    assert_close(&got, &[0.9 - 1e-11, 0.9 - 0.1 / 2f64.sqrt()], "adagrad");
    // s = 0.01, then 0.0199: steps 0.01/0.1 and 0.01/√0.0199.
    let got = trajectory(RmsProp::default().into(), 1.0, &[1.0; 2]);
    let expected = [
        1.0 - 0.01 / (0.1 + 1e-8),
        1.0 - 0.01 / (0.1 + 1e-8) - 0.01 / (0.0199f64.sqrt() + 1e-8),
    ];
    assert_close(&got, &expected, "rmsprop");
}

/// The `torch.optim` docs' algorithms, one scalar at a time, written apart
/// from the library's code.
fn reference(optimizer: &Optimizer, theta: &mut [f64], grads: &[Vec<f64>]) {
    let n = theta.len();
    let (mut s0, mut s1, mut s2) = (vec![0.0f64; n], vec![0.0f64; n], vec![0.0f64; n]);
    if let Optimizer::Adagrad(o) = optimizer {
        s0 = vec![o.initial_accumulator_value; n];
    }
    for (step, g_all) in grads.iter().enumerate() {
        let t = (step + 1) as i32;
        for i in 0..n {
            let p = theta[i];
            let mut g = g_all[i];
            theta[i] = match *optimizer {
                Optimizer::Sgd(o) => {
                    g += o.weight_decay * p;
                    if o.momentum != 0.0 {
                        s0[i] = if t > 1 {
                            o.momentum * s0[i] + (1.0 - o.dampening) * g
                        } else {
                            g
                        };
                        g = if o.nesterov {
                            g + o.momentum * s0[i]
                        } else {
                            s0[i]
                        };
                    }
                    p - o.lr * g
                }
                Optimizer::Adam(o) => {
                    g += o.weight_decay * p;
                    s0[i] = o.betas.0 * s0[i] + (1.0 - o.betas.0) * g;
                    s1[i] = o.betas.1 * s1[i] + (1.0 - o.betas.1) * g * g;
                    let m_hat = s0[i] / (1.0 - o.betas.0.powi(t));
                    s2[i] = s2[i].max(s1[i]);
                    let v = if o.amsgrad { s2[i] } else { s1[i] };
                    let v_hat = v / (1.0 - o.betas.1.powi(t));
                    p - o.lr * m_hat / (v_hat.sqrt() + o.eps)
                }
                Optimizer::AdamW(o) => {
                    let p = p - o.lr * o.weight_decay * p;
                    s0[i] = o.betas.0 * s0[i] + (1.0 - o.betas.0) * g;
                    s1[i] = o.betas.1 * s1[i] + (1.0 - o.betas.1) * g * g;
                    let m_hat = s0[i] / (1.0 - o.betas.0.powi(t));
                    s2[i] = s2[i].max(s1[i]);
                    let v = if o.amsgrad { s2[i] } else { s1[i] };
                    let v_hat = v / (1.0 - o.betas.1.powi(t));
                    p - o.lr * m_hat / (v_hat.sqrt() + o.eps)
                }
                Optimizer::RmsProp(o) => {
                    g += o.weight_decay * p;
                    s0[i] = o.alpha * s0[i] + (1.0 - o.alpha) * g * g;
                    let mut v = s0[i];
                    if o.centered {
                        s2[i] = o.alpha * s2[i] + (1.0 - o.alpha) * g;
                        v -= s2[i] * s2[i];
                    }
                    if o.momentum > 0.0 {
                        s1[i] = o.momentum * s1[i] + g / (v.sqrt() + o.eps);
                        p - o.lr * s1[i]
                    } else {
                        p - o.lr * g / (v.sqrt() + o.eps)
                    }
                }
                Optimizer::Adagrad(o) => {
                    g += o.weight_decay * p;
                    let clr = o.lr / (1.0 + (t - 1) as f64 * o.lr_decay);
                    s0[i] += g * g;
                    p - clr * g / (s0[i].sqrt() + o.eps)
                }
            };
        }
    }
}

#[test]
fn every_optimizer_matches_the_torch_algorithm_over_ten_steps() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let theta0: Vec<f64> = (0..16).map(|_| rng.random_range(-2.0..2.0)).collect();
    let grads: Vec<Vec<f64>> = (0..10)
        .map(|_| (0..16).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    for optimizer in common::all_optimizers() {
        optimizer.validate().unwrap();
        let mut expected = theta0.clone();
        reference(&optimizer, &mut expected, &grads);
        let mut got = theta0.clone();
        let mut state = vec![optimizer.initial_state(); optimizer.state_slots() * 16];
        for (t, g) in grads.iter().enumerate() {
            optimizer_step(
                &optimizer,
                &mut got,
                g,
                &mut state,
                t as u64 + 1,
                optimizer.lr(),
            );
        }
        let (err, at) = max_rel_error(&got, &expected, 1e-12);
        assert!(
            err < 1e-12,
            "{optimizer:?}: parameter {at}: {} vs reference {} ({err:.1e})",
            got[at],
            expected[at]
        );
    }
}

#[test]
fn defaults_are_torch_defaults() {
    assert_eq!(
        Sgd::default(),
        Sgd {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false
        }
    );
    assert_eq!(
        Adam::default(),
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false
        }
    );
    assert_eq!(AdamW::default().weight_decay, 1e-2);
    let r = RmsProp::default();
    assert_eq!(
        (r.lr, r.alpha, r.eps, r.momentum, r.centered),
        (1e-2, 0.99, 1e-8, 0.0, false)
    );
    let a = Adagrad::default();
    assert_eq!(
        (a.lr, a.lr_decay, a.initial_accumulator_value, a.eps),
        (1e-2, 0.0, 0.0, 1e-10)
    );
}

#[test]
fn clipping_matches_torch_by_hand() {
    use retroprop::GradClip;
    // clip_grad_norm_(max_norm=1): ‖(3, 4)‖ = 5, coefficient 1 / (5 + 1e-6).
    let mut g = [3.0f64, 4.0];
    clip_gradients(
        &GradClip {
            max_norm: Some(1.0),
            max_value: None,
        },
        &mut g,
    );
    let coef = 1.0 / (5.0 + 1e-6);
    assert!(
        (g[0] - 3.0 * coef).abs() < 1e-12 && (g[1] - 4.0 * coef).abs() < 1e-12,
        "{g:?}"
    );
    // A norm under the limit is left alone (the coefficient is clamped to 1).
    let mut g = [0.3f64, 0.4];
    clip_gradients(
        &GradClip {
            max_norm: Some(1.0),
            max_value: None,
        },
        &mut g,
    );
    assert_eq!(g, [0.3, 0.4]);
    // clip_grad_value_(2): clamp to [−2, 2].
    let mut g = [3.0f64, -4.0, 1.5];
    clip_gradients(
        &GradClip {
            max_norm: None,
            max_value: Some(2.0),
        },
        &mut g,
    );
    assert_eq!(g, [2.0, -2.0, 1.5]);
    assert!(
        GradClip {
            max_norm: Some(0.0),
            max_value: None
        }
        .validate()
        .is_err()
    );
    assert!(
        GradClip {
            max_norm: None,
            max_value: Some(f64::NAN)
        }
        .validate()
        .is_err()
    );
}
