//! `Precision::Mixed`: f16 operands and f32 sums in every matrix product
//! (torch.autocast with float16), f32 everywhere else. The f16 kernel
//! against exact and f16-rounded references at a bound derived from f16's
//! unit roundoff; a mixed run against the f32 CPU reference run; digits to
//! the f32 accuracy; the precision in checkpoints and model files; the
//! refusals (the CPU, a resume in another precision).
//!
//! Needs a wgpu adapter with `shader-f16`; on a machine without a GPU,
//! Mesa's software Vulkan offers it (Debian/Ubuntu: `apt-get install
//! mesa-vulkan-drivers`; lavapipe of Mesa 22.3 and 25.0 has it).

mod common;

use common::{NO_GPU_HELP, random};
use retroprop::gpu::MatmulTiling;
use retroprop::gpu::harness::KernelHarness;
use retroprop::io::{PRECISION_KEY, load_checkpoint, load_model, save_checkpoint};
use retroprop::io::{RunNotes, SavedModel, save_noted_model};
use retroprop::{
    Activation, Adam, Device, Error, Init, Loss, Mlp, Precision, Sgd, TrainConfig, Trainer,
};

/// f16's unit roundoff: 11 significant bits, round to nearest.
const U16: f64 = 1.0 / 2048.0;
/// f32's unit roundoff.
const U32: f64 = 1.0 / 16_777_216.0;

/// `x` rounded to the nearest f16 (ties to even), as f32: the CPU twin of
/// WGSL's `f16(x)` in shaders/matmul_f16.wgsl. Normal f16 values have an
/// ulp of 2^(e − 10) for exponents e from −14 to 15; below 2⁻¹⁴ the
/// subnormals' ulp is 2⁻²⁴; past 65 504 (from 65 520, the midpoint to
/// 2¹⁶) the value is infinite.
fn round_to_f16(x: f32) -> f32 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let exponent = ((x.to_bits() >> 23) & 0xff) as i32 - 127;
    let ulp = 2f64.powi(exponent.max(-14) - 10);
    let rounded = (x as f64 / ulp).round_ties_even() * ulp;
    if rounded.abs() >= 65520.0 {
        return f32::INFINITY.copysign(x);
    }
    rounded as f32
}

#[test]
fn the_cpu_twin_rounds_as_ieee_half() {
    // Values whose f16 neighbours are known by hand.
    let cases = [
        (1.0, 1.0),
        (1.0 + 1.0 / 4096.0, 1.0),                // a quarter ulp: down
        (1.0 + 1.0 / 2048.0, 1.0),                // half an ulp, a tie: to even (down)
        (1.0 + 3.0 / 2048.0, 1.0 + 2.0 / 1024.0), // one and a half, a tie: to even (up)
        (1.0 + 2.5 / 4096.0, 1.0 + 1.0 / 1024.0), // past half an ulp: up
        (1.0 / 3.0, 0.333_251_95),                // 0x3555
        (-2.0 / 3.0, -0.666_503_9),               // 0xB955
        (65504.0, 65504.0),                       // the largest f16
        (65519.0, 65504.0),                       // below the midpoint to 2¹⁶
        (65520.0, f32::INFINITY),                 // the midpoint: infinite
        (3.0 / 16_777_216.0, 3.0 / 16_777_216.0), // a subnormal, exact
        (2.5 / 16_777_216.0, 2.0 / 16_777_216.0), // a subnormal tie: to even
        (1e-8, 0.0),                              // below half the least subnormal
    ];
    for (x, expected) in cases {
        assert_eq!(round_to_f16(x), expected, "f16({x})");
    }
}

/// The harness on the f16 kernel; an adapter without `shader-f16` fails
/// the test saying where to find one.
fn half_harness() -> KernelHarness {
    KernelHarness::open_with(Some(MatmulTiling::half())).unwrap_or_else(|e| {
        panic!("cannot open the f16 matmul (it needs shader-f16): {e}\n{NO_GPU_HELP}")
    })
}

/// op(A)[i, k] and op(B)[k, j] of row-major storage.
fn operands(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut a_op = vec![0.0; m * k];
    let mut b_op = vec![0.0; k * n];
    for i in 0..m {
        for p in 0..k {
            a_op[i * k + p] = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
        }
    }
    for p in 0..k {
        for j in 0..n {
            b_op[p * n + j] = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
        }
    }
    (a_op, b_op)
}

#[test]
fn the_f16_kernel_rounds_each_operand_once_and_sums_in_f32() {
    let h = half_harness();
    // 1 + 2⁻¹² is no f16: it rounds to 1 (to nearest, and toward zero too).
    let c = h
        .matmul(&[1.0 + 1.0 / 4096.0], &[1.0], 1, 1, 1, false, false)
        .unwrap();
    assert_eq!(c, [1.0], "the operand was not rounded to f16");
    // 1 + 2⁻¹⁰ is an f16: kept.
    let c = h
        .matmul(&[1.0 + 1.0 / 1024.0], &[1.0], 1, 1, 1, false, false)
        .unwrap();
    assert_eq!(c, [1.0 + 1.0 / 1024.0]);
    // 1 + 2⁻²⁰ needs 21 bits: an f32 sum keeps it, an f16 sum would not.
    let c = h
        .matmul(
            &[1.0, 1.0 / 1_048_576.0],
            &[1.0, 1.0],
            1,
            2,
            1,
            false,
            false,
        )
        .unwrap();
    assert_eq!(c, [1.0 + 1.0 / 1_048_576.0], "the sum was not kept in f32");
}

/// The bound on one element of the f16 product, derived. With a′ = a(1+α),
/// b′ = b(1+β), |α|, |β| ≤ u = 2⁻¹¹ (rounding to f16; a subnormal operand
/// adds an absolute error of at most 2⁻²⁵, times |other| ≤ 1 here), the
/// product a′b′ is exact in f32, so
///   |a′b′ − ab| ≤ (2u + u²)|ab| + 2 · 2⁻²⁵,
/// and K f32 additions in any order add at most γ_K Σ|a′b′| with
/// γ_K = K·u₃₂ / (1 − K·u₃₂) (Higham, Accuracy and Stability, §3.1):
///   |c − Σab| ≤ (2u + u² + γ_K (1 + u)²) Σ|a||b| + K · 2⁻²⁴.
fn f16_product_bound(k: usize, abs_sum: f64) -> f64 {
    let gamma = k as f64 * U32 / (1.0 - k as f64 * U32);
    (2.0 * U16 + U16 * U16 + gamma * (1.0 + U16).powi(2)) * abs_sum + k as f64 * 2f64.powi(-24)
}

#[test]
fn the_f16_kernel_is_within_the_f16_bound_of_the_exact_product() {
    let h = half_harness();
    let mut seed = 0;
    for &m in &[1usize, 3, 17, 65] {
        for &k in &[1usize, 17, 64, 257] {
            for &n in &[1usize, 3, 63, 65] {
                for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                    seed += 1;
                    let a = random(m * k, -1.0, 1.0, seed);
                    let b = random(k * n, -1.0, 1.0, seed + 1000);
                    let got = h.matmul(&a, &b, m, k, n, ta, tb).unwrap();
                    let (a_op, b_op) = operands(&a, &b, m, k, n, ta, tb);
                    let half = |v: &[f64]| -> Vec<f64> {
                        v.iter().map(|&x| round_to_f16(x as f32) as f64).collect()
                    };
                    let (a_half, b_half) = (half(&a_op), half(&b_op));
                    let mut worst = (0.0f64, 0.0f64);
                    for i in 0..m {
                        for j in 0..n {
                            let (mut exact, mut abs_sum, mut rounded) = (0.0, 0.0, 0.0);
                            for p in 0..k {
                                exact += a_op[i * k + p] * b_op[p * n + j];
                                abs_sum += (a_op[i * k + p] * b_op[p * n + j]).abs();
                                rounded += a_half[i * k + p] * b_half[p * n + j];
                            }
                            let c = got[i * n + j] as f64;
                            let what = format!("{m}x{k}x{n} ta={ta} tb={tb} C[{i},{j}]");
                            let bound = f16_product_bound(k, abs_sum);
                            assert!(
                                (c - exact).abs() <= bound,
                                "{what}: {c} vs exact {exact}: error {:.3e} > bound {bound:.3e}",
                                (c - exact).abs()
                            );
                            // Against the f16-rounded operands only the f32
                            // sum's rounding is left: γ_K Σ|a′b′|.
                            let sum_bound = k as f64 * U32 * 1.01 * abs_sum * (1.0 + U16).powi(2);
                            assert!(
                                (c - rounded).abs() <= sum_bound,
                                "{what}: {c} vs f16-rounded {rounded}: error {:.3e} > {sum_bound:.3e}",
                                (c - rounded).abs()
                            );
                            worst.0 = worst.0.max((c - exact).abs() / bound);
                            worst.1 = worst.1.max((c - exact).abs() / abs_sum.max(1e-30));
                        }
                    }
                    if (ta, tb) == (false, false) {
                        println!(
                            "f16 matmul {m}x{k}x{n}: worst error {:.2} of the bound, {:.2e} of Σ|ab| OK",
                            worst.0, worst.1
                        );
                    }
                }
            }
        }
    }
}

/// A classification problem of 256 rows, 12 features, 4 classes.
fn blobs() -> retroprop::Dataset {
    let x = random(256 * 12, -1.0, 1.0, 77);
    let labels = (0..256)
        .map(|r| {
            let row = &x[r * 12..(r + 1) * 12];
            (row[0] + row[1] > 0.0) as u32 * 2 + (row[2] - row[3] > 0.0) as u32
        })
        .collect();
    retroprop::Dataset::new(x, 12, retroprop::Targets::Classes(labels)).unwrap()
}

fn gpu_trainer(mlp: Mlp, config: TrainConfig) -> Trainer {
    Trainer::new(mlp, config.device(Device::Gpu)).unwrap_or_else(|e| {
        panic!("cannot build a mixed-precision trainer on the GPU: {e}\n{NO_GPU_HELP}")
    })
}

/// The losses of `steps` single steps.
fn losses(trainer: &mut Trainer, data: &retroprop::Dataset, steps: usize) -> Vec<f64> {
    (0..steps)
        .map(|_| trainer.train_steps(data, 1).unwrap())
        .collect()
}

#[test]
fn a_mixed_run_tracks_the_f32_cpu_run() {
    // Three products a layer, each within (2u + γ_K) Σ|a||b| of exact
    // (the bound above; K ≤ 256 here, γ_K < 2⁻¹⁵). Through the loss, which
    // moves by at most its logits' error, one forward pass of 3 layers
    // moves the loss by at most 3 · 2u relative where Σ|a||b| ≈ |Σab|
    // (condition near 1); each of 8 SGD steps adds at most as much
    // through its rounded gradients. So: 3 · 2u for the first step's
    // loss, 8 · 3 · 2u for the later ones. (Rounding errors of random sign
    // sum to far less: 1e-6 to 4e-5 measured on lavapipe.) And the f16
    // rounding must show: the mixed losses differ from the f32 GPU run's.
    let data = blobs();
    let mlp = Mlp::new(&[12, 32, 32, 4], Activation::Tanh, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Sgd::default().lr(0.1))
        .batch_size(256)
        .shuffle(false)
        .init(Init::XavierUniform)
        .seed(4);
    let steps = 8;
    let cpu = losses(
        &mut Trainer::new(mlp.clone(), config.clone().device(Device::Cpu)).unwrap(),
        &data,
        steps,
    );
    let f32_gpu = losses(&mut gpu_trainer(mlp.clone(), config.clone()), &data, steps);
    let mut mixed_trainer = gpu_trainer(mlp, config.precision(Precision::Mixed));
    let mixed = losses(&mut mixed_trainer, &data, steps);
    let ceiling = steps as f64 * 3.0 * 2.0 * U16;
    for s in 0..steps {
        let relative = (mixed[s] - cpu[s]).abs() / cpu[s].abs();
        println!(
            "step {s}: cpu f32 {:.7} gpu f32 {:.7} gpu mixed {:.7}: relative {relative:.2e} (ceiling {ceiling:.2e}) {}",
            cpu[s],
            f32_gpu[s],
            mixed[s],
            if relative <= ceiling { "OK" } else { "NOT OK" }
        );
        assert!(
            relative <= ceiling,
            "step {s}: mixed {} vs cpu {}",
            mixed[s],
            cpu[s]
        );
        if s == 0 {
            assert!(relative <= 3.0 * 2.0 * U16, "first step: {relative:.2e}");
        }
    }
    assert_ne!(
        mixed, f32_gpu,
        "the mixed run computed exactly what the f32 run did: no f16 rounding took place"
    );
    // Master weights and state are f32: the parameters are f32 values the
    // optimizer moved, not f16 ones.
    let params = mixed_trainer.parameters().unwrap();
    assert!(
        params.iter().any(|&p| round_to_f16(p) != p),
        "every parameter is an f16 value: the master weights were not kept in f32"
    );
}

#[test]
fn digits_train_to_the_f32_accuracy_in_mixed_precision() {
    let (train, test) = common::digits().split(0.2, 42).unwrap();
    let mlp = Mlp::new(&[64, 64, 10], Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(3e-3))
        .batch_size(64)
        .epochs(25)
        .init(Init::KaimingUniform)
        .seed(3);
    let accuracy = |precision| {
        let mut trainer = gpu_trainer(mlp.clone(), config.clone().precision(precision));
        trainer.fit(&train, None).unwrap();
        trainer.evaluate(&test).unwrap().accuracy.unwrap()
    };
    let (f32_accuracy, mixed_accuracy) = (accuracy(Precision::F32), accuracy(Precision::Mixed));
    println!(
        "digits: held-out accuracy f32 {f32_accuracy:.4}, mixed {mixed_accuracy:.4} ({} rows)",
        test.rows()
    );
    assert!(
        (mixed_accuracy - f32_accuracy).abs() <= 0.01,
        "digits: mixed {mixed_accuracy} vs f32 {f32_accuracy}: more than a point apart"
    );
    assert!(
        mixed_accuracy >= 0.95,
        "digits in mixed precision: {mixed_accuracy}"
    );
}

#[test]
fn the_precision_is_in_the_checkpoint_and_the_model_and_a_resume_in_another_is_refused() {
    let dir = std::env::temp_dir().join(format!("retroprop-mixed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let data = blobs();
    let mlp = Mlp::new(&[12, 16, 4], Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .batch_size(64)
        .precision(Precision::Mixed);
    let mut trainer = gpu_trainer(mlp.clone(), config.clone());
    trainer.train_steps(&data, 3).unwrap();
    let checkpoint = trainer.checkpoint().unwrap();
    let model = SavedModel {
        mlp: mlp.clone(),
        params: checkpoint.params.clone(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: Loss::CrossEntropy,
        standardizer: None,
    };
    let (checkpoint_path, model_path) = (dir.join("c.safetensors"), dir.join("m.safetensors"));
    save_checkpoint(&checkpoint_path, &model, &config.optimizer, &checkpoint).unwrap();
    let notes = RunNotes {
        precision: Some(Precision::Mixed),
        ..RunNotes::default()
    };
    save_noted_model(&model_path, &model, &notes).unwrap();

    let (as_model, _, read_back) = load_checkpoint(&checkpoint_path).unwrap();
    let settings = read_back
        .settings
        .clone()
        .expect("the checkpoint records its settings");
    assert_eq!(
        settings.precision,
        Precision::Mixed,
        "retroprop.settings.precision"
    );
    assert_eq!(
        as_model.precision,
        Some(Precision::Mixed),
        "{PRECISION_KEY} of the checkpoint"
    );
    assert_eq!(
        load_model(&model_path).unwrap().precision,
        Some(Precision::Mixed),
        "{PRECISION_KEY}"
    );

    // The same run resumes; one in f32 is refused by name.
    let mut same = gpu_trainer(mlp.clone(), config.clone());
    same.restore(&read_back).unwrap();
    let mut other = gpu_trainer(mlp, config.precision(Precision::F32));
    match other.restore(&read_back) {
        Err(Error::Config(message)) => {
            assert!(message.contains("precision mixed -> f32"), "{message}")
        }
        other => panic!("a resume in f32 of a mixed run: {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_cpu_refuses_mixed_precision_naming_the_flag() {
    let mlp = Mlp::new(&[2, 4, 2], Activation::Tanh, Activation::Identity).unwrap();
    for device in [Device::Cpu, Device::Auto] {
        let config = TrainConfig::default()
            .device(device)
            .precision(Precision::Mixed);
        match Trainer::new(mlp.clone(), config) {
            // Auto takes a hardware GPU where there is one; it must offer
            // shader-f16 then, and the mixed run is fine.
            Ok(trainer) if device == Device::Auto => {
                println!("device auto took {}", trainer.device_name())
            }
            Ok(trainer) => panic!("device {device} trains mixed on {}", trainer.device_name()),
            Err(Error::Config(message)) => {
                println!("device {device}: {message}");
                assert!(
                    message.contains("--precision mixed needs a GPU with shader-f16"),
                    "{message}"
                );
                assert!(message.contains("--precision f32"), "{message}");
            }
            Err(e) => panic!("device {device}: not a configuration error: {e}"),
        }
    }
}

#[test]
fn a_precision_reads_back_from_its_text() {
    for (text, precision) in [("f32", Precision::F32), ("mixed", Precision::Mixed)] {
        assert_eq!(text.parse::<Precision>(), Ok(precision));
        assert_eq!(precision.to_string(), text);
    }
    assert_eq!(Precision::NAMES, ["f32", "mixed"]);
    let error = "f16".parse::<Precision>().unwrap_err();
    assert!(
        error.contains("`f16`") && error.contains("f32 or mixed"),
        "{error}"
    );
    assert_eq!(TrainConfig::default().precision, Precision::F32);
}
