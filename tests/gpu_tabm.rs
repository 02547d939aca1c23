//! TabM's GPU kernels (shaders/ensemble.wgsl) against the CPU passes
//! (src/cpu/ensemble.rs, src/cpu/members_layers.rs), in f64: a whole
//! BatchEnsemble layer forward and backward built from the kernels and the
//! harness's matmuls, `tabm-mini`'s view and scaling, the members' column
//! sums, each member's dropout columns, the ensemble's mean for every
//! loss, the loss over the members' stacked rows reading each target
//! again (no copy), and the members' own layers (`LinearEnsemble`) as the
//! matmuls with the member in their z, with dropout in their epilogues. The GPU backend does not run TabM yet (it refuses it by name);
//! these are the kernels it will dispatch. Needs a wgpu adapter; on a
//! machine without a GPU install Mesa's software Vulkan: `apt-get install
//! mesa-vulkan-drivers`.

mod common;

use common::{assert_close, harness, random, widen};
use retroprop::cpu::ensemble::{
    Ensemble, EnsembleGradients, EnsembleSaved, ensemble_backward, ensemble_forward,
};
use retroprop::cpu::members_layers::{
    MemberLinear, ensemble_mean, member_linear_backward, member_linear_forward, scale_backward,
    scale_forward,
};
use retroprop::gpu::MatmulTiling;
use retroprop::gpu::harness::{KernelHarness, MemberBlocks, MemberMask};
use retroprop::model::EnsembleMean;
use retroprop::{Activation, Loss, TargetBatch};

const TOLERANCE: f64 = 1e-4;
const FLOOR: f64 = 1e-3;
/// The floor of sums over many rows, whose f32 rounding is absolute.
const SUM_FLOOR: f64 = 1e-2;

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn a_batch_ensemble_layer_from_the_kernels_matches_the_cpu_pass() {
    let h = harness();
    let (k, rows, inputs, outputs) = (3, 37, 5, 7);
    let x = random(k * rows * inputs, -1.0, 1.0, 1);
    let weight = random(outputs * inputs, -0.5, 0.5, 2);
    let r = random(k * inputs, -1.5, 1.5, 3);
    let s = random(k * outputs, 0.5, 1.5, 4);
    let bias = random(k * outputs, -0.2, 0.2, 5);
    let grad_a = random(k * rows * outputs, -1.0, 1.0, 6);
    let f = Activation::Relu;
    let (x64, w64, r64, s64, b64) = (
        widen(&x),
        widen(&weight),
        widen(&r),
        widen(&s),
        widen(&bias),
    );
    let layer = Ensemble {
        members: k,
        weight: &w64,
        r: &r64,
        s: &s64,
        bias: &b64,
        activation: f,
    };
    let mut a = vec![0.0; k * rows * outputs];
    let mut saved = EnsembleSaved::default();
    ensemble_forward(&x64, layer, &mut a, &mut saved);
    let mut grad = widen(&grad_a);
    let (mut gradients, mut input_grad) = (EnsembleGradients::default(), Vec::new());
    ensemble_backward(
        &x64,
        layer,
        &saved,
        &mut grad,
        &mut gradients,
        Some(&mut input_grad),
    );

    let into = MemberBlocks {
        members: k,
        rows,
        width: inputs,
    };
    let out = MemberBlocks {
        width: outputs,
        ..into
    };
    // Forward: X̃ = X ⊙ r, U = X̃ · Wᵀ over k·rows rows, Z = U ⊙ s + b.
    let scaled = h
        .member_scale(into, (&x, false), Some(&r), None, None)
        .unwrap();
    assert_close("X ⊙ r", &scaled, &narrow(&saved.scaled), TOLERANCE, FLOOR);
    let product = h
        .matmul(&scaled, &weight, k * rows, inputs, outputs, false, true)
        .unwrap();
    assert_close("U", &product, &narrow(&saved.product), TOLERANCE, FLOOR);
    let (z, a_gpu) = h
        .ensemble_epilogue(out, &product, (&s, &bias), f, None)
        .unwrap();
    assert_close("Z", &z, &narrow(&saved.z), TOLERANCE, FLOOR);
    assert_close("A", &a_gpu, &narrow(&a), TOLERANCE, FLOOR);

    // Backward: dZ, db, ds, dU = dZ ⊙ s, dW = dUᵀ · X̃, dX̃ = dU · W, dr, dX.
    let dz = h
        .member_scale(out, (&grad_a, false), None, Some((f, &z)), None)
        .unwrap();
    assert_close("dZ", &dz, &narrow(&grad), TOLERANCE, FLOOR);
    let db = h.member_column_sums(out, &dz, None, None).unwrap();
    assert_close("db", &db, &narrow(&gradients.bias), TOLERANCE, FLOOR);
    let ds = h
        .member_column_sums(out, &dz, Some((&product, false)), None)
        .unwrap();
    assert_close("ds", &ds, &narrow(&gradients.s), TOLERANCE, FLOOR);
    let du = h
        .member_scale(out, (&dz, false), Some(&s), None, None)
        .unwrap();
    let dw = h
        .matmul(&du, &scaled, outputs, k * rows, inputs, true, false)
        .unwrap();
    assert_close("dW", &dw, &narrow(&gradients.weight), TOLERANCE, FLOOR);
    let scaled_grad = h
        .matmul(&du, &weight, k * rows, outputs, inputs, false, false)
        .unwrap();
    let dr = h
        .member_column_sums(into, &scaled_grad, Some((&x, false)), None)
        .unwrap();
    assert_close("dr", &dr, &narrow(&gradients.r), TOLERANCE, FLOOR);
    let dx = h
        .member_scale(into, (&scaled_grad, false), Some(&r), None, None)
        .unwrap();
    assert_close("dX", &dx, &narrow(&input_grad), TOLERANCE, FLOOR);
}

#[test]
fn the_view_and_tabm_minis_scaling_match_the_cpu() {
    let h = harness();
    let (k, rows, width) = (4, 70, 6);
    let x = random(rows * width, -1.0, 1.0, 7);
    let affine = random(k * width, -1.0, 1.0, 8);
    let grad_y = random(k * rows * width, -1.0, 1.0, 9);
    let blocks = MemberBlocks {
        members: k,
        rows,
        width,
    };
    // The view (every member the batch) and the scaling in one dispatch.
    let viewed: Vec<f64> = (0..k).flat_map(|_| widen(&x)).collect();
    let mut scaled = Vec::new();
    scale_forward(&viewed, &widen(&affine), k, &mut scaled);
    let gpu = h
        .member_scale(blocks, (&x, true), Some(&affine), None, None)
        .unwrap();
    assert_close("view ⊙ scaling", &gpu, &narrow(&scaled), TOLERANCE, FLOOR);
    let view = h
        .member_scale(blocks, (&x, true), None, None, None)
        .unwrap();
    assert_eq!(
        view,
        narrow(&viewed),
        "the view is every member's copy of the batch"
    );

    let mut scale_grad = vec![0.0; k * width];
    let mut input_grad = Vec::new();
    let pair = (&viewed[..], &widen(&grad_y)[..]);
    scale_backward(
        pair,
        &widen(&affine),
        k,
        &mut scale_grad,
        Some(&mut input_grad),
    );
    let gpu = h
        .member_column_sums(blocks, &grad_y, Some((&view, false)), None)
        .unwrap();
    assert_close("d scaling", &gpu, &narrow(&scale_grad), TOLERANCE, FLOOR);
    // The batch itself read as the view, without its copy.
    let shared = h
        .member_column_sums(blocks, &grad_y, Some((&x, true)), None)
        .unwrap();
    assert_eq!(shared, gpu, "the sums over the view read the batch again");
    let gpu = h
        .member_scale(blocks, (&grad_y, false), Some(&affine), None, None)
        .unwrap();
    assert_close("dX", &gpu, &narrow(&input_grad), TOLERANCE, FLOOR);
}

#[test]
fn member_column_sums_add_to_those_there_when_asked() {
    let h = harness();
    let blocks = MemberBlocks {
        members: 8,
        rows: 300,
        width: 5,
    };
    let a = random(8 * 300 * 5, -1.0, 1.0, 10);
    let start = random(8 * 5, -1.0, 1.0, 11);
    let sums = h.member_column_sums(blocks, &a, None, None).unwrap();
    let added = h
        .member_column_sums(blocks, &a, None, Some(&start))
        .unwrap();
    let expected: Vec<f32> = sums.iter().zip(&start).map(|(s, t)| s + t).collect();
    assert_close("accumulated sums", &added, &expected, 1e-6, FLOOR);
    let cpu: Vec<f64> = (0..8 * 5)
        .map(|j| {
            let (m, col) = (j / 5, j % 5);
            (0..300).map(|row| a[m * 1500 + row * 5 + col] as f64).sum()
        })
        .collect();
    assert_close("sums", &sums, &narrow(&cpu), TOLERANCE, FLOOR);
}

#[test]
fn each_members_dropout_columns_follow_the_members_before_it() {
    let h = harness();
    let (k, rows, width) = (3, 50, 40);
    let mask = MemberMask {
        p: 0.3,
        seed: 0x5eed,
        t: 4,
        layer: 1,
        row_offset: 17,
    };
    let ones = vec![1.0; k * rows * width];
    let blocks = MemberBlocks {
        members: k,
        rows,
        width,
    };
    let members = h
        .member_scale(blocks, (&ones, false), None, None, Some(mask))
        .unwrap();
    // One member k times as wide: its columns are the members' (the CPU's
    // `drop_out`: member m's column j is m · width + j).
    let wide = MemberBlocks {
        members: 1,
        rows,
        width: k * width,
    };
    let one = h
        .member_scale(wide, (&ones, false), None, None, Some(mask))
        .unwrap();
    for m in 0..k {
        for row in 0..rows {
            for j in 0..width {
                assert_eq!(
                    members[(m * rows + row) * width + j],
                    one[row * k * width + m * width + j],
                    "member {m}, row {row}, column {j}"
                );
            }
        }
    }
    let scale = 1.0 / (1.0 - 0.3f32);
    assert!(members.iter().all(|&v| v == 0.0 || v == scale));
    let dropped = members.iter().filter(|&&v| v == 0.0).count() as f64 / members.len() as f64;
    assert!((0.25..0.35).contains(&dropped), "dropped {dropped}");
    // The epilogue applies the same mask.
    let zeros = vec![0.0; k * width];
    let (_, a) = h
        .ensemble_epilogue(
            blocks,
            &ones,
            (&vec![1.0; k * width], &zeros),
            Activation::Identity,
            Some(mask),
        )
        .unwrap();
    assert_eq!(a, members, "the epilogue's mask is the scaling's");
}

#[test]
fn the_ensembles_mean_matches_the_cpu_for_every_loss() {
    let h = harness();
    let (k, rows) = (8, 33);
    for (mean, width) in [
        (EnsembleMean::Probabilities, 4),
        (EnsembleMean::Sigmoid, 1),
        (EnsembleMean::Values, 2),
    ] {
        let outputs = random(k * rows * width, -6.0, 6.0, 12 + width as u64);
        let mut cpu = Vec::new();
        ensemble_mean(&widen(&outputs), k, width, mean, &mut cpu);
        let blocks = MemberBlocks {
            members: k,
            rows,
            width,
        };
        let gpu = h.ensemble_mean(blocks, &outputs, mean).unwrap();
        assert_close(&format!("{mean:?}"), &gpu, &narrow(&cpu), TOLERANCE, FLOOR);
    }
}

#[test]
fn the_loss_over_stacked_members_reads_each_target_again() {
    let h = harness();
    let k = 4;
    for loss in Loss::ALL {
        // Below and above the one-dispatch loss, and a wide output layer.
        for &(rows, width) in &[(5, 3), (300, 2), (3, 1100)] {
            let width = if loss == Loss::CrossEntropy {
                width
            } else {
                width.min(3)
            };
            let output = random(k * rows * width, -6.0, 6.0, (rows * width) as u64);
            let labels: Vec<u32> = (0..rows).map(|r| (r * 5 % width) as u32).collect();
            let values = random(rows * width, 0.0, 1.0, 21);
            let (stacked_labels, stacked_values) = (labels.repeat(k), values.repeat(k));
            let (targets, stacked) = if loss.takes_classes() {
                (
                    TargetBatch::Classes(&labels),
                    TargetBatch::Classes(&stacked_labels),
                )
            } else {
                (
                    TargetBatch::Values(&values),
                    TargetBatch::Values(&stacked_values),
                )
            };
            let mut grad = vec![0f32; output.len()];
            let cpu = loss.forward_backward(&output, width, stacked, &mut grad);
            let what = format!("{loss} {k}x{rows}x{width}");
            for (kernel, (value, _, gpu_grad)) in [
                (
                    "as training chooses",
                    h.loss(loss, &output, width, targets).unwrap(),
                ),
                (
                    "thread a row",
                    h.loss_unsummed(loss, &output, width, targets).unwrap(),
                ),
            ] {
                assert_close(
                    &format!("{what} {kernel} value"),
                    &[value],
                    &[cpu],
                    1e-5,
                    1e-6,
                );
                let floor = 0.1 / (k * rows * width) as f64;
                assert_close(
                    &format!("{what} {kernel} gradient"),
                    &gpu_grad,
                    &grad,
                    1e-5,
                    floor,
                );
            }
        }
    }
}

/// The harness with a storage-buffer matmul, which the members' products
/// need (lavapipe's default is the texture matmul).
fn storage_harness() -> KernelHarness {
    KernelHarness::open_with(Some(MatmulTiling::direct())).unwrap_or_else(|e| {
        panic!(
            "cannot open the GPU kernel harness: {e}\n{}",
            common::NO_GPU_HELP
        )
    })
}

#[test]
fn the_members_own_layers_match_the_cpu_with_the_member_as_z() {
    let h = storage_harness();
    let (k, rows, inputs, outputs) = (5, 41, 6, 9);
    let x = random(k * rows * inputs, -1.0, 1.0, 30);
    let weight = random(k * inputs * outputs, -0.5, 0.5, 31);
    let bias = random(k * outputs, -0.2, 0.2, 32);
    let grad_a = random(k * rows * outputs, -1.0, 1.0, 33);
    let z_prev = random(k * rows * inputs, -1.0, 1.0, 34);
    let f = Activation::Tanh;
    let (x64, w64, b64) = (widen(&x), widen(&weight), widen(&bias));
    let layer = MemberLinear {
        members: k,
        inputs,
        weight: &w64,
        bias: &b64,
        activation: f,
    };
    let (mut z, mut a) = (vec![0.0; k * rows * outputs], vec![0.0; k * rows * outputs]);
    member_linear_forward(&x64, layer, &mut z, &mut a);
    let blocks = MemberBlocks {
        members: k,
        rows,
        width: inputs,
    };
    let (gpu_z, gpu_a) = h
        .member_linear_forward(blocks, (&x, false), (&weight, &bias), f, None)
        .unwrap();
    assert_close("Z", &gpu_z, &narrow(&z), TOLERANCE, FLOOR);
    assert_close("A", &gpu_a, &narrow(&a), TOLERANCE, FLOOR);

    let mut grad = widen(&grad_a);
    let (mut dw, mut db, mut dx) = (vec![0.0; w64.len()], vec![0.0; b64.len()], Vec::new());
    member_linear_backward(
        &x64,
        layer,
        &z,
        &mut grad,
        (&mut dw, &mut db),
        Some(&mut dx),
    );
    let dz = narrow(&grad);
    let identity = (Activation::Identity, &z_prev[..], None);
    let (gpu_dw, gpu_dx) = h
        .member_linear_backward(blocks, (&x, &weight), &dz, identity)
        .unwrap();
    // dW sums 41 rows of terms near 1: f32 leaves ~1e-7 absolute.
    assert_close("dW", &gpu_dw, &narrow(&dw), TOLERANCE, SUM_FLOOR);
    assert_close("dX", &gpu_dx, &narrow(&dx), TOLERANCE, FLOOR);
    let out = MemberBlocks {
        width: outputs,
        ..blocks
    };
    let gpu_db = h.member_column_sums(out, &dz, None, None).unwrap();
    assert_close("db", &gpu_db, &narrow(&db), TOLERANCE, SUM_FLOOR);
    // Into the layer before's dZ through its f'.
    let relu = (Activation::Relu, &z_prev[..], None);
    let (_, gpu_dz_prev) = h
        .member_linear_backward(blocks, (&x, &weight), &dz, relu)
        .unwrap();
    let dz_prev: Vec<f64> = (dx.iter().zip(&z_prev))
        .map(|(&g, &z)| if z > 0.0 { g } else { 0.0 })
        .collect();
    assert_close(
        "dZ before",
        &gpu_dz_prev,
        &narrow(&dz_prev),
        TOLERANCE,
        FLOOR,
    );

    // After the view every member reads the one batch.
    let batch = &x[..rows * inputs];
    let repeated = batch.repeat(k);
    let (shared, _) = h
        .member_linear_forward(blocks, (batch, true), (&weight, &bias), f, None)
        .unwrap();
    let (copied, _) = h
        .member_linear_forward(blocks, (&repeated, false), (&weight, &bias), f, None)
        .unwrap();
    assert_eq!(shared, copied, "the shared batch is each member's copy");
}

#[test]
fn the_products_dropout_gives_each_member_its_own_columns() {
    let h = storage_harness();
    let (k, rows, inputs, outputs) = (3, 60, 4, 33);
    let mask = MemberMask {
        p: 0.25,
        seed: 0xabc,
        t: 9,
        layer: 2,
        row_offset: 100,
    };
    let out = MemberBlocks {
        members: k,
        rows,
        width: outputs,
    };
    // The mask as the scaling kernel (checked against the CPU's columns above) draws it.
    let ones = vec![1.0; k * rows * outputs];
    let factors = h
        .member_scale(out, (&ones, false), None, None, Some(mask))
        .unwrap();
    let masked = |z: &[f32]| -> Vec<f32> { z.iter().zip(&factors).map(|(z, m)| z * m).collect() };
    let blocks = MemberBlocks {
        width: inputs,
        ..out
    };
    let x = random(k * rows * inputs, -1.0, 1.0, 40);
    let identity = Activation::Identity;

    let weight = random(k * inputs * outputs, -0.5, 0.5, 41);
    let bias = random(k * outputs, -0.2, 0.2, 42);
    let (z, a) = h
        .member_linear_forward(blocks, (&x, false), (&weight, &bias), identity, Some(mask))
        .unwrap();
    assert_eq!(a, masked(&z), "the members' own layer");
    let z_prev = vec![0.0; k * rows * outputs];
    let x_next = random(k * rows * outputs, -1.0, 1.0, 43);
    let weight_next = random(k * outputs * 2, -0.5, 0.5, 44);
    let dz_next = random(k * rows * 2, -1.0, 1.0, 45);
    let next = MemberBlocks {
        width: outputs,
        ..out
    };
    let (_, plain) = h
        .member_linear_backward(
            next,
            (&x_next, &weight_next),
            &dz_next,
            (identity, &z_prev, None),
        )
        .unwrap();
    let (_, dropped) = h
        .member_linear_backward(
            next,
            (&x_next, &weight_next),
            &dz_next,
            (identity, &z_prev, Some(mask)),
        )
        .unwrap();
    assert_eq!(
        dropped,
        masked(&plain),
        "the gradient into the layer before"
    );

    let shared_weight = random(outputs * inputs, -0.5, 0.5, 46);
    let shared_bias = random(outputs, -0.2, 0.2, 47);
    let (z, a) = h
        .stacked_dense_forward(
            blocks,
            &x,
            (&shared_weight, &shared_bias),
            identity,
            Some(mask),
        )
        .unwrap();
    assert_eq!(a, masked(&z), "a shared layer over the stacked rows");
}

mod training {
    //! Whole TabM runs on the GPU against the CPU backend (itself checked
    //! against the `tabm` package in tests/tabm.rs): parameters after
    //! several AdamW steps with dropout, evaluation loss and accuracy, and
    //! predictions (the ensemble's mean), for each architecture, for
    //! cross-entropy, squared error and binary cross-entropy, with a
    //! partial last batch, in passes, and at thousands of rows.

    use super::common::{self, max_rel_error, random, widen};
    use retroprop::model::{EnsembleMean, Tabm, TabmArch};
    use retroprop::{Activation, AdamW, Dataset, Device, Loss, Mlp, Targets, TrainConfig};

    /// The parity tolerance of tests/gpu_training.rs and tests/gpu_residual.rs.
    const TOLERANCE: f64 = 1e-4;

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

    fn classes(rows: usize, features: usize, seed: u64) -> Dataset {
        let x = random(rows * features, -1.0, 1.0, seed);
        let labels = (x.chunks(features))
            .map(|r| u32::from(r[0] > 0.0) + u32::from(r[1] > 0.3))
            .collect();
        Dataset::new(x, features, Targets::Classes(labels)).unwrap()
    }

    fn values(rows: usize, features: usize, seed: u64) -> Dataset {
        let x = random(rows * features, -1.0, 1.0, seed);
        let values = (x.chunks(features))
            .flat_map(|r| [r[0] * r[1] + r[2], (2.0 * r[3]).sin()])
            .collect();
        Dataset::new(x, features, Targets::Values { values, width: 2 }).unwrap()
    }

    /// One 0/1 label a row (binary cross-entropy).
    fn labels(rows: usize, features: usize, seed: u64) -> Dataset {
        let x = random(rows * features, -1.0, 1.0, seed);
        let values = (x.chunks(features))
            .map(|r| f32::from(u8::from(r[0] + r[1] > 0.2)))
            .collect();
        Dataset::new(x, features, Targets::Values { values, width: 1 }).unwrap()
    }

    fn tabm(sizes: &[usize], k: usize, arch: TabmArch, loss: Loss) -> Mlp {
        let plain = Mlp::new(sizes, Activation::Relu, Activation::Identity).unwrap();
        Mlp::tabm(&plain, Tabm::new(k, arch, EnsembleMean::of(loss))).unwrap()
    }

    /// Trains `mlp` on both devices and compares what the brief asks.
    fn assert_parity(what: &str, mlp: Mlp, config: TrainConfig, train: &Dataset, tolerance: f64) {
        let mut gpu = common::trainer(mlp.clone(), config.clone(), Device::Gpu);
        let mut cpu = common::trainer(mlp, config, Device::Cpu);
        gpu.fit(train, None).unwrap();
        cpu.fit(train, None).unwrap();
        assert_eq!(gpu.steps(), cpu.steps(), "{what}: step counts");
        let (g, c) = (gpu.parameters().unwrap(), cpu.parameters().unwrap());
        assert_close(&format!("{what}: parameters"), &g, &c, tolerance);
        let (ge, ce) = (gpu.evaluate(train).unwrap(), cpu.evaluate(train).unwrap());
        let gap = (ge.loss - ce.loss).abs() / ce.loss.abs().max(1e-3);
        println!("{what}: evaluation loss gpu {} cpu {}", ge.loss, ce.loss);
        assert!(
            gap < tolerance,
            "{what}: evaluation loss gpu {} vs cpu {}",
            ge.loss,
            ce.loss
        );
        assert_eq!(ge.accuracy, ce.accuracy, "{what}: evaluation accuracy");
        let x = &train.x()[..train.features() * 64];
        let (gp, cp) = (gpu.predict(x).unwrap(), cpu.predict(x).unwrap());
        assert_close(&format!("{what}: predictions"), &gp, &cp, tolerance);
    }

    fn config(loss: Loss, batch: usize) -> TrainConfig {
        TrainConfig::default()
            .loss(loss)
            .optimizer(AdamW::default().lr(3e-3).weight_decay(1e-3))
            .batch_size(batch)
            .dropout(0.15)
            .epochs(3)
            .seed(11)
    }

    #[test]
    fn every_architecture_with_dropout_matches_the_cpu() {
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            for loss in [Loss::CrossEntropy, Loss::Mse, Loss::BceWithLogits] {
                let (mlp, train) = match loss {
                    Loss::CrossEntropy => {
                        (tabm(&[6, 16, 12, 3], 4, arch, loss), classes(150, 6, 1))
                    }
                    Loss::BceWithLogits => {
                        (tabm(&[6, 16, 12, 1], 4, arch, loss), labels(150, 6, 5))
                    }
                    _ => (tabm(&[6, 16, 12, 2], 4, arch, loss), values(150, 6, 2)),
                };
                // 150 rows in batches of 32: a partial last batch of 22.
                assert_parity(
                    &format!("{arch} {loss}"),
                    mlp,
                    config(loss, 32),
                    &train,
                    TOLERANCE,
                );
            }
        }
    }

    #[test]
    fn a_batch_split_into_passes_adds_each_passs_gradients() {
        // Passes of 10 rows: 10, 10, 10 and 2 of each batch of 32, the
        // passes after the first adding their weight gradients and column
        // sums to the first's.
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            let loss = Loss::CrossEntropy;
            let mlp = tabm(&[6, 16, 12, 3], 3, arch, loss);
            let config = config(loss, 32).max_rows_per_pass(10);
            assert_parity(
                &format!("{arch} in passes"),
                mlp,
                config,
                &classes(100, 6, 3),
                TOLERANCE,
            );
        }
    }

    #[test]
    fn a_batch_of_thousands_of_rows_of_eight_members_256_wide_matches_the_cpu() {
        // 2 048 rows a batch (16 384 stacked rows a product) and a last
        // batch of 452. Sums over thousands of rows, which the devices add
        // in different orders: the tolerance of tests/large.rs for its
        // large batch, as tests/gpu_residual.rs's.
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            let loss = Loss::CrossEntropy;
            let mlp = tabm(&[6, 256, 256, 3], 8, arch, loss);
            let config = config(loss, 2048).epochs(1);
            let what = format!("{arch}, k = 8, 2048 × 256");
            assert_parity(&what, mlp, config, &classes(2500, 6, 4), 1e-3);
        }
    }

    #[test]
    fn mixed_precision_is_refused_by_name() {
        let mlp = tabm(&[6, 16, 3], 2, TabmArch::Tabm, Loss::CrossEntropy);
        let config = config(Loss::CrossEntropy, 32)
            .precision(retroprop::Precision::Mixed)
            .device(Device::Gpu);
        let error = retroprop::Trainer::new(mlp, config)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("TabM") && error.contains("mixed precision"),
            "{error}"
        );
    }
}
