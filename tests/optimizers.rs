//! Every optimizer against values derived by hand and against an independent
//! scalar transcription of the pseudo-code in the `torch.optim` docs, on
//! every backend: the update in f64 (`<test>::f64`) and in f32 on the CPU
//! (`<test>::cpu`) and in the GPU's kernel (`<test>::gpu`).

mod common;

use common::{Backend, backend_tests, max_rel_error};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::cpu::{Gemm, clip_gradients, optimizer_step};
use retroprop::{Adagrad, Adam, AdamW, Device, GradClip, Optimizer, RmsProp, Sgd};

/// Runs `optimizer` on `backend` from the parameters `theta0` with one
/// gradient per step; the parameters after each step.
fn run(
    backend: Backend,
    optimizer: Optimizer,
    theta0: &[f64],
    grads: &[Vec<f64>],
) -> Vec<Vec<f64>> {
    match backend {
        Backend::F64 => run_on_cpu::<f64>(optimizer, theta0, grads),
        Backend::F32(Device::Cpu) => run_on_cpu::<f32>(optimizer, theta0, grads),
        Backend::F32(_) => {
            let harness = common::harness();
            let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut theta = narrow(theta0);
            let mut state =
                vec![optimizer.initial_state() as f32; optimizer.state_slots() * theta.len()];
            let mut trajectory = Vec::new();
            for (t, g) in grads.iter().enumerate() {
                (theta, state) = harness
                    .optimizer_step(
                        &optimizer,
                        &GradClip::default(),
                        &[],
                        &theta,
                        &narrow(g),
                        &state,
                        t as u64 + 1,
                        optimizer.lr(),
                    )
                    .unwrap();
                trajectory.push(common::widen(&theta));
            }
            trajectory
        }
    }
}

fn run_on_cpu<T: Gemm>(optimizer: Optimizer, theta0: &[f64], grads: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut theta: Vec<T> = theta0.iter().map(|&v| T::of(v)).collect();
    let mut state = vec![T::of(optimizer.initial_state()); optimizer.state_slots() * theta.len()];
    grads
        .iter()
        .enumerate()
        .map(|(t, g)| {
            let g: Vec<T> = g.iter().map(|&v| T::of(v)).collect();
            optimizer_step(
                &optimizer,
                &mut theta,
                &g,
                &mut state,
                t as u64 + 1,
                optimizer.lr(),
            );
            theta.iter().map(|v| v.f64()).collect()
        })
        .collect()
}

/// Runs `optimizer` on one parameter θ₀ with the gradient sequence `grads`.
fn trajectory(backend: Backend, optimizer: Optimizer, theta0: f64, grads: &[f64]) -> Vec<f64> {
    let grads: Vec<Vec<f64>> = grads.iter().map(|&g| vec![g]).collect();
    run(backend, optimizer, &[theta0], &grads)
        .into_iter()
        .map(|theta| theta[0])
        .collect()
}

/// How far a backend's trajectory may be from values computed by hand.
fn hand_tolerance(backend: Backend) -> f64 {
    match backend {
        // At most 3 steps of a few operations each, and the hand formula's
        // own few, each rounding by half an ulp of a value in [0.4, 2]:
        // within 10 ulps of 1 (2.2e-15). A wrong eps term (1e-11) fails.
        Backend::F64 => 10.0 * f64::EPSILON,
        // The values lie in [0.4, 2] and come out within an ulp or two
        // (1.2e-7 in [1, 2)) after at most 3 steps of a few roundings.
        Backend::F32(_) => 2.0 * f32::EPSILON as f64,
    }
}

fn assert_close(got: &[f64], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: number of steps");
    for (t, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - e).abs() < tolerance,
            "{what}: step {}: got {g}, expected {e} (off by {:.1e}, tolerance {tolerance:.1e})",
            t + 1,
            (g - e).abs()
        );
    }
}

backend_tests! {
    fn sgd_momentum_matches_hand_computed_steps(backend: Backend) {
        let tolerance = hand_tolerance(backend);
        // θ = 1, g = 1 each step, lr 0.1, momentum 0.9: buffers 1, 1.9, 2.71.
        let sgd = Sgd::default().lr(0.1).momentum(0.9);
        let got = trajectory(backend, sgd.into(), 1.0, &[1.0; 3]);
        assert_close(&got, &[0.9, 0.71, 0.439], tolerance, "sgd momentum");
        // Nesterov: steps of g + 0.9·buf = 1.9, 2.71.
        let got = trajectory(backend, sgd.nesterov(true).into(), 1.0, &[1.0; 2]);
        assert_close(&got, &[0.81, 0.539], tolerance, "sgd nesterov");
        // Dampening 0.5: buffers 1 (first step undamped, as torch), 0.9 + 0.5 = 1.4.
        let got = trajectory(backend, sgd.dampening(0.5).into(), 1.0, &[1.0; 2]);
        assert_close(&got, &[0.9, 0.76], tolerance, "sgd dampening");
        // Weight decay 0.5 with θ = 2: g = 1 + 1 = 2, then θ = 1.8; g = 1 + 0.9.
        let decayed = Sgd::default().lr(0.1).weight_decay(0.5);
        let got = trajectory(backend, decayed.into(), 2.0, &[1.0; 2]);
        assert_close(&got, &[1.8, 1.61], tolerance, "sgd weight decay");
    }

    fn adam_matches_hand_computed_steps(backend: Backend) {
        // With a constant gradient the bias-corrected moments are g and g², so
        // each step moves θ by lr · g / (|g| + eps) ≈ lr.
        let got = trajectory(backend, Adam::default().lr(0.1).into(), 1.0, &[2.0; 3]);
        let step = 0.1 * 2.0 / (2.0 + 1e-8);
        // In f32 the update forms 1 − β₂ from β₂ already rounded to f32:
        // 1 − fl(0.999) = 0.001 · (1 − 1.29e-5), where torch rounds 0.001
        // itself. v̂ comes out low by 1.29e-5, so each step of 0.1 is long by
        // half that, 6.5e-7: allowed here, 3 steps' worth, until the update
        // takes 1 − β in f64.
        let tolerance = hand_tolerance(backend)
            + match backend {
                Backend::F64 => 0.0,
                Backend::F32(_) => 3.0 * 0.1 * 1.29e-5 / 2.0,
            };
        let expected = [1.0 - step, 1.0 - 2.0 * step, 1.0 - 3.0 * step];
        assert_close(&got, &expected, tolerance, "adam");
        // AdamW: θ · (1 − lr · wd) first: 1 · 0.95 − 0.1.
        let adamw = AdamW::default().lr(0.1).weight_decay(0.5);
        let got = trajectory(backend, adamw.into(), 1.0, &[2.0]);
        assert_close(&got, &[0.95 - step], tolerance, "adamw");
    }

    fn adagrad_and_rmsprop_match_hand_computed_steps(backend: Backend) {
        let tolerance = hand_tolerance(backend);
        // Sums of squares 1, 2: steps 0.1 / (√1 + eps), 0.1 / (√2 + eps) with
        // eps = 1e-10. eps shortens each step, so θ ends above 0.9 and
        // 0.9 − 0.1/√2 (by 1e-11 and 1.5e-11), as Python's exact decimals say:
        //   from decimal import Decimal as D, getcontext; getcontext().prec = 50
        //   t1 = 1 - D("0.1") / (1 + D("1e-10"))        # 0.90000000001 − 1e-21
        //   t2 = t1 - D("0.1") / (D(2).sqrt() + D("1e-10"))
        //   t2 - (D("0.9") - D("0.1") / D(2).sqrt())    # +1.4999999999e-11
        let got = trajectory(backend, Adagrad::default().lr(0.1).into(), 1.0, &[1.0; 2]);
        let first = 1.0 - 0.1 / (1.0 + 1e-10);
        let expected = [first, first - 0.1 / (2f64.sqrt() + 1e-10)];
        assert_close(&got, &expected, tolerance, "adagrad");
        // s = 0.01, then 0.0199: steps 0.01/0.1 and 0.01/√0.0199.
        let got = trajectory(backend, RmsProp::default().into(), 1.0, &[1.0; 2]);
        let expected = [
            1.0 - 0.01 / (0.1 + 1e-8),
            1.0 - 0.01 / (0.1 + 1e-8) - 0.01 / (0.0199f64.sqrt() + 1e-8),
        ];
        assert_close(&got, &expected, tolerance, "rmsprop");
    }
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

backend_tests! {
    fn every_optimizer_matches_the_torch_algorithm_over_ten_steps(backend: Backend) {
        // Values that f32 holds exactly, so that every backend starts alike.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut value = |lo: f64, hi: f64| rng.random_range(lo..hi) as f32 as f64;
        let theta0: Vec<f64> = (0..16).map(|_| value(-2.0, 2.0)).collect();
        let grads: Vec<Vec<f64>> = (0..10)
            .map(|_| (0..16).map(|_| value(-1.0, 1.0)).collect())
            .collect();
        // f64 is compared at 1e-12. f32 (u = 2⁻²⁴ ≈ 6e-8) rounds each of 10
        // steps' few operations on parameters of size ~1, which are compared
        // at that scale (the floor): 10 steps × ~3 u ≈ 2e-6 (6e-7 measured).
        let (tolerance, floor) = match backend {
            Backend::F64 => (1e-12, 1e-12),
            Backend::F32(_) => (2e-6, 1.0),
        };
        for optimizer in common::all_optimizers() {
            optimizer.validate().unwrap();
            let mut expected = theta0.clone();
            reference(&optimizer, &mut expected, &grads);
            let got = run(backend, optimizer, &theta0, &grads).pop().unwrap();
            let (err, at) = max_rel_error(&got, &expected, floor);
            assert!(
                err < tolerance,
                "{optimizer:?}: parameter {at}: {} vs reference {} ({err:.1e})",
                got[at],
                expected[at]
            );
        }
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
