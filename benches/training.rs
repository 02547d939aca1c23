//! Criterion benchmarks: the matmul kernel variants, the CPU GEMMs and one
//! training step on each backend. On lavapipe keep them small; `retroprop
//! bench` measures the standard work.
//!
//!     cargo bench --bench training

use criterion::{Criterion, criterion_group, criterion_main};
use retroprop::gpu::harness::KernelHarness;
use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
use std::time::Duration;

fn matmul(c: &mut Criterion) {
    let Ok(h) = KernelHarness::open() else {
        eprintln!("no GPU adapter: skipping the matmul benchmarks");
        return;
    };
    let mut group = c.benchmark_group("matmul 256³");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for (name, ta, tb) in [
        ("NN", false, false),
        ("NT", false, true),
        ("TN", true, false),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| h.time_matmul(256, 256, 256, ta, tb, 1).unwrap())
        });
    }
    group.finish();
}

fn step(c: &mut Criterion) {
    let rows = 512;
    let x: Vec<f32> = (0..rows * 64).map(|i| (i % 13) as f32 / 13.0).collect();
    let labels = (0..rows as u32).map(|i| i % 10).collect();
    let data = Dataset::new(x, 64, Targets::Classes(labels)).unwrap();
    let mut group = c.benchmark_group("train step 64-128-128-10, batch 64");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for device in [Device::Cpu, Device::Gpu] {
        let mlp = Mlp::new(&[64, 128, 128, 10], Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default())
            .batch_size(64)
            .device(device);
        let Ok(mut trainer) = Trainer::new(mlp, config) else {
            eprintln!("no {device} backend: skipping");
            continue;
        };
        group.bench_function(device.to_string(), |b| {
            b.iter(|| trainer.train_steps(&data, 1).unwrap())
        });
    }
    group.finish();
}

/// The CPU backend's GEMMs on 512³ (NN): the built-in one and the system
/// BLAS when one is loaded.
fn cpu_gemm(c: &mut Criterion) {
    let n = 512;
    let a = vec![0.5f32; n * n];
    let b = vec![0.25f32; n * n];
    let mut out = vec![0f32; n * n];
    let s = (n as isize, 1);
    let mut group = c.benchmark_group("cpu gemm 512³");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function("built-in", |bench| {
        bench.iter(|| retroprop::cpu::gemm_builtin(n, n, n, 1.0, &a, s, &b, s, 0.0, &mut out, s))
    });
    if let Some(blas) = retroprop::cpu::blas() {
        group.bench_function(blas.name(), |bench| {
            bench.iter(|| assert!(blas.gemm(n, n, n, 1.0, &a, s, &b, s, 0.0, &mut out, s)))
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, cpu_gemm, step);
criterion_main!(benches);
