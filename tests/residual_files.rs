//! Residual networks in files: a model file (rtdl's `ResNet` names, the
//! running statistics included) reads back as the network that wrote it
//! and predicts as its trainer did, bit for bit; a checkpoint of a
//! BatchNorm run resumes in the middle of an epoch to the run never cut,
//! bit for bit, its running statistics too; early stopping keeps the best
//! epoch's running statistics with its parameters. The torch side (the
//! file loaded with `strict=True`, evaluation mode compared) is
//! python/tests/test_residual_files.py.

mod common;

use retroprop::checkpoint::Checkpoint;
use retroprop::io::{SavedModel, load_checkpoint, load_model, save_checkpoint, save_model};
use retroprop::train::{RunRequest, Saved};
use retroprop::{
    Activation, AdamW, Dataset, Device, Loss, Mlp, NormKind, Residual, Targets, TrainConfig,
    Trainer,
};

fn spec(norm: Option<NormKind>) -> Residual {
    Residual {
        inputs: 4,
        width: 6,
        hidden: 12,
        blocks: 2,
        outputs: 3,
        norm,
        activation: Activation::Relu,
    }
}

const NORMS: [Option<NormKind>; 3] = [Some(NormKind::Batch), Some(NormKind::Layer), None];

/// 50 rows of three classes from four features; `seed` draws them.
fn data(seed: u64) -> Dataset {
    let x = common::random(4 * 50, -1.0, 1.0, seed);
    let labels = x
        .chunks(4)
        .map(|r| match (r[0] + r[1] > 0.3, r[2] > r[3]) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        })
        .collect();
    Dataset::new(x, 4, Targets::Classes(labels)).unwrap()
}

fn config() -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(AdamW::default().lr(0.02))
        .batch_size(8)
        .seed(5)
        .device(Device::Cpu)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn saved_model(trainer: &mut Trainer) -> SavedModel {
    SavedModel {
        mlp: trainer.mlp().clone(),
        params: trainer.parameters().unwrap(),
        buffers: trainer.buffers().unwrap(),
        // Written for BatchNorm alone: torch's LayerNorm keeps no count.
        num_batches_tracked: if trainer.mlp().has_batch_norm() {
            trainer.steps()
        } else {
            0
        },
        loss: trainer.config().loss,
        standardizer: None,
    }
}

#[test]
fn a_residual_model_file_reads_back_and_predicts_as_its_trainer() {
    let dir = tempfile::tempdir().unwrap();
    let train = data(1);
    for norm in NORMS {
        let mut trainer =
            Trainer::new(Mlp::residual(spec(norm)).unwrap(), config().epochs(3)).unwrap();
        trainer.fit(&train, None).unwrap();
        let model = saved_model(&mut trainer);
        if norm == Some(NormKind::Batch) {
            let initial = model.mlp.initial_buffers();
            assert_ne!(
                model.buffers, initial,
                "training moved the running statistics"
            );
        }
        let path = dir.path().join("resnet.safetensors");
        save_model(&path, &model).unwrap();
        let loaded = load_model(&path).unwrap();
        assert_eq!(loaded.residual, Some(spec(norm)), "{norm:?}: the spec");
        assert_eq!(
            loaded.num_batches_tracked,
            if norm == Some(NormKind::Batch) {
                trainer.steps()
            } else {
                0
            }
        );
        let back = loaded.complete(&path).unwrap();
        assert_eq!(
            back, model,
            "{norm:?}: the model read back differs from the one written"
        );

        let expected = trainer.predict(train.x()).unwrap();
        let mut predictor =
            Trainer::with_parameters(back.mlp.clone(), back.params.clone(), config()).unwrap();
        predictor.set_buffers(&back.buffers).unwrap();
        assert_eq!(
            bits(&predictor.predict(train.x()).unwrap()),
            bits(&expected),
            "{norm:?}: the loaded model predicts otherwise than its trainer"
        );
        if norm == Some(NormKind::Batch) {
            // Without the file's running statistics it would not.
            let mut fresh =
                Trainer::with_parameters(back.mlp.clone(), back.params.clone(), config()).unwrap();
            assert_ne!(bits(&fresh.predict(train.x()).unwrap()), bits(&expected));
        }
    }
}

#[test]
fn a_residual_model_file_is_refused_with_a_tensor_missing_or_other_norm_settings() {
    let dir = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(
        Mlp::residual(spec(Some(NormKind::Batch))).unwrap(),
        config(),
    )
    .unwrap();
    let model = saved_model(&mut trainer);
    let short = SavedModel {
        buffers: Vec::new(),
        ..model.clone()
    };
    let path = dir.path().join("short.safetensors");
    let error = save_model(&path, &short).unwrap_err().to_string();
    assert!(error.contains("running statistics"), "{error}");
    assert!(!path.exists(), "nothing half-written");

    let path = dir.path().join("resnet.safetensors");
    save_model(&path, &model).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    // Same length, so the header still parses: one name and one number
    // changed.
    let renamed = replaced(
        &bytes,
        "blocks.1.normalization.running_var",
        "blocks.1.normalization.running_vax",
    );
    let error = retroprop::io::parse_model(&renamed, &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tensor blocks.1.normalization.running_var is missing"),
        "{error}"
    );
    let other_eps = replaced(&bytes, "eps=0.00001", "eps=0.00002");
    let error = retroprop::io::parse_model(&other_eps, &path)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("retroprop.residual") && error.contains("eps"),
        "{error}"
    );
}

/// `bytes` with the first `from` made `to`, of the same length.
fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("`{from}` is in the file"));
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to.as_bytes());
    out
}

/// A checkpoint through a file, as the program keeps it.
fn through_a_file(checkpoint: &Checkpoint, mlp: &Mlp, config: &TrainConfig) -> Checkpoint {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    let model = SavedModel {
        mlp: mlp.clone(),
        params: checkpoint.params.clone(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: config.loss,
        standardizer: None,
    };
    save_checkpoint(&path, &model, &config.optimizer, checkpoint).unwrap();
    let (loaded, _, checkpoint) = load_checkpoint(&path).unwrap();
    assert_eq!(
        loaded.num_batches_tracked,
        if mlp.has_batch_norm() {
            checkpoint.step
        } else {
            0
        }
    );
    checkpoint
}

#[test]
fn a_batch_norm_residual_run_resumes_mid_epoch_bit_for_bit_through_a_file() {
    let (train, validation) = (data(1), data(2));
    for (name, config) in [
        ("plain run", config().epochs(5)),
        (
            "early stopping",
            config()
                .epochs(5)
                .early_stopping(1, 0.0)
                .optimizer(AdamW::default().lr(0.2)),
        ),
    ] {
        let validation = config.early_stopping.map(|_| &validation);
        let mlp = Mlp::residual(spec(Some(NormKind::Batch))).unwrap();
        let mut whole = Trainer::new(mlp.clone(), config.clone()).unwrap();
        let whole_history = whole.fit(&train, validation).unwrap();
        let whole_end = whole.checkpoint().unwrap();

        // 7 steps an epoch: step 10 is inside the second.
        let mut cut = Trainer::new(mlp.clone(), config.clone().max_steps(10)).unwrap();
        assert!(cut.fit(&train, validation).unwrap().cut_mid_epoch, "{name}");
        let saved = through_a_file(&cut.checkpoint().unwrap(), &mlp, &config);
        assert_eq!(saved.buffers.len(), mlp.buffer_count(), "{name}");

        // What a front does with the checkpoint alone: the network too.
        let run = RunRequest {
            epochs: Some(5),
            device: Some(Device::Cpu),
            ..RunRequest::default()
        }
        .resolve(
            &RunRequest::default(),
            Some(Saved {
                checkpoint: &saved,
                standardized: false,
                optimizer_name: "adamw",
            }),
        )
        .unwrap();
        assert_eq!(run.mlp, mlp, "{name}: the checkpoint's network");
        assert!(run.refused.is_empty() && run.steering.is_empty(), "{name}");
        let mut resumed =
            Trainer::with_parameters(run.mlp, saved.params.clone(), run.config).unwrap();
        resumed.restore(&saved).unwrap();
        let history = resumed.fit(&train, validation).unwrap();
        let end = resumed.checkpoint().unwrap();
        assert_eq!(
            bits(&end.params),
            bits(&whole_end.params),
            "{name}: parameters"
        );
        assert_eq!(
            bits(&end.buffers),
            bits(&whole_end.buffers),
            "{name}: running statistics"
        );
        assert_eq!(
            history.best_epoch, whole_history.best_epoch,
            "{name}: the best epoch"
        );
        assert_eq!(end, whole_end, "{name}: the end checkpoints differ");
    }
}

#[test]
fn early_stopping_keeps_the_best_epochs_running_statistics() {
    // Validation rows labelled apart from the training rows' rule: the
    // validation loss turns up while training goes on.
    let train = data(1);
    let validation = {
        let other = data(3);
        let labels: Vec<u32> = (0..other.rows() as u32).map(|i| i % 3).collect();
        Dataset::new(other.x().to_vec(), 4, Targets::Classes(labels)).unwrap()
    };
    let mlp = Mlp::residual(spec(Some(NormKind::Batch))).unwrap();
    let config = config().epochs(12).early_stopping(3, 0.0);
    let mut trainer = Trainer::new(mlp, config).unwrap();
    // After each epoch: its running statistics and predictions.
    let mut epochs = Vec::new();
    let history = trainer
        .fit_between_epochs(
            &train,
            Some(&validation),
            |t, _| {
                let buffers = t.buffers().unwrap();
                epochs.push((buffers, t.predict(validation.x()).unwrap()));
            },
            0,
            |_| Ok(()),
        )
        .unwrap();
    let best = history.best_epoch.expect("a best epoch");
    assert!(
        best < epochs.len(),
        "the test needs a best epoch before the last (best {best} of {})",
        epochs.len()
    );
    let (buffers, predictions) = &epochs[best - 1];
    assert_ne!(
        bits(buffers),
        bits(&epochs.last().unwrap().0),
        "the statistics moved after it"
    );
    assert_eq!(
        bits(&trainer.buffers().unwrap()),
        bits(buffers),
        "the kept running statistics"
    );
    assert_eq!(
        bits(&trainer.predict(validation.x()).unwrap()),
        bits(predictions),
        "the kept model predicts as the best epoch did"
    );
}
