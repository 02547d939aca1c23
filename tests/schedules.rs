//! Learning-rate schedules against torch's values epoch by epoch, early
//! stopping keeping the best epoch, divergence keeping the last good
//! parameters, and resumed runs, on every backend (`<test>::cpu`,
//! `<test>::gpu`).

mod common;

use common::backend_tests;
use retroprop::{
    Activation, Adam, Dataset, Device, Error, Loss, LrSchedule, Mlp, Scheduler, Sgd, Targets,
    TrainConfig,
};

fn lrs(schedule: LrSchedule, metrics: &[f64]) -> Vec<f64> {
    let mut s = Scheduler::new(schedule, 1.0);
    metrics
        .iter()
        .enumerate()
        .map(|(e, &m)| {
            let lr = s.lr();
            s.step(e, m);
            lr
        })
        .collect()
}

fn assert_lrs(got: &[f64], expected: &[f64], what: &str) {
    for (e, (g, x)) in got.iter().zip(expected).enumerate() {
        assert!(
            (g - x).abs() < 1e-9,
            "{what}: epoch {e}: lr {g}, torch gives {x}"
        );
    }
}

#[test]
fn schedules_match_torch_epoch_by_epoch() {
    let flat = [1.0; 6];
    // StepLR(step_size=2, gamma=0.5)
    assert_lrs(
        &lrs(
            LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            },
            &flat,
        ),
        &[1.0, 1.0, 0.5, 0.5, 0.25, 0.25],
        "step",
    );
    // ExponentialLR(gamma=0.9)
    assert_lrs(
        &lrs(LrSchedule::Exponential { gamma: 0.9 }, &flat),
        &[1.0, 0.9, 0.81, 0.729, 0.6561, 0.59049],
        "exponential",
    );
    // CosineAnnealingLR(T_max=4, eta_min=0.1): 0.1 + 0.9 (1 + cos(π e / 4)) / 2
    let c = |e: f64| 0.1 + 0.9 * (1.0 + (std::f64::consts::PI * e / 4.0).cos()) / 2.0;
    assert_lrs(
        &lrs(
            LrSchedule::Cosine {
                t_max: 4,
                eta_min: 0.1,
            },
            &flat[..5],
        ),
        &[1.0, c(1.0), c(2.0), c(3.0), 0.1],
        "cosine",
    );
    assert!((c(2.0) - 0.55).abs() < 1e-12);
    // LinearLR(start_factor=0.25, total_iters=3)
    assert_lrs(
        &lrs(
            LrSchedule::Warmup {
                start_factor: 0.25,
                total_iters: 3,
            },
            &flat,
        ),
        &[0.25, 0.5, 0.75, 1.0, 1.0, 1.0],
        "warmup",
    );
    // ReduceLROnPlateau(factor=0.5, patience=1, threshold=0): the third epoch
    // without improvement halves the rate, and again after 0.5 stops improving.
    let plateau = LrSchedule::Plateau {
        factor: 0.5,
        patience: 1,
        threshold: 0.0,
        cooldown: 0,
        min_lr: 0.0,
    };
    assert_lrs(
        &lrs(plateau, &[1.0, 1.0, 1.0, 0.5, 0.6, 0.7, 0.7]),
        &[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25],
        "plateau",
    );
    // With cooldown 1 the counter is held at zero for an epoch after a cut.
    let cooled = LrSchedule::Plateau {
        factor: 0.5,
        patience: 0,
        threshold: 0.0,
        cooldown: 1,
        min_lr: 0.3,
    };
    assert_lrs(
        &lrs(cooled, &[1.0, 1.0, 1.0, 1.0, 1.0]),
        &[1.0, 1.0, 0.5, 0.5, 0.3],
        "plateau with cooldown and min_lr",
    );
}

#[test]
fn schedules_parse_from_text_and_reject_bad_values() {
    assert_eq!(
        "step:10:0.5".parse::<LrSchedule>(),
        Ok(LrSchedule::Step {
            step_size: 10,
            gamma: 0.5
        })
    );
    assert_eq!(
        "cosine:50".parse::<LrSchedule>(),
        Ok(LrSchedule::Cosine {
            t_max: 50,
            eta_min: 0.0
        })
    );
    assert_eq!(
        "warmup:5:0.1".parse::<LrSchedule>(),
        Ok(LrSchedule::Warmup {
            total_iters: 5,
            start_factor: 0.1
        })
    );
    assert_eq!("plateau".parse::<LrSchedule>(), Ok(LrSchedule::PLATEAU));
    for (text, part) in [
        ("step", "needs a step size"),
        ("exponential:-1", "gamma = -1"),
        ("cosine:0", "T_max = 0"),
        ("warmup:5:2", "start_factor = 2"),
        ("plateau:1.5", "factor = 1.5"),
        ("cyclic", "unknown lr schedule `cyclic`"),
        ("step:x", "`x` is not a whole number"),
    ] {
        let err = text.parse::<LrSchedule>().expect_err(text);
        assert!(
            err.contains(part),
            "`{text}`: `{err}` does not mention `{part}`"
        );
    }
}

backend_tests! {
    fn trainer_uses_the_schedule(device: Device) {
        let data = common::xor_classes();
        let mlp = Mlp::new(&[2, 4, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Sgd::default().lr(0.4))
            .lr_schedule(LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            })
            .full_batch()
            .epochs(5);
        let mut trainer = common::trainer(mlp, config, device);
        let history = trainer.fit(&data, None).unwrap();
        let got: Vec<f64> = history.epochs.iter().map(|e| e.lr).collect();
        assert_lrs(&got, &[0.4, 0.4, 0.2, 0.2, 0.1], &format!("{device}"));
    }
}

#[test]
fn schedule_changes_the_steps_the_same_way_on_both_backends() {
    let data = common::two_spirals(20);
    let run = |device| {
        let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(0.01))
            .lr_schedule(LrSchedule::Cosine {
                t_max: 6,
                eta_min: 0.001,
            })
            .batch_size(8)
            .epochs(6);
        let mut trainer = common::trainer(mlp, config, device);
        trainer.fit(&data, None).unwrap();
        trainer.parameters().unwrap()
    };
    let (cpu, gpu) = (run(Device::Cpu), run(Device::Gpu));
    let (err, at) = common::max_rel_error(&common::widen(&gpu), &common::widen(&cpu), 1e-2);
    assert!(
        err < 1e-4,
        "parameter {at}: gpu {} vs cpu {} ({err:.1e})",
        gpu[at],
        cpu[at]
    );
}

backend_tests! {
    fn early_stopping_keeps_the_best_epoch(device: Device) {
        // Validation labels are the training labels flipped: the better the
        // network fits, the worse it validates, so the first epoch is best.
        let train = common::xor_classes();
        let Targets::Classes(labels) = train.targets().clone() else {
            unreachable!()
        };
        let flipped = Dataset::new(
            train.x().to_vec(),
            2,
            Targets::Classes(labels.iter().map(|l| 1 - l).collect()),
        )
        .unwrap();
        let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(0.05))
            .full_batch()
            .epochs(100)
            .early_stopping(3, 0.0);
        let mut trainer = common::trainer(mlp, config, device);
        let history = trainer.fit(&train, Some(&flipped)).unwrap();
        let losses: Vec<f64> = history
            .epochs
            .iter()
            .map(|e| e.validation.unwrap().loss)
            .collect();
        let best = (0..losses.len())
            .min_by(|&a, &b| losses[a].total_cmp(&losses[b]))
            .unwrap()
            + 1;
        assert!(
            history.stopped_early,
            "{device}: ran all {} epochs: {losses:?}",
            losses.len()
        );
        assert_eq!(history.best_epoch, Some(best), "{device}: {losses:?}");
        assert_eq!(
            history.epochs.len(),
            best + 3 + 1,
            "{device}: patience 3 after epoch {best}"
        );
        let now = trainer.evaluate(&flipped).unwrap().loss;
        assert!(
            (now - losses[best - 1]).abs() < 1e-6,
            "{device}: kept parameters give {now}, best epoch gave {}",
            losses[best - 1]
        );
        let mlp = Mlp::new(&[2, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .early_stopping(2, 0.0);
        let err = common::trainer(mlp, config, device)
            .fit(&common::xor_classes(), None)
            .expect_err("needs validation");
        assert!(
            err.to_string()
                .contains("early stopping needs validation data"),
            "{err}"
        );
    }
}

backend_tests! {
    fn divergence_names_the_step_and_keeps_finite_parameters(device: Device) {
        let mlp = Mlp::new(&[1, 4, 1], Activation::Identity, Activation::Identity).unwrap();
        let x: Vec<f32> = (0..32).map(|i| 100.0 + i as f32).collect();
        let data = Dataset::new(
            x,
            1,
            Targets::Values {
                values: vec![0.0; 32],
                width: 1,
            },
        )
        .unwrap();
        let config = TrainConfig::default()
            .loss(Loss::Mse)
            .optimizer(Sgd::default().lr(1.0))
            .batch_size(8)
            .epochs(50);
        let mut trainer = common::trainer(mlp, config, device);
        let err = trainer
            .fit(&data, None)
            .expect_err("lr 1 on inputs of 100 diverges");
        assert!(
            matches!(err, Error::Diverged { step, .. } if step >= 1),
            "{device}: {err}"
        );
        let params = trainer.parameters().unwrap();
        assert!(
            params.iter().all(|p| p.is_finite()),
            "{device}: parameters after divergence: {params:?}"
        );
    }
}

backend_tests! {
    fn resumed_runs_end_where_uninterrupted_runs_do(device: Device) {
        let data = common::two_spirals(25);
        let mlp = Mlp::new(&[2, 16, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = |epochs| {
            TrainConfig::default()
                .loss(Loss::CrossEntropy)
                .optimizer(Adam::default().lr(0.01).amsgrad(true))
                .lr_schedule(LrSchedule::Plateau {
                    factor: 0.5,
                    patience: 0,
                    threshold: 0.0,
                    cooldown: 1,
                    min_lr: 0.0,
                })
                .batch_size(8)
                .epochs(epochs)
                .seed(3)
        };
        let bits = |p: Vec<f32>| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        // At an epoch boundary: 5 epochs, or 2 then 3 from a checkpoint.
        let mut whole = common::trainer(mlp.clone(), config(5), device);
        whole.fit(&data, None).unwrap();
        let mut first = common::trainer(mlp.clone(), config(2), device);
        first.fit(&data, None).unwrap();
        let checkpoint = first.checkpoint().unwrap();
        let mut second = common::trainer(mlp.clone(), config(3), device);
        second.restore(&checkpoint).unwrap();
        second.fit(&data, None).unwrap();
        assert_eq!(
            bits(second.parameters().unwrap()),
            bits(whole.parameters().unwrap()),
            "{device}: epoch-boundary resume"
        );
        assert_eq!(second.steps(), whole.steps());
        // Mid-epoch: 17 steps, or 5 then 12 (an epoch is 7 steps).
        let mut whole = common::trainer(mlp.clone(), config(1), device);
        whole.train_steps(&data, 17).unwrap();
        let mut first = common::trainer(mlp.clone(), config(1), device);
        first.train_steps(&data, 5).unwrap();
        let checkpoint = first.checkpoint().unwrap();
        assert_eq!(
            (checkpoint.step, checkpoint.epoch, checkpoint.rows_done),
            (5, 0, 40)
        );
        let mut second = common::trainer(mlp.clone(), config(1), device);
        second.restore(&checkpoint).unwrap();
        second.train_steps(&data, 12).unwrap();
        assert_eq!(
            bits(second.parameters().unwrap()),
            bits(whole.parameters().unwrap()),
            "{device}: mid-epoch resume"
        );
    }
}
