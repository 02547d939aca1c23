//! Data-parallel training with ranks as threads (`parallel::Threads`):
//! N ranks train the model one process trains, to 1e-6 relative on the
//! CPU (and within the GPU parity tolerance on the GPU), for every
//! optimizer and loss, with uneven shares, the short last batch, dropout,
//! clipping, schedules and early stopping; every rank holds the same bits
//! and two runs give the same bits; a rank that fails or leaves ends
//! every rank with its name; a stop on one rank stops all, and the
//! checkpoint resumes on any number of ranks. The MPI program's own tests
//! are cli/tests/mpi.rs.

mod common;

use common::{all_optimizers, random};
use retroprop::parallel::{Collective, Threads};
use retroprop::{Activation, Adam};
use retroprop::{
    Checkpoint, Dataset, Device, Error, History, Init, Loss, LrSchedule, Mlp, Optimizer, Sgd,
    StopFlag, Targets, TrainConfig, Trainer,
};

/// 37 rows of 5 features with targets for `loss`: batches of 12 leave a
/// last batch of 1 (empty shares for all but one rank).
fn data(loss: Loss, seed: u64) -> Dataset {
    let x = random(37 * 5, -1.0, 1.0, seed);
    let targets = match loss {
        Loss::CrossEntropy => Targets::Classes(
            x.chunks(5)
                .map(|r| (r[0] + r[1] > 0.0) as u32 + (r[2] > 0.5) as u32)
                .collect(),
        ),
        Loss::BceWithLogits => Targets::Values {
            values: x
                .chunks(5)
                .flat_map(|r| {
                    [
                        (r[0] > 0.0) as u8 as f32,
                        (r[3] * r[4] > 0.0) as u8 as f32,
                        0.5,
                    ]
                })
                .collect(),
            width: 3,
        },
        Loss::Mse | Loss::HalfMse => Targets::Values {
            values: x
                .chunks(5)
                .flat_map(|r| [r[0] * r[1], r[2].sin(), r[3] - r[4]])
                .collect(),
            width: 3,
        },
    };
    Dataset::new(x, 5, targets).unwrap()
}

fn mlp() -> Mlp {
    Mlp::new(&[5, 9, 7, 3], Activation::Tanh, Activation::Identity).unwrap()
}

fn config(loss: Loss, optimizer: Optimizer) -> TrainConfig {
    TrainConfig::default()
        .loss(loss)
        .optimizer(optimizer)
        .batch_size(12)
        .epochs(3)
        .seed(9)
        .init(Init::XavierUniform)
        .device(Device::Cpu)
}

/// What a run ended with on one rank.
struct Run {
    params: Vec<f32>,
    history: History,
    checkpoint: Checkpoint,
}

fn single(config: &TrainConfig, train: &Dataset, validation: Option<&Dataset>) -> Run {
    let mut trainer = Trainer::new(mlp(), config.clone()).unwrap();
    let history = trainer.fit(train, validation).unwrap();
    Run {
        params: trainer.parameters().unwrap(),
        history,
        checkpoint: trainer.checkpoint().unwrap(),
    }
}

/// Runs `body` on `ranks` threads, each with its own trainer of `config`
/// joined to the group; returns each rank's result in rank order.
fn on_ranks<T: Send>(
    ranks: usize,
    config: &TrainConfig,
    body: impl Fn(usize, &mut Trainer) -> T + Sync,
) -> Vec<T> {
    std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(ranks)
            .into_iter()
            .map(|rank| {
                let body = &body;
                s.spawn(move || {
                    let r = rank.rank();
                    let trainer = Trainer::new(mlp(), config.clone()).unwrap();
                    let mut trainer = trainer.with_collective(Box::new(rank)).unwrap();
                    body(r, &mut trainer)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn parallel(
    ranks: usize,
    config: &TrainConfig,
    train: &Dataset,
    validation: Option<&Dataset>,
) -> Vec<Run> {
    on_ranks(ranks, config, |_, trainer| {
        let history = trainer.fit(train, validation).unwrap();
        Run {
            params: trainer.parameters().unwrap(),
            history,
            checkpoint: trainer.checkpoint().unwrap(),
        }
    })
}

/// Asserts `got` equals `want` within `tolerance` relative to the scale
/// of the tensor: max |got − want| ≤ tolerance · max |want|, slot by slot
/// of `slot` values (a parameter vector, or one optimizer state slot).
///
/// Not element by element: the ranks sum their shares' gradients where one
/// process sums all rows in one product, so single elements that pass near
/// zero carry an f32 rounding difference far above their own size.
fn assert_scaled(what: &str, got: &[f32], want: &[f32], slot: usize, tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (s, (g, w)) in got.chunks(slot).zip(want.chunks(slot)).enumerate() {
        let scale = w.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
        let (at, gap) = g
            .iter()
            .zip(w)
            .enumerate()
            .fold((0, 0f64), |(at, gap), (i, (&a, &b))| {
                let d = (a as f64 - b as f64).abs();
                if d > gap { (i, d) } else { (at, gap) }
            });
        let relative = gap / scale.max(f64::MIN_POSITIVE);
        println!(
            "{what} (slot {s}): largest difference {gap:.2e}, {relative:.2e} of the scale {scale:.2e}"
        );
        assert!(
            relative <= tolerance,
            "{what} (slot {s}): element {at}: {} against one process's {} ({relative:.2e} of the largest magnitude {scale:.2e})",
            g[at],
            w[at]
        );
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    assert_scaled(what, got, want, mlp().parameter_count(), tolerance);
}

/// Every rank holds rank 0's bits, and rank 0 matches one process.
fn assert_matches(what: &str, runs: &[Run], one: &Run, tolerance: f64) {
    for (r, run) in runs.iter().enumerate() {
        assert!(
            run.params == runs[0].params && run.checkpoint == runs[0].checkpoint,
            "{what}: rank {r} ended with other bits than rank 0"
        );
        assert_eq!(
            run.history.epochs.len(),
            runs[0].history.epochs.len(),
            "{what}: rank {r} epochs"
        );
    }
    let run = &runs[0];
    assert_close(
        &format!("{what}: parameters"),
        &run.params,
        &one.params,
        tolerance,
    );
    // The state holds the gradients themselves (Adam's exp_avg is their
    // running mean), whose rounding differs at ~1e-7 of their scale each
    // step; the parameters see it times the learning rate. Twice the
    // parameters' tolerance: the worst here is 9.6e-7 (exp_avg, 12 epochs
    // of Adam on 3 ranks).
    let state = |c: &Checkpoint| c.optimizer_state.clone();
    assert_close(
        &format!("{what}: optimizer state"),
        &state(&run.checkpoint),
        &state(&one.checkpoint),
        2.0 * tolerance,
    );
    assert_eq!(run.checkpoint.step, one.checkpoint.step, "{what}: steps");
    assert_eq!(
        run.history.epochs.len(),
        one.history.epochs.len(),
        "{what}: epochs"
    );
    for (a, b) in run.history.epochs.iter().zip(&one.history.epochs) {
        let gap = (a.train_loss - b.train_loss).abs() / b.train_loss.abs().max(1e-6);
        assert!(
            gap < tolerance,
            "{what}: epoch {} training loss {} against {} ({gap:.1e})",
            a.epoch,
            a.train_loss,
            b.train_loss
        );
        assert_eq!(a.lr, b.lr, "{what}: epoch {} learning rate", a.epoch);
        if let (Some(a), Some(b)) = (a.validation, b.validation) {
            let gap = (a.loss - b.loss).abs() / b.loss.abs().max(1e-6);
            assert!(
                gap < tolerance,
                "{what}: validation loss {} against {} ({gap:.1e})",
                a.loss,
                b.loss
            );
            assert_eq!(a.accuracy, b.accuracy, "{what}: validation accuracy");
        }
    }
}

#[test]
fn every_optimizer_on_2_and_3_ranks_matches_one_process() {
    let train = data(Loss::CrossEntropy, 1);
    for optimizer in all_optimizers() {
        let config = config(Loss::CrossEntropy, optimizer);
        let one = single(&config, &train, None);
        for ranks in [2, 3] {
            let runs = parallel(ranks, &config, &train, None);
            assert_matches(
                &format!("{optimizer:?} on {ranks} ranks"),
                &runs,
                &one,
                1e-6,
            );
        }
    }
}

#[test]
fn every_loss_on_2_and_3_ranks_matches_one_process() {
    for loss in [
        Loss::Mse,
        Loss::HalfMse,
        Loss::CrossEntropy,
        Loss::BceWithLogits,
    ] {
        let train = data(loss, 2);
        let config = config(loss, Adam::default().lr(0.01).into());
        let one = single(&config, &train, None);
        for ranks in [2, 3] {
            let runs = parallel(ranks, &config, &train, None);
            assert_matches(&format!("{loss} on {ranks} ranks"), &runs, &one, 1e-6);
        }
    }
}

#[test]
fn odd_batches_dropout_and_clipping_match_one_process() {
    // Batches of 5 and 1 (every share but one empty), full batch, and more
    // ranks than rows in a batch; dropout keyed by the global row; clipping
    // by norm and by value, which must act on the summed gradient.
    let train = data(Loss::CrossEntropy, 3);
    let base = config(
        Loss::CrossEntropy,
        Sgd::default().lr(0.1).momentum(0.9).into(),
    );
    let cases = [
        ("batches of 5", base.clone().batch_size(5)),
        ("batches of 1", base.clone().batch_size(1).epochs(1)),
        ("full batch", base.clone().full_batch().epochs(6)),
        ("dropout", base.clone().dropout(0.3)),
        ("clip norm", base.clone().clip_grad_norm(0.05)),
        (
            "clip value",
            base.clone().clip_grad_value(0.01).dropout(0.2),
        ),
    ];
    for (what, config) in cases {
        let one = single(&config, &train, None);
        for ranks in [2, 3, 4] {
            let runs = parallel(ranks, &config, &train, None);
            assert_matches(&format!("{what} on {ranks} ranks"), &runs, &one, 1e-6);
        }
    }
}

#[test]
fn validation_schedules_and_early_stopping_decide_as_one_process() {
    let (train, validation) = (data(Loss::Mse, 4), data(Loss::Mse, 5));
    let config = config(Loss::Mse, Adam::default().lr(0.05).into())
        .epochs(12)
        .lr_schedule(LrSchedule::Plateau {
            factor: 0.5,
            patience: 1,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        })
        .early_stopping(2, 0.0)
        .norms_every(2);
    let one = single(&config, &train, Some(&validation));
    for ranks in [2, 3] {
        let runs = parallel(ranks, &config, &train, Some(&validation));
        let what = format!("plateau and early stopping on {ranks} ranks");
        assert_matches(&what, &runs, &one, 1e-6);
        let (a, b) = (&runs[0].history, &one.history);
        assert_eq!(a.best_epoch, b.best_epoch, "{what}: best epoch");
        assert_eq!(a.stopped_early, b.stopped_early, "{what}: stopped early");
        let norms = |h: &History| h.epochs.iter().map(|e| e.layer_norms.len()).sum::<usize>();
        assert_eq!(norms(a), norms(b), "{what}: norms sampled");
        assert!(norms(a) > 0, "{what}: no norms sampled");
    }
}

#[test]
fn two_runs_give_the_same_bits() {
    let train = data(Loss::BceWithLogits, 6);
    let config = config(Loss::BceWithLogits, Adam::default().lr(0.02).into()).dropout(0.1);
    let first = parallel(3, &config, &train, None);
    let second = parallel(3, &config, &train, None);
    for (a, b) in first.iter().zip(&second) {
        assert!(
            a.params == b.params && a.checkpoint == b.checkpoint,
            "two runs on 3 ranks differ"
        );
    }
}

#[test]
fn ranks_start_from_rank_0s_parameters() {
    // Each rank draws other initial parameters (another seed is another
    // run, so the seed stays; the parameters are set after); rank 0's win.
    let train = data(Loss::Mse, 7);
    let config = config(Loss::Mse, Sgd::default().lr(0.05).into());
    let one = single(&config, &train, None);
    let runs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|rank| {
                let (config, train) = (&config, &train);
                s.spawn(move || {
                    let mlp = mlp();
                    let params =
                        mlp.init(Init::XavierUniform, if rank.rank() == 0 { 9 } else { 77 });
                    let trainer = Trainer::with_parameters(mlp, params, config.clone()).unwrap();
                    let mut trainer = trainer.with_collective(Box::new(rank)).unwrap();
                    trainer.fit(train, None).unwrap();
                    trainer.parameters().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs[0], runs[1], "the ranks ended apart");
    assert_close("parameters", &runs[0], &one.params, 1e-6);
}

#[test]
fn a_stop_on_one_rank_stops_every_rank_and_resumes_on_any_number() {
    let train = data(Loss::CrossEntropy, 8);
    let config = config(Loss::CrossEntropy, Adam::default().lr(0.01).into()).batch_size(5);
    let one = single(&config, &train, None);
    // Rank 1 asks to stop after 10 steps (the stop flag is each rank's own).
    let flags: Vec<StopFlag> = (0..3).map(|_| StopFlag::new()).collect();
    let stopped: Vec<(History, Checkpoint)> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(3)
            .into_iter()
            .zip(&flags)
            .map(|(rank, flag)| {
                let (config, train) = (&config, &train);
                s.spawn(move || {
                    let me = rank.rank();
                    let config = config.clone().stop_flag(flag.clone());
                    let trainer = Trainer::new(mlp(), config).unwrap();
                    let mut trainer = trainer.with_collective(Box::new(rank)).unwrap();
                    trainer.train_steps(train, 10).unwrap();
                    if me == 1 {
                        flag.request();
                    }
                    let history = trainer.fit(train, None).unwrap();
                    (history, trainer.checkpoint().unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, (history, checkpoint)) in stopped.iter().enumerate() {
        assert!(history.interrupted, "rank {r} was not interrupted");
        assert_eq!(
            checkpoint, &stopped[0].1,
            "rank {r} stopped elsewhere than rank 0"
        );
    }
    assert_eq!(stopped[0].1.step, 10, "the stop came after 10 steps");
    // Resume the checkpoint on 1, 2 and 4 ranks: each ends as one
    // uninterrupted process does.
    let epochs_left = config.epochs - stopped[0].1.epoch as usize;
    let resumed = config.clone().epochs(epochs_left);
    let mut alone = Trainer::new(mlp(), resumed.clone()).unwrap();
    alone.restore(&stopped[0].1).unwrap();
    alone.fit(&train, None).unwrap();
    assert_close(
        "resumed alone",
        &alone.parameters().unwrap(),
        &one.params,
        1e-6,
    );
    for ranks in [2, 4] {
        let runs = on_ranks(ranks, &resumed, |r, trainer| {
            // Only rank 0's checkpoint counts.
            let mut checkpoint = stopped[0].1.clone();
            if r > 0 {
                checkpoint.params.iter_mut().for_each(|p| *p = 0.0);
            }
            trainer.restore(&checkpoint).unwrap();
            trainer.fit(&train, None).unwrap();
            trainer.parameters().unwrap()
        });
        assert_close(
            &format!("resumed on {ranks} ranks"),
            &runs[0],
            &one.params,
            1e-6,
        );
    }
}

#[test]
fn a_failure_on_one_rank_is_every_ranks_error_naming_it() {
    // Rank 2's data does not fit the network; `agree` after the checks
    // gives every rank rank 2's error, and no rank goes on to wait for it.
    let train = data(Loss::CrossEntropy, 9);
    let bad = Dataset::new(
        random(37 * 4, -1.0, 1.0, 1),
        4,
        Targets::Classes(vec![0; 37]),
    )
    .unwrap();
    let config = config(Loss::CrossEntropy, Sgd::default().into());
    let errors = on_ranks(3, &config, |r, trainer| {
        let mine = if r == 2 { &bad } else { &train };
        let checked = trainer.check_training_data(mine);
        trainer
            .collective()
            .map(|c| retroprop::parallel::agree(c, checked))
    });
    for (r, error) in errors.iter().enumerate() {
        match error {
            Some(Err(Error::Rank { rank: 2, message })) => {
                assert!(message.contains("features"), "rank {r}: {message}")
            }
            other => panic!("rank {r}: expected rank 2's error, got {other:?}"),
        }
    }
}

/// Ranks given different data (more rows on one, one value changed on
/// another) would run different numbers of steps and wait for each
/// other's sums forever: `fit` and `train_steps` compare every rank's data
/// with rank 0's first, and every rank gets the same error naming the
/// rank that differs and how.
#[test]
fn ranks_with_different_data_all_fail_naming_the_rank_instead_of_hanging() {
    let train = data(Loss::CrossEntropy, 11);
    let fewer = train.select(&(0..train.rows() as u32 - 7).collect::<Vec<_>>());
    let mut x = train.x().to_vec();
    x[5] += 1e-3;
    let changed = Dataset::new(x, train.features(), train.targets().clone()).unwrap();
    let config = config(Loss::CrossEntropy, Sgd::default().into());
    for (other, how) in [(&fewer, "rows"), (&changed, "other values")] {
        for steps in [None, Some(3)] {
            let outcomes = on_ranks(3, &config, |r, trainer| {
                let mine = if r == 1 { other } else { &train };
                match steps {
                    None => trainer.fit(mine, None).map(|_| ()),
                    Some(n) => trainer.train_steps(mine, n).map(|_| ()),
                }
            });
            for (r, outcome) in outcomes.iter().enumerate() {
                match outcome {
                    Err(Error::Rank { rank: 1, message }) => assert!(
                        message.contains("training data differs from rank 0's")
                            && message.contains(how),
                        "rank {r}: {message}"
                    ),
                    other => panic!("rank {r}: expected rank 1's error, got {other:?}"),
                }
            }
        }
    }
    // The same data everywhere trains, and is compared once.
    let outcomes = on_ranks(2, &config, |_, trainer| {
        trainer.check_same_data(&train, "train.csv")?;
        trainer.fit(&train, None).map(|_| ())
    });
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

#[test]
fn a_rank_that_leaves_ends_the_others_with_its_name() {
    let train = data(Loss::CrossEntropy, 10);
    let config = config(Loss::CrossEntropy, Sgd::default().into()).epochs(50);
    let outcomes = on_ranks(3, &config, |r, trainer| {
        if r == 1 {
            trainer.train_steps(&train, 2).map(|_| ())
        } else {
            trainer.fit(&train, None).map(|_| ())
        }
    });
    assert!(outcomes[1].is_ok());
    for r in [0, 2] {
        match &outcomes[r] {
            Err(Error::Rank { rank: 1, message }) => assert!(message.contains("left"), "{message}"),
            other => panic!("rank {r}: expected rank 1's departure, got {other:?}"),
        }
    }
}

#[test]
fn ranks_built_with_other_settings_are_refused() {
    let outcomes: Vec<Result<(), Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = Threads::group(2)
            .into_iter()
            .map(|rank| {
                s.spawn(move || {
                    let lr = if rank.rank() == 0 { 0.1 } else { 0.2 };
                    let config = config(Loss::Mse, Sgd::default().lr(lr).into());
                    let trainer = Trainer::new(mlp(), config).unwrap();
                    trainer.with_collective(Box::new(rank)).map(|_| ())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Err(Error::Rank { rank: 1, message }) => {
                assert!(
                    message.contains("differs from rank 0"),
                    "rank {r}: {message}"
                )
            }
            other => panic!("rank {r}: expected rank 1 refused, got {other:?}"),
        }
    }
}

#[test]
fn gpu_ranks_match_one_gpu_process() {
    // Within the GPU parity tolerance: the GPU's fused step and its step in
    // phases differ in summation order.
    let train = data(Loss::CrossEntropy, 11);
    let config = config(Loss::CrossEntropy, Adam::default().lr(0.01).into())
        .device(Device::Gpu)
        .dropout(0.2)
        .clip_grad_norm(0.5);
    let one = single(&config, &train, None);
    let runs = parallel(2, &config, &train, None);
    assert_matches("GPU on 2 ranks", &runs, &one, 1e-4);
}

/// A divergence on 3 ranks leaves every rank holding the state from
/// before the bad step and saying so: the same checkpoint on each, bit
/// for bit the one 3 ranks bounded to the step before take.
#[test]
fn a_divergence_on_ranks_keeps_the_last_good_state_on_every_rank() {
    let train = data(Loss::Mse, 3);
    let config = config(Loss::Mse, Sgd::default().lr(1e4).into()).batch_size(5);
    let diverged = on_ranks(3, &config, |_, trainer| {
        let Err(Error::Diverged { step, kept, .. }) = trainer.fit(&train, None) else {
            panic!("no divergence");
        };
        (step, kept, trainer.steps(), trainer.checkpoint().unwrap())
    });
    let (step, kept, steps, checkpoint) = &diverged[0];
    assert!(
        *step > 1,
        "diverged at step {step}: the test wants good steps first"
    );
    assert_eq!((kept.steps, *steps), (step - 1, step - 1), "steps kept");
    assert_eq!(
        (kept.epoch, kept.rows_done, kept.loss_sum),
        (
            checkpoint.epoch,
            checkpoint.rows_done,
            checkpoint.epoch_loss_sum
        ),
        "the error and the checkpoint disagree"
    );
    for (r, other) in diverged.iter().enumerate() {
        assert_eq!(other.3, *checkpoint, "rank {r} kept another state");
    }
    let bounded = on_ranks(3, &config.clone().max_steps(step - 1), |_, trainer| {
        trainer.fit(&train, None).unwrap();
        trainer.checkpoint().unwrap()
    });
    assert_eq!(
        bounded[0],
        *checkpoint,
        "3 ranks bounded to step {} end elsewhere",
        step - 1
    );
}
