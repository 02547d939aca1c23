//! `retroprop bench`: the standard work (issue: MLP 784-1024-1024-10, ReLU,
//! softmax cross-entropy, Adam 1e-3, 16384 synthetic samples), timed on each
//! device; with --full also kernels, per-step overhead and scaling.

use crate::cli::{BenchArgs, parse_arch};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::{
    Activation, Adam, Dataset, Device, Init, Loss, Mlp, Optimizer, Precision, Sgd, Targets,
    TrainConfig, Trainer,
};
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

/// Synthetic data: x uniform in [0, 1), labels argmax of x·W for a fixed
/// random W (features × classes) whose columns are shifted to zero mean.
pub fn standard_data(
    samples: usize,
    features: usize,
    classes: usize,
    seed: u64,
) -> Result<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w: Vec<f32> = (0..features * classes)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    for c in 0..classes {
        let mean = (0..features).map(|f| w[f * classes + c]).sum::<f32>() / features as f32;
        (0..features).for_each(|f| w[f * classes + c] -= mean);
    }
    let x: Vec<f32> = (0..samples * features)
        .map(|_| rng.random_range(0.0..1.0))
        .collect();
    let labels = x
        .chunks_exact(features)
        .map(|row| {
            let scores: Vec<f32> = (0..classes)
                .map(|c| {
                    row.iter()
                        .enumerate()
                        .map(|(f, v)| v * w[f * classes + c])
                        .sum()
                })
                .collect();
            retroprop::loss::argmax(&scores) as u32
        })
        .collect();
    Dataset::new(x, features, Targets::Classes(labels)).map_err(|e| e.to_string())
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    pub system: String,
    pub device: String,
    pub arch: String,
    pub optimizer: String,
    pub precision: String,
    pub batch: usize,
    pub steps: usize,
    pub samples_per_s: f64,
    pub gflops: f64,
    pub step_ms_median: f64,
    pub step_ms_min: f64,
    pub step_ms_max: f64,
    pub first_step_s: f64,
    pub device_bytes: u64,
    pub host_peak_rss_bytes: Option<u64>,
}

fn system() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{} {}, {cores} cores",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// FLOPs of one step: 6 · B · Σ in·out (2 forward, 4 backward).
fn step_flops(sizes: &[usize], batch: usize) -> f64 {
    6.0 * batch as f64 * sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>()
}

/// Times `steps` steps of the standard work (or `sizes`) on `device`.
pub fn run(
    device: Device,
    sizes: &[usize],
    data: &Dataset,
    batch: usize,
    steps: usize,
    optimizer: Optimizer,
) -> Result<Run> {
    run_in(Precision::F32, device, sizes, data, batch, steps, optimizer)
}

/// [`run`] with the matrix products in `precision`.
fn run_in(
    precision: Precision,
    device: Device,
    sizes: &[usize],
    data: &Dataset,
    batch: usize,
    steps: usize,
    optimizer: Optimizer,
) -> Result<Run> {
    let mlp = Mlp::new(sizes, Activation::Relu, Activation::Identity).map_err(|e| e.to_string())?;
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(optimizer)
        .batch_size(batch)
        .init(Init::KaimingUniform)
        .device(device)
        .precision(precision);
    let start = Instant::now();
    let mut trainer = Trainer::new(mlp, config).map_err(|e| e.to_string())?;
    trainer.train_steps(data, 1).map_err(|e| e.to_string())?;
    let first_step_s = start.elapsed().as_secs_f64();
    trainer.train_steps(data, 4).map_err(|e| e.to_string())?;
    // Three timed groups, each synchronised only at its end.
    let groups = 3.min(steps.max(1));
    let mut per_step = Vec::new();
    for g in 0..groups {
        let n = steps / groups + usize::from(g < steps % groups);
        let t = Instant::now();
        trainer
            .train_steps(data, n as u64)
            .map_err(|e| e.to_string())?;
        per_step.push(t.elapsed().as_secs_f64() / n as f64);
    }
    per_step.sort_by(f64::total_cmp);
    let median = per_step[per_step.len() / 2];
    Ok(Run {
        system: system(),
        device: trainer.device_name(),
        arch: sizes
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("-"),
        optimizer: optimizer.to_string(),
        precision: precision.to_string(),
        batch,
        steps,
        samples_per_s: batch as f64 / median,
        gflops: step_flops(sizes, batch) / median / 1e9,
        step_ms_median: median * 1e3,
        step_ms_min: per_step[0] * 1e3,
        step_ms_max: per_step[per_step.len() - 1] * 1e3,
        first_step_s,
        device_bytes: trainer.memory_bytes(),
        host_peak_rss_bytes: peak_rss(),
    })
}

fn devices(list: Option<&str>) -> Result<Vec<Device>> {
    match list {
        Some(text) => text.split(',').map(|d| d.parse::<Device>()).collect(),
        None => {
            let mut all = vec![Device::Cpu];
            if !retroprop::gpu::adapters().is_empty() {
                all.push(Device::Gpu);
            }
            Ok(all)
        }
    }
}

fn print_row(r: &Run) {
    println!(
        "{:<48} {:>6} {:>10.1} {:>8.2} {:>10.2} ({:.2}–{:.2}) {:>9.2} {:>9.1} {:>9.1}",
        truncate(
            &format!(
                "{}{}",
                if r.precision == "f32" { "" } else { "mixed, " },
                r.device
            ),
            48
        ),
        r.batch,
        r.samples_per_s,
        r.gflops,
        r.step_ms_median,
        r.step_ms_min,
        r.step_ms_max,
        r.first_step_s,
        r.device_bytes as f64 / (1 << 20) as f64,
        r.host_peak_rss_bytes.unwrap_or(0) as f64 / (1 << 20) as f64
    );
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.steps == 0 {
        return Err("--steps must be at least 1: the timings are per step".into());
    }
    let sizes = parse_arch(&args.arch)?;
    let batches: Vec<usize> = args
        .batch
        .split(',')
        .map(|b| {
            b.trim()
                .parse()
                .ok()
                .filter(|&b: &usize| b > 0)
                .ok_or(format!("--batch: `{b}` is not a batch size"))
        })
        .collect::<Result<_>>()?;
    if args.samples < batches.iter().copied().max().unwrap_or(1) {
        return Err(format!(
            "--samples {} is smaller than the largest batch",
            args.samples
        ));
    }
    let devices = devices(args.devices.as_deref())?;
    let classes = *sizes.last().unwrap();
    if classes < 2 {
        return Err("--arch: the benchmark's cross-entropy needs at least 2 outputs".into());
    }
    let data = standard_data(args.samples, sizes[0], classes, 0)?;
    if !args.json {
        println!(
            "standard work: MLP {}, relu, cross_entropy, {} (torch defaults), {} samples, {} timed steps after 5 warm-up; {}",
            args.arch,
            args.optimizer,
            args.samples,
            args.steps,
            system()
        );
        println!(
            "{:<48} {:>6} {:>10} {:>8} {:>24} {:>9} {:>9} {:>9}",
            "device",
            "batch",
            "samples/s",
            "GFLOP/s",
            "step ms median (range)",
            "1st step s",
            "dev MiB",
            "RSS MiB"
        );
    }
    let mut runs = Vec::new();
    for &device in &devices {
        for &batch in &batches {
            let r = run_in(
                args.precision,
                device,
                &sizes,
                &data,
                batch,
                args.steps,
                args.optimizer,
            )?;
            if args.json {
                println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
            } else {
                print_row(&r);
            }
            runs.push((device, r));
        }
    }
    let wanted = std::env::var("RETROPROP_BLAS").unwrap_or_default();
    if !args.json
        && devices.contains(&Device::Cpu)
        && retroprop::cpu::blas().is_none()
        && wanted.trim() != "off"
    {
        println!(
            "note: the CPU ran on its built-in GEMM; with OpenBLAS installed (Debian/Ubuntu: \
             apt-get install libopenblas0) each large product shape runs on the faster of the \
             two (docs/performance.md)"
        );
    }
    if args.profile && devices.contains(&Device::Gpu) {
        for &batch in &batches {
            profile(&args, &sizes, &data, batch)?;
        }
        fixed_cost(&args)?;
    }
    if args.full {
        full(&args, &devices, &runs)?;
    }
    Ok(())
}

/// What a GPU step dispatches at `batch`, and where its time goes: each
/// kernel's dispatches and milliseconds a step, by layer, counted where
/// they are recorded and timed by timestamps around every dispatch
/// (adapters with timestamp queries inside compute passes) over
/// `args.steps` steps after 5 warm-up steps; a table, or one JSON object a
/// kernel and one for the step.
fn profile(args: &BenchArgs, sizes: &[usize], data: &Dataset, batch: usize) -> Result<()> {
    let mlp = Mlp::new(sizes, Activation::Relu, Activation::Identity).map_err(|e| e.to_string())?;
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(args.optimizer)
        .batch_size(batch)
        .init(Init::KaimingUniform)
        .device(Device::Gpu)
        .precision(args.precision);
    let mut trainer = Trainer::new(mlp, config).map_err(|e| e.to_string())?;
    trainer.train_steps(data, 5).map_err(|e| e.to_string())?;
    let profile = trainer
        .profile_steps(data, args.steps as u64)
        .map_err(|e| e.to_string())?
        .ok_or("--profile: the GPU backend returned no profile")?;
    let arch = sizes
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("-");
    let by_kernel = profile.dispatches_by_kernel();
    let total = profile.total_ms();
    if args.json {
        let by_kernel: serde_json::Map<String, serde_json::Value> = by_kernel
            .iter()
            .map(|&(kernel, n)| (kernel.to_string(), n.into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "kind": "dispatches", "device": profile.device, "arch": arch, "batch": batch,
                "steps": profile.steps, "dispatches": profile.dispatches(),
                "by_kernel": by_kernel, "ms_per_step": total,
            })
        );
    } else {
        let breakdown: Vec<String> = by_kernel
            .iter()
            .map(|(kernel, n)| format!("{kernel} {n}"))
            .collect();
        println!(
            "\ndispatches of a step on {}, {arch}, batch {batch}: {} ({})",
            profile.device,
            profile.dispatches(),
            breakdown.join(", ")
        );
        match total {
            Some(total) => println!(
                "{total:.3} ms a step in kernels (mean of {} steps)",
                profile.timed_steps
            ),
            None => {
                println!("(not timed: the adapter has no timestamp queries inside compute passes)")
            }
        }
    }
    for k in &profile.kernels {
        let layer = k.layer.map_or(String::new(), |l| format!(" {l}"));
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "kind": "profile", "device": profile.device, "batch": batch,
                    "steps": profile.steps, "timed_steps": profile.timed_steps,
                    "kernel": k.kernel, "layer": k.layer,
                    "dispatches": k.dispatches, "ms_per_step": k.ms_per_step,
                })
            );
        } else {
            let time = match (k.ms_per_step, total) {
                (Some(ms), Some(total)) => {
                    format!("{ms:>10.3} ms {:>6.1} %", 100.0 * ms / total)
                }
                _ => String::new(),
            };
            println!(
                "  {:<24} {:>4} {time}",
                format!("{}{layer}", k.kernel),
                k.dispatches
            );
        }
    }
    Ok(())
}

/// The fixed cost of a GPU step: a 4-4-2 net at batch 1, whose step is
/// nothing but its dispatches, timed by the wall clock over 200 steps
/// (`run`), with its dispatches a step.
fn fixed_cost(args: &BenchArgs) -> Result<()> {
    let sizes = [4, 4, 2];
    let tiny = standard_data(256, 4, 2, 1)?;
    let r = run(Device::Gpu, &sizes, &tiny, 1, 200, args.optimizer)?;
    let mlp =
        Mlp::new(&sizes, Activation::Relu, Activation::Identity).map_err(|e| e.to_string())?;
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(args.optimizer)
        .batch_size(1)
        .device(Device::Gpu);
    let mut trainer = Trainer::new(mlp, config).map_err(|e| e.to_string())?;
    let dispatches = trainer
        .profile_steps(&tiny, 2)
        .map_err(|e| e.to_string())?
        .map_or(0.0, |p| p.dispatches());
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "kind": "fixed_cost", "device": r.device, "arch": r.arch, "batch": 1,
                "optimizer": r.optimizer, "step_ms_median": r.step_ms_median,
                "step_ms_min": r.step_ms_min, "step_ms_max": r.step_ms_max,
                "dispatches": dispatches,
            })
        );
    } else {
        println!(
            "\nfixed cost of a step on {}: 4-4-2 net, batch 1, {}: {:.3} ms/step \
             (median of 3 groups, {:.3}–{:.3}), {dispatches} dispatches ({:.1} µs a dispatch)",
            r.device,
            r.optimizer,
            r.step_ms_median,
            r.step_ms_min,
            r.step_ms_max,
            1e3 * r.step_ms_median / dispatches.max(1.0)
        );
    }
    Ok(())
}

/// The products backprop uses, as (A transposed, B transposed): NN
/// (forward on the GPU's layout, input gradients), NT, TN (weight gradients).
const VARIANTS: [(bool, bool); 3] = [(false, false), (false, true), (true, false)];

/// A matmul table's title and column heads (tables only, not `--json`).
fn matmul_header(args: &BenchArgs, title: &str) {
    if !args.json {
        println!("\n{title}");
        println!("{:>22} {:>14} {:>14} {:>14}", "M x K x N", "NN", "NT", "TN");
    }
}

/// `gflops` with its share of `peak` in brackets, for a table cell.
fn with_share(gflops: f64, peak: f64) -> String {
    format!("{gflops:.1} ({:.0} %)", 100.0 * gflops / peak)
}

/// One shape's GFLOP/s for the three [`VARIANTS`], each with its share of
/// `peak` (the GPU's arithmetic ceiling; none for the CPU's GEMMs, whose
/// peak is their own best): a table row, or a JSON object of `kind` with
/// `fields`, the shape and the shares (`nn_share`...) added.
#[allow(clippy::too_many_arguments)]
fn matmul_row(
    args: &BenchArgs,
    emit: &dyn Fn(&str, serde_json::Value),
    kind: &str,
    mut fields: serde_json::Value,
    (m, k, n): (usize, usize, usize),
    row: &[f64],
    peak: Option<f64>,
) {
    if !args.json {
        let cell = |g: f64| match peak {
            Some(p) => with_share(g, p),
            None => format!("{g:.1}"),
        };
        println!(
            "{:>22} {:>14} {:>14} {:>14}",
            format!("{m}x{k}x{n}"),
            cell(row[0]),
            cell(row[1]),
            cell(row[2])
        );
    }
    for (key, size) in [("m", m), ("k", k), ("n", n)] {
        fields[key] = size.into();
    }
    for (key, &gflops) in ["nn", "nt", "tn"].iter().zip(row) {
        fields[*key] = gflops.into();
        if let Some(p) = peak {
            fields[format!("{key}_share")] = (gflops / p).into();
        }
    }
    emit(kind, fields);
}

/// The standard work's whole step on `device` (from the main table's runs)
/// as a share of `peak`, a line and a JSON object a batch size.
fn step_shares(
    args: &BenchArgs,
    emit: &dyn Fn(&str, serde_json::Value),
    runs: &[(Device, Run)],
    device: Device,
    (peak, of): (f64, &str),
) {
    for (_, r) in runs.iter().filter(|(d, _)| *d == device) {
        if !args.json {
            println!(
                "whole step on {device}, batch {}: {} of the {of}",
                r.batch,
                with_share(r.gflops, peak).replace(" (", " GFLOP/s ("),
            );
        }
        emit(
            "step_share",
            serde_json::json!({
                "device": r.device, "batch": r.batch, "gflops": r.gflops,
                "peak_gflops": peak, "peak": of, "share": r.gflops / peak,
            }),
        );
    }
}

/// Kernels against the device's peak, per-step overhead, and scaling with
/// batch and width; `runs` are the main table's, shown as shares of the peak.
fn full(args: &BenchArgs, devices: &[Device], runs: &[(Device, Run)]) -> Result<()> {
    let emit = |kind: &str, fields: serde_json::Value| {
        if args.json {
            let mut v = fields;
            v["kind"] = kind.into();
            println!("{v}");
        }
    };
    if devices.contains(&Device::Gpu) {
        let h = retroprop::gpu::harness::KernelHarness::open().map_err(|e| e.to_string())?;
        let hardware = h.context().summary().is_hardware;
        let max = if hardware { 4096 } else { 1024 };
        let ceiling = retroprop::gpu::ceiling::Ceiling::new(h.context())
            .measure()
            .map_err(|e| e.to_string())?;
        if !args.json {
            println!(
                "\narithmetic ceiling of {}: {ceiling:.1} GFLOP/s (vec4 multiply-adds and \
                 nothing else, shaders/ceiling.wgsl)",
                h.context().summary().name
            );
        }
        emit(
            "ceiling",
            serde_json::json!({ "device": h.context().summary().name, "gflops": ceiling }),
        );
        step_shares(
            args,
            &emit,
            runs,
            Device::Gpu,
            (ceiling, "arithmetic ceiling"),
        );
        matmul_header(
            args,
            &format!(
                "matmul kernels on {} (tiling {:?}), GFLOP/s",
                h.context().summary().name,
                h.tiling()
            ),
        );
        let mut shapes: Vec<(usize, usize, usize)> = [256, 512, 1024, 2048, 4096]
            .iter()
            .filter(|&&s| s <= max)
            .map(|&s| (s, s, s))
            .collect();
        // The standard work's products at batch 1024: forward (B×784 · 784×1024), hidden, and output.
        shapes.extend([
            (1024, 784, 1024),
            (1024, 1024, 1024),
            (1024, 1024, 10),
            (1024, 1024, 784),
        ]);
        for (m, k, n) in shapes {
            let flops = 2.0 * (m * k * n) as f64;
            let reps = ((2e10 / flops) as usize).clamp(1, 50);
            let reps = if hardware { reps * 10 } else { reps.min(3) };
            let mut row = Vec::new();
            for (ta, tb) in VARIANTS {
                let secs = h
                    .time_matmul(m, k, n, ta, tb, reps)
                    .map_err(|e| e.to_string())?;
                row.push(flops / secs / 1e9);
            }
            matmul_row(
                args,
                &emit,
                "matmul",
                serde_json::json!({}),
                (m, k, n),
                &row,
                Some(ceiling),
            );
        }
    }
    if devices.contains(&Device::Cpu) {
        let (peak, gemm) = cpu_gemm(args, &emit);
        if !args.json {
            println!(
                "\nCPU GEMM peak measured: {peak:.1} GFLOP/s ({gemm}, its best product above)"
            );
        }
        emit(
            "gemm_peak",
            serde_json::json!({ "gemm": gemm, "gflops": peak }),
        );
        step_shares(args, &emit, runs, Device::Cpu, (peak, "GEMM peak"));
    }
    let tiny = standard_data(256, 4, 2, 1)?;
    for &device in devices {
        let r = run(device, &[4, 4, 2], &tiny, 1, 200, Sgd::default().into())?;
        if !args.json {
            println!(
                "\nper-step overhead on {}: 4-4-2 net, batch 1: {:.0} steps/s ({:.3} ms/step)",
                r.device,
                1e3 / r.step_ms_median,
                r.step_ms_median
            );
        }
        emit(
            "overhead",
            serde_json::to_value(&r).map_err(|e| e.to_string())?,
        );
    }
    let sizes = parse_arch(&args.arch)?;
    for &device in devices {
        let software = device == Device::Gpu
            && retroprop::gpu::adapters()
                .first()
                .is_some_and(|a| !a.is_hardware);
        let cap = if software { 1024 } else { 8192 };
        if !args.json {
            println!(
                "\nstep time against batch size on {device} ({}), 2 timed steps each",
                args.arch
            );
        }
        let data = standard_data(cap.max(1024), sizes[0], *sizes.last().unwrap(), 2)?;
        for batch in [1, 4, 16, 64, 256, 1024, 4096, 8192]
            .into_iter()
            .filter(|&b| b <= cap)
        {
            let r = run(device, &sizes, &data, batch, 2, Adam::default().into())?;
            if !args.json {
                println!(
                    "  batch {batch:>5}: {:>10.2} ms/step {:>10.1} samples/s",
                    r.step_ms_median, r.samples_per_s
                );
            }
            emit(
                "batch_scaling",
                serde_json::to_value(&r).map_err(|e| e.to_string())?,
            );
        }
        // The width nets keep --arch's inputs and classes: `data` has
        // labels up to the last size, which a fixed 10 outputs refused.
        let (inputs, classes) = (sizes[0], *sizes.last().unwrap());
        if !args.json {
            println!("step time against width on {device} ({inputs}-W-W-{classes}, batch 64)");
        }
        let cap = if software { 1024 } else { 4096 };
        for width in [256, 512, 1024, 2048, 4096]
            .into_iter()
            .filter(|&w| w <= cap)
        {
            let r = run(
                device,
                &[inputs, width, width, classes],
                &data,
                64,
                2,
                Adam::default().into(),
            )?;
            if !args.json {
                println!(
                    "  width {width:>5}: {:>10.2} ms/step {:>8.2} GFLOP/s",
                    r.step_ms_median, r.gflops
                );
            }
            emit(
                "width_scaling",
                serde_json::to_value(&r).map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(())
}

/// The CPU backend's GEMMs on the square sizes and the standard work's
/// products: the built-in one, then the BLAS library when one is loaded (in
/// a second pass, so that the library's threads, which spin a while after
/// each call, do not slow the built-in one's), then which of the two the
/// backend runs each shape on. Returns the best GFLOP/s measured, the
/// machine's GEMM peak as far as this bench knows, and which GEMM reached
/// it.
fn cpu_gemm(args: &BenchArgs, emit: &dyn Fn(&str, serde_json::Value)) -> (f64, String) {
    use retroprop::cpu::{blas, gemm_builtin};
    let shapes = [
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (1024, 784, 1024),
        (1024, 1024, 10),
        (1024, 10, 1024),
        (10, 1024, 1024),
        (1024, 1024, 784),
        (64, 784, 1024),
        (64, 1024, 1024),
        (1024, 64, 1024),
        (1024, 128, 1024),
        (1024, 256, 1024),
    ];
    let time = |m: usize, k: usize, n: usize, ta: bool, tb: bool, blas_lib: bool| {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let sa = if ta { (1, m as isize) } else { (k as isize, 1) };
        let sb = if tb { (1, k as isize) } else { (n as isize, 1) };
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((2e10 / flops) as usize).clamp(3, 50);
        let mut secs: Vec<f64> = (0..=reps)
            .map(|_| {
                let t = Instant::now();
                match blas() {
                    Some(lib) if blas_lib => {
                        let done =
                            lib.gemm(m, k, n, 1.0, &a, sa, &b, sb, 0.0, &mut c, (n as isize, 1));
                        assert!(done, "the BLAS declined a row-major product");
                    }
                    _ => gemm_builtin(m, k, n, 1.0, &a, sa, &b, sb, 0.0, &mut c, (n as isize, 1)),
                }
                t.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect();
        secs.sort_by(f64::total_cmp);
        flops / secs[secs.len() / 2] / 1e9
    };
    let mut libraries = vec![("built-in".to_string(), false)];
    if let Some(lib) = blas() {
        libraries.push((lib.name().to_string(), true));
    }
    let mut peak = (0.0, String::new());
    for (name, blas_lib) in libraries {
        matmul_header(args, &format!("CPU GEMM, {name}, GFLOP/s (median)"));
        for &(m, k, n) in &shapes {
            let row: Vec<f64> = VARIANTS
                .iter()
                .map(|&(ta, tb)| time(m, k, n, ta, tb, blas_lib))
                .collect();
            for &g in &row {
                if g > peak.0 {
                    peak = (g, name.clone());
                }
            }
            let fields = serde_json::json!({ "gemm": name });
            matmul_row(args, emit, "cpu_gemm", fields, (m, k, n), &row, None);
        }
        // Let a BLAS library's threads go idle before anything else runs.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    gemm_choices(args, emit, &shapes);
    peak
}

/// Which GEMM the CPU backend runs each of `shapes` on (f32, the three
/// [`VARIANTS`]), and why: the setting, or under `RETROPROP_BLAS=auto` the
/// shape's trial (run now unless the standard work's steps ran it) with
/// how many times faster the chosen GEMM's best call was. In `--json`, a
/// `gemm_choice` line a shape: `nn`, `nt`, `tn` the GEMM (`built-in` or
/// `library`), `nn_why`... why (`small`: below the library's sizes,
/// `no-library`: `off` or none found, `named`: `RETROPROP_BLAS` names it,
/// `trial`), and
/// for a trial `nn_builtin_s`, `nn_library_s`... each GEMM's best call.
fn gemm_choices(
    args: &BenchArgs,
    emit: &dyn Fn(&str, serde_json::Value),
    shapes: &[(usize, usize, usize)],
) {
    use retroprop::cpu::{Engine, Route, Shape, route};
    matmul_header(
        args,
        "CPU GEMM chosen per product shape (f32; under auto, how many times faster its best \
         call was in the shape's trial; small: below the library's sizes, built-in)",
    );
    for &(m, k, n) in shapes {
        let routes: Vec<Route> = VARIANTS
            .iter()
            .map(|&(a_transposed, b_transposed)| {
                route(Shape {
                    m,
                    k,
                    n,
                    a_transposed,
                    b_transposed,
                    float_bytes: 4,
                })
            })
            .collect();
        let engine = |r: &Route| match r.engine() {
            Engine::BuiltIn => "built-in",
            Engine::Library => "library",
        };
        let cell = |r: &Route| match r {
            Route::Small => "small".to_string(),
            Route::NoLibrary | Route::Named => engine(r).to_string(),
            Route::Trial(t) => format!("{} {:.2}×", engine(r), t.margin()),
        };
        if !args.json {
            println!(
                "{:>22} {:>14} {:>14} {:>14}",
                format!("{m}x{k}x{n}"),
                cell(&routes[0]),
                cell(&routes[1]),
                cell(&routes[2])
            );
        }
        let mut fields = serde_json::json!({ "m": m, "k": k, "n": n });
        for (key, r) in ["nn", "nt", "tn"].iter().zip(&routes) {
            fields[*key] = engine(r).into();
            fields[format!("{key}_why")] = match r {
                Route::Small => "small",
                Route::NoLibrary => "no-library",
                Route::Named => "named",
                Route::Trial(_) => "trial",
            }
            .into();
            if let Route::Trial(t) = r {
                fields[format!("{key}_builtin_s")] = t.builtin_s.into();
                fields[format!("{key}_library_s")] = t.library_s.into();
            }
        }
        emit("gemm_choice", fields);
    }
}
