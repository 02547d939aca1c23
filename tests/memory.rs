//! Memory over a long run: resident (host) and device memory stay flat.
//! In a test binary of its own, the tests one at a time (`ONE_AT_A_TIME`),
//! so that no other test's allocations count.
//! The GPU case needs a wgpu adapter (without a GPU: `apt-get install
//! mesa-vulkan-drivers`).

mod common;

use retroprop::{Activation, Adam, Dataset, Loss, Mlp, Targets, TrainConfig, Trainer};

fn data() -> Dataset {
    let x = common::random(64 * 3, -1.0, 1.0, 4);
    let labels = x.chunks(3).map(|r| u32::from(r[0] > r[1])).collect();
    Dataset::new(x, 3, Targets::Classes(labels)).unwrap()
}

/// Held by each test for its whole run: the harness runs tests on parallel
/// threads, and resident memory is the process's. (With the two tests at
/// once, the CPU run of the first "grew" by the second's 20 000-row data
/// set and GPU device: 5 -> 33 MiB, and 5 -> 84 MiB when its timing moved.)
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process's resident memory, in bytes (Linux: /proc/self/statm).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm (Linux)");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn memory_stays_flat_over_a_long_run_on_both_backends() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 1 000 steps, then 19 000 more, of a small net: device memory does not
    // change and resident memory grows by less than 64 MiB. Measured: the
    // CPU 4.6 → 4.7 MiB, lavapipe 88.3 → 88.3 MiB (before a change to
    // shaders/optimizer.wgsl, lavapipe leaked: 343 → 4 770 MiB).
    for device in [retroprop::Device::Cpu, retroprop::Device::Gpu] {
        let mlp = Mlp::new(&[3, 16, 2], Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(1e-3))
            .batch_size(8)
            .device(device);
        let mut trainer = Trainer::new(mlp, config).unwrap_or_else(|e| {
            panic!("GPU tests need a wgpu adapter (apt-get install mesa-vulkan-drivers): {e}")
        });
        let data = data();
        trainer.train_steps(&data, 1_000).unwrap();
        let (rss, device_bytes) = (resident_bytes(), trainer.memory_bytes());
        trainer.train_steps(&data, 19_000).unwrap();
        let (rss_after, device_after) = (resident_bytes(), trainer.memory_bytes());
        println!(
            "{device}: resident {:.1} MiB after 1 000 steps, {:.1} MiB after 20 000; device {device_bytes} → {device_after} bytes",
            rss as f64 / 1048576.0,
            rss_after as f64 / 1048576.0
        );
        assert_eq!(device_after, device_bytes, "{device}: device memory grew");
        assert!(
            rss_after < rss + 64 * 1048576,
            "{device}: resident memory grew from {rss} to {rss_after} bytes over 19 000 steps"
        );
    }
}

/// One call of 20 000 steps (an epoch of 20 000 rows at batch 1) needs no
/// more memory than one of a single step: the GPU's step, result and norm
/// buffers hold a ring of two windows of 64 steps, not a slot per step of
/// the call (they grew with the call before), and at most two windows are
/// in flight. Resident memory is what counts (lavapipe's buffers live in
/// it); the backend's own count must not move either.
#[test]
fn one_long_call_needs_no_more_memory_than_one_step() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for device in [retroprop::Device::Cpu, retroprop::Device::Gpu] {
        let x = common::random(20_000 * 3, -1.0, 1.0, 5);
        let labels = x.chunks(3).map(|r| u32::from(r[0] > r[1])).collect();
        let data = Dataset::new(x, 3, Targets::Classes(labels)).unwrap();
        let mlp = Mlp::new(&[3, 16, 2], Activation::Relu, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(1e-3))
            .batch_size(1)
            .norms_every(7)
            .device(device);
        let mut trainer = Trainer::new(mlp, config).unwrap_or_else(|e| {
            panic!("GPU tests need a wgpu adapter (apt-get install mesa-vulkan-drivers): {e}")
        });
        trainer.train_steps(&data, 1).unwrap();
        let (rss, device_bytes) = (resident_bytes(), trainer.memory_bytes());
        trainer.train_steps(&data, 19_999).unwrap();
        let (rss_after, device_after) = (resident_bytes(), trainer.memory_bytes());
        println!(
            "{device}: resident {:.1} MiB after one step, {:.1} MiB after a call of 19 999; device {device_bytes} → {device_after} bytes",
            rss as f64 / 1048576.0,
            rss_after as f64 / 1048576.0
        );
        assert!(
            rss_after < rss + 16 * 1048576,
            "{device}: resident memory grew from {rss} to {rss_after} bytes over one call of 19 999 steps"
        );
        // The CPU's count is its vectors' capacities, which may round up
        // once; the GPU's is its buffers, allocated once.
        if device == retroprop::Device::Gpu {
            assert_eq!(
                device_after, device_bytes,
                "{device}: device memory grew with the steps of a call"
            );
        }
    }
}
