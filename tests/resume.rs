//! A resumed run is the same run: for each setting that changes the
//! result, a run cut short, checkpointed through a file and resumed ends
//! with the parameters of the run never cut, bit for bit, on every backend
//! (early stopping and the plateau schedule included); a setting the saved
//! state cannot carry is refused, naming it; one that steers is taken and
//! recorded; and after a divergence the trainer holds the state from
//! before the bad step, which a checkpoint then records exactly.

mod common;

use common::backend_tests;
use retroprop::io::{SavedModel, load_checkpoint, save_checkpoint};
use retroprop::{
    Activation, Adagrad, Adam, AdamW, Checkpoint, Dataset, Device, Error, Loss, LrSchedule, Mlp,
    RmsProp, Sgd, Targets, TrainConfig, Trainer,
};

/// 40 rows of three classes from two features; 10 held out to validate.
fn data() -> (Dataset, Dataset) {
    let x = common::random(2 * 50, -1.0, 1.0, 11);
    let labels = x
        .chunks(2)
        .map(|p| match (p[0] + p[1] > 0.5, p[0] > p[1]) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        })
        .collect();
    let all = Dataset::new(x, 2, Targets::Classes(labels)).unwrap();
    all.split(0.2, 1).unwrap()
}

fn mlp() -> Mlp {
    Mlp::with_activations(&[2, 6, 3], &[Activation::Tanh, Activation::Identity]).unwrap()
}

fn base() -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(0.02))
        .batch_size(6)
        .seed(4)
}

/// Each setting that changes the result, one run each; whether it
/// validates (early stopping and a plateau on the validation loss do).
fn scenarios() -> Vec<(&'static str, TrainConfig, bool)> {
    let plateau = LrSchedule::Plateau {
        factor: 0.5,
        patience: 0,
        threshold: 0.0,
        cooldown: 1,
        min_lr: 0.0,
    };
    vec![
        ("adam", base(), false),
        (
            "sgd nesterov, weight decay",
            base().optimizer(
                Sgd::default()
                    .lr(0.1)
                    .momentum(0.9)
                    .nesterov(true)
                    .weight_decay(1e-3),
            ),
            false,
        ),
        (
            "adamw amsgrad",
            base().optimizer(AdamW::default().lr(0.02).amsgrad(true)),
            false,
        ),
        (
            "rmsprop centered",
            base().optimizer(RmsProp::default().lr(0.01).momentum(0.5).centered(true)),
            false,
        ),
        (
            "adagrad",
            base().optimizer(Adagrad::default().lr(0.1).lr_decay(0.01)),
            false,
        ),
        (
            "step schedule",
            base().lr_schedule(LrSchedule::Step {
                step_size: 2,
                gamma: 0.5,
            }),
            false,
        ),
        (
            "plateau on the training loss",
            base().lr_schedule(plateau),
            false,
        ),
        (
            "plateau and early stopping on validation",
            base()
                .lr_schedule(plateau)
                .early_stopping(1, 1e-3)
                .optimizer(Adam::default().lr(0.2)),
            true,
        ),
        (
            "clipping",
            base().clip_grad_norm(0.05).clip_grad_value(0.02),
            false,
        ),
        ("dropout", base().dropout(0.3), false),
        ("full batch", base().full_batch(), false),
        (
            "no shuffle, batch 1",
            base().shuffle(false).batch_size(1),
            false,
        ),
    ]
}

const EPOCHS: usize = 6;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A checkpoint through a file, as the program keeps it.
fn through_a_file(name: &str, checkpoint: &Checkpoint, config: &TrainConfig) -> Checkpoint {
    let dir = std::env::temp_dir().join(format!("retroprop-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.safetensors", name.replace([' ', ','], "-")));
    let model = SavedModel {
        mlp: mlp(),
        params: checkpoint.params.clone(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: config.loss,
        standardizer: None,
    };
    save_checkpoint(&path, &model, &config.optimizer, checkpoint).unwrap();
    let (_, _, loaded) = load_checkpoint(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    loaded
}

backend_tests! {
    /// Cut inside an epoch by a step bound, checkpointed through a file,
    /// and resumed by a trainer that is given nothing but the checkpoint's
    /// settings: the same parameters, steps, best epoch and checkpoint as
    /// the run never cut, bit for bit.
    fn every_setting_resumes_bit_for_bit(device: Device) {
        let (train, validation) = data();
        for (name, config, validates) in scenarios() {
            let validation = validates.then_some(&validation);
            let config = config.epochs(EPOCHS);
            let mut whole = common::trainer(mlp(), config.clone(), device);
            let whole_history = whole.fit(&train, validation).unwrap();
            let whole_end = whole.checkpoint().unwrap();

            // Inside an epoch, but for full batches (one step an epoch).
            let at = if config.batch_size.is_none() { 3 } else { 13 };
            let mut cut = common::trainer(mlp(), config.clone().max_steps(at), device);
            let cut_history = cut.fit(&train, validation).unwrap();
            assert!(
                cut_history.cut_mid_epoch || config.batch_size.is_none(),
                "{device} {name}: not cut inside an epoch"
            );
            let saved = through_a_file(name, &cut.checkpoint().unwrap(), &config);
            assert_eq!(saved.settings, Some(config.settings(&mlp())), "{device} {name}: settings");

            // What a front does with the checkpoint alone.
            let resumed_config = TrainConfig::default()
                .with_settings(saved.settings.as_ref().unwrap())
                .epochs(EPOCHS - saved.epoch as usize);
            let mut resumed = common::trainer_with(mlp(), saved.params.clone(), resumed_config, device);
            resumed.restore(&saved).unwrap();
            assert!(resumed.resume_changes().is_empty(), "{device} {name}: {:?}", resumed.resume_changes());
            let history = resumed.fit(&train, validation).unwrap();
            let end = resumed.checkpoint().unwrap();
            assert_eq!(
                bits(&end.params),
                bits(&whole_end.params),
                "{device} {name}: the resumed run's parameters differ from the unbroken run's"
            );
            assert_eq!(
                (resumed.steps(), history.best_epoch, history.stopped_early),
                (whole.steps(), whole_history.best_epoch, whole_history.stopped_early),
                "{device} {name}: steps, best epoch, stopped early"
            );
            assert_eq!(end, whole_end, "{device} {name}: the end checkpoints differ");
        }
    }

    /// A resume in the middle of an epoch that changes the seed or the
    /// shuffle finishes that epoch in the order its first rows were taken
    /// in (no row visited twice or missed), and takes the new order from
    /// the next epoch: the run equals one that changed it at the epoch's
    /// end, bit for bit, also when it is cut and checkpointed again before
    /// that end.
    fn a_new_order_mid_epoch_takes_effect_at_the_next_epoch(device: Device) {
        let (train, _) = data();
        let old = base().epochs(3);
        for new in [base().seed(9), base().shuffle(false)] {
            let new = new.epochs(3);
            // The reference: the old order for the whole first epoch.
            let mut first = common::trainer(mlp(), old.clone().epochs(1), device);
            first.fit(&train, None).unwrap();
            let boundary = through_a_file("boundary", &first.checkpoint().unwrap(), &old);
            // (A trainer's epochs are its fit's: two more after the first.)
            let mut reference =
                common::trainer_with(mlp(), boundary.params.clone(), new.clone().epochs(2), device);
            reference.restore(&boundary).unwrap();
            reference.fit(&train, None).unwrap();

            // Cut at step 2 of the first epoch (of 5), resumed with the new
            // order, cut again at step 4, resumed again.
            let mut cut = common::trainer(mlp(), old.clone().max_steps(2), device);
            cut.fit(&train, None).unwrap();
            let at_2 = through_a_file("at-2", &cut.checkpoint().unwrap(), &old);
            let mut middle = common::trainer_with(mlp(), at_2.params.clone(), new.clone().max_steps(4), device);
            middle.restore(&at_2).unwrap();
            assert_eq!(middle.resume_changes().len(), 1, "{device}: {:?}", middle.resume_changes());
            middle.fit(&train, None).unwrap();
            let at_4 = through_a_file("at-4", &middle.checkpoint().unwrap(), &new);
            assert!(at_4.epoch_order.is_some(), "{device}: the kept order is not in the checkpoint");
            let mut resumed = common::trainer_with(mlp(), at_4.params.clone(), new.clone(), device);
            resumed.restore(&at_4).unwrap();
            resumed.fit(&train, None).unwrap();
            assert_eq!(
                bits(&resumed.parameters().unwrap()),
                bits(&reference.parameters().unwrap()),
                "{device} {:?}: the new order did not wait for the epoch's end",
                (new.seed, new.shuffle)
            );
            assert_eq!(resumed.steps(), reference.steps());
        }
    }

    /// Early stopping's verdict survives a checkpoint: resumed from the
    /// checkpoint of the epoch where it stopped, a run trains nothing more
    /// and keeps the best epoch's parameters.
    fn a_run_that_stopped_early_resumes_to_its_end(device: Device) {
        let (train, validation) = data();
        let config = base()
            .optimizer(Adam::default().lr(0.3))
            .early_stopping(0, 0.0)
            .epochs(40);
        let mut whole = common::trainer(mlp(), config.clone(), device);
        let mut last = None;
        let history = whole
            .fit_checkpointed(&train, Some(&validation), |_| {}, 1, |c| {
                last = Some(c);
                Ok(())
            })
            .unwrap();
        assert!(history.stopped_early, "{device}: did not stop early in 40 epochs");
        let last = last.unwrap();
        let mut resumed = common::trainer_with(mlp(), last.params.clone(), config, device);
        resumed.restore(&last).unwrap();
        let again = resumed.fit(&train, Some(&validation)).unwrap();
        assert!(again.stopped_early && again.epochs.is_empty(), "{device}: {again:?}");
        assert_eq!(again.best_epoch, history.best_epoch, "{device}: best epoch");
        assert_eq!(
            bits(&resumed.parameters().unwrap()),
            bits(&whole.parameters().unwrap()),
            "{device}: kept parameters"
        );
    }

    /// After `Error::Diverged` the trainer holds the state from before
    /// the step that diverged, and says so: its checkpoint is the one a
    /// run bounded to the step before takes, bit for bit, through `fit`
    /// and through `train_steps`.
    fn a_checkpoint_after_divergence_is_the_last_good_state(device: Device) {
        let x: Vec<f32> = (0..40).map(|i| 50.0 + i as f32).collect();
        let y: Vec<f32> = (0..40).map(|i| (i % 3) as f32).collect();
        let data = Dataset::new(x, 1, Targets::Values { values: y, width: 1 }).unwrap();
        let mlp = Mlp::with_activations(&[1, 16, 1], &[Activation::Relu, Activation::Identity]).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::Mse)
            .optimizer(Sgd::default().lr(5.0))
            .batch_size(4)
            .seed(1)
            .epochs(20);
        for through_steps in [false, true] {
            let mut diverging = common::trainer(mlp.clone(), config.clone(), device);
            let outcome = if through_steps {
                diverging.train_steps(&data, 200).map(|_| ())
            } else {
                diverging.fit(&data, None).map(|_| ())
            };
            let Err(Error::Diverged { step, kept, .. }) = outcome else {
                panic!("{device}: did not diverge: {outcome:?}");
            };
            assert!(step > 11, "{device}: diverged at step {step}; the test wants it inside an epoch past the first");
            assert_eq!(
                (kept.steps, diverging.steps()),
                (step - 1, step - 1),
                "{device}: the steps kept"
            );
            let after = diverging.checkpoint().unwrap();
            assert_eq!(
                (kept.epoch, kept.rows_done, kept.loss_sum),
                (after.epoch, after.rows_done, after.epoch_loss_sum),
                "{device}: the error and the trainer disagree on what was kept"
            );
            let mut bounded = common::trainer(mlp.clone(), config.clone().max_steps(step - 1), device);
            bounded.fit(&data, None).unwrap();
            let before = bounded.checkpoint().unwrap();
            assert_eq!(bits(&after.params), bits(&before.params), "{device}: parameters kept");
            assert_eq!(after, before, "{device} (train_steps: {through_steps}): the checkpoints differ");
        }
    }
}

/// Each setting the saved state cannot carry is refused, naming it and
/// both values; each that steers is taken, listed and recorded.
#[test]
fn a_resume_refuses_what_the_state_cannot_carry_and_records_what_it_steers() {
    let (train, _) = data();
    let config = base()
        .optimizer(Sgd::default().lr(0.1).momentum(0.9))
        .epochs(1);
    let mut first = common::trainer(mlp(), config.clone(), Device::Cpu);
    first.fit(&train, None).unwrap();
    let saved = first.checkpoint().unwrap();
    let refused: Vec<(TrainConfig, Mlp, &str)> = vec![
        (
            config.clone().loss(Loss::Mse),
            mlp(),
            "loss cross_entropy -> mse",
        ),
        (
            config.clone(),
            Mlp::with_activations(&[2, 6, 3], &[Activation::Relu, Activation::Identity]).unwrap(),
            "activations tanh,identity -> relu,identity",
        ),
        (
            config.clone().optimizer(Adam::default().lr(0.1)),
            mlp(),
            "optimizer sgd -> adam",
        ),
        (
            config.clone().optimizer(Sgd::default().lr(0.1)),
            mlp(),
            "momentum 0.9 -> 0",
        ),
    ];
    for (config, mlp, named) in refused {
        let mut resumed = Trainer::new(mlp, config.device(Device::Cpu)).unwrap();
        let error = resumed.restore(&saved).unwrap_err().to_string();
        assert!(error.contains(named), "`{named}` not in: {error}");
    }
    let steered = config
        .clone()
        .optimizer(Sgd::default().lr(0.05).momentum(0.8))
        .batch_size(5)
        .seed(9)
        .clip_grad_norm(1.0);
    let mut resumed = common::trainer(mlp(), steered, Device::Cpu);
    resumed.restore(&saved).unwrap();
    let changes: Vec<String> = resumed
        .resume_changes()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        changes,
        [
            "lr 0.1 -> 0.05",
            "momentum 0.9 -> 0.8",
            "batch_size 6 -> 5",
            "seed 4 -> 9",
            "clip_grad_norm none -> 1"
        ]
    );
    assert_eq!(
        resumed.changes(),
        [format!("at step {}: {}", saved.step, changes.join(", "))]
    );
    assert_eq!(resumed.checkpoint().unwrap().changes, resumed.changes());
}

/// A checkpoint written before checkpoints recorded settings loads with
/// none, and resumes compared with nothing.
#[test]
fn a_checkpoint_without_settings_still_resumes() {
    let (train, _) = data();
    let config = base().epochs(1);
    let mut first = common::trainer(mlp(), config.clone(), Device::Cpu);
    first.fit(&train, None).unwrap();
    let mut old = first.checkpoint().unwrap();
    old.settings = None;
    let loaded = through_a_file("old", &old, &config);
    assert_eq!(loaded.settings, None);
    let mut resumed = common::trainer(mlp(), config.loss(Loss::Mse), Device::Cpu);
    resumed.restore(&loaded).unwrap();
    assert!(resumed.resume_changes().is_empty());
}
