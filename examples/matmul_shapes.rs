//! Times the matmul kernel this adapter uses at the standard work's shapes
//! (a development aid; `retroprop bench --full` gives the full table).
//!
//!     cargo run --release --example matmul_shapes
//!     RETROPROP_MATMUL=shared cargo run --release --example matmul_shapes

fn main() -> retroprop::Result<()> {
    let h = retroprop::gpu::harness::KernelHarness::open()?;
    println!("{} tiling {:?}", h.context().summary().name, h.tiling());
    for (m, k, n, ta, tb, what) in [
        (64, 784, 1024, false, true, "forward, layer 0 (NT)"),
        (64, 1024, 1024, false, true, "forward, layer 1 (NT)"),
        (1024, 64, 784, true, false, "weight grad, layer 0 (TN)"),
        (1024, 64, 1024, true, false, "weight grad, layer 1 (TN)"),
        (64, 1024, 1024, false, false, "input grad, layer 1 (NN)"),
        (
            1024,
            784,
            1024,
            false,
            true,
            "forward, layer 0, B 1024 (NT)",
        ),
        (
            1024,
            1024,
            1024,
            false,
            true,
            "forward, layer 1, B 1024 (NT)",
        ),
        (
            1024,
            1024,
            784,
            true,
            false,
            "weight grad, layer 0, B 1024 (TN)",
        ),
        (
            1024,
            1024,
            1024,
            true,
            false,
            "weight grad, layer 1, B 1024 (TN)",
        ),
        (
            1024,
            1024,
            1024,
            false,
            false,
            "input grad, layer 1, B 1024 (NN)",
        ),
        (1024, 1024, 10, false, true, "forward, output, B 1024 (NT)"),
        (256, 1024, 1024, false, true, "forward, layer 1, B 256 (NT)"),
        (512, 512, 512, false, false, "512³ NN"),
        (4096, 4096, 4096, false, false, "4096³ NN"),
        (4096, 4096, 4096, false, true, "4096³ NT"),
        (4096, 4096, 4096, true, false, "4096³ TN"),
    ] {
        if (m == 4096 || (m == 1024 && k == 1024)) && !h.context().summary().is_hardware {
            continue;
        }
        let reps = if h.context().summary().is_hardware {
            20
        } else {
            3
        };
        let s = h.time_matmul(m, k, n, ta, tb, reps)?;
        let gflops = 2.0 * (m * k * n) as f64 / s / 1e9;
        println!(
            "{what:>36} {m}x{k}x{n}: {:8.2} ms {gflops:8.2} GFLOP/s",
            s * 1e3
        );
    }
    Ok(())
}
