//! The terms of docs/scaling.md's cost model, measured under mpirun:
//!
//! 1. the all-reduce (`parallel::Mpi::all_reduce_sum`) against message size,
//!    fitted to α + β·bytes;
//! 2. one data-parallel step of the standard work (784-1024-1024-10, ReLU,
//!    cross-entropy, Adam 1e-3) phase by phase: forward and backward of the
//!    rank's share, reading the gradient, the all-reduce, writing it back
//!    and the update;
//! 3. whole steps through the `Trainer` (with one rank: the fused
//!    single-process path), in samples per second.
//!
//! ```text
//! cargo build --release --features mpi --example scaling
//! RAYON_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 mpirun -np 1 target/release/examples/scaling
//! mpirun -np 2 -x RAYON_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 target/release/examples/scaling
//! ```
//!
//! Arguments: `[BATCH [DEVICE]]` (global batch, default 256; device
//! `cpu` or `gpu`, default cpu). Rank 0 prints.

use retroprop::backend::{Backend, BatchShare};
use retroprop::cpu::CpuBackend;
use retroprop::gpu::GpuBackend;
use retroprop::parallel::{Collective, Mpi, share_bounds};
use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds of `f`, the median of `reps` runs, every rank starting together.
fn time(collective: &Mpi, reps: usize, mut f: impl FnMut()) -> f64 {
    let mut seconds = Vec::new();
    for _ in 0..reps {
        collective.all_reduce_sum_f64(&mut [0.0]).unwrap();
        let start = Instant::now();
        f();
        seconds.push(start.elapsed().as_secs_f64());
    }
    // The slowest rank's median: the step waits for it.
    let mut worst = [median(seconds)];
    let mut all = vec![0.0; collective.size()];
    all[collective.rank()] = worst[0];
    collective.all_reduce_sum_f64(&mut all).unwrap();
    worst[0] = all.iter().copied().fold(0.0, f64::max);
    worst[0]
}

fn main() {
    let universe = mpi::initialize().expect("MPI initialised once");
    let collective = Mpi::new(universe.world());
    let (rank, size) = (collective.rank(), collective.size());
    let args: Vec<String> = std::env::args().collect();
    let batch: usize = args.get(1).map_or(256, |b| b.parse().expect("BATCH"));
    let device = args.get(2).map_or("cpu", String::as_str);
    let say = |s: String| {
        if rank == 0 {
            println!("{s}");
        }
    };
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    say(format!(
        "{size} rank(s), {threads} thread(s) each, global batch {batch}, device {device}"
    ));

    // 1. The all-reduce against size.
    say("all-reduce: bytes, ms (median of 20)".into());
    let mut points = Vec::new();
    for floats in [256usize, 4096, 65_536, 262_144, 1_048_576, 1_863_690] {
        let mut buffer = vec![1.0f32; floats];
        let seconds = time(&collective, 20, || {
            collective.all_reduce_sum(&mut buffer).unwrap()
        });
        points.push((4.0 * floats as f64, seconds));
        say(format!("  {:>9} {:8.3}", 4 * floats, 1e3 * seconds));
    }
    if size > 1 {
        // For comparison: MPI's own all-reduce (its order, not ours).
        use mpi::collective::{CommunicatorCollectives, SystemOperation};
        let world = universe.world();
        let send = vec![1.0f32; 1_863_690];
        let mut receive = vec![0.0f32; send.len()];
        let seconds = time(&collective, 20, || {
            world.all_reduce_into(&send[..], &mut receive[..], SystemOperation::sum())
        });
        say(format!(
            "  MPI_Allreduce of {} bytes: {:.3} ms",
            4 * send.len(),
            1e3 * seconds
        ));
        // The ring model t = 2(N−1)·α + 2(N−1)/N·bytes·β: α from the
        // smallest message, β from the largest (the gradient's size).
        let steps = 2.0 * (size as f64 - 1.0);
        let alpha = points[0].1 / steps;
        let (bytes, seconds) = points[points.len() - 1];
        let beta = (seconds - steps * alpha) / (steps / size as f64 * bytes);
        say(format!(
            "  ring model: α = {:.1} µs, β = {:.3} ns/byte ({:.2} GB/s a link)",
            1e6 * alpha,
            1e9 * beta,
            1e-9 / beta
        ));
    }

    // The adding each rank does in the all-reduce (its 1/N of the
    // gradient from N ranks), alone.
    let own = 1_863_690 / size;
    let parts = vec![vec![1.0f32; own]; size];
    let mut out = vec![0f32; own];
    let seconds = time(&collective, 20, || {
        retroprop::parallel::sum_in_rank_order(parts.iter().map(Vec::as_slice), &mut out)
    });
    say(format!(
        "  of which adding {size} × {own} floats in rank order: {:.3} ms",
        1e3 * seconds
    ));

    // 2. One step in phases.
    let sizes = [784, 1024, 1024, 10];
    let mlp = Mlp::new(&sizes, Activation::Relu, Activation::Identity).unwrap();
    let rows = 4096;
    let x: Vec<f32> = (0..rows * 784)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let labels = (0..rows as u32).map(|r| r % 10).collect();
    let data = Dataset::new(x, 784, Targets::Classes(labels)).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(1e-3))
        .batch_size(batch)
        .device(if device == "gpu" {
            Device::Gpu
        } else {
            Device::Cpu
        });
    let spec = config.backend_config(&mlp);
    let params = mlp.init(config.init, 0);
    let mut backend: Box<dyn Backend> = if device == "gpu" {
        Box::new(GpuBackend::new(&mlp, params, &spec, config.gpu, false).unwrap())
    } else {
        Box::new(CpuBackend::new(&mlp, params, &spec))
    };
    let handle = backend.upload(&data).unwrap();
    let order: Vec<u32> = (0..batch as u32).collect();
    let share = share_bounds(batch, rank, size);
    let rows_of = BatchShare {
        rows: &order[share.clone()],
        batch_rows: batch,
        offset: share.start,
        batch_weight: None,
        across: None,
    };
    let mut grads = Vec::new();
    let reps = 10;
    let fb = time(&collective, reps, || {
        backend.forward_backward(&handle, rows_of).unwrap();
    });
    let read = time(&collective, reps, || grads = backend.gradients().unwrap());
    let reduce = time(&collective, reps, || {
        collective.all_reduce_sum(&mut grads).unwrap()
    });
    let write_update = time(&collective, reps, || {
        backend.set_gradients(&grads).unwrap();
        backend.update(1e-3).unwrap();
    });
    let total = fb + read + reduce + write_update;
    say(format!(
        "step in phases, ms: forward+backward {:.2} (share of {} rows), read gradient {:.2}, \
         all-reduce {:.2}, write gradient + update {:.2}; total {:.2} ({:.0} samples/s)",
        1e3 * fb,
        share.len(),
        1e3 * read,
        1e3 * reduce,
        1e3 * write_update,
        1e3 * total,
        batch as f64 / total
    ));
    drop(backend);

    // 3. Whole steps through the trainer.
    let trainer = Trainer::new(mlp, config).unwrap();
    let mut trainer = trainer
        .with_collective(Box::new(Mpi::new(universe.world())))
        .unwrap();
    trainer.train_steps(&data, 2).unwrap();
    let steps = 10;
    let seconds = time(&collective, 1, || {
        trainer.train_steps(&data, steps).unwrap();
    });
    say(format!(
        "trainer: {:.2} ms a step, {:.0} samples/s ({})",
        1e3 * seconds / steps as f64,
        (steps as usize * batch) as f64 / seconds,
        if size == 1 {
            "fused single-process path"
        } else {
            "distributed step"
        }
    ));
}
