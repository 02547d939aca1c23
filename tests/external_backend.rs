//! The seam is open: a backend defined outside the crate
//! (`examples/counting_backend.rs`, a counting wrapper of the CPU backend)
//! trains through the public `Trainer` exactly as the CPU backend does,
//! and the trainer asks of it what the loop should.

#[path = "../examples/counting_backend.rs"]
#[allow(dead_code)]
mod counting_backend;

use counting_backend::{Calls, config, counting_trainer, mlp, xor};
use retroprop::{Device, Trainer};

#[test]
fn a_backend_from_outside_the_crate_trains_bit_for_bit_as_the_cpu_does() {
    let epochs = 30;
    let data = xor();
    let mut plain = Trainer::new(mlp(), config(epochs)).unwrap();
    let (mut wrapped, calls) = counting_trainer(config(epochs)).unwrap();
    assert!(
        wrapped.device_name().starts_with("counting cpu: "),
        "{}",
        wrapped.device_name()
    );

    let plain_history = plain.fit(&data, Some(&data)).unwrap();
    let wrapped_history = wrapped.fit(&data, Some(&data)).unwrap();
    let losses = |h: &retroprop::History| h.epochs.iter().map(|e| e.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&wrapped_history), losses(&plain_history));
    // Fused steps: one upload, an epoch (one full-batch step) a call of
    // train_steps, a validation an epoch; no phase of a step alone.
    assert_eq!(
        *calls.lock().unwrap(),
        Calls {
            upload: 1,
            train_steps: epochs as u64,
            evaluate: epochs as u64,
            ..Calls::default()
        }
    );

    // Steps at a time continue on the same upload, one call an epoch.
    assert_eq!(
        wrapped.train_steps(&data, 3).unwrap().to_bits(),
        plain.train_steps(&data, 3).unwrap().to_bits()
    );
    let (a, b) = (wrapped.parameters().unwrap(), plain.parameters().unwrap());
    let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "parameters after fit and 3 steps");
    assert_eq!(wrapped.steps(), epochs as u64 + 3);
    let checkpoint = wrapped.checkpoint().unwrap();
    assert_eq!(checkpoint, plain.checkpoint().unwrap());
    assert_eq!(
        *calls.lock().unwrap(),
        Calls {
            upload: 1,
            train_steps: epochs as u64 + 3,
            evaluate: epochs as u64,
            parameters: 2,
            optimizer_state: 1,
            ..Calls::default()
        }
    );

    // Evaluation, prediction and a restore go through it too.
    assert_eq!(
        wrapped.evaluate(&data).unwrap(),
        plain.evaluate(&data).unwrap()
    );
    assert_eq!(
        bits(&wrapped.predict(data.x()).unwrap()),
        bits(&plain.predict(data.x()).unwrap())
    );
    wrapped.restore(&checkpoint).unwrap();
    let after = *calls.lock().unwrap();
    assert_eq!(
        (
            after.evaluate,
            after.predict,
            after.set_parameters,
            after.set_optimizer_state
        ),
        (epochs as u64 + 1, 1, 1, 1)
    );
    assert_eq!(
        after.forward_backward + after.gradients + after.set_gradients + after.update,
        0
    );
}

#[test]
fn a_trainer_on_a_given_backend_checks_its_configuration() {
    // The device is the backend's: `config.device` is not read.
    let (trainer, _) = counting_trainer(config(1).device(Device::Gpu)).unwrap();
    assert!(trainer.device_name().starts_with("counting cpu: "));
    let bad = counting_trainer(config(1).batch_size(0)).unwrap_err();
    assert!(bad.to_string().contains("batch_size"), "{bad}");
}

/// A trainer, with whatever backend it holds, can move to another thread
/// natively (a Python binding's or a server's worker): checked when this
/// compiles.
#[test]
fn a_trainer_is_send() {
    fn send<T: Send>() {}
    send::<retroprop::Trainer>();
    send::<Box<dyn retroprop::backend::Backend>>();
    send::<Box<dyn retroprop::parallel::Collective>>();
}
