//! Every GPU kernel against its CPU twin on random inputs at awkward sizes.
//! Needs a wgpu adapter; on a machine without a GPU install Mesa's software
//! Vulkan: `apt-get install mesa-vulkan-drivers`.

mod common;

use common::{assert_close, harness, random};
use retroprop::cpu::{Gemm, clip_gradients, optimizer_step};
use retroprop::cpu::{dense_backward, dense_forward};
use retroprop::gpu::MatmulTiling;
use retroprop::gpu::harness::KernelHarness;
use retroprop::{Activation, Dataset, GradClip, Loss, Optimizer, Sgd, TargetBatch, Targets};

const SIZES: [usize; 6] = [1, 3, 17, 63, 65, 257];

fn cpu_matmul(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
) -> Vec<f32> {
    // Reference in f64 to keep the comparison about the GPU's rounding.
    let a64 = common::widen(a);
    let b64 = common::widen(b);
    let mut c = vec![0f64; m * n];
    let sa = if trans_a {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let sb = if trans_b {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    f64::gemm(
        m,
        k,
        n,
        1.0,
        &a64,
        sa,
        &b64,
        sb,
        0.0,
        &mut c,
        (n as isize, 1),
    );
    c.iter().map(|&v| v as f32).collect()
}

/// A harness whose matmuls run with `tiling`.
fn harness_with(tiling: MatmulTiling) -> KernelHarness {
    KernelHarness::open_with(Some(tiling)).unwrap_or_else(|e| {
        panic!(
            "cannot open the GPU kernel harness: {e}\n{}",
            common::NO_GPU_HELP
        )
    })
}

/// Runs `check` with each matmul kernel, whichever this adapter would
/// choose: workgroup memory (GPUs; scalar and vec4 tiles, 64² and 128²),
/// textures (CPU adapters), and the
/// storage-buffer fallback. The texture kernel's 16 × 16 blocks have a test
/// of their own: they take Mesa 22 half a minute to compile, once.
fn with_every_matmul_kernel(check: fn(&KernelHarness)) {
    for tiling in [
        MatmulTiling::shared(),
        MatmulTiling::shared_large(),
        MatmulTiling::shared_vec4(),
        MatmulTiling {
            rm: 8,
            rn: 8,
            tk: 8,
            ..MatmulTiling::shared_vec4()
        },
        MatmulTiling::direct(),
        MatmulTiling::texture(),
        MatmulTiling::texture_short(),
    ] {
        check(&harness_with(tiling));
    }
}

#[test]
fn texture_kernel_with_large_blocks_matches_cpu() {
    let h = harness_with(MatmulTiling::texture_large());
    matmul_parity(&h);
    fused_dense_parity(&h);
}

#[test]
fn matmul_variants_match_cpu_at_awkward_sizes() {
    with_every_matmul_kernel(matmul_parity);
}

fn matmul_parity(h: &KernelHarness) {
    let mut seed = 0;
    for &m in &SIZES {
        // k = 64 makes rows of whole quads (the texture kernel's pack_quads).
        for &k in &[1usize, 17, 64, 65, 257] {
            for &n in &[1usize, 3, 63, 65] {
                for (trans_a, trans_b) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    seed += 1;
                    let a = random(m * k, -1.0, 1.0, seed);
                    let b = random(k * n, -1.0, 1.0, seed + 1000);
                    let gpu = h.matmul(&a, &b, m, k, n, trans_a, trans_b).unwrap();
                    let cpu = cpu_matmul(&a, &b, m, k, n, trans_a, trans_b);
                    // Sums of k products of values in ±1: compare relative to √k.
                    assert_close(
                        &format!(
                            "matmul {:?} {m}x{k}x{n} ta={trans_a} tb={trans_b}",
                            h.tiling()
                        ),
                        &gpu,
                        &cpu,
                        1e-5,
                        (k as f64).sqrt() * 1e-1,
                    );
                }
            }
        }
    }
}

#[test]
fn fused_dense_kernels_match_cpu_for_every_activation() {
    with_every_matmul_kernel(fused_dense_parity);
}

fn fused_dense_parity(h: &KernelHarness) {
    for (i, activation) in Activation::ALL
        .into_iter()
        .chain([Activation::LeakyRelu { slope: 0.3 }])
        .enumerate()
    {
        for &(rows, inputs, outputs) in &[(1, 3, 1), (17, 63, 65), (65, 17, 3), (257, 5, 17)] {
            let seed = 100 * i as u64 + rows as u64;
            let x = random(rows * inputs, -2.0, 2.0, seed);
            let w = random(outputs * inputs, -1.0, 1.0, seed + 1);
            let b = random(outputs, -1.0, 1.0, seed + 2);
            let (gz, ga) = h.dense_forward(&x, &w, &b, activation).unwrap();
            let mut cz = vec![0f32; rows * outputs];
            let mut ca = vec![0f32; rows * outputs];
            dense_forward(&x, &w, &b, activation, &mut cz, &mut ca);
            let what = format!("{activation} forward {rows}x{inputs}->{outputs}");
            // Z sums `inputs` products of size ~1: near-cancelling sums are
            // compared against that scale, √inputs · 0.1.
            let scale = (inputs as f64).sqrt() * 0.1;
            assert_close(&format!("{what} Z"), &gz, &cz, 1e-5, scale);
            assert_close(&format!("{what} A"), &ga, &ca, 1e-5, scale);

            // Backward through this layer: dW, db and dZ_prev (with this
            // activation standing in as the previous layer's).
            let grad_z = random(rows * outputs, -1.0, 1.0, seed + 3);
            let z_prev = random(rows * inputs, -3.0, 3.0, seed + 4);
            let mut dz = grad_z.clone();
            let (mut dw, mut db) = (vec![0f32; outputs * inputs], vec![0f32; outputs]);
            let mut da_prev = Vec::new();
            dense_backward(
                &x,
                &w,
                &cz,
                Activation::Identity,
                &mut dz,
                &mut dw,
                &mut db,
                Some(&mut da_prev),
            );
            let cpu_dz_prev: Vec<f32> = da_prev
                .iter()
                .zip(&z_prev)
                .map(|(g, &z)| g * activation.derivative(z))
                .collect();
            // As training forms them: db in dW's product (workgroup-memory
            // kernel) or by column sums (the others).
            let (gpu_dw, gpu_db) = h.weight_and_bias_grad(&grad_z, &x, rows, None).unwrap();
            assert_close(
                &format!("{what} dW"),
                &gpu_dw,
                &dw,
                1e-5,
                (rows as f64).sqrt() * 1e-1,
            );
            assert_close(
                &format!("{what} db"),
                &gpu_db,
                &db,
                1e-5,
                (rows as f64).sqrt() * 1e-1,
            );
            let gpu_dz_prev = h
                .input_grad(&grad_z, &w, &z_prev, rows, activation)
                .unwrap();
            assert_close(
                &format!("{what} dZ_prev"),
                &gpu_dz_prev,
                &cpu_dz_prev,
                1e-5,
                (outputs as f64).sqrt() * 1e-1,
            );
        }
    }
}

#[test]
fn weight_gradient_accumulates_when_asked() {
    let h = harness();
    let (rows, outputs, inputs) = (33, 5, 7);
    let grad_z = random(rows * outputs, -1.0, 1.0, 1);
    let x = random(rows * inputs, -1.0, 1.0, 2);
    let initial = random(outputs * inputs, -1.0, 1.0, 3);
    let plain = h.weight_grad(&grad_z, &x, rows, None).unwrap();
    let accumulated = h.weight_grad(&grad_z, &x, rows, Some(&initial)).unwrap();
    let expected: Vec<f32> = plain.iter().zip(&initial).map(|(p, i)| p + i).collect();
    assert_close("accumulated dW", &accumulated, &expected, 1e-6, 1e-3);
}

#[test]
fn weight_and_bias_gradients_accumulate_when_asked_with_every_kernel() {
    with_every_matmul_kernel(|h| {
        let (rows, outputs, inputs) = (33, 5, 7);
        let grad_z = random(rows * outputs, -1.0, 1.0, 1);
        let x = random(rows * inputs, -1.0, 1.0, 2);
        let initial = (
            random(outputs * inputs, -1.0, 1.0, 3),
            random(outputs, -1.0, 1.0, 4),
        );
        let (dw, db) = h.weight_and_bias_grad(&grad_z, &x, rows, None).unwrap();
        let (acc_dw, acc_db) = h
            .weight_and_bias_grad(&grad_z, &x, rows, Some((&initial.0, &initial.1)))
            .unwrap();
        let plus =
            |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(a, b)| a + b).collect() };
        let what = format!("{:?}", h.tiling());
        assert_close(
            &format!("{what}: accumulated dW"),
            &acc_dw,
            &plus(&dw, &initial.0),
            1e-6,
            1e-3,
        );
        assert_close(
            &format!("{what}: accumulated db"),
            &acc_db,
            &plus(&db, &initial.1),
            1e-6,
            1e-3,
        );
    });
}

#[test]
fn standalone_activation_kernels_match_cpu() {
    let h = harness();
    for activation in Activation::ALL {
        for &(rows, width) in &[(1, 1), (3, 17), (65, 63), (257, 5)] {
            let x = random(rows * width, -6.0, 6.0, rows as u64);
            let b = random(width, -1.0, 1.0, 7);
            let (gz, ga) = h.bias_activation_forward(&x, &b, activation).unwrap();
            let cz: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, v)| v + b[i % width])
                .collect();
            // References in f64, so that only the GPU's rounding is judged.
            let ca: Vec<f32> = cz
                .iter()
                .map(|&z| activation.forward(z as f64) as f32)
                .collect();
            assert_close(
                &format!("{activation} bias+forward Z"),
                &gz,
                &cz,
                1e-6,
                1e-6,
            );
            // A floor of 1e-6 keeps GELU's tiny negative tail (≈ −1e-8 at
            // z = −6) from counting as a relative error.
            assert_close(
                &format!("{activation} bias+forward A"),
                &ga,
                &ca,
                1e-5,
                1e-6,
            );
            let da = random(rows * width, -1.0, 1.0, 9);
            let gd = h.activation_backward(&cz, &da, activation).unwrap();
            let cd: Vec<f32> = cz
                .iter()
                .zip(&da)
                .map(|(&z, &g)| (g as f64 * activation.derivative(z as f64)) as f32)
                .collect();
            // dA ⊙ f'(Z) is of size ~1; where f' crosses zero (GELU's
            // Φ(z) + zφ(z) near z = −0.75, two terms of 0.23 cancelling)
            // only the absolute error, 1e-7, means something.
            assert_close(&format!("{activation} backward"), &gd, &cd, 1e-5, 1e-2);
        }
    }
}

#[test]
fn loss_kernels_match_cpu() {
    let h = harness();
    for loss in Loss::ALL {
        // 1023 and up: either side of the workgroup-a-row kernel for wide
        // output layers (WIDE_LOSS_MIN in src/gpu/dispatch.rs); below,
        // the loss and its sum in one workgroup (SUMMED_LOSS_MAX), which
        // sums as the two dispatches of larger batches do (the next test).
        for &(rows, width) in &[
            (1, 2),
            (3, 3),
            (17, 10),
            (65, 1),
            (257, 17),
            (3, 1023),
            (5, 1024),
            (2, 1500),
        ] {
            let width = if loss == Loss::CrossEntropy {
                width.max(2)
            } else {
                width
            };
            let output = random(rows * width, -8.0, 8.0, (rows * width) as u64);
            let values = random(rows * width, 0.0, 1.0, 5);
            let labels: Vec<u32> = (0..rows).map(|r| (r * 7 % width) as u32).collect();
            let targets = if loss.takes_classes() {
                TargetBatch::Classes(&labels)
            } else {
                TargetBatch::Values(&values)
            };
            let mut grad = vec![0f32; output.len()];
            let cpu_loss = loss.forward_backward(&output, width, targets, &mut grad);
            let cpu_correct = loss.correct(&output, width, targets).unwrap_or(0) as f32;
            let (gpu_loss, gpu_correct, gpu_grad) = h.loss(loss, &output, width, targets).unwrap();
            let what = format!("{loss} {rows}x{width}");
            assert_close(
                &format!("{what} value"),
                &[gpu_loss],
                &[cpu_loss],
                1e-5,
                1e-6,
            );
            // Gradient entries are at most 1/norm in size (|σ − y| ≤ 1,
            // |softmax − onehot| ≤ 1); a tenth of that is the floor.
            let norm = if loss == Loss::CrossEntropy {
                rows
            } else {
                rows * width
            };
            assert_close(
                &format!("{what} gradient"),
                &gpu_grad,
                &grad,
                1e-5,
                0.1 / norm as f64,
            );
            assert_eq!(gpu_correct, cpu_correct, "{what}: correct count");
        }
    }
}

/// The loss and its batch sum in one dispatch (small batches) give what
/// the thread-a-row kernel and the sum's own dispatch give: the same rows
/// in the same order into the same tree. Bit for bit on lavapipe; a GPU
/// may fuse a row's `total · inv_norm` into the sum (an FMA) where the two
/// dispatches store it first, so the loss may differ in its last bits.
#[test]
fn the_summed_loss_kernel_sums_as_the_two_dispatches_do() {
    let h = harness();
    for loss in Loss::ALL {
        for &(rows, width) in &[(1, 2), (3, 3), (64, 10), (257, 17), (300, 50)] {
            let output = random(rows * width, -8.0, 8.0, (rows + width) as u64);
            let values = random(rows * width, 0.0, 1.0, 9);
            let labels: Vec<u32> = (0..rows).map(|r| (r * 5 % width) as u32).collect();
            let targets = if loss.takes_classes() {
                TargetBatch::Classes(&labels)
            } else {
                TargetBatch::Values(&values)
            };
            let (one_loss, one_correct, one_grad) = h.loss(loss, &output, width, targets).unwrap();
            let (two_loss, two_correct, two_grad) =
                h.loss_unsummed(loss, &output, width, targets).unwrap();
            let what = format!("{loss} {rows}x{width}");
            assert_eq!(one_correct, two_correct, "{what}: number correct");
            assert!(
                (one_loss - two_loss).abs() <= 1e-6 * two_loss.abs(),
                "{what}: one dispatch {one_loss:e}, two {two_loss:e}"
            );
            let bits = |g: &[f32]| g.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&one_grad) == bits(&two_grad), "{what}: dZ differs");
        }
    }
}

/// A row whose maximum occurs twice is predicted as its first column, as
/// the CPU counts it, also when the two fall to different threads of the
/// wide kernel's workgroup.
#[test]
fn wide_cross_entropy_counts_the_first_of_equal_maxima() {
    let h = harness();
    let width = 2048;
    for (first, second) in [(5, 70), (70, 1029), (3, 67), (1000, 1001)] {
        let mut output = vec![0f32; width];
        output[first] = 4.0;
        output[second] = 4.0;
        for (label, expected) in [(first, 1.0), (second, 0.0)] {
            let labels = [label as u32];
            let targets = TargetBatch::Classes(&labels);
            let (_, correct, _) = h.loss(Loss::CrossEntropy, &output, width, targets).unwrap();
            let cpu = Loss::CrossEntropy.correct(&output, width, targets).unwrap() as f32;
            assert_eq!(
                cpu, expected,
                "the CPU's count, maxima at {first} and {second}"
            );
            assert_eq!(
                correct, expected,
                "maxima at {first} and {second}, label {label}: correct count"
            );
        }
    }
}

#[test]
fn column_sums_are_deterministic_and_match_cpu() {
    let h = harness();
    for &rows in &SIZES {
        for &cols in &[1usize, 3, 17, 65] {
            let x = random(rows * cols, -1.0, 1.0, (rows * cols) as u64);
            let mut cpu = vec![0f64; cols];
            for r in 0..rows {
                for c in 0..cols {
                    cpu[c] += x[r * cols + c] as f64;
                }
            }
            let cpu: Vec<f32> = cpu.iter().map(|&v| v as f32).collect();
            let first = h.column_sums(&x, rows, cols).unwrap();
            let second = h.column_sums(&x, rows, cols).unwrap();
            assert_close(
                &format!("column sums {rows}x{cols}"),
                &first,
                &cpu,
                1e-5,
                (rows as f64).sqrt() * 1e-1,
            );
            assert_eq!(
                first.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                second.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "column sums {rows}x{cols} differ between runs"
            );
        }
    }
}

#[test]
fn optimizer_kernels_match_cpu_over_several_steps() {
    let h = harness();
    for optimizer in common::all_optimizers() {
        for &n in &[1usize, 17, 257] {
            let mut cpu_params = random(n, -1.0, 1.0, n as u64);
            let mut gpu_params = cpu_params.clone();
            let mut cpu_state = vec![optimizer.initial_state() as f32; optimizer.state_slots() * n];
            let mut gpu_state = cpu_state.clone();
            for t in 1..=5u64 {
                let grads = random(n, -1.0, 1.0, 10 * t + n as u64);
                optimizer_step(
                    &optimizer,
                    &mut cpu_params,
                    &grads,
                    &mut cpu_state,
                    t,
                    optimizer.lr(),
                );
                (gpu_params, gpu_state) = h
                    .optimizer_step(
                        &optimizer,
                        &GradClip::default(),
                        &[],
                        &gpu_params,
                        &grads,
                        &gpu_state,
                        t,
                        optimizer.lr(),
                    )
                    .unwrap();
            }
            let what = format!("{optimizer:?} n={n}");
            // Parameters, gradients and state are of size ~1. GPUs contract
            // a·b + c into one FMA where the CPU rounds twice, so values
            // that cancel to near zero (a momentum buffer) differ by f32
            // rounding of that scale: the floor is 1e-2.
            assert_close(
                &format!("{what} params"),
                &gpu_params,
                &cpu_params,
                1e-5,
                1e-2,
            );
            // RMSprop's momentum buffer sums terms g / √square_avg of up to
            // 1 / √(1 − α) (3.2 at α = 0.9, the first step's), not ~1: a
            // buffer that cancels to near zero differs by rounding of that
            // scale (measured on an H200: 1.2e-7 absolute, under one ulp of
            // 3.2), so its floor scales with it.
            let state_floor = match optimizer {
                retroprop::Optimizer::RmsProp(o) if o.momentum > 0.0 => {
                    1e-2 / (1.0 - o.alpha).sqrt()
                }
                _ => 1e-2,
            };
            assert_close(
                &format!("{what} state"),
                &gpu_state,
                &cpu_state,
                1e-5,
                state_floor,
            );
        }
    }
}

#[test]
fn gather_copies_the_permuted_rows() {
    let h = harness();
    let rows = 65;
    let x = random(rows * 3, -1.0, 1.0, 1);
    let values = random(rows * 2, -1.0, 1.0, 2);
    let data = Dataset::new(x, 3, Targets::Values { values, width: 2 }).unwrap();
    let order = retroprop::data::epoch_order(rows, true, 7, 0);
    for &(start, count) in &[(0usize, 1usize), (3, 17), (48, 17), (0, 65)] {
        let (gx, gy) = h.gather(&data, &order, start, count).unwrap();
        let (mut cx, mut cy, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        data.gather(&order[start..start + count], &mut cx, &mut cy, &mut labels);
        assert_eq!(gx, cx, "inputs of rows {start}..{}", start + count);
        assert_eq!(
            gy,
            cy.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "targets of rows {start}.."
        );
    }
    let classes = Dataset::new(
        random(10 * 2, 0.0, 1.0, 3),
        2,
        Targets::Classes((0..10).collect()),
    )
    .unwrap();
    let order = retroprop::data::epoch_order(10, true, 1, 0);
    let (_, labels) = h.gather(&classes, &order, 2, 5).unwrap();
    assert_eq!(labels, &order[2..7], "class labels follow the permutation");
}

#[test]
fn gradient_norm_and_clipping_match_cpu() {
    let h = harness();
    for &n in &[1usize, 17, 257, 70_001] {
        let grads = random(n, -1.0, 1.0, n as u64);
        let cpu_norm = grads
            .iter()
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt() as f32;
        let partials = h.grad_norm_partials(&grads).unwrap();
        let gpu_norm = partials.iter().map(|&p| p as f64).sum::<f64>().sqrt() as f32;
        assert_close(
            &format!("gradient norm n={n}"),
            &[gpu_norm],
            &[cpu_norm],
            1e-5,
            0.0,
        );
        let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&partials) == bits(&h.grad_norm_partials(&grads).unwrap()),
            "partial sums n={n} differ between runs"
        );
        for clip in [
            GradClip {
                max_norm: Some(0.5),
                max_value: None,
            },
            GradClip {
                max_norm: None,
                max_value: Some(0.3),
            },
            GradClip {
                max_norm: Some(2.0),
                max_value: Some(0.1),
            },
        ] {
            let optimizer: Optimizer = Sgd::default().lr(1.0).into();
            let params = vec![0f32; n];
            // With SGD at lr 1 from zero, the new parameters are −(clipped g).
            let mut clipped = grads.clone();
            clip_gradients(&clip, &mut clipped);
            let expected: Vec<f32> = clipped.iter().map(|g| -g).collect();
            let (gpu, _) = h
                .optimizer_step(&optimizer, &clip, &partials, &params, &grads, &[], 1, 1.0)
                .unwrap();
            assert_close(
                &format!("clipped update n={n} {clip:?}"),
                &gpu,
                &expected,
                1e-5,
                1e-3,
            );
        }
    }
}

/// The arithmetic-ceiling kernel `bench --full` times does the
/// multiply-adds it counts: after n steps of x ← x·m + c every chain holds
/// mⁿ·x₀ + c·(1 − mⁿ)/(1 − m), summed here over an invocation's 32 chains.
#[test]
fn ceiling_kernel_does_the_multiply_adds_it_counts() {
    let h = harness();
    let ceiling = retroprop::gpu::ceiling::Ceiling::new(h.context());
    let (invocations, iterations, m, c) = (100, 1000u32, 0.999f32, 1e-3f32);
    let run = ceiling.run(invocations, iterations, m, c).unwrap();
    assert_eq!(run.sums.len(), invocations);
    let mn = (m as f64).powi(iterations as i32);
    let fixed = c as f64 * (1.0 - mn) / (1.0 - m as f64);
    let expected: Vec<f32> = (0..invocations)
        .map(|i| {
            (0..32)
                .map(|q| mn * (i as f32 * 1e-3 + q as f32) as f64 + fixed)
                .sum::<f64>() as f32
        })
        .collect();
    assert_close("ceiling sums", &run.sums, &expected, 1e-4, 1e-6);
    assert!(run.seconds > 0.0);
}
