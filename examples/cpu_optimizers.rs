//! One optimizer step of each kind over the standard work's 1 863 690
//! parameters on the CPU (development aid): the update is memory bound when
//! it vectorises, 28 bytes a parameter for Adam.
//!
//!     cargo run --release --example cpu_optimizers
use retroprop::cpu::optimizer_step;
use retroprop::{Adagrad, Adam, AdamW, Optimizer, RmsProp, Sgd};
use std::time::Instant;

fn main() {
    let n = 1_863_690usize;
    let optimizers: [(&str, Optimizer); 6] = [
        ("adam", Adam::default().into()),
        ("adamw", AdamW::default().into()),
        (
            "sgd, momentum 0.9",
            Sgd {
                momentum: 0.9,
                ..Default::default()
            }
            .into(),
        ),
        ("sgd", Sgd::default().into()),
        ("rmsprop", RmsProp::default().into()),
        ("adagrad", Adagrad::default().into()),
    ];
    for (name, opt) in optimizers {
        let mut params = vec![0.1f32; n];
        let grads: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.01 - 0.08).collect();
        let mut state = vec![opt.initial_state() as f32; opt.state_slots() * n];
        let mut times: Vec<f64> = (1..=31)
            .map(|t| {
                let start = Instant::now();
                optimizer_step(&opt, &mut params, &grads, &mut state, t, opt.lr());
                start.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{name:>18}: {:.2} ms median, {:.2} ms min",
            times[times.len() / 2] * 1e3,
            times[0] * 1e3
        );
    }
}
