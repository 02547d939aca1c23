//! Data and comparisons shared by the integration tests.
#![allow(dead_code)]

mod backends;
mod fixture;

#[allow(unused_imports)]
pub(crate) use backends::{
    Backend, NO_GPU_HELP, RunsOn, backend_tests, run_on, trainer, trainer_with,
};
#[allow(unused_imports)]
pub(crate) use fixture::{Fixture, assert_close_to};
use retroprop::{Dataset, Targets};
use std::path::PathBuf;

/// XOR with class labels (two outputs, cross-entropy).
pub fn xor_classes() -> Dataset {
    Dataset::new(
        vec![0., 0., 0., 1., 1., 0., 1., 1.],
        2,
        Targets::Classes(vec![0, 1, 1, 0]),
    )
    .unwrap()
}

/// XOR with one 0/1 target (one output, MSE or BCE).
pub fn xor_values() -> Dataset {
    Dataset::new(
        vec![0., 0., 0., 1., 1., 0., 1., 1.],
        2,
        Targets::Values {
            values: vec![0., 1., 1., 0.],
            width: 1,
        },
    )
    .unwrap()
}

/// Two interleaved spirals, `per_class` points each, labels 0 and 1.
pub fn two_spirals(per_class: usize) -> Dataset {
    let mut x = Vec::new();
    let mut labels = Vec::new();
    for class in 0..2u32 {
        for i in 0..per_class {
            let t = i as f32 / per_class as f32;
            let r = 4.0 * (0.1 + 0.9 * t);
            let angle = 3.0 * std::f32::consts::PI * t + class as f32 * std::f32::consts::PI;
            x.extend([r * angle.cos(), r * angle.sin()]);
            labels.push(class);
        }
    }
    Dataset::new(x, 2, Targets::Classes(labels)).unwrap()
}

/// The bundled digits data set (1797 rows, 64 features scaled to [0, 1]).
pub fn digits() -> Dataset {
    let raw = Dataset::from_csv(data_file("digits.csv"), 1, true).unwrap();
    let Targets::Classes(labels) = raw.targets().clone() else {
        unreachable!()
    };
    let x = raw.x().iter().map(|v| v / 16.0).collect();
    Dataset::new(x, raw.features(), Targets::Classes(labels)).unwrap()
}

/// A file of the repository's `data/` (from the library's tests or the
/// program's, in `cli/`).
pub fn data_file(name: &str) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = if here.join("data").is_dir() {
        here
    } else {
        here.parent()
            .expect("cli/ sits in the repository")
            .to_path_buf()
    };
    root.join("data").join(name)
}

/// Largest relative error |a − b| / max(|a|, |b|, floor) over two vectors,
/// with the index where it occurs.
pub fn max_rel_error(a: &[f64], b: &[f64], floor: f64) -> (f64, usize) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let mut worst = (0.0, 0);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let e = (x - y).abs() / x.abs().max(y.abs()).max(floor);
        if e > worst.0 || e.is_nan() {
            worst = (e, i);
        }
    }
    worst
}

pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The GPU kernel harness; a missing GPU fails the test with the fix.
pub fn harness() -> retroprop::gpu::harness::KernelHarness {
    retroprop::gpu::harness::KernelHarness::open()
        .unwrap_or_else(|e| panic!("cannot open the GPU kernel harness: {e}\n{NO_GPU_HELP}"))
}

/// Uniform random values in [lo, hi), seeded.
pub fn random(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Asserts two f32 vectors agree to `tolerance` relative error (with an
/// absolute floor), printing the worst element like llm.c's checks.
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tolerance: f64, floor: f64) {
    assert_agree(what, ("gpu", gpu), ("cpu", cpu), tolerance, floor);
}

/// [`assert_close`] for any two named sources (`("got", ..)`,
/// `("f64 reference", ..)`), named in the failure.
pub fn assert_agree(
    what: &str,
    (a_name, a): (&str, &[f32]),
    (b_name, b): (&str, &[f32]),
    tolerance: f64,
    floor: f64,
) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let (err, at) = max_rel_error(&widen(a), &widen(b), floor);
    let verdict = if err < tolerance { "OK" } else { "NOT OK" };
    println!("{what}: max relative error {err:.2e} at {at} {verdict}");
    assert!(
        err < tolerance,
        "{what}: element {at}: {a_name} {} vs {b_name} {} (relative error {err:.2e})",
        a.get(at).copied().unwrap_or(f32::NAN),
        b.get(at).copied().unwrap_or(f32::NAN)
    );
}

/// Every option of every optimizer, with values away from the defaults.
pub fn all_optimizers() -> Vec<retroprop::Optimizer> {
    use retroprop::{Adagrad, Adam, AdamW, RmsProp, Sgd};
    vec![
        Sgd::default().lr(0.05).into(),
        Sgd::default().lr(0.05).momentum(0.9).into(),
        Sgd::default()
            .lr(0.05)
            .momentum(0.8)
            .dampening(0.3)
            .weight_decay(0.01)
            .into(),
        Sgd::default()
            .lr(0.05)
            .momentum(0.9)
            .nesterov(true)
            .weight_decay(0.02)
            .into(),
        Adam::default().lr(0.01).into(),
        Adam::default()
            .lr(0.01)
            .betas((0.8, 0.99))
            .eps(1e-6)
            .weight_decay(0.05)
            .into(),
        Adam::default().lr(0.01).amsgrad(true).into(),
        AdamW::default().lr(0.01).into(),
        AdamW::default()
            .lr(0.01)
            .weight_decay(0.1)
            .amsgrad(true)
            .into(),
        RmsProp::default().into(),
        RmsProp::default().lr(0.005).alpha(0.9).momentum(0.5).into(),
        RmsProp::default()
            .lr(0.005)
            .centered(true)
            .weight_decay(0.01)
            .into(),
        RmsProp::default()
            .lr(0.005)
            .centered(true)
            .momentum(0.7)
            .into(),
        Adagrad::default().into(),
        Adagrad::default()
            .lr(0.05)
            .lr_decay(0.1)
            .weight_decay(0.01)
            .initial_accumulator_value(0.1)
            .into(),
    ]
}
