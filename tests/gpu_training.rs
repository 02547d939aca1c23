//! Whole training runs on the GPU against the CPU reference: every
//! parameter after 50+ steps, for every optimizer and loss and a deep net;
//! and what a trainer promises on any backend (repeatable runs, parameters
//! that can be replaced, dropout, layer norms), run on each
//! (`<test>::cpu`, `<test>::gpu`). Needs a wgpu adapter; on a machine
//! without a GPU install Mesa's software Vulkan: `apt-get install
//! mesa-vulkan-drivers`.

mod common;

use common::{Backend, backend_tests, max_rel_error, random, widen};
use retroprop::{
    Activation, Adagrad, Adam, AdamW, Dataset, Device, Init, Loss, Mlp, Optimizer, RmsProp, Sgd,
    Targets, TrainConfig, Trainer,
};

/// A small regression or classification set for `loss` with `outputs`.
fn data(loss: Loss, rows: usize, features: usize, outputs: usize, seed: u64) -> Dataset {
    let x = random(rows * features, -1.0, 1.0, seed);
    let targets = match loss {
        Loss::CrossEntropy => Targets::Classes(
            x.chunks(features)
                .map(|r| ((r[0] + 1.0) * outputs as f32 / 2.0).min(outputs as f32 - 1.0) as u32)
                .collect(),
        ),
        Loss::BceWithLogits => Targets::Values {
            values: x
                .chunks(features)
                .flat_map(|r| (0..outputs).map(move |j| (r[j % features] > 0.0) as u8 as f32))
                .collect(),
            width: outputs,
        },
        _ => Targets::Values {
            values: x
                .chunks(features)
                .flat_map(|r| (0..outputs).map(move |j| r[j % features] * r[0]))
                .collect(),
            width: outputs,
        },
    };
    Dataset::new(x, features, targets).unwrap()
}

/// Trains the same network on both backends and compares every parameter.
fn assert_parity(what: &str, mlp: Mlp, config: TrainConfig, train: &Dataset, min_steps: u64) {
    let mut gpu = common::trainer(mlp.clone(), config.clone(), Device::Gpu);
    let mut cpu = common::trainer(mlp, config, Device::Cpu);
    let gpu_history = gpu.fit(train, None).unwrap();
    let cpu_history = cpu.fit(train, None).unwrap();
    assert!(
        gpu.steps() >= min_steps,
        "{what}: only {} steps",
        gpu.steps()
    );
    assert_eq!(gpu.steps(), cpu.steps(), "{what}: step counts differ");
    let (g, c) = (gpu.parameters().unwrap(), cpu.parameters().unwrap());
    // Parameters much smaller than the weights' scale (0.01) are compared
    // against that scale.
    let (err, at) = max_rel_error(&widen(&g), &widen(&c), 1e-2);
    let (gpu_loss, cpu_loss) = (
        gpu_history.epochs.last().unwrap().train_loss,
        cpu_history.epochs.last().unwrap().train_loss,
    );
    let loss_gap = (gpu_loss - cpu_loss).abs() / cpu_loss.abs().max(1e-3);
    println!(
        "{what}: {} steps, max parameter relative error {err:.2e}, final loss relative gap {loss_gap:.2e}",
        gpu.steps()
    );
    assert!(
        err < 1e-4,
        "{what}: parameter {at}: gpu {} vs cpu {} (relative error {err:.2e})",
        g[at],
        c[at]
    );
    // The last epoch's loss is the mean of its batches' f32 losses, each a
    // sum of at most 128 terms (rows × outputs) that the backends add in a
    // different order: at worst n·u = 128 · 2⁻²⁴ ≈ 7.7e-6 apart, relative
    // (a loss trained to near zero is compared at 1e-3). Measured: at most
    // 1.2e-7 over every run in this file.
    assert!(
        loss_gap < 1e-5,
        "{what}: last epoch's loss: gpu {gpu_loss} vs cpu {cpu_loss} (relative gap {loss_gap:.2e})"
    );
}

fn optimizers() -> Vec<Optimizer> {
    vec![
        Sgd::default().lr(0.05).into(),
        Sgd::default()
            .lr(0.05)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(1e-3)
            .into(),
        Sgd::default().lr(0.05).momentum(0.8).dampening(0.2).into(),
        Adam::default().lr(3e-3).into(),
        Adam::default()
            .lr(3e-3)
            .amsgrad(true)
            .weight_decay(1e-3)
            .into(),
        AdamW::default().lr(3e-3).into(),
        RmsProp::default()
            .lr(1e-3)
            .momentum(0.5)
            .centered(true)
            .into(),
        RmsProp::default().lr(1e-3).into(),
        Adagrad::default()
            .lr(0.05)
            .lr_decay(0.01)
            .initial_accumulator_value(0.1)
            .into(),
    ]
}

#[test]
fn every_optimizer_matches_cpu_after_60_steps() {
    let train = data(Loss::Mse, 100, 5, 3, 1);
    for optimizer in optimizers() {
        let mlp = Mlp::new(&[5, 16, 3], Activation::Tanh, Activation::Identity).unwrap();
        // 100 rows in batches of 32: three full batches and a partial one.
        let config = TrainConfig::default()
            .loss(Loss::Mse)
            .optimizer(optimizer)
            .batch_size(32)
            .epochs(15)
            .seed(3);
        assert_parity(&format!("{optimizer:?}"), mlp, config, &train, 60);
    }
}

#[test]
fn every_loss_matches_cpu_after_60_steps() {
    for loss in Loss::ALL {
        let train = data(loss, 96, 6, 4, 2);
        let mlp = Mlp::new(&[6, 12, 4], Activation::Gelu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(loss)
            .optimizer(Adam::default().lr(3e-3))
            .batch_size(16)
            .epochs(10)
            .seed(4);
        assert_parity(&format!("{loss}"), mlp, config, &train, 60);
    }
}

#[test]
fn deep_network_with_every_activation_matches_cpu() {
    let train = data(Loss::CrossEntropy, 80, 7, 5, 3);
    let activations = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Gelu,
        Activation::LEAKY_RELU,
        Activation::Sigmoid,
        Activation::GeluTanh,
        Activation::Identity,
    ];
    let mlp = Mlp::with_activations(&[7, 33, 17, 65, 9, 20, 11, 5], &activations).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.05).momentum(0.9))
        .batch_size(8)
        .epochs(6)
        .init(Init::KaimingUniform)
        .seed(5);
    assert_parity("7-layer net", mlp, config, &train, 60);
}

#[test]
fn batches_of_a_few_rows_match_cpu_with_dropout() {
    // Batches of 1 and 5 rows: on a CPU adapter the forward and input
    // gradient products take the one-row-of-threads tiling
    // (`MatmulTiling::texture_short`), the weight gradients the default.
    let train = data(Loss::CrossEntropy, 30, 9, 4, 21);
    let mlp = Mlp::new(&[9, 40, 24, 4], Activation::Relu, Activation::Identity).unwrap();
    for batch in [1, 5] {
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(3e-3))
            .batch_size(batch)
            .epochs(2)
            .dropout(0.2)
            .seed(4);
        let what = format!("batches of {batch} with dropout");
        assert_parity(&what, mlp.clone(), config, &train, 12);
    }
}

#[test]
fn full_batch_and_stochastic_descent_match_cpu() {
    let train = data(Loss::HalfMse, 50, 3, 2, 4);
    let mlp = Mlp::new(&[3, 8, 2], Activation::Sigmoid, Activation::Identity).unwrap();
    let base = TrainConfig::default()
        .loss(Loss::HalfMse)
        .optimizer(Sgd::default().lr(0.1))
        .seed(6);
    assert_parity(
        "full batch",
        mlp.clone(),
        base.clone().full_batch().epochs(60),
        &train,
        60,
    );
    assert_parity(
        "stochastic",
        mlp,
        base.stochastic().epochs(2).shuffle(false),
        &train,
        60,
    );
}

backend_tests! {
    fn runs_are_bit_identical(device: Device) {
        let train = data(Loss::CrossEntropy, 200, 8, 4, 5);
        let run = || {
            let mlp = Mlp::new(&[8, 32, 32, 4], Activation::Relu, Activation::Identity).unwrap();
            let config = TrainConfig::default()
                .loss(Loss::CrossEntropy)
                .optimizer(Adam::default())
                .batch_size(32)
                .epochs(5)
                .seed(9);
            let mut trainer = common::trainer(mlp, config, device);
            let history = trainer.fit(&train, None).unwrap();
            (
                trainer.parameters().unwrap(),
                history.epochs.last().unwrap().train_loss,
            )
        };
        let (first, first_loss) = run();
        let (second, second_loss) = run();
        assert_eq!(
            first_loss.to_bits(),
            second_loss.to_bits(),
            "losses differ: {first_loss} vs {second_loss}"
        );
        let differing = first
            .iter()
            .zip(&second)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing,
            0,
            "{differing} of {} parameters differ between two runs",
            first.len()
        );
    }

    fn set_parameters_replaces_what_the_trainer_predicts_and_trains_from(device: Device) {
        use retroprop::cpu::Network;
        let mlp = Mlp::new(&[3, 5, 2], Activation::Tanh, Activation::Identity).unwrap();
        let train = data(Loss::Mse, 12, 3, 2, 10);
        // Plain SGD keeps no state, full batches in a fixed order: an epoch
        // depends on nothing but the parameters it starts from.
        let config = TrainConfig::default()
            .loss(Loss::Mse)
            .optimizer(Sgd::default().lr(0.1))
            .full_batch()
            .shuffle(false)
            .epochs(2);
        let mut trainer = common::trainer(mlp.clone(), config.clone(), device);
        trainer.fit(&train, None).unwrap();
        let values = random(mlp.parameter_count(), -1.0, 1.0, 8);
        trainer.set_parameters(&values).unwrap();
        // Predictions are those of the new parameters (against the f64
        // reference's forward pass) ...
        let x = random(3 * 7, -1.0, 1.0, 9);
        let got = trainer.predict(&x).unwrap();
        let mut reference = Network::<f64>::new(mlp.clone(), widen(&values), Sgd::default().into());
        let expected: Vec<f32> = reference.forward(&widen(&x)).iter().map(|&v| v as f32).collect();
        common::assert_agree(
            "predictions",
            ("trainer", &got),
            ("f64 reference", &expected),
            1e-5,
            1e-3,
        );
        // ... and training goes on from them as a trainer built with them does.
        trainer.fit(&train, None).unwrap();
        let mut fresh = common::trainer_with(mlp, values, config, device);
        fresh.fit(&train, None).unwrap();
        let bits = |p: Vec<f32>| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(trainer.parameters().unwrap()),
            bits(fresh.parameters().unwrap()),
            "two epochs after set_parameters vs two epochs from the same parameters"
        );
    }
}

#[test]
fn evaluation_matches_cpu() {
    for loss in Loss::ALL {
        let set = data(loss, 300, 4, 3, 6);
        let mlp = Mlp::new(&[4, 6, 3], Activation::Relu, Activation::Identity).unwrap();
        let params = mlp.init(Init::TorchDefault, 1);
        let config = TrainConfig::default().loss(loss).batch_size(64);
        let mut gpu =
            common::trainer_with(mlp.clone(), params.clone(), config.clone(), Device::Gpu);
        let mut cpu = common::trainer_with(mlp, params, config, Device::Cpu);
        let (g, c) = (gpu.evaluate(&set).unwrap(), cpu.evaluate(&set).unwrap());
        assert!(
            (g.loss - c.loss).abs() < 1e-5 * c.loss.abs().max(1.0),
            "{loss}: loss gpu {} vs cpu {}",
            g.loss,
            c.loss
        );
        assert_eq!(g.accuracy, c.accuracy, "{loss}: accuracy");
    }
}

#[test]
fn gradient_clipping_matches_cpu() {
    let train = data(Loss::Mse, 64, 4, 2, 7);
    for (what, config) in [
        ("clip by norm", TrainConfig::default().clip_grad_norm(0.05)),
        (
            "clip by value",
            TrainConfig::default().clip_grad_value(0.01),
        ),
    ] {
        let mlp = Mlp::new(&[4, 16, 2], Activation::Tanh, Activation::Identity).unwrap();
        let config = config
            .loss(Loss::Mse)
            .optimizer(Sgd::default().lr(0.5).momentum(0.9))
            .batch_size(16)
            .epochs(15)
            .seed(2);
        assert_parity(what, mlp, config, &train, 60);
    }
}

#[test]
fn micro_batches_past_the_pass_limit_match_the_unsplit_cpu_run() {
    // Batches of 32 split into passes of at most 7 rows (5 passes, the last
    // of 4), and full-batch descent over 150 rows in passes of 64: the GPU
    // accumulates the passes' gradients into one step; the CPU runs unsplit.
    let train = data(Loss::CrossEntropy, 150, 5, 3, 8);
    let mlp = Mlp::new(&[5, 12, 3], Activation::Relu, Activation::Identity).unwrap();
    let base = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(1e-2))
        .seed(4);
    let split = |config: TrainConfig, rows| config.max_rows_per_pass(rows);
    let gpu_split = |config: TrainConfig, rows: usize| -> Vec<f32> {
        let mut t = common::trainer(mlp.clone(), split(config, rows), Device::Gpu);
        t.fit(&train, None).unwrap();
        t.parameters().unwrap()
    };
    let cpu = |config: TrainConfig| -> Vec<f32> {
        let mut t = common::trainer(mlp.clone(), config, Device::Cpu);
        t.fit(&train, None).unwrap();
        t.parameters().unwrap()
    };
    for (what, config, rows) in [
        (
            "mini-batches of 32 in passes of 7",
            base.clone().batch_size(32).epochs(12),
            7,
        ),
        (
            "full batch of 150 in passes of 64",
            base.clone().full_batch().epochs(60),
            64,
        ),
    ] {
        let (g, c) = (gpu_split(config.clone(), rows), cpu(config));
        let (err, at) = max_rel_error(&widen(&g), &widen(&c), 1e-2);
        println!("{what}: max parameter relative error {err:.2e}");
        assert!(
            err < 1e-4,
            "{what}: parameter {at}: gpu {} vs cpu {} ({err:.1e})",
            g[at],
            c[at]
        );
    }
    // Evaluation and prediction over 150 rows in chunks of 7 (outputs are
    // of size ~1: near-zero ones are compared at that scale).
    let params = mlp.init(Init::TorchDefault, 3);
    let mut gpu = common::trainer_with(
        mlp.clone(),
        params.clone(),
        split(base.clone(), 7),
        Device::Gpu,
    );
    let mut cpu = common::trainer_with(mlp.clone(), params, base, Device::Cpu);
    let (ge, ce) = (gpu.evaluate(&train).unwrap(), cpu.evaluate(&train).unwrap());
    assert!(
        (ge.loss - ce.loss).abs() < 1e-5,
        "chunked evaluation: {} vs {}",
        ge.loss,
        ce.loss
    );
    assert_eq!(ge.accuracy, ce.accuracy);
    common::assert_close(
        "chunked prediction",
        &gpu.predict(train.x()).unwrap(),
        &cpu.predict(train.x()).unwrap(),
        1e-5,
        1e-2,
    );
}

#[test]
fn data_larger_than_one_binding_is_streamed_with_the_same_result() {
    // 150 rows × 5 features = 3000 bytes of inputs against a binding limit
    // of 1000 bytes: the data stays in host memory, and each pass (at most
    // 1000 / (4 · 12) = 20 rows) is gathered and written in turn.
    let train = data(Loss::Mse, 150, 5, 2, 9);
    let mlp = Mlp::new(&[5, 12, 2], Activation::Tanh, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::Mse)
        .optimizer(Sgd::default().lr(0.1).momentum(0.9))
        .batch_size(32)
        .epochs(10)
        .seed(5);
    let mut gpu = common::trainer(
        mlp.clone(),
        config.clone().max_binding_bytes(1000),
        Device::Gpu,
    );
    let mut cpu = common::trainer(mlp, config, Device::Cpu);
    let (gh, ch) = (
        gpu.fit(&train, None).unwrap(),
        cpu.fit(&train, None).unwrap(),
    );
    let (g, c) = (gpu.parameters().unwrap(), cpu.parameters().unwrap());
    let (err, at) = max_rel_error(&widen(&g), &widen(&c), 1e-2);
    println!("streamed: max parameter relative error {err:.2e}");
    assert!(
        err < 1e-4,
        "parameter {at}: gpu {} vs cpu {} ({err:.1e})",
        g[at],
        c[at]
    );
    let (gl, cl) = (
        gh.epochs.last().unwrap().train_loss,
        ch.epochs.last().unwrap().train_loss,
    );
    assert!(
        (gl - cl).abs() < 1e-5 * cl.max(1e-3),
        "epoch loss {gl} vs {cl}"
    );
    assert!(
        gpu.memory_bytes() < 100_000,
        "streamed data should not be on the device: {} bytes",
        gpu.memory_bytes()
    );
}

/// The network, data, initial parameters and configuration of the layer
/// norm tests: full-batch SGD with clipping, 4 steps.
fn layer_norms_setup() -> (Mlp, Dataset, Vec<f32>, TrainConfig) {
    let train = data(Loss::CrossEntropy, 40, 4, 3, 10);
    let mlp = Mlp::new(&[4, 9, 7, 3], Activation::Tanh, Activation::Identity).unwrap();
    let init = mlp.init(Init::XavierUniform, 5);
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.1))
        .full_batch()
        .epochs(4)
        .norms_every(2)
        .clip_grad_norm(0.5);
    (mlp, train, init, config)
}

/// The layer norms a run of `layer_norms_setup` records on `device`.
fn sampled_layer_norms(device: Device, every: u64) -> Vec<retroprop::LayerNorms> {
    let (mlp, train, init, config) = layer_norms_setup();
    let mut t = common::trainer_with(mlp, init, config.norms_every(every), device);
    let history = t.fit(&train, None).unwrap();
    history
        .epochs
        .iter()
        .flat_map(|e| e.layer_norms.clone())
        .collect()
}

backend_tests! {
    fn layer_norms_match_the_f64_reference_and_are_sampled_as_asked(device: Device) {
        use retroprop::TargetBatch;
        use retroprop::cpu::Network;
        let (mlp, train, init, _) = layer_norms_setup();
        // Step 1 by hand, in f64: gradient of the full batch at the initial
        // parameters, and the parameters' norms.
        let mut net = Network::<f64>::new(mlp.clone(), widen(&init), Sgd::default().into());
        let labels = match train.targets() {
            Targets::Classes(l) => l.clone(),
            _ => unreachable!(),
        };
        net.loss_and_gradients(
            &widen(train.x()),
            Loss::CrossEntropy,
            TargetBatch::Classes(&labels),
        );
        let norm = |v: &[f64], l: usize| {
            let sq = |r: std::ops::Range<usize>| v[r].iter().map(|x| x * x).sum::<f64>();
            (sq(mlp.weight_range(l)) + sq(mlp.bias_range(l))).sqrt()
        };
        let norms = sampled_layer_norms(device, 1);
        assert_eq!(norms.len(), 4 * 3, "{device}: 4 steps × 3 layers");
        for (l, &first) in norms.iter().take(3).enumerate() {
            assert_eq!((first.step, first.layer), (1, l));
            let (g, w) = (norm(net.grads(), l), norm(net.params(), l));
            assert!(
                (first.grad_norm - g).abs() < 1e-5 * g,
                "{device}: layer {l} gradient norm {} vs {g}",
                first.grad_norm
            );
            assert!(
                (first.weight_norm - w).abs() < 1e-5 * w,
                "{device}: layer {l} weight norm {} vs {w}",
                first.weight_norm
            );
        }
        // Every second step only.
        let steps: Vec<u64> = sampled_layer_norms(device, 2)
            .iter()
            .map(|n| n.step)
            .collect();
        assert_eq!(steps, [2, 2, 2, 4, 4, 4]);
    }
}

#[test]
fn layer_norms_match_cpu() {
    let cpu = sampled_layer_norms(Device::Cpu, 1);
    let gpu = sampled_layer_norms(Device::Gpu, 1);
    assert_eq!(cpu.len(), gpu.len(), "number of samples");
    for (c, g) in cpu.iter().zip(&gpu) {
        assert_eq!((c.step, c.layer), (g.step, g.layer));
        assert!(
            (c.grad_norm - g.grad_norm).abs() < 1e-4 * c.grad_norm,
            "step {} layer {}: {c:?} vs {g:?}",
            c.step,
            c.layer
        );
        assert!((c.weight_norm - g.weight_norm).abs() < 1e-5 * c.weight_norm);
    }
}

/// The network, data and configuration of the dropout tests.
fn dropout_setup() -> (Mlp, Dataset, TrainConfig) {
    let train = data(Loss::CrossEntropy, 96, 6, 3, 11);
    let mlp = Mlp::new(&[6, 32, 16, 3], Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(3e-3))
        .batch_size(24)
        .epochs(6)
        .dropout(0.3)
        .seed(12);
    (mlp, train, config)
}

#[test]
fn dropout_matches_cpu() {
    let (mlp, train, config) = dropout_setup();
    // The same masks on both backends (a counter-based hash), also when a
    // batch is split into passes of 10 rows.
    assert_parity("dropout 0.3", mlp.clone(), config.clone(), &train, 20);
    assert_parity(
        "dropout 0.3 in passes of 10",
        mlp.clone(),
        config.clone().max_rows_per_pass(10),
        &train,
        20,
    );
    // Evaluation, with dropout off, is equal on both backends.
    let mut gpu = common::trainer(mlp.clone(), config.clone(), Device::Gpu);
    gpu.fit(&train, None).unwrap();
    let params = gpu.parameters().unwrap();
    let mut cpu = common::trainer_with(mlp, params, config, Device::Cpu);
    let (g, c) = (gpu.evaluate(&train).unwrap(), cpu.evaluate(&train).unwrap());
    assert!(
        (g.loss - c.loss).abs() < 1e-5,
        "evaluation with dropout off: gpu {} vs cpu {}",
        g.loss,
        c.loss
    );
}

backend_tests! {
    fn dropout_changes_training_but_not_evaluation(device: Device) {
        let (mlp, train, config) = dropout_setup();
        let run = |config: TrainConfig| {
            let mut t = common::trainer(mlp.clone(), config, device);
            t.fit(&train, None).unwrap();
            t
        };
        let mut with = run(config.clone());
        let without = run(config.clone().dropout(0.0)).parameters().unwrap();
        assert_ne!(
            with.parameters().unwrap(),
            without,
            "dropout made no difference"
        );
        // Evaluation and prediction are deterministic, and the same as with
        // no dropout configured at all.
        let params = with.parameters().unwrap();
        let mut off = common::trainer_with(mlp.clone(), params, config.dropout(0.0), device);
        let (a, b, c) = (
            with.evaluate(&train).unwrap(),
            with.evaluate(&train).unwrap(),
            off.evaluate(&train).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a, c, "evaluation with dropout configured vs none");
        let (p, q) = (
            with.predict(train.x()).unwrap(),
            off.predict(train.x()).unwrap(),
        );
        assert_eq!(p, q, "prediction with dropout configured vs none");
    }
}

backend_tests! {
    fn dropout_drops_the_stated_fraction_with_inverted_scaling(backend: Backend) {
        use retroprop::cpu::Network;
        use retroprop::{DropoutRates, TargetBatch};
        // An identity hidden layer of 1000 units on one row x = 1, y = 1: A₁ = Z₁
        // = 1 where kept. One step of SGD at lr 1 from zero output weights
        // (ŷ = 0, dL/dŷ = 2 (ŷ − 1) = −2) sets W₁[j] = −lr · dW₁[j] = 2 A₁[j]
        // and b₁ = 2, and leaves layer 0 alone (dA₁ = W₁ᵀ dZ₂ = 0): the
        // hidden outputs of that step, dropped ones 0, read back from W₁.
        let mlp = Mlp::new(&[1, 1000, 1], Activation::Identity, Activation::Identity).unwrap();
        let mut params = vec![0f32; mlp.parameter_count()];
        params[mlp.weight_range(0)].fill(1.0);
        let sgd = Sgd::default().lr(1.0);
        let (stepped, prediction) = match backend {
            Backend::F64 => {
                let mut net = Network::<f64>::new(mlp.clone(), widen(&params), sgd.into());
                net.set_dropout(&DropoutRates::Hidden(0.25).per_layer(2), 7);
                net.train_step(&[1.0], Loss::Mse, TargetBatch::Values(&[1.0]));
                let stepped = net.params().to_vec();
                (stepped, net.forward(&[1.0])[0])
            }
            Backend::F32(device) => {
                let one = Targets::Values {
                    values: vec![1.0],
                    width: 1,
                };
                let row = Dataset::new(vec![1.0], 1, one).unwrap();
                // The setter under test: dropout after every hidden layer.
                let config = TrainConfig::default()
                    .loss(Loss::Mse)
                    .optimizer(sgd)
                    .dropout(0.25)
                    .full_batch()
                    .epochs(1)
                    .seed(7);
                let mut trainer = common::trainer_with(mlp.clone(), params, config, device);
                trainer.fit(&row, None).unwrap();
                let stepped = widen(&trainer.parameters().unwrap());
                (stepped, trainer.predict(&[1.0]).unwrap()[0] as f64)
            }
        };
        let a: Vec<f64> = stepped[mlp.weight_range(1)].iter().map(|w| w / 2.0).collect();
        let dropped = a.iter().filter(|&&v| v == 0.0).count();
        assert!(
            (200..300).contains(&dropped),
            "{dropped} of 1000 dropped at p = 0.25"
        );
        let worst = a
            .iter()
            .filter(|&&v| v != 0.0)
            .map(|v| (v - 1.0 / 0.75).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-6,
            "kept values are scaled by 1 / (1 − p): one is off by {worst:.1e}"
        );
        // Evaluation leaves every unit on: the prediction adds all 1000
        // hidden outputs of 1 through the new weights, 2 Σ A₁ + 2, which
        // dropout in evaluation would change by hundreds. In f32 a sum of
        // 1000 terms is good to n·u ≈ 6e-5.
        let expected = 2.0 * a.iter().sum::<f64>() + 2.0;
        assert!(
            (prediction - expected).abs() < 6e-5 * expected,
            "prediction {prediction}, expected {expected} with every hidden unit on"
        );
    }

    fn dropout_of_one_or_on_the_output_layer_is_refused(device: Device) {
        use retroprop::DropoutRates;
        let mlp = Mlp::new(&[1, 1000, 1], Activation::Identity, Activation::Identity).unwrap();
        let bad = Trainer::new(mlp.clone(), TrainConfig::default().dropout(1.0).device(device))
            .unwrap_err();
        assert!(bad.to_string().contains("dropout = 1"), "{bad}");
        let mut per_layer = TrainConfig::default().device(device);
        per_layer.dropout = DropoutRates::PerLayer(vec![0.1, 0.2]);
        let bad = Trainer::new(mlp, per_layer).unwrap_err();
        assert!(bad.to_string().contains("output layer"), "{bad}");
    }
}

#[test]
fn a_profile_times_every_kernel_of_the_step_by_layer() {
    let train = data(Loss::CrossEntropy, 64, 6, 3, 31);
    let mlp = Mlp::new(&[6, 16, 12, 3], Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default())
        .clip_grad_norm(1.0)
        .batch_size(8);
    let mut gpu = common::trainer(mlp.clone(), config.clone(), Device::Gpu);
    let profile = gpu
        .profile_steps(&train, 5)
        .unwrap()
        .expect("the GPU backend returned no profile");
    assert_eq!(gpu.steps(), 5, "the profiled steps are real steps");
    assert_eq!(profile.steps, 5);
    assert_eq!(
        profile.timed_steps, 5,
        "this adapter has no timestamps inside compute passes: no times"
    );
    let has = |kernel: &str, layer: Option<usize>| {
        profile
            .kernels
            .iter()
            .any(|k| k.kernel == kernel && k.layer == layer)
    };
    for l in 0..3 {
        for kernel in ["forward", "weight grad", "bias grad"] {
            assert!(has(kernel, Some(l)), "no {kernel} {l} in {profile:#?}");
        }
    }
    // No input gradient for the first layer: nothing consumes it.
    assert!(has("input grad", Some(2)) && has("input grad", Some(1)));
    assert!(!has("input grad", Some(0)), "{profile:#?}");
    for kernel in ["loss", "clip: sum of squares", "optimizer"] {
        assert!(has(kernel, None), "no {kernel} in {profile:#?}");
    }
    assert!(
        profile
            .kernels
            .iter()
            .all(|k| k.ms_per_step.is_some_and(|ms| ms >= 0.0) && k.dispatches >= 1.0)
            && profile.total_ms().is_some_and(|ms| ms > 0.0),
        "{profile:#?}"
    );
    // Kernels appear once each, in the order of the step.
    let names: Vec<_> = profile
        .kernels
        .iter()
        .map(|k| (k.kernel, k.layer))
        .collect();
    let forward = names.iter().position(|n| *n == ("forward", Some(0)));
    let optimizer = names.iter().position(|n| *n == ("optimizer", None));
    assert!(forward < optimizer, "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");

    // Past the query set's 4096 timestamps the profile keeps the steps it
    // timed whole, and training goes on to the end; every step is counted.
    let many = gpu.profile_steps(&train, 400).unwrap().unwrap();
    assert_eq!(gpu.steps(), 405);
    assert!(
        many.timed_steps > 0 && many.timed_steps < 400,
        "{} of 400 steps timed whole",
        many.timed_steps
    );
    assert_eq!(many.steps, 400, "steps counted");
    assert_eq!(many.dispatches(), profile.dispatches(), "dispatches a step");

    // The CPU backend does not time kernels.
    let mut cpu = common::trainer(mlp, config, Device::Cpu);
    assert!(cpu.profile_steps(&train, 2).unwrap().is_none());
    assert_eq!(cpu.steps(), 2);
}
