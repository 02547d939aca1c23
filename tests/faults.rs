//! Faults of the device: a GPU lost in the middle of a run ends every later
//! call with an error that says so, promptly (no panic, no hang), and what
//! was saved before stays whole. Needs a wgpu adapter (without a GPU:
//! `apt-get install mesa-vulkan-drivers`).

mod common;

use retroprop::backend::{Backend, BackendConfig};
use retroprop::gpu::{GpuBackend, GpuOptions};
use retroprop::io::{SavedModel, load_checkpoint, save_checkpoint};
use retroprop::{Activation, Adam, Dataset, Init, Loss, Mlp, Targets, TrainConfig, Trainer};
use std::sync::mpsc;
use std::time::Duration;

fn data() -> Dataset {
    let x = common::random(64 * 3, -1.0, 1.0, 4);
    let labels = x.chunks(3).map(|r| u32::from(r[0] > r[1])).collect();
    Dataset::new(x, 3, Targets::Classes(labels)).unwrap()
}

/// Runs `f` on its own thread; fails the test if it takes a minute.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung (no answer in 60 s) or panicked"))
}

#[test]
fn a_lost_device_ends_every_later_call_with_an_error_and_keeps_the_checkpoint() {
    let dir = std::env::temp_dir().join(format!("retroprop-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("before.safetensors");
    let mlp = Mlp::new(&[3, 8, 2], Activation::Tanh, Activation::Identity).unwrap();
    let optimizer = Adam::default().lr(0.01);
    // A checkpoint written by a trainer before the fault.
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(optimizer)
        .batch_size(16)
        .epochs(2)
        .device(retroprop::Device::Gpu);
    let mut trainer = Trainer::new(mlp.clone(), config).unwrap_or_else(|e| {
        panic!("GPU tests need a wgpu adapter (apt-get install mesa-vulkan-drivers): {e}")
    });
    trainer.fit(&data(), None).unwrap();
    let checkpoint = trainer.checkpoint().unwrap();
    let saved = SavedModel {
        mlp: mlp.clone(),
        params: checkpoint.params.clone(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: Loss::CrossEntropy,
        standardizer: None,
    };
    save_checkpoint(&path, &saved, &optimizer.into(), &checkpoint).unwrap();

    let outcome = bounded("training on a lost device", move || {
        let data = data();
        let mut config = BackendConfig::new(Loss::CrossEntropy, optimizer.into());
        config.batch_rows = Some(16);
        let mut gpu = GpuBackend::new(
            &mlp,
            mlp.init(Init::XavierUniform, 1),
            &config,
            GpuOptions::default(),
            false,
        )
        .expect("a GPU backend");
        let handle = gpu.upload(&data).unwrap();
        let order: Vec<u32> = (0..64).collect();
        gpu.train_steps(&handle, &order, 16, 2, 0.01)
            .expect("steps before the loss");
        gpu.lose_device();
        let steps = gpu.train_steps(&handle, &order, 16, 2, 0.01).map(|_| ());
        let params = gpu.parameters().map(|_| ());
        (steps, params)
    });
    for (what, result) in [("train_steps", outcome.0), ("parameters", outcome.1)] {
        let error = result.expect_err(&format!("{what} after the device was lost succeeded"));
        let message = error.to_string();
        assert!(
            matches!(error, retroprop::Error::Gpu(_)),
            "{what}: not a GPU error: {message}"
        );
        assert!(
            ["lost", "destroyed", "invalid"]
                .iter()
                .any(|w| message.to_lowercase().contains(w)),
            "{what}: the error does not say the device was lost: {message}"
        );
    }
    let (_, optimizer_name, loaded) = load_checkpoint(&path).expect("the checkpoint loads");
    assert_eq!(optimizer_name, "adam");
    assert_eq!(
        loaded.params, checkpoint.params,
        "the checkpoint's parameters"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
