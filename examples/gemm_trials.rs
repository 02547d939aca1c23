//! The trials `RETROPROP_BLAS=auto` runs for the standard work's products
//! (784-1024-1024-10 at batch 64 and 1024, or the sizes and batches given):
//! each shape's best call on both GEMMs, the choice, and the time the
//! trials took. A development aid for docs/performance.md; run it in
//! fresh processes to see how often a choice changes between them.
//!
//!     cargo run --release --example gemm_trials [SIZES [BATCHES]]
use retroprop::cpu::{Route, Shape, gemm_name, route};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<usize> = args
        .get(1)
        .map_or("784,1024,1024,10", String::as_str)
        .split(',')
        .map(|s| s.parse().expect("SIZES: numbers joined by commas"))
        .collect();
    let batches: Vec<usize> = args
        .get(2)
        .map_or("64,1024", String::as_str)
        .split(',')
        .map(|s| s.parse().expect("BATCHES: numbers joined by commas"))
        .collect();
    println!("{}", gemm_name());
    for rows in batches {
        // A dense layer's products, in the layouts src/cpu/dense.rs passes.
        let mut shapes = Vec::new();
        for (i, pair) in sizes.windows(2).enumerate() {
            let (inputs, outputs) = (pair[0], pair[1]);
            shapes.push((rows, inputs, outputs, false, true));
            shapes.push((outputs, rows, inputs, true, false));
            if i > 0 {
                shapes.push((rows, outputs, inputs, false, false));
            }
        }
        let start = Instant::now();
        for (m, k, n, a_transposed, b_transposed) in shapes {
            let shape = Shape {
                m,
                k,
                n,
                a_transposed,
                b_transposed,
                float_bytes: 4,
            };
            match route(shape) {
                Route::Trial(t) => println!(
                    "batch {rows:>5} {shape:<22} built-in {:>8.0} µs  library {:>8.0} µs  {:?} {:.2}×, {} calls",
                    t.builtin_s * 1e6,
                    t.library_s * 1e6,
                    t.engine,
                    t.margin(),
                    t.calls
                ),
                other => println!("batch {rows:>5} {shape:<22} {other:?}"),
            }
        }
        println!(
            "batch {rows:>5}: trials took {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
