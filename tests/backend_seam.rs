//! The backend seam: a step run in phases (forward + backward, the gradient
//! buffer, update) is the fused step; a batch split into shares whose
//! gradients are summed is the whole batch; a divergence keeps the same
//! things on both backends; data changed after an upload is seen. Each test
//! runs on every backend (the GPU needs a wgpu adapter: without a GPU,
//! `apt-get install mesa-vulkan-drivers`).

mod common;

use common::{assert_close, random};
use retroprop::backend::{Backend, BackendConfig, BatchShare};
use retroprop::cpu::CpuBackend;
use retroprop::gpu::{GpuBackend, GpuOptions};
use retroprop::{
    Activation, Adam, Dataset, Device, Init, Loss, LrSchedule, Mlp, Optimizer, Sgd, Standardizer,
    Targets, TrainConfig, Trainer,
};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Cpu,
    Gpu,
}

const KINDS: [Kind; 2] = [Kind::Cpu, Kind::Gpu];

fn open(kind: Kind, mlp: &Mlp, params: Vec<f32>, config: &BackendConfig) -> Box<dyn Backend> {
    match kind {
        Kind::Cpu => Box::new(CpuBackend::new(mlp, params, config)),
        Kind::Gpu => Box::new(
            GpuBackend::new(mlp, params, config, GpuOptions::default(), false).unwrap_or_else(
                |e| {
                    panic!(
                        "GPU tests need a wgpu adapter (apt-get install mesa-vulkan-drivers): {e}"
                    )
                },
            ),
        ),
    }
}

/// 37 rows, 5 features, 3 classes.
fn classes() -> Dataset {
    let x = random(37 * 5, -1.0, 1.0, 11);
    let labels = x
        .chunks(5)
        .map(|r| (r[0] + r[1] > 0.0) as u32 + (r[2] > 0.5) as u32)
        .collect();
    Dataset::new(x, 5, Targets::Classes(labels)).unwrap()
}

fn mlp() -> Mlp {
    Mlp::new(&[5, 9, 7, 3], Activation::Tanh, Activation::Identity).unwrap()
}

fn config(optimizer: Optimizer, dropout: f32) -> BackendConfig {
    let mut config = BackendConfig::new(Loss::CrossEntropy, optimizer);
    config.dropout = vec![dropout, dropout, 0.0];
    config.seed = 5;
    config.batch_rows = Some(12);
    config
}

#[test]
fn a_step_in_phases_is_the_fused_step() {
    let (data, mlp) = (classes(), mlp());
    let order: Vec<u32> = (0..data.rows() as u32).rev().collect();
    let config = config(Adam::default().lr(0.01).into(), 0.25);
    for kind in KINDS {
        let params = mlp.init(Init::XavierUniform, 3);
        let mut fused = open(kind, &mlp, params.clone(), &config);
        let handle = fused.upload(&data).unwrap();
        let fused_loss = fused.train_steps(&handle, &order, 12, 4, 0.01).unwrap();
        let mut phased = open(kind, &mlp, params, &config);
        let handle = phased.upload(&data).unwrap();
        let mut loss_sum = 0.0;
        for batch in order.chunks(12) {
            let loss = phased
                .forward_backward(&handle, BatchShare::whole(batch))
                .unwrap();
            loss_sum += loss * batch.len() as f64;
            let grads = phased.gradients().unwrap();
            phased.set_gradients(&grads).unwrap();
            phased.update(0.01).unwrap();
        }
        let what = format!("{kind:?}: parameters after 4 steps in phases against fused");
        let (a, b) = (phased.parameters().unwrap(), fused.parameters().unwrap());
        assert_close(&what, &a, &b, 1e-6, 1e-6);
        let (a, b) = (
            phased.optimizer_state().unwrap(),
            fused.optimizer_state().unwrap(),
        );
        assert_eq!(a.1, b.1, "{kind:?}: step count");
        assert_close(
            &format!("{kind:?}: optimizer state"),
            &a.0,
            &b.0,
            1e-6,
            1e-6,
        );
        let gap = (loss_sum - fused_loss.loss_sum).abs() / fused_loss.loss_sum;
        assert!(gap < 1e-6, "{kind:?}: loss sums differ by {gap:.2e}");
    }
}

#[test]
fn shares_of_a_batch_add_up_to_the_batch() {
    // Three uneven shares of each batch, their gradients summed in order,
    // against the whole batch; with dropout, whose masks must follow the
    // row's place in the batch.
    let (data, mlp) = (classes(), mlp());
    let order: Vec<u32> = (0..data.rows() as u32).collect();
    let config = config(Sgd::default().lr(0.1).momentum(0.9).into(), 0.3);
    for kind in KINDS {
        let params = mlp.init(Init::XavierUniform, 4);
        let mut whole = open(kind, &mlp, params.clone(), &config);
        let handle = whole.upload(&data).unwrap();
        let whole_loss = whole.train_steps(&handle, &order, 12, 4, 0.1).unwrap();
        let mut split = open(kind, &mlp, params, &config);
        let handle = split.upload(&data).unwrap();
        let mut loss_sum = 0.0;
        for batch in order.chunks(12) {
            let cuts = [0, batch.len() / 4, batch.len() * 2 / 3, batch.len()];
            let mut sum = vec![0f32; mlp.parameter_count()];
            for w in cuts.windows(2) {
                let share = BatchShare {
                    rows: &batch[w[0]..w[1]],
                    batch_rows: batch.len(),
                    offset: w[0],
                    batch_weight: None,
                    across: None,
                };
                loss_sum += split.forward_backward(&handle, share).unwrap() * batch.len() as f64;
                for (s, g) in sum.iter_mut().zip(split.gradients().unwrap()) {
                    *s += g;
                }
            }
            split.set_gradients(&sum).unwrap();
            split.update(0.1).unwrap();
        }
        let what = format!("{kind:?}: parameters after 4 steps in 3 shares against whole batches");
        let (a, b) = (split.parameters().unwrap(), whole.parameters().unwrap());
        assert_close(&what, &a, &b, 1e-5, 1e-5);
        let gap = (loss_sum - whole_loss.loss_sum).abs() / whole_loss.loss_sum;
        assert!(gap < 1e-5, "{kind:?}: loss sums differ by {gap:.2e}");
    }
}

#[test]
fn a_share_that_does_not_fit_its_batch_is_an_error() {
    let (data, mlp) = (classes(), mlp());
    let config = config(Sgd::default().into(), 0.0);
    for kind in KINDS {
        let mut backend = open(kind, &mlp, mlp.init(Init::XavierUniform, 1), &config);
        let handle = backend.upload(&data).unwrap();
        let share = BatchShare {
            rows: &[0, 1, 2],
            batch_rows: 4,
            offset: 2,
            batch_weight: None,
            across: None,
        };
        let e = backend.forward_backward(&handle, share).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{kind:?}: {e}");
        let e = backend.set_gradients(&[0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("gradients"), "{kind:?}: {e}");
    }
}

#[test]
fn divergence_keeps_what_was_there_before_the_bad_step_on_both_backends() {
    // SGD at a rate that blows up within a few steps: the run stops at the
    // first step whose loss is not finite, and parameters, optimizer state
    // and step count are those after the steps before it.
    let x = random(32 * 2, -1.0, 1.0, 2);
    let y = x.chunks(2).map(|r| 1e3 * (r[0] - r[1])).collect();
    let data = Dataset::new(
        x,
        2,
        Targets::Values {
            values: y,
            width: 1,
        },
    )
    .unwrap();
    let mlp = Mlp::new(&[2, 8, 1], Activation::Relu, Activation::Identity).unwrap();
    let optimizer: Optimizer = Sgd::default().lr(0.5).momentum(0.9).into();
    let mut config = BackendConfig::new(Loss::Mse, optimizer);
    config.batch_rows = Some(8);
    let order: Vec<u32> = (0..32).collect();
    let params = mlp.init(Init::XavierUniform, 9);
    let mut kept = Vec::new();
    for kind in KINDS {
        let mut backend = open(kind, &mlp, params.clone(), &config);
        let handle = backend.upload(&data).unwrap();
        let e = backend
            .train_steps(&handle, &order, 8, 4 * 50, 0.5)
            .unwrap_err();
        let retroprop::Error::Diverged { step, .. } = e else {
            panic!("{kind:?}: expected a divergence, got {e}")
        };
        assert!(step > 1, "{kind:?}: diverged at the first step");
        let (state, t) = backend.optimizer_state().unwrap();
        assert_eq!(
            t,
            step - 1,
            "{kind:?}: step count after diverging at {step}"
        );
        // The same steps, stopped just before the bad one.
        let mut reference = open(kind, &mlp, params.clone(), &config);
        let reference_handle = reference.upload(&data).unwrap();
        let mut left = step - 1;
        while left > 0 {
            left -= reference
                .train_steps(&reference_handle, &order, 8, left, 0.5)
                .unwrap()
                .steps;
        }
        let what = format!("{kind:?}: parameters kept after diverging at step {step}");
        let got = backend.parameters().unwrap();
        assert!(got.iter().all(|p| p.is_finite()), "{what}: not finite");
        assert_close(&what, &got, &reference.parameters().unwrap(), 1e-6, 1e-6);
        let (ref_state, _) = reference.optimizer_state().unwrap();
        assert_close(&format!("{kind:?}: state"), &state, &ref_state, 1e-6, 1e-6);
        kept.push((step, got));
    }
    assert_eq!(
        kept[0].0, kept[1].0,
        "the backends diverge at different steps"
    );
    assert_close(
        "GPU against CPU, kept parameters",
        &kept[1].1,
        &kept[0].1,
        1e-3,
        1e-3,
    );
}

fn trainer(device: Device, schedule: LrSchedule) -> Trainer {
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.2))
        .batch_size(10)
        .epochs(3)
        .seed(7)
        .lr_schedule(schedule)
        .device(device);
    Trainer::new(mlp(), config).unwrap()
}

#[test]
fn data_changed_in_place_after_training_is_trained_on_anew() {
    for device in [Device::Cpu, Device::Gpu] {
        let mut data = classes();
        let mut trainer = trainer(device, LrSchedule::Constant);
        trainer.fit(&data, None).unwrap();
        Standardizer::fit(&data).apply(&mut data).unwrap();
        trainer.fit(&data, None).unwrap();
        // The same two fits with a fresh copy of each data set.
        let mut fresh = trainer_from_start(device);
        fresh.fit(&classes(), None).unwrap();
        fresh.fit(&data.clone(), None).unwrap();
        let what = format!("{device}: fit, standardize in place, fit; against fresh copies");
        let (a, b) = (trainer.parameters().unwrap(), fresh.parameters().unwrap());
        assert_close(&what, &a, &b, 1e-6, 1e-6);
    }
}

fn trainer_from_start(device: Device) -> Trainer {
    trainer(device, LrSchedule::Constant)
}

#[test]
fn train_steps_steps_the_schedule_as_fit_does() {
    // Three epochs of 4 steps with the rate halved after each: train_steps
    // in uneven pieces against fit.
    for device in [Device::Cpu, Device::Gpu] {
        let schedule: LrSchedule = "step:1:0.5".parse().unwrap();
        let data = classes();
        let mut by_fit = trainer(device, schedule);
        by_fit.fit(&data, None).unwrap();
        let mut by_steps = trainer(device, schedule);
        for steps in [3, 5, 4] {
            by_steps.train_steps(&data, steps).unwrap();
        }
        assert_eq!(by_steps.steps(), by_fit.steps(), "{device}: steps");
        let what = format!("{device}: train_steps 3 + 5 + 4 against fit, step schedule");
        let (a, b) = (by_steps.parameters().unwrap(), by_fit.parameters().unwrap());
        assert_close(&what, &a, &b, 1e-6, 1e-6);
    }
}

#[test]
fn gpu_prediction_reads_back_chunk_by_chunk_and_matches_the_cpu() {
    // 100 rows through passes of at most 7: each chunk is read back on its
    // own (no buffer of every output on the device).
    let x = random(100 * 5, -1.0, 1.0, 8);
    let params = mlp().init(Init::XavierUniform, 2);
    let predict = |device| {
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .max_rows_per_pass(7)
            .device(device);
        Trainer::with_parameters(mlp(), params.clone(), config)
            .unwrap()
            .predict(&x)
            .unwrap()
    };
    let (gpu, cpu) = (predict(Device::Gpu), predict(Device::Cpu));
    assert_eq!(gpu.len(), 100 * 3);
    assert_close(
        "predictions, GPU in chunks of 7 rows against CPU",
        &gpu,
        &cpu,
        1e-4,
        1e-2,
    );
}

/// The raw calls of the seam, given wrong lengths or indices, return an
/// error naming what is wrong, on both backends, and never panic: a
/// backend is public, and a front or an outside trainer may call it with
/// anything.
#[test]
fn raw_calls_with_wrong_lengths_are_errors_not_panics() {
    let (mlp, data) = (mlp(), classes());
    let n = mlp.parameter_count();
    for kind in KINDS {
        let params = mlp.init(Init::XavierUniform, 3);
        let mut backend = open(kind, &mlp, params, &config(Adam::default().into(), 0.0));
        let handle = backend.upload(&data).unwrap();
        let outcomes: Vec<(&str, std::thread::Result<bool>)> = vec![
            (
                "set_parameters short",
                call(|| backend.set_parameters(&vec![0.0; n - 1]).is_err()),
            ),
            (
                "set_gradients long",
                call(|| backend.set_gradients(&vec![0.0; n + 1]).is_err()),
            ),
            (
                "set_optimizer_state short",
                call(|| {
                    backend
                        .set_optimizer_state(&vec![0.0; 2 * n - 3], 1)
                        .is_err()
                }),
            ),
            (
                "predict ragged",
                call(|| backend.predict(&[0.0; 7]).is_err()),
            ),
            (
                "train_steps past the rows",
                call(|| {
                    backend
                        .train_steps(&handle, &[0, 1, 37], 3, 1, 0.01)
                        .is_err()
                }),
            ),
            (
                "train_steps batch 0",
                call(|| {
                    backend
                        .train_steps(&handle, &[0, 1, 2], 0, 1, 0.01)
                        .is_err()
                }),
            ),
        ];
        for (what, outcome) in outcomes {
            match outcome {
                Ok(true) => {}
                Ok(false) => panic!("{kind:?}: {what} succeeded"),
                Err(_) => panic!("{kind:?}: {what} panicked"),
            }
        }
        // Nothing above changed the parameters.
        let after = backend.parameters().unwrap();
        assert_eq!(after.len(), n, "{kind:?}");
    }
}

/// Runs `f`, catching a panic (quietly: the test reports it by name).
fn call(f: impl FnOnce() -> bool) -> std::thread::Result<bool> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}
