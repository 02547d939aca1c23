//! Bad input is refused with an error that says what and where, never a
//! panic, an abort or a silently wrong run.

use retroprop::gpu::MatmulTiling;
use retroprop::{
    Activation, Adam, Dataset, Device, Error, Loss, Mlp, Targets, TrainConfig, Trainer,
};

/// Four rows of two features with one target each.
fn values(targets: [f32; 4]) -> Dataset {
    Dataset::new(
        vec![0., 0., 0., 1., 1., 0., 1., 1.],
        2,
        Targets::Values {
            values: targets.to_vec(),
            width: 1,
        },
    )
    .unwrap()
}

#[test]
fn bce_targets_outside_zero_one_are_refused_naming_row_and_column() {
    let mlp = Mlp::new(&[2, 4, 1], Activation::Tanh, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::BceWithLogits)
        .optimizer(Adam::default())
        .epochs(1)
        .device(Device::Cpu);
    let mut trainer = Trainer::new(mlp, config).unwrap();
    trainer
        .fit(&values([0., 1., 0.5, 1.]), None)
        .expect("targets in [0, 1] train");
    for (bad, row) in [(2.0, 2), (-0.5, 0)] {
        let mut targets = [0., 1., 1., 0.];
        targets[row] = bad;
        let err = trainer.fit(&values(targets), None).err();
        match &err {
            Some(Error::TargetOutOfRange {
                row: r,
                column: 0,
                value,
                ..
            }) if *r == row && *value == bad as f64 => {}
            _ => panic!("target {bad} at row {row} with bce_with_logits: got {err:?}"),
        }
        let message = err.unwrap().to_string();
        for part in ["training data", &format!("row {row}"), "[0, 1]"] {
            assert!(message.contains(part), "`{message}` does not say `{part}`");
        }
    }
    // MSE takes any finite target.
    let mlp = Mlp::new(&[2, 4, 1], Activation::Tanh, Activation::Identity).unwrap();
    let config = TrainConfig::default().epochs(1).device(Device::Cpu);
    Trainer::new(mlp, config)
        .unwrap()
        .fit(&values([2., -3., 0., 1.]), None)
        .expect("mse takes targets outside [0, 1]");
}

#[test]
fn sizes_whose_parameter_count_overflows_are_refused() {
    for sizes in [
        vec![usize::MAX, 2],
        vec![2, usize::MAX / 2, 2],
        vec![1 << 32, 1 << 32, 2],
        // Each fits, the sum does not fit one allocation.
        vec![1 << 31, 1 << 30, 1 << 31],
    ] {
        match Mlp::new(&sizes, Activation::Relu, Activation::Identity) {
            Err(Error::TooLarge(message)) => {
                assert!(
                    message.contains("layer "),
                    "{sizes:?}: `{message}` names no layer"
                )
            }
            other => panic!("{sizes:?}: expected a too-large error, got {other:?}"),
        }
    }
}

#[test]
fn a_network_larger_than_memory_is_refused_before_allocating() {
    // 2.8e14 weights, about a petabyte with gradients and Adam's state.
    let sizes = [784, 1 << 24, 1 << 24, 10];
    let mlp = Mlp::new(&sizes, Activation::Relu, Activation::Identity).unwrap();
    let estimate = mlp.training_memory(32, 2);
    assert_eq!(estimate.parameters, 4 * mlp.parameter_count() as u128);
    assert_eq!(estimate.optimizer_state, 2 * estimate.parameters);
    let config = TrainConfig::default()
        .optimizer(Adam::default())
        .batch_size(32)
        .device(Device::Cpu);
    let err = Trainer::new(mlp, config).err();
    let Some(Error::TooLarge(message)) = &err else {
        panic!("{sizes:?}: expected a too-large error, got {err:?}");
    };
    for part in ["GiB", "layer 1 (16777216 → 16777216)", "784,16777216"] {
        assert!(message.contains(part), "`{message}` does not say `{part}`");
    }
    // A small one passes the same check.
    let small = Mlp::new(&[784, 64, 10], Activation::Relu, Activation::Identity).unwrap();
    small.check_training_memory(Some(32), 2).unwrap();
}

#[test]
fn matmul_tilings_that_overflow_or_cannot_compile_are_refused() {
    for text in [
        "shared:2147483649x2x4x4x4",
        "shared:65536x65536x4x4x4",
        "shared:4294967295x4294967295x4x4x4",
        "shared:16x16x65x4x4",
        "shared:16x16x4x65x4",
        "shared:16x16x4x4x65",
        "shared:16x16x4x4x4294967295",
        "shared:32x33x4x4x4",
        "shared:0x16x4x4x4",
        "direct:8x4x16x6x16",
    ] {
        assert_eq!(
            MatmulTiling::parse(text),
            None,
            "RETROPROP_MATMUL={text} was accepted"
        );
    }
    for text in [
        "shared:32x32x4x4x4",
        "shared:1x1x64x64x64",
        "texture:8x4x8x8x4",
    ] {
        assert!(
            MatmulTiling::parse(text).is_some(),
            "RETROPROP_MATMUL={text} was refused"
        );
    }
}

/// A model of `[16, 64, 8]` whose parameters all equal `value`, so that a
/// file mixing two writers' bytes is caught.
fn filled_model(value: f32) -> retroprop::io::SavedModel {
    let mlp = Mlp::new(&[16, 64, 8], Activation::Relu, Activation::Identity).unwrap();
    retroprop::io::SavedModel {
        params: vec![value; mlp.parameter_count()],
        mlp,
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: Loss::CrossEntropy,
        standardizer: None,
    }
}

/// Two threads save different models (or checkpoints) to one path 150
/// times each while a third loads it: every load must succeed and give one
/// of the two whole files, and no temporary file may be left behind.
fn concurrent_writers_leave_one_whole_file(checkpoints: bool) {
    use retroprop::io::{load_checkpoint, load_model, save_checkpoint, save_model};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = std::env::temp_dir().join(format!(
        "retroprop-concurrent-{checkpoints}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shared.safetensors");
    let write = |value: f32| {
        let model = filled_model(value);
        if checkpoints {
            let checkpoint = retroprop::Checkpoint {
                params: model.params.clone(),
                optimizer_state: vec![value; 2 * model.params.len()],
                step: value as u64,
                epoch: 1,
                rows_done: 0,
                epoch_loss_sum: 0.0,
                scheduler: (0.1, f64::INFINITY, 0, 0),
                ..retroprop::Checkpoint::default()
            };
            save_checkpoint(
                &path,
                &model,
                &retroprop::Adam::default().into(),
                &checkpoint,
            )
            .unwrap();
        } else {
            save_model(&path, &model).unwrap();
        }
    };
    write(1.0);
    let done = AtomicBool::new(false);
    let loads = std::thread::scope(|scope| {
        let writers: Vec<_> = [1.0f32, 2.0]
            .into_iter()
            .map(|value| scope.spawn(move || (0..150).for_each(|_| write(value))))
            .collect();
        let reader = scope.spawn(|| {
            let mut loads = 0;
            while !done.load(Ordering::Relaxed) {
                let params = if checkpoints {
                    let (model, optimizer, checkpoint) = load_checkpoint(&path)
                        .unwrap_or_else(|e| panic!("load {loads} of a checkpoint: {e}"));
                    assert_eq!(optimizer, "adam");
                    let value = model.params[0];
                    assert!(
                        checkpoint.optimizer_state.iter().all(|&v| v == value)
                            && checkpoint.step == value as u64,
                        "load {loads}: a checkpoint mixes two writers"
                    );
                    model.params
                } else {
                    load_model(&path)
                        .unwrap_or_else(|e| panic!("load {loads} of a model: {e}"))
                        .params
                };
                let value = params[0];
                assert!(
                    (value == 1.0 || value == 2.0) && params.iter().all(|&p| p == value),
                    "load {loads}: parameters are not one writer's whole file"
                );
                loads += 1;
            }
            loads
        });
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(loads > 10, "the reader loaded only {loads} times");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "shared.safetensors")
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_model_writers_leave_one_whole_file() {
    concurrent_writers_leave_one_whole_file(false);
}

#[test]
fn concurrent_checkpoint_writers_leave_one_whole_file() {
    concurrent_writers_leave_one_whole_file(true);
}

/// A saved model is readable as any file the user creates there: the
/// temporary file it is renamed from was private to its owner (0600).
#[cfg(unix)]
#[test]
fn saved_files_get_the_permissions_of_a_newly_created_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("retroprop-permissions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain");
    std::fs::File::create(&plain).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let saved = dir.join("model.safetensors");
    retroprop::io::save_model(&saved, &filled_model(1.0)).unwrap();
    assert_eq!(
        mode(&saved),
        mode(&plain),
        "a saved model has mode {:o}, a new file {:o}",
        mode(&saved),
        mode(&plain)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoint_state_is_stored_under_torch_names_and_older_files_still_load() {
    use retroprop::{Optimizer, RmsProp};
    use safetensors::SafeTensors;
    let dir = std::env::temp_dir().join(format!("retroprop-state-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = filled_model(0.5);
    let n = model.params.len();
    let optimizer: Optimizer = RmsProp::default().momentum(0.9).centered(true).into();
    // Slot k holds k + 1 everywhere.
    let state: Vec<f32> = (0..3).flat_map(|k| vec![k as f32 + 1.0; n]).collect();
    let checkpoint = retroprop::Checkpoint {
        params: model.params.clone(),
        optimizer_state: state.clone(),
        step: 7,
        epoch: 1,
        rows_done: 0,
        epoch_loss_sum: 0.0,
        scheduler: (0.1, f64::INFINITY, 0, 0),
        ..retroprop::Checkpoint::default()
    };
    let path = dir.join("named.safetensors");
    retroprop::io::save_checkpoint(&path, &model, &optimizer, &checkpoint).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    for (k, name) in ["square_avg", "momentum_buffer", "grad_avg"]
        .iter()
        .enumerate()
    {
        let tensor = file
            .tensor(&format!("optimizer.{name}"))
            .unwrap_or_else(|e| panic!("no tensor optimizer.{name}: {e}"));
        assert_eq!(tensor.shape(), [n], "optimizer.{name}");
        let first = f32::from_le_bytes(tensor.data()[..4].try_into().unwrap());
        assert_eq!(first, k as f32 + 1.0, "optimizer.{name} holds slot {k}");
    }
    let (_, name, loaded) = retroprop::io::load_checkpoint(&path).unwrap();
    assert_eq!(name, "rmsprop");
    assert_eq!(
        loaded.optimizer_state, state,
        "the slots read back in order"
    );
    // A checkpoint of the earlier format (one optimizer.state tensor of
    // [slots, parameters]) loads the same state.
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = meta.metadata().clone().unwrap_or_default();
    metadata.remove("retroprop.optimizer_state");
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("optimizer."))
        .collect();
    let old_state: Vec<u8> = state.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, n], &old_state)
            .unwrap();
    tensors.push(("optimizer.state".into(), view));
    let old = dir.join("old.safetensors");
    safetensors::serialize_to_file(tensors, Some(metadata), &old).unwrap();
    let (_, _, loaded) = retroprop::io::load_checkpoint(&old).unwrap();
    assert_eq!(loaded.optimizer_state, state, "the earlier format");
    let _ = std::fs::remove_dir_all(&dir);
}
