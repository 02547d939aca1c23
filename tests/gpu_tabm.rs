//! TabM's GPU kernels (shaders/ensemble.wgsl) against the CPU passes
//! (src/cpu/ensemble.rs, src/cpu/members_layers.rs), in f64: a whole
//! BatchEnsemble layer forward and backward built from the kernels and the
//! harness's matmuls, `tabm-mini`'s view and scaling, the members' column
//! sums, each member's dropout columns, and the ensemble's mean for every
//! loss. The GPU backend does not run TabM yet (it refuses it by name);
//! these are the kernels it will dispatch. Needs a wgpu adapter; on a
//! machine without a GPU install Mesa's software Vulkan: `apt-get install
//! mesa-vulkan-drivers`.

mod common;

use common::{assert_close, harness, random, widen};
use retroprop::Activation;
use retroprop::cpu::ensemble::{
    Ensemble, EnsembleGradients, EnsembleSaved, ensemble_backward, ensemble_forward,
};
use retroprop::cpu::members_layers::{ensemble_mean, scale_backward, scale_forward};
use retroprop::gpu::harness::{MemberBlocks, MemberMask};
use retroprop::model::EnsembleMean;

const TOLERANCE: f64 = 1e-4;
const FLOOR: f64 = 1e-3;

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
        .member_column_sums(out, &dz, Some(&product), None)
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
        .member_column_sums(into, &scaled_grad, Some(&x), None)
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
        .member_column_sums(blocks, &grad_y, Some(&view), None)
        .unwrap();
    assert_close("d scaling", &gpu, &narrow(&scale_grad), TOLERANCE, FLOOR);
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
