//! The retroprop program: train, evaluate and predict on data files, export
//! models to ONNX, list devices, and benchmark.

mod bench;
mod cli;
mod data;
mod export;
mod interrupt;
mod members;
mod predict;
mod ranks;
mod report;
mod resume;
mod settings;
mod train;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_blas_threads();
    let cli = cli::Cli::parse();
    // A BLAS library or matmul kernel asked for in the environment that
    // cannot be used is an error, not a silent fall back to the default.
    let env = retroprop::cpu::check_env().and(retroprop::gpu::MatmulChoice::from_env());
    if let Err(e) = env {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        // 130 or 143 after SIGINT or SIGTERM.
        cli::Command::Train(args) => {
            // One process, or one rank of an MPI job, which ends its own way.
            return match ranks::Ranks::start() {
                Ok(ranks) => train::train(*args, &ranks).unwrap_or_else(|e| ranks.fail(e)),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        cli::Command::Predict(args) => predict::predict(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Evaluate(args) => predict::evaluate(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Export(args) => export::export(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Devices => devices().map(|()| ExitCode::SUCCESS),
        cli::Command::Bench(args) => bench::bench(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Lets OpenBLAS's idle threads sleep at once after a call, unless
/// `OPENBLAS_THREAD_TIMEOUT` says otherwise. By default they spin (calling
/// `sched_yield`) for 2²⁸ cycles, about 0.1 s, after each product, beside
/// the CPU backend's own threads, which then share the cores with them:
/// the standard work ran at 14–17 000 samples/s at batch 1024 under
/// `RETROPROP_BLAS=auto`, whose steps mix the two GEMMs, against 19–20 000
/// on the built-in GEMM alone, and at 19 000–19 400 with a timeout of 2⁴
/// cycles (docs/performance.md, "Which GEMM auto runs"). OpenBLAS reads
/// the variable once, when it is loaded (the first large product).
fn quiet_blas_threads() {
    if std::env::var_os("OPENBLAS_THREAD_TIMEOUT").is_none() {
        // SAFETY: the first thing `main` does, before any other thread of
        // this process exists, so nothing reads the environment meanwhile.
        unsafe { std::env::set_var("OPENBLAS_THREAD_TIMEOUT", "4") };
    }
}

fn devices() -> Result<(), String> {
    let adapters = retroprop::gpu::adapters();
    if adapters.is_empty() {
        println!(
            "no GPU adapters (install a Vulkan driver; without a GPU: apt-get install mesa-vulkan-drivers)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        println!("[{i}] {} ({}, {})", a.name, a.backend, a.device_type);
        println!(
            "    driver: {}",
            if a.driver.is_empty() { "-" } else { &a.driver }
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, {} workgroups per dimension, {} threads and {} KiB shared per workgroup",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10
        );
        println!(
            "    --precision mixed: {}",
            match (a.shader_f16, a.cooperative_matrix_f16) {
                (true, true) => "yes (shader-f16; cooperative matrices f16 x f16 + f32, 16x16x16)",
                (true, false) => "yes (shader-f16)",
                (false, _) => "no (no shader-f16)",
            }
        );
    }
    println!("cpu: {}", retroprop::cpu::gemm_name());
    let choice = adapters.iter().find(|a| a.is_hardware);
    match choice {
        Some(a) => println!("auto: gpu ({})", a.name),
        None => println!(
            "auto: cpu (no hardware GPU; `--device gpu` uses {})",
            adapters.first().map_or("nothing", |a| &a.name)
        ),
    }
    Ok(())
}
