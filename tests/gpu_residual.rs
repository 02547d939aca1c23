//! Residual networks (`Mlp::residual`) trained on the GPU against the CPU
//! reference (itself checked against torch in tests/residual.rs): every
//! parameter, BatchNorm's running statistics, evaluation and prediction,
//! with LayerNorm, BatchNorm and no norm, with dropout, under SGD with
//! momentum and Adam(W); a batch of 2 048 rows into a block 512 wide, so
//! that the normalisations' reductions run at the sizes users reach; and
//! a step that diverges, which keeps the running statistics from before
//! it. Needs a wgpu adapter; on a machine without a GPU install Mesa's
//! software Vulkan: `apt-get install mesa-vulkan-drivers`.

mod common;

use common::{max_rel_error, random, widen};
use retroprop::{
    Activation, Adam, AdamW, Dataset, Device, Error, Loss, Mlp, NormKind, Residual, Sgd, Targets,
    TrainConfig,
};

fn spec(width: usize, hidden: usize, blocks: usize, norm: Option<NormKind>) -> Residual {
    Residual {
        inputs: 6,
        width,
        hidden,
        blocks,
        outputs: 3,
        norm,
        activation: Activation::Relu,
    }
}

/// Three classes from the inputs' first two features.
fn classes(rows: usize, features: usize, seed: u64) -> Dataset {
    let x = random(rows * features, -1.0, 1.0, seed);
    let labels = x
        .chunks(features)
        .map(|r| u32::from(r[0] > 0.0) + u32::from(r[1] > 0.3))
        .collect();
    Dataset::new(x, features, Targets::Classes(labels)).unwrap()
}

/// Relative error of `gpu` against `cpu`, values much smaller than 1e-2
/// compared against that scale (as tests/gpu_training.rs does).
fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tolerance: f64) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let (err, at) = max_rel_error(&widen(gpu), &widen(cpu), 1e-2);
    println!("{what}: max relative error {err:.2e}");
    assert!(
        err < tolerance,
        "{what}: element {at}: gpu {} vs cpu {} (relative error {err:.2e})",
        gpu[at],
        cpu[at]
    );
}

/// Trains `mlp` on both devices with `config` and compares the
/// parameters, running statistics, evaluation and predictions.
fn assert_parity(what: &str, mlp: Mlp, config: TrainConfig, train: &Dataset, min_steps: u64) {
    // The parity tolerance of tests/gpu_training.rs.
    assert_parity_within(what, mlp, config, train, min_steps, 1e-4);
}

fn assert_parity_within(
    what: &str,
    mlp: Mlp,
    config: TrainConfig,
    train: &Dataset,
    min_steps: u64,
    tolerance: f64,
) {
    let mut gpu = common::trainer(mlp.clone(), config.clone(), Device::Gpu);
    let mut cpu = common::trainer(mlp.clone(), config, Device::Cpu);
    gpu.fit(train, None).unwrap();
    cpu.fit(train, None).unwrap();
    assert!(gpu.steps() >= min_steps, "{what}: {} steps", gpu.steps());
    assert_eq!(gpu.steps(), cpu.steps(), "{what}: step counts");
    let (g, c) = (gpu.parameters().unwrap(), cpu.parameters().unwrap());
    assert_close(&format!("{what}: parameters"), &g, &c, tolerance);
    let (gb, cb) = (gpu.buffers().unwrap(), cpu.buffers().unwrap());
    assert_eq!(gb.len(), mlp.buffer_count(), "{what}: buffers");
    assert_close(&format!("{what}: running statistics"), &gb, &cb, tolerance);
    // Evaluation mode: BatchNorm by its running statistics, no dropout.
    let (ge, ce) = (gpu.evaluate(train).unwrap(), cpu.evaluate(train).unwrap());
    let gap = (ge.loss - ce.loss).abs() / ce.loss.abs().max(1e-3);
    assert!(
        gap < tolerance,
        "{what}: evaluation loss gpu {} vs cpu {}",
        ge.loss,
        ce.loss
    );
    let x = &train.x()[..train.features() * 64];
    let (gp, cp) = (gpu.predict(x).unwrap(), cpu.predict(x).unwrap());
    assert_close(&format!("{what}: predictions"), &gp, &cp, tolerance);
}

fn config(batch: usize, epochs: usize) -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .batch_size(batch)
        .epochs(epochs)
        .seed(7)
}

#[test]
fn layer_norm_under_adamw_matches_the_cpu() {
    let mlp = Mlp::residual(spec(16, 32, 3, Some(NormKind::Layer))).unwrap();
    let cfg = config(32, 5).optimizer(AdamW::default().lr(3e-3));
    // 200 rows in batches of 32: a partial last batch of 8.
    assert_parity("layer norm, AdamW", mlp, cfg, &classes(200, 6, 1), 30);
}

#[test]
fn batch_norm_under_sgd_momentum_matches_the_cpu() {
    let mlp = Mlp::residual(spec(16, 32, 3, Some(NormKind::Batch))).unwrap();
    let cfg = config(32, 5).optimizer(Sgd::default().lr(0.05).momentum(0.9));
    assert_parity(
        "batch norm, SGD momentum",
        mlp,
        cfg,
        &classes(200, 6, 2),
        30,
    );
}

#[test]
fn no_norm_under_adam_matches_the_cpu() {
    let mlp = Mlp::residual(spec(16, 24, 2, None)).unwrap();
    let cfg = config(25, 5).optimizer(Adam::default().lr(3e-3));
    assert_parity("no norm, Adam", mlp, cfg, &classes(200, 6, 3), 30);
}

#[test]
fn dropout_in_the_blocks_matches_the_cpu() {
    // BatchNorm under SGD: every path from the input layer's bias to the
    // loss passes the head's BatchNorm, which cancels a constant column,
    // so that gradient is a cancellation's residue on both devices, which
    // Adam's normalisation would blow up to steps of the learning rate.
    let optimizers: [(Option<NormKind>, retroprop::Optimizer); 2] = [
        (Some(NormKind::Layer), AdamW::default().lr(3e-3).into()),
        (
            Some(NormKind::Batch),
            Sgd::default().lr(0.05).momentum(0.9).into(),
        ),
    ];
    for (norm, optimizer) in optimizers {
        let mlp = Mlp::residual(spec(16, 32, 2, norm)).unwrap();
        let cfg = config(40, 5).optimizer(optimizer).dropout(0.2);
        assert_parity(
            &format!("{norm:?} with dropout"),
            mlp,
            cfg,
            &classes(200, 6, 4),
            25,
        );
    }
}

#[test]
fn a_large_batch_into_a_wide_block_matches_the_cpu() {
    // 2 048 rows a batch: BatchNorm's column sums over 8 chunks; 512 wide:
    // LayerNorm's rows over 2 passes of its 256 threads. Sums over 2 048
    // rows, which the devices add in different orders, and BatchNorm's dx
    // (n g − Σ g − x̂ Σ g x̂, a cancellation) differ more than a small
    // batch's (measured here: parameters 1.2e-4, predictions 4.7e-4 after
    // 4 steps). The CPU's products go to OpenBLAS or the built-in GEMM by
    // a timed trial in each process (cpu/gemm/choice.rs), which round
    // differently: in one run of the whole suite the predictions moved
    // 1.02e-3 (parameters 4.2e-4), so the bound is 2e-3.
    for norm in [NormKind::Batch, NormKind::Layer] {
        let mlp = Mlp::residual(spec(512, 64, 1, Some(norm))).unwrap();
        let cfg = config(2048, 2).optimizer(Sgd::default().lr(0.05).momentum(0.9));
        let what = format!("{norm:?}, 2048 × 512");
        assert_parity_within(&what, mlp, cfg, &classes(4096, 6, 5), 4, 2e-3);
    }
}

#[test]
fn a_step_that_diverges_keeps_the_running_statistics() {
    let mlp = Mlp::residual(spec(8, 16, 2, Some(NormKind::Batch))).unwrap();
    let x: Vec<f32> = random(64 * 6, -1.0, 1.0, 6);
    let values: Vec<f32> = x.chunks(6).flat_map(|r| [r[0], r[1], r[2]]).collect();
    let good = Dataset::new(
        x.clone(),
        6,
        Targets::Values {
            values: values.clone(),
            width: 3,
        },
    )
    .unwrap();
    // One row's target of 1e20: its batch's squared error overflows, a few
    // steps into the epoch (where the seeded shuffle puts that row).
    let mut huge = values;
    huge[3 * 33] = 1e20;
    let bad = Dataset::new(
        x,
        6,
        Targets::Values {
            values: huge,
            width: 3,
        },
    )
    .unwrap();
    let cfg = TrainConfig::default()
        .loss(Loss::Mse)
        .batch_size(8)
        .epochs(2)
        .seed(7)
        .optimizer(Sgd::default().lr(0.05).momentum(0.9));
    let mut kept = Vec::new();
    for device in [Device::Gpu, Device::Cpu] {
        let mut trainer = common::trainer(mlp.clone(), cfg.clone(), device);
        trainer.fit(&good, None).unwrap();
        let before = trainer.buffers().unwrap();
        let err = trainer.fit(&bad, None).expect_err("diverges");
        let Error::Diverged { step, .. } = err else {
            panic!("{device}: {err}");
        };
        println!("{device}: diverged at step {step}");
        kept.push((
            step,
            trainer.steps(),
            trainer.parameters().unwrap(),
            trainer.buffers().unwrap(),
            before,
        ));
    }
    let ((g_step, gs, gp, gb, g_before), (c_step, cs, cp, cb, _)) = (&kept[0], &kept[1]);
    assert_eq!(
        (g_step, gs),
        (c_step, cs),
        "the step that diverged, the steps kept"
    );
    assert_eq!(*gs, g_step - 1);
    assert!(
        *g_step > 18,
        "good steps ran before the bad one in its epoch"
    );
    assert!(
        gb.iter().all(|v| v.is_finite()),
        "finite running statistics"
    );
    assert_ne!(gb, g_before, "the good steps of the call moved them");
    assert_close("parameters kept", gp, cp, 1e-4);
    assert_close("running statistics kept", gb, cb, 1e-4);
}
