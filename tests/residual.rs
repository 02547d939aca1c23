//! Residual networks (`Mlp::residual`, rtdl's ResNet) trained on the CPU
//! against torch in float64 from the same parameters and batches: each
//! step's loss and the parameters after the last step, with LayerNorm,
//! BatchNorm (its running statistics and evaluation mode too) and
//! without, under AdamW and SGD with momentum. The expected values are
//! torch's, made by dev/residual_fixtures.py into
//! tests/fixtures/residual.safetensors. Also: what a residual network is
//! refused for so far, by name (its files: tests/residual_files.rs).

mod common;
use common::{Fixture, assert_close_to};
use retroprop::cpu::Network;
use retroprop::{
    Activation, Dataset, Device, Loss, Mlp, NormKind, Optimizer, Residual, TargetBatch, Targets,
    TrainConfig, Trainer,
};
use std::ops::Range;

const BLOCKS: usize = 3;

fn spec(norm: Option<NormKind>) -> Residual {
    Residual {
        inputs: 6,
        width: 8,
        hidden: 16,
        blocks: BLOCKS,
        outputs: 3,
        norm,
        activation: Activation::Relu,
    }
}

/// Each torch tensor's name and where it sits in the flat parameters.
fn torch_names(mlp: &Mlp) -> Vec<(String, Range<usize>)> {
    let mut names = Vec::new();
    let mut dense = |prefix: String, l: usize| {
        names.push((format!("{prefix}.weight"), mlp.weight_range(l)));
        names.push((format!("{prefix}.bias"), mlp.bias_range(l)));
    };
    dense("first_layer".into(), 0);
    for b in 0..BLOCKS {
        dense(format!("blocks.{b}.linear_first"), 1 + 2 * b);
        dense(format!("blocks.{b}.linear_second"), 2 + 2 * b);
    }
    dense("head.linear".into(), 1 + 2 * BLOCKS);
    for n in 0..mlp.norms().len() {
        let prefix = if n < BLOCKS {
            format!("blocks.{n}.normalization")
        } else {
            "head.normalization".into()
        };
        let (gamma, beta) = mlp.norm_ranges(n);
        names.push((format!("{prefix}.weight"), gamma));
        names.push((format!("{prefix}.bias"), beta));
    }
    names
}

fn parameters(f: &Fixture, case: &str, when: &str, mlp: &Mlp) -> Vec<f64> {
    let mut params = vec![f64::NAN; mlp.parameter_count()];
    for (name, range) in torch_names(mlp) {
        params[range].copy_from_slice(&f.values(&format!("{case}.{when}.{name}")));
    }
    assert!(
        params.iter().all(|p| p.is_finite()),
        "every parameter named"
    );
    params
}

/// Within `tolerance` of torch, relative to each tensor's largest value.
/// BatchNorm's backward subtracts nearly equal sums, and Adam divides
/// each gradient by its own scale, so rounding in the 16th digit shows in
/// the 10th of a bias that BatchNorm nearly cancels: 1e-9 there, 1e-10
/// elsewhere.
fn case(name: &str, norm: Option<NormKind>, optimizer: &str) {
    let tolerance = if norm == Some(NormKind::Batch) {
        1e-9
    } else {
        1e-10
    };
    let f = Fixture::load("residual", "dev/residual_fixtures.py");
    let mlp = Mlp::residual(spec(norm)).unwrap();
    let start = parameters(&f, name, "start", &mlp);
    let optimizer: Optimizer = optimizer.parse().unwrap();
    let mut net = Network::new(mlp.clone(), start, optimizer);
    let torch_losses = f.values(&format!("{name}.losses"));
    let mut losses = Vec::new();
    for step in 0..torch_losses.len() {
        let x = f.values(&format!("{name}.x.{step}"));
        let y: Vec<u32> = f
            .values(&format!("{name}.y.{step}"))
            .iter()
            .map(|&c| c as u32)
            .collect();
        losses.push(net.train_step(&x, Loss::CrossEntropy, TargetBatch::Classes(&y)));
    }
    assert_close_to(&format!("{name} losses"), &losses, &torch_losses, 1e-10);
    let end = parameters(&f, name, "end", &mlp);
    for (tensor, range) in torch_names(&mlp) {
        assert_close_to(
            &format!("{name} {tensor}"),
            &net.params()[range.clone()],
            &end[range],
            tolerance,
        );
    }
    if norm == Some(NormKind::Batch) {
        for (n, stats) in net.running_stats().iter().enumerate() {
            let prefix = if n < BLOCKS {
                format!("blocks.{n}.normalization")
            } else {
                "head.normalization".into()
            };
            let end = |what: &str| f.values(&format!("{name}.end.{prefix}.{what}"));
            assert_close_to(
                &format!("{name} {prefix}.running_mean"),
                &stats.mean,
                &end("running_mean"),
                tolerance,
            );
            assert_close_to(
                &format!("{name} {prefix}.running_var"),
                &stats.var,
                &end("running_var"),
                tolerance,
            );
            assert_eq!(stats.batches as f64, end("num_batches_tracked")[0]);
        }
    }
    // Evaluation: BatchNorm by its running statistics, no dropout.
    let y = net.forward(&f.values(&format!("{name}.eval.x"))).to_vec();
    assert_close_to(
        &format!("{name} evaluation"),
        &y,
        &f.values(&format!("{name}.eval.y")),
        1e-10,
    );
}

#[test]
fn a_residual_network_with_layer_norm_trains_as_torchs_under_adamw() {
    case(
        "layer_adamw",
        Some(NormKind::Layer),
        "adamw:lr=0.01,weight_decay=0.01",
    );
}

#[test]
fn a_residual_network_with_layer_norm_trains_as_torchs_under_sgd_with_momentum() {
    case(
        "layer_sgd",
        Some(NormKind::Layer),
        "sgd:lr=0.05,momentum=0.9",
    );
}

#[test]
fn a_residual_network_with_batch_norm_trains_as_torchs_and_moves_its_running_statistics() {
    case(
        "batch_adamw",
        Some(NormKind::Batch),
        "adamw:lr=0.01,weight_decay=0.01",
    );
}

#[test]
fn a_residual_network_without_normalisation_trains_as_torchs() {
    case("none_adamw", None, "adamw:lr=0.01,weight_decay=0.01");
}

/// 60 rows of 6 features; a row's class is its largest of the first three.
fn learnable() -> Dataset {
    let x: Vec<f32> = (0..360).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
    let labels = x
        .chunks(6)
        .map(|r| (0..3).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap() as u32)
        .collect();
    Dataset::new(x, 6, Targets::Classes(labels)).unwrap()
}

#[test]
fn the_trainer_fits_a_residual_network_on_the_cpu_and_auto_chooses_the_cpu() {
    let mlp = Mlp::residual(spec(Some(NormKind::Layer))).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .batch_size(5)
        .epochs(30)
        .dropout(0.1);
    let mut trainer = Trainer::new(mlp.clone(), config.clone().device(Device::Cpu)).unwrap();
    let history = trainer.fit(&learnable(), None).unwrap();
    let (first, last) = (
        history.epochs[0].train_loss,
        history.epochs.last().unwrap().train_loss,
    );
    assert!(last < 0.5 * first, "the loss falls: {first} -> {last}");
    let auto = Trainer::new(mlp, config.epochs(1).device(Device::Auto)).unwrap();
    assert!(auto.device_name().contains("cpu"), "{}", auto.device_name());
}

#[test]
fn a_residual_network_without_blocks_is_refused_by_name() {
    let bad = Mlp::residual(Residual {
        blocks: 0,
        ..spec(None)
    })
    .err()
    .unwrap()
    .to_string();
    assert!(bad.contains("at least one block"), "{bad}");
}
