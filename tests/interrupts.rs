//! A `StopFlag` stops a running fit at a step boundary (the CPU before any
//! step, the GPU before any submission), keeps the steps that ran whole,
//! and the checkpoint taken then resumes to the same parameters as a run
//! never stopped; on every backend (`<test>::cpu`, `<test>::gpu`).

mod common;

use common::backend_tests;
use retroprop::{
    Activation, Adam, Dataset, Device, Loss, LrSchedule, Mlp, StopFlag, Targets, TrainConfig,
};
use std::sync::mpsc;

/// Rows in the data set; with one row a step, the steps in an epoch (more
/// than two GPU submissions of 64, so a stop can land inside an epoch).
const ROWS: usize = 160;

/// Three classes from two features.
fn data() -> Dataset {
    let x = common::random(2 * ROWS, -1.0, 1.0, 7);
    let labels = x
        .chunks(2)
        .map(|p| match (p[0] + p[1] > 0.5, p[0] > p[1]) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        })
        .collect();
    Dataset::new(x, 2, Targets::Classes(labels)).unwrap()
}

fn mlp() -> Mlp {
    Mlp::new(&[2, 8, 3], Activation::Tanh, Activation::Identity).unwrap()
}

/// Adam, one row a step, and a plateau schedule, which reads each epoch's
/// mean loss: a resumed epoch must add up the loss of its rows done before
/// the stop.
fn config(epochs: usize) -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(0.01))
        .lr_schedule(LrSchedule::Plateau {
            factor: 0.5,
            patience: 0,
            threshold: 0.0,
            cooldown: 0,
            min_lr: 0.0,
        })
        .batch_size(1)
        .epochs(epochs)
        .seed(5)
}

/// The parameters of `epochs` epochs never stopped.
fn uninterrupted(epochs: usize, device: Device) -> Vec<f32> {
    let mut whole = common::trainer(mlp(), config(epochs), device);
    let history = whole.fit(&data(), None).unwrap();
    assert!(
        !history.interrupted,
        "{device}: a run with no flag was interrupted"
    );
    whole.parameters().unwrap()
}

/// Asserts a resumed run's parameters equal the uninterrupted run's, bit
/// for bit on every backend.
fn assert_same_parameters(what: &str, device: Device, resumed: &[f32], whole: &[f32]) {
    assert_eq!(
        resumed.len(),
        whole.len(),
        "{what}: parameter counts differ"
    );
    if let Some(at) = (0..resumed.len()).find(|&i| resumed[i].to_bits() != whole[i].to_bits()) {
        panic!(
            "{what} ({device}): parameter {at} resumed {} vs uninterrupted {} (difference {:e}, allowed none)",
            resumed[at],
            whole[at],
            (resumed[at] - whole[at]).abs()
        );
    }
}

backend_tests! {
    /// A stop requested from another thread while `fit` runs ends it at a
    /// step boundary; the checkpoint then, restored into a new trainer that
    /// fits the epochs left, ends where a run never stopped does.
    fn a_stop_from_another_thread_ends_fit_and_resumes_exactly(device: Device) {
        const EPOCHS: usize = 6;
        let data = data();
        let flag = StopFlag::new();
        let (first_epoch_done, asked_wait) = mpsc::channel();
        let (asked, first_epoch_wait) = mpsc::channel();
        let asker = {
            let flag = flag.clone();
            std::thread::spawn(move || {
                if asked_wait.recv().is_ok() {
                    flag.request();
                    let _ = asked.send(());
                }
            })
        };
        let mut first = common::trainer(mlp(), config(EPOCHS).stop_flag(flag.clone()), device);
        // The request comes while the second epoch runs; the second epoch's
        // end waits for it, so that the stop lands in epoch 2 or at the
        // start of epoch 3.
        let history = first
            .fit_with(&data, None, |record| match record.epoch {
                1 => first_epoch_done.send(()).unwrap(),
                2 => first_epoch_wait
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .expect("the asking thread did not ask within 60 s"),
                _ => {}
            })
            .unwrap();
        asker.join().unwrap();
        assert!(history.interrupted, "{device}: fit ran to its end: {} epochs", history.epochs.len());
        let total = (EPOCHS * ROWS) as u64;
        let steps = first.steps();
        assert!(
            (ROWS as u64..=2 * ROWS as u64).contains(&steps),
            "{device}: stopped after {steps} steps, expected in the second epoch (steps {ROWS}..={})",
            2 * ROWS
        );
        let checkpoint = first.checkpoint().unwrap();
        println!(
            "{device}: stopped at step {steps}: epoch {}, row {}",
            checkpoint.epoch, checkpoint.rows_done
        );
        assert_eq!(checkpoint.step, steps, "{device}: the backend's step count and the trainer's differ");
        assert_eq!(
            checkpoint.epoch as usize,
            history.epochs.len(),
            "{device}: the checkpoint's epoch is not the epochs completed"
        );
        assert_eq!(
            checkpoint.epoch * ROWS as u64 + checkpoint.rows_done as u64,
            steps,
            "{device}: the checkpoint's position (epoch {}, row {}) is not where the {steps} steps end",
            checkpoint.epoch,
            checkpoint.rows_done
        );
        assert_eq!(
            checkpoint.rows_done > 0,
            checkpoint.epoch_loss_sum > 0.0,
            "{device}: rows done {} with an epoch loss sum {}",
            checkpoint.rows_done,
            checkpoint.epoch_loss_sum
        );
        if device == Device::Gpu {
            assert!(
                checkpoint.rows_done.is_multiple_of(64),
                "{device}: stopped at row {} of an epoch, not at a submission boundary",
                checkpoint.rows_done
            );
        }
        let mut second = common::trainer(
            mlp(),
            config(EPOCHS - checkpoint.epoch as usize),
            device,
        );
        second.restore(&checkpoint).unwrap();
        let rest = second.fit(&data, None).unwrap();
        assert!(!rest.interrupted);
        assert_eq!(second.steps(), total, "{device}: the resumed run ended at another step");
        assert_same_parameters(
            &format!("{device}: stopped at step {steps}, then resumed"),
            device,
            &second.parameters().unwrap(),
            &uninterrupted(EPOCHS, device),
        );
    }

    /// A stop inside an epoch (here after `train_steps` took 70 of its 160
    /// rows) makes `fit` return at once; the checkpoint records the 70
    /// rows and their loss, and resumes to the uninterrupted parameters.
    /// On the GPU both with the data resident and streamed from the host
    /// (a binding of 1 KiB cannot hold it).
    fn a_stop_inside_an_epoch_checkpoints_the_position_and_resumes_exactly(device: Device) {
        const EPOCHS: usize = 3;
        let data = data();
        for binding in [None, Some(1024)] {
            let config = |epochs| match binding {
                Some(bytes) => config(epochs).max_binding_bytes(bytes),
                None => config(epochs),
            };
            let what = match binding {
                Some(_) => format!("{device}, data streamed"),
                None => device.to_string(),
            };
            let flag = StopFlag::new();
            let mut first = common::trainer(mlp(), config(EPOCHS).stop_flag(flag.clone()), device);
            first.train_steps(&data, 70).unwrap();
            flag.request();
            let history = first.fit(&data, None).unwrap();
            assert!(history.interrupted && history.epochs.is_empty(), "{what}: {history:?}");
            assert_eq!(first.steps(), 70, "{what}: steps ran after the stop was requested");
            let checkpoint = first.checkpoint().unwrap();
            assert_eq!(
                (checkpoint.step, checkpoint.epoch, checkpoint.rows_done),
                (70, 0, 70),
                "{what}: (step, epoch, rows done) of the checkpoint"
            );
            assert!(checkpoint.epoch_loss_sum > 0.0, "{what}: the epoch's loss so far was lost");
            // The same trainer goes on once the flag is cleared.
            flag.clear();
            let rest = first.fit(&data, None).unwrap();
            assert_eq!(rest.epochs.len(), EPOCHS, "{what}: epochs after clearing the flag");
            let mut whole = common::trainer(mlp(), config(EPOCHS), device);
            whole.fit(&data, None).unwrap();
            let whole = whole.parameters().unwrap();
            assert_same_parameters(
                &format!("{what}: the same trainer, continued"),
                device,
                &first.parameters().unwrap(),
                &whole,
            );
            let mut second = common::trainer(mlp(), config(EPOCHS), device);
            second.restore(&checkpoint).unwrap();
            second.fit(&data, None).unwrap();
            assert_same_parameters(
                &format!("{what}: restored at row 70 of epoch 1"),
                device,
                &second.parameters().unwrap(),
                &whole,
            );
        }
    }

    /// A stop requested before the first step leaves everything as it was:
    /// no step, the parameters and the optimizer state unchanged.
    fn a_stop_before_the_first_step_changes_nothing(device: Device) {
        let data = data();
        let flag = StopFlag::new();
        flag.request();
        let mut trainer = common::trainer(mlp(), config(2).stop_flag(flag), device);
        let before = trainer.checkpoint().unwrap();
        let history = trainer.fit(&data, None).unwrap();
        assert!(history.interrupted && history.epochs.is_empty(), "{device}: {history:?}");
        let loss = trainer.train_steps(&data, 5).unwrap();
        assert_eq!((trainer.steps(), loss), (0, 0.0), "{device}: steps and loss after the stop");
        let after = trainer.checkpoint().unwrap();
        assert_eq!(
            after.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            before.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{device}: parameters changed"
        );
        assert_eq!(after, before, "{device}: the checkpoint changed");
    }
}
