//! TabM's whole network on the CPU (src/model/tabm.rs, src/cpu/sequence.rs,
//! src/cpu/members_layers.rs) against the `tabm` package in float64, for
//! each architecture: from the package's own initial `state_dict`, the
//! first step's loss (the mean of the members' losses) and every
//! parameter's gradient, the parameters after three AdamW steps, and the
//! ensemble's prediction (the mean of the members' probabilities or
//! outputs). The expected values are the package's, made by
//! dev/tabm_fixtures.py into tests/fixtures/tabm.safetensors; the
//! tensors are found by the names `Mlp::tabm_tensors` gives, so the names
//! and shapes are checked too.

mod common;
use common::{Fixture, assert_close_to};
use retroprop::cpu::Network;
use retroprop::embedding::{Embedding, Periodic};
use retroprop::model::{EnsembleMean, Tabm, TabmArch};
use retroprop::{Activation, AdamW, Loss, Mlp, TargetBatch};

struct Case {
    name: &'static str,
    arch: TabmArch,
    k: usize,
    sizes: &'static [usize],
    classes: bool,
    /// A periodic embedding's d, frequencies, σ and whether lite.
    embedding: Option<(usize, usize, f64, bool)>,
}

fn network(case: &Case) -> Mlp {
    let plain = Mlp::new(case.sizes, Activation::Relu, Activation::Identity).unwrap();
    let mean = if case.classes {
        EnsembleMean::Probabilities
    } else {
        EnsembleMean::Values
    };
    let embedding = case.embedding.map(|(d, frequencies, sigma, lite)| {
        let periodic = Periodic::default()
            .n_frequencies(frequencies)
            .frequency_init_scale(sigma)
            .lite(lite);
        Embedding::periodic(case.sizes[0], d, periodic).unwrap()
    });
    let spec = Tabm {
        embedding,
        ..Tabm::new(case.k, case.arch, mean)
    };
    Mlp::tabm(&plain, spec).unwrap()
}

/// The flat parameters of the fixture's `state_dict` under `prefix`,
/// each tensor's shape checked against ours.
fn parameters(f: &Fixture, mlp: &Mlp, prefix: &str) -> Vec<f64> {
    let mut params = vec![f64::NAN; mlp.parameter_count()];
    for tensor in mlp.tabm_tensors() {
        let (values, shape) = f.get(&format!("{prefix}.{}", tensor.name));
        assert_eq!(shape, tensor.shape, "{prefix}.{}: shape", tensor.name);
        params[tensor.range].copy_from_slice(&values);
    }
    assert!(
        params.iter().all(|p| !p.is_nan()),
        "{prefix}: every parameter named"
    );
    params
}

fn run(case: Case) {
    let f = Fixture::load("tabm", "dev/tabm_fixtures.py");
    let name = case.name;
    let mlp = network(&case);
    let params = parameters(&f, &mlp, &format!("{name}.init"));
    let optimizer = AdamW::default().lr(2e-3).weight_decay(3e-4).into();
    let mut net = Network::new(mlp.clone(), params, optimizer);
    let x = f.values(&format!("{name}.x"));
    let y = f.values(&format!("{name}.y"));
    let classes: Vec<u32> = y.iter().map(|&c| c as u32).collect();
    let values: Vec<f32> = y.iter().map(|&v| v as f32).collect();
    let (loss, targets) = if case.classes {
        (Loss::CrossEntropy, TargetBatch::Classes(&classes))
    } else {
        (Loss::Mse, TargetBatch::Values(&values))
    };
    let close = |what: &str, ours: &[f64], theirs: &[f64], tolerance: f64| {
        assert_close_to(&format!("{name} {what}"), ours, theirs, tolerance)
    };
    for step in 0..3 {
        let value = net.loss_and_gradients(&x, loss, targets);
        if step == 0 {
            close("loss", &[value], &f.values(&format!("{name}.loss")), 1e-12);
            for tensor in mlp.tabm_tensors() {
                let theirs = f.values(&format!("{name}.grad.{}", tensor.name));
                let what = format!("gradient of {}", tensor.name);
                close(&what, &net.grads()[tensor.range], &theirs, 1e-10);
            }
        }
        net.update(None);
    }
    let after = parameters(&f, &mlp, &format!("{name}.after"));
    close("parameters after 3 AdamW steps", net.params(), &after, 1e-9);
    let out = net.forward(&x).to_vec();
    let prediction = if case.classes {
        let width = mlp.outputs();
        out.chunks_exact(width)
            .flat_map(|row| {
                let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
                row.iter().map(move |v| (v - max).exp() / sum)
            })
            .collect()
    } else {
        out
    };
    close(
        "prediction",
        &prediction,
        &f.values(&format!("{name}.prediction")),
        1e-9,
    );
}

#[test]
fn tabm_learns_as_the_package_does() {
    run(Case {
        name: "tabm",
        arch: TabmArch::Tabm,
        k: 4,
        sizes: &[5, 16, 16, 3],
        classes: true,
        embedding: None,
    });
}

#[test]
fn tabm_mini_learns_as_the_package_does() {
    run(Case {
        name: "mini",
        arch: TabmArch::Mini,
        k: 3,
        sizes: &[6, 8, 8, 8, 4],
        classes: true,
        embedding: None,
    });
}

#[test]
fn tabm_packed_learns_as_the_package_does() {
    run(Case {
        name: "packed",
        arch: TabmArch::Packed,
        k: 5,
        sizes: &[4, 12, 12, 2],
        classes: false,
        embedding: None,
    });
}

#[test]
fn tabm_regression_of_eight_members_learns_as_the_package_does() {
    run(Case {
        name: "tabm_regression",
        arch: TabmArch::Tabm,
        k: 8,
        sizes: &[7, 32, 1],
        classes: false,
        embedding: None,
    });
}

#[test]
fn tabm_with_periodic_embeddings_learns_as_the_package_does() {
    run(Case {
        name: "plr",
        arch: TabmArch::Tabm,
        k: 4,
        sizes: &[3, 16, 16, 3],
        classes: true,
        embedding: Some((8, 5, 0.3, false)),
    });
    run(Case {
        name: "plr_lite_mini",
        arch: TabmArch::Mini,
        k: 3,
        sizes: &[4, 8, 8, 1],
        classes: false,
        embedding: Some((6, 4, 0.2, true)),
    });
}

mod runs {
    use super::common;
    use retroprop::checkpoint::Checkpoint;
    use retroprop::io::{SavedModel, load_checkpoint, save_checkpoint};
    use retroprop::model::{EnsembleMean, Tabm, TabmArch};
    use retroprop::train::{Device, RunRequest, Saved};
    use retroprop::{Activation, AdamW, Dataset, Loss, Mlp, Targets, TrainConfig, Trainer};

    fn data(seed: u64) -> Dataset {
        let x = common::random(4 * 60, -1.0, 1.0, seed);
        let labels = (x.chunks(4))
            .map(|r| u32::from(r[0] + r[1] > 0.3) + u32::from(r[2] > r[3]))
            .collect();
        Dataset::new(x, 4, Targets::Classes(labels)).unwrap()
    }

    fn tabm(arch: TabmArch) -> Mlp {
        let plain = Mlp::new(&[4, 16, 16, 3], Activation::Relu, Activation::Identity).unwrap();
        Mlp::tabm(&plain, Tabm::new(5, arch, EnsembleMean::Probabilities)).unwrap()
    }

    fn config() -> TrainConfig {
        TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(AdamW::default().lr(0.01).weight_decay(3e-4))
            .batch_size(16)
            .dropout(0.1)
            .seed(3)
            .epochs(4)
            .device(Device::Cpu)
    }

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
        load_checkpoint(&path).unwrap().2
    }

    fn saved(checkpoint: &Checkpoint) -> Saved<'_> {
        Saved {
            checkpoint,
            standardized: false,
            optimizer_name: "adamw",
        }
    }

    /// Each architecture with dropout, cut mid-epoch into a checkpoint
    /// file and resumed from the file alone: the same bits as the run
    /// that was not cut; the resumed network is the checkpoint's TabM;
    /// a resume that names other members is refused by name.
    #[test]
    fn a_tabm_run_resumes_mid_epoch_bit_for_bit_through_a_file() {
        let train = data(1);
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            let mlp = tabm(arch);
            let mut whole = Trainer::new(mlp.clone(), config()).unwrap();
            whole.fit(&train, None).unwrap();
            let whole_end = whole.checkpoint().unwrap();

            // 4 steps an epoch: step 6 is inside the second.
            let mut cut = Trainer::new(mlp.clone(), config().max_steps(6)).unwrap();
            assert!(cut.fit(&train, None).unwrap().cut_mid_epoch, "{arch}");
            let checkpoint = through_a_file(&cut.checkpoint().unwrap(), &mlp, &config());
            let given = RunRequest {
                epochs: Some(4),
                device: Some(Device::Cpu),
                ..RunRequest::default()
            };
            let run = (given.resolve(&RunRequest::default(), Some(saved(&checkpoint)))).unwrap();
            assert_eq!(run.mlp, mlp, "{arch}: the checkpoint's network");
            assert!(run.refused.is_empty(), "{arch}: {:?}", run.refused);
            let mut resumed =
                Trainer::with_parameters(run.mlp, checkpoint.params.clone(), run.config).unwrap();
            resumed.restore(&checkpoint).unwrap();
            resumed.fit(&train, None).unwrap();
            let end = resumed.checkpoint().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&end.params), bits(&whole_end.params), "{arch}");

            let other = RunRequest {
                tabm: Some(Tabm::new(7, arch, EnsembleMean::Probabilities)),
                ..RunRequest::default()
            };
            let run = other
                .resolve(&RunRequest::default(), Some(saved(&checkpoint)))
                .unwrap();
            let refusal = run
                .refusal()
                .expect("other members are refused")
                .to_string();
            assert!(refusal.contains("tabm 5 members"), "{refusal}");
        }
    }

    /// The members learn: on held-out rows the ensemble's accuracy is well
    /// past chance, and its validation loss is the ensemble's (finite).
    #[test]
    fn the_ensemble_learns_and_is_evaluated_as_one_network() {
        let (train, validation) = (data(1), data(2));
        let mut trainer = Trainer::new(tabm(TabmArch::Tabm), config().epochs(40)).unwrap();
        let history = trainer.fit(&train, Some(&validation)).unwrap();
        let last = history.epochs.last().unwrap();
        let validation = last.validation.unwrap();
        let accuracy = validation.accuracy.unwrap();
        assert!(accuracy > 0.75, "accuracy {accuracy}");
        assert!(validation.loss.is_finite());
    }
}
