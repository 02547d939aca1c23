//! The products of one training step of a scikit-learn-sized network on
//! the CPU (batch 200, 64-256-256-10 and other widths), three ways: the
//! gemm crate on one thread, the gemm crate's own threading, and
//! retroprop's built-in GEMM (blocks of C over rayon's threads, see
//! `src/cpu/gemm/builtin.rs`). A development aid for docs/performance.md.
//!
//!     cargo run --release --example gemm_blocks [BATCH [SIZES]]
//!
//! Prints microseconds a product (the best of five loops) and whether the
//! three gave the same bits. A narrow layer's forward product (16 units or
//! fewer) differs by design: the built-in GEMM cuts it into blocks of rows
//! the gemm crate computes as dot products (`narrow_block` in gemm/builtin.rs).
use gemm::{Parallelism, gemm};
use std::time::Instant;

type Strides = (isize, isize);

/// One product C = A·B, m × k times k × n, row/column strides given.
#[derive(Clone, Copy)]
struct Product {
    m: usize,
    k: usize,
    n: usize,
    a: Strides,
    b: Strides,
    c: Strides,
}

/// Microseconds a product (best of five loops of `reps`) and C's bits.
fn time(p: Product, way: usize, reps: usize) -> (f64, Vec<u32>) {
    let a: Vec<f32> = (0..p.m * p.k)
        .map(|i| ((i * 7919) % 1000) as f32 / 997.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..p.k * p.n)
        .map(|i| ((i * 104729) % 1000) as f32 / 991.0 - 0.5)
        .collect();
    let mut c = vec![0.0f32; p.m * p.n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..reps {
            if way == 2 {
                retroprop::cpu::gemm_builtin(
                    p.m, p.k, p.n, 1.0, &a, p.a, &b, p.b, 0.0, &mut c, p.c,
                );
                continue;
            }
            let threads = if way == 0 {
                Parallelism::None
            } else {
                Parallelism::Rayon(0)
            };
            // SAFETY: the strides describe the three vectors, C is its own.
            unsafe {
                gemm(
                    p.m,
                    p.n,
                    p.k,
                    c.as_mut_ptr(),
                    p.c.1,
                    p.c.0,
                    false,
                    a.as_ptr(),
                    p.a.1,
                    p.a.0,
                    b.as_ptr(),
                    p.b.1,
                    p.b.0,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    threads,
                );
            }
        }
        best = best.min(start.elapsed().as_secs_f64() / reps as f64);
    }
    (best * 1e6, c.iter().map(|x| x.to_bits()).collect())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: usize = args.first().map_or(200, |s| s.parse().expect("BATCH"));
    let sizes: Vec<usize> = args
        .get(1)
        .map_or("64,256,256,10", String::as_str)
        .split(',')
        .map(|s| s.parse().expect("SIZES: widths separated by commas"))
        .collect();
    let reps =
        (2e8 / (rows * sizes.iter().max().unwrap().pow(2)) as f64).clamp(5.0, 300.0) as usize;
    println!(
        "{} threads, batch {rows}, sizes {sizes:?}",
        rayon::current_num_threads()
    );
    let mut totals = [0.0; 3];
    // On a thread of rayon's pool, as a training step runs.
    rayon::scope(|_| {
        for (l, w) in sizes.windows(2).enumerate() {
            let (i, o) = (w[0], w[1]);
            let (ii, oi) = (i as isize, o as isize);
            let forward = Product {
                m: rows,
                k: i,
                n: o,
                a: (ii, 1),
                b: (1, ii),
                c: (oi, 1),
            };
            let weight_grad = Product {
                m: o,
                k: rows,
                n: i,
                a: (1, oi),
                b: (ii, 1),
                c: (ii, 1),
            };
            let input_grad = Product {
                m: rows,
                k: o,
                n: i,
                a: (oi, 1),
                b: (ii, 1),
                c: (ii, 1),
            };
            let mut products = vec![("forward", forward), ("weight grad", weight_grad)];
            if l > 0 {
                products.push(("input grad", input_grad));
            }
            for (what, p) in products {
                let runs: Vec<(f64, Vec<u32>)> = (0..3).map(|way| time(p, way, reps)).collect();
                for (total, run) in totals.iter_mut().zip(&runs) {
                    *total += run.0;
                }
                let same = runs[1].1 == runs[0].1 && runs[2].1 == runs[0].1;
                println!(
                    "layer {l} {what:11} {}x{}x{}: one thread {:.0} us, gemm's threads {:.0}, blocks {:.0}; same bits: {same}",
                    p.m, p.k, p.n, runs[0].0, runs[1].0, runs[2].0
                );
            }
        }
    });
    println!(
        "step's products: one thread {:.0} us, gemm's threads {:.0}, blocks {:.0}",
        totals[0], totals[1], totals[2]
    );
}
