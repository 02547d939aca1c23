//! Split-K (src/gpu/dispatch.rs `split_layout`, shaders/matmul.wgsl
//! `matmul_finish`): products whose reduction is summed in slices, a
//! z-layer of workgroups each, then added in a fixed order. Every kernel
//! against the CPU at awkward shapes, a split run repeated bit for bit,
//! and training with split products (micro-batches, a reduction longer
//! than `REDUCTION_CHUNK`) against the CPU. Needs a wgpu adapter; on a
//! machine without a GPU install Mesa's software Vulkan: `apt-get install
//! mesa-vulkan-drivers`.

mod common;

use common::{assert_close, max_rel_error, random, widen};
use retroprop::cpu::{Gemm, dense_backward, dense_forward};
use retroprop::gpu::harness::KernelHarness;
use retroprop::gpu::{MatmulChoice, MatmulTiling, SplitK};
use retroprop::{Activation, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig};

/// Every kernel's tiling: workgroup memory (64 × 64 and 128 × 128 tiles;
/// vec4 tiles), storage buffers, textures (blocks and one row).
const TILINGS: [fn() -> MatmulTiling; 6] = [
    MatmulTiling::shared,
    MatmulTiling::shared_large,
    MatmulTiling::shared_vec4,
    MatmulTiling::direct,
    MatmulTiling::texture,
    MatmulTiling::texture_short,
];

fn split_harness(tiling: MatmulTiling, slices: u32) -> KernelHarness {
    KernelHarness::open_split(tiling, slices).unwrap_or_else(|e| {
        panic!(
            "cannot open the GPU kernel harness: {e}\n{}",
            common::NO_GPU_HELP
        )
    })
}

/// C = op(A) · op(B) in f64, rounded once.
fn cpu_matmul(
    a: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    trans: (bool, bool),
) -> Vec<f32> {
    let (a64, b64) = (widen(a), widen(b));
    let mut c = vec![0f64; m * n];
    let sa = if trans.0 {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let sb = if trans.1 {
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

#[test]
fn split_products_match_cpu_with_every_kernel() {
    // K: tiny (one slice holds it), not a multiple of the slices nor of
    // any kernel's K step, and long enough for every slice to be busy.
    for tiling in TILINGS {
        for slices in [2, 3, 7] {
            let h = split_harness(tiling(), slices);
            let mut seed = 0;
            for &(m, n) in &[(1, 1), (3, 65), (17, 3), (65, 63)] {
                for &k in &[1usize, 5, 17, 64, 257, 1001] {
                    for trans in [(false, false), (false, true), (true, false), (true, true)] {
                        seed += 1;
                        let a = random(m * k, -1.0, 1.0, seed);
                        let b = random(k * n, -1.0, 1.0, seed + 1000);
                        let gpu = h.matmul(&a, &b, m, k, n, trans.0, trans.1).unwrap();
                        let cpu = cpu_matmul(&a, &b, (m, k, n), trans);
                        assert_close(
                            &format!("{:?} in {slices} slices: {m}x{k}x{n} {trans:?}", h.tiling()),
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
}

/// The CPU's dense kernels sum in f32 too, in another order than the
/// slices: reductions of 257 and 1 000 terms differ by up to about 2e-5
/// of their scale.
const F32_ORDER: f64 = 1e-4;

#[test]
fn split_training_kernels_match_cpu_with_every_epilogue() {
    for tiling in TILINGS {
        let h = split_harness(tiling(), 4);
        for (i, activation) in [
            Activation::Relu,
            Activation::Tanh,
            Activation::LeakyRelu { slope: 0.3 },
        ]
        .into_iter()
        .enumerate()
        {
            for &(rows, inputs, outputs) in &[(3, 1000, 5), (65, 257, 17), (301, 9, 3)] {
                let seed = 100 * i as u64 + rows as u64;
                let x = random(rows * inputs, -2.0, 2.0, seed);
                let w = random(outputs * inputs, -1.0, 1.0, seed + 1);
                let b = random(outputs, -1.0, 1.0, seed + 2);
                let what = format!("{:?}, {activation} {rows}x{inputs}->{outputs}", h.tiling());
                let (gz, ga) = h.dense_forward(&x, &w, &b, activation).unwrap();
                let (mut cz, mut ca) = (vec![0f32; rows * outputs], vec![0f32; rows * outputs]);
                dense_forward(&x, &w, &b, activation, &mut cz, &mut ca);
                let scale = (inputs as f64).sqrt() * 0.1;
                assert_close(&format!("{what} Z"), &gz, &cz, F32_ORDER, scale);
                assert_close(&format!("{what} A"), &ga, &ca, F32_ORDER, scale);

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
                let scale = (rows as f64).sqrt() * 1e-1;
                let (gdw, gdb) = h.weight_and_bias_grad(&grad_z, &x, rows, None).unwrap();
                assert_close(&format!("{what} dW"), &gdw, &dw, F32_ORDER, scale);
                assert_close(&format!("{what} db"), &gdb, &db, F32_ORDER, scale);
                // A step's later micro-batches add theirs (EPILOGUE_ADD).
                let initial = (
                    random(outputs * inputs, -1.0, 1.0, seed + 5),
                    random(outputs, -1.0, 1.0, seed + 6),
                );
                let (adw, adb) = h
                    .weight_and_bias_grad(&grad_z, &x, rows, Some((&initial.0, &initial.1)))
                    .unwrap();
                let plus = |a: &[f32], b: &[f32]| -> Vec<f32> {
                    a.iter().zip(b).map(|(a, b)| a + b).collect()
                };
                assert_close(
                    &format!("{what} dW added"),
                    &adw,
                    &plus(&dw, &initial.0),
                    1e-5,
                    scale,
                );
                assert_close(
                    &format!("{what} db added"),
                    &adb,
                    &plus(&db, &initial.1),
                    1e-5,
                    scale,
                );

                let cpu_dz_prev: Vec<f32> = da_prev
                    .iter()
                    .zip(&z_prev)
                    .map(|(g, &z)| g * activation.derivative(z))
                    .collect();
                let gdz = h
                    .input_grad(&grad_z, &w, &z_prev, rows, activation)
                    .unwrap();
                let scale = (outputs as f64).sqrt() * 1e-1;
                assert_close(
                    &format!("{what} dZ_prev"),
                    &gdz,
                    &cpu_dz_prev,
                    F32_ORDER,
                    scale,
                );
            }
        }
    }
}

#[test]
fn a_split_product_is_the_same_bit_for_bit_from_one_run_to_the_next() {
    for tiling in TILINGS {
        let h = split_harness(tiling(), 5);
        let (m, k, n) = (37, 3001, 29);
        let a = random(m * k, -1.0, 1.0, 11);
        let b = random(k * n, -1.0, 1.0, 12);
        let first = h.matmul(&a, &b, m, k, n, true, false).unwrap();
        for run in 1..4 {
            let again = h.matmul(&a, &b, m, k, n, true, false).unwrap();
            let differ = first
                .iter()
                .zip(&again)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differ,
                0,
                "{:?}: run {run} differs from the first in {differ} of {} values",
                h.tiling(),
                first.len()
            );
        }
    }
}

/// `rows` rows of `features` features in [-1, 1), two classes by the sign
/// of the first.
fn data(rows: usize, features: usize, seed: u64) -> Dataset {
    let x = random(rows * features, -1.0, 1.0, seed);
    let labels = x.chunks(features).map(|r| u32::from(r[0] > 0.0)).collect();
    Dataset::new(x, features, Targets::Classes(labels)).unwrap()
}

/// Trains `sizes` for `steps` steps of `batch` rows on the CPU and on the
/// GPU with `choice` (passes of at most `pass_rows` rows), and asserts the
/// parameters agree.
fn assert_trains_like_the_cpu(
    choice: MatmulChoice,
    sizes: &[usize],
    batch: usize,
    pass_rows: usize,
    steps: u64,
) {
    let train = data(batch * steps as usize, sizes[0], 7);
    let mlp = Mlp::new(sizes, Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.1))
        .batch_size(batch)
        .shuffle(false);
    let mut cpu = common::trainer(mlp.clone(), config.clone(), Device::Cpu);
    let gpu_config = config.matmul(choice).max_rows_per_pass(pass_rows);
    let mut gpu = common::trainer(mlp, gpu_config, Device::Gpu);
    let cpu_loss = cpu.train_steps(&train, steps).unwrap();
    let gpu_loss = gpu.train_steps(&train, steps).unwrap();
    let (c, g) = (cpu.parameters().unwrap(), gpu.parameters().unwrap());
    let (err, at) = max_rel_error(&widen(&g), &widen(&c), 1e-2);
    let what = format!("{choice:?}, {sizes:?} at batch {batch} in passes of {pass_rows}");
    println!("{what}: loss cpu {cpu_loss:.6} gpu {gpu_loss:.6}, worst parameter {at}: {err:.2e}");
    assert!(
        (cpu_loss - gpu_loss).abs() < 1e-4 * cpu_loss.abs().max(1.0),
        "{what}: loss cpu {cpu_loss} gpu {gpu_loss}"
    );
    assert!(
        err < 1e-4,
        "{what}: parameter {at} differs by {err:.2e} of its scale"
    );
}

/// Split-K on every product small enough: 1 024 units, slices of at
/// least 16.
fn split(choice: MatmulChoice) -> MatmulChoice {
    MatmulChoice {
        split: Some(SplitK {
            units: 1024,
            min_slice_k: 16,
        }),
        ..choice
    }
}

#[test]
fn training_with_split_products_matches_the_cpu() {
    for choice in [
        MatmulChoice::by_shape(2),
        MatmulChoice::single(MatmulTiling::shared_vec4()),
        MatmulChoice::texture_by_shape(8),
        MatmulChoice::single(MatmulTiling::direct()),
    ] {
        // One pass, then micro-batches whose gradients add up (Add).
        assert_trains_like_the_cpu(split(choice), &[50, 40, 3], 200, 200, 3);
        assert_trains_like_the_cpu(split(choice), &[50, 40, 3], 200, 70, 3);
    }
}

#[test]
fn a_split_reduction_longer_than_a_chunk_matches_the_cpu() {
    // The weight gradients' K (the batch) crosses REDUCTION_CHUNK (32 768)
    // twice: each chunk split, its finish adding to the one before.
    for choice in [MatmulChoice::by_shape(2), MatmulChoice::texture_by_shape(8)] {
        assert_trains_like_the_cpu(split(choice), &[16, 32, 2], 70_000, 70_000, 1);
    }
}
