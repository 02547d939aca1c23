//! LayerNorm and BatchNorm1d on the CPU (src/cpu/norm.rs) against torch
//! in float64: forward, the gradients of the input, γ and β, and
//! BatchNorm's running statistics over two batches and its evaluation
//! pass. The expected values are torch's, made by dev/norm_fixtures.py
//! into tests/fixtures/norms.safetensors.

use retroprop::cpu::norm::{
    Norm, NormSaved, RunningStats, batch_norm_backward, batch_norm_forward_eval,
    batch_norm_forward_train, layer_norm_backward, layer_norm_forward,
};

mod common;
use common::Fixture;

fn load() -> Fixture {
    Fixture::load("norms", "dev/norm_fixtures.py")
}

/// Each value within 1e-12 of torch's, relative to the tensor's largest.
fn assert_close(what: &str, ours: &[f64], torch: &[f64]) {
    common::assert_close_to(what, ours, torch, 1e-12);
}

fn layer_norm_case(prefix: &str, eps: f64) {
    let f = load();
    let (x, shape) = f.get(&format!("{prefix}.0.x"));
    let width = shape[1];
    let (weight, bias) = (
        f.values(&format!("{prefix}.weight")),
        f.values(&format!("{prefix}.bias")),
    );
    let norm = Norm {
        width,
        weight: &weight,
        bias: &bias,
        eps,
    };
    let mut y = vec![0.0; x.len()];
    let mut saved = NormSaved::default();
    layer_norm_forward(&x, norm, &mut y, &mut saved);
    assert_close("y", &y, &f.values(&format!("{prefix}.0.y")));
    let dy = f.values(&format!("{prefix}.0.dy"));
    let (mut dx, mut dweight, mut dbias) = (vec![0.0; x.len()], vec![0.0; width], vec![0.0; width]);
    layer_norm_backward(&dy, norm, &saved, &mut dx, &mut dweight, &mut dbias);
    assert_close("dx", &dx, &f.values(&format!("{prefix}.0.dx")));
    assert_close(
        "dweight",
        &dweight,
        &f.values(&format!("{prefix}.0.dweight")),
    );
    assert_close("dbias", &dbias, &f.values(&format!("{prefix}.0.dbias")));
}

#[test]
fn layer_norm_is_torchs_forward_and_backward() {
    layer_norm_case("layer_norm", 1e-5);
}

#[test]
fn layer_norm_holds_over_a_wide_row_far_from_zero() {
    layer_norm_case("layer_norm_wide", 1e-6);
}

/// BatchNorm over the fixture's training batches, then its evaluation
/// pass, each against torch's.
fn batch_norm_case(prefix: &str, batches: usize, eps: f64, momentum: f64) {
    let f = load();
    let (weight, bias) = (
        f.values(&format!("{prefix}.weight")),
        f.values(&format!("{prefix}.bias")),
    );
    let width = weight.len();
    let norm = Norm {
        width,
        weight: &weight,
        bias: &bias,
        eps,
    };
    let mut running = RunningStats::new(width);
    for b in 0..batches {
        let x = f.values(&format!("{prefix}.{b}.x"));
        let (mut y, mut saved) = (vec![0.0; x.len()], NormSaved::default());
        batch_norm_forward_train(&x, norm, momentum, &mut running, &mut y, &mut saved).unwrap();
        assert_close(
            &format!("batch {b} y"),
            &y,
            &f.values(&format!("{prefix}.{b}.y")),
        );
        assert_close(
            &format!("batch {b} running_mean"),
            &running.mean,
            &f.values(&format!("{prefix}.{b}.running_mean")),
        );
        assert_close(
            &format!("batch {b} running_var"),
            &running.var,
            &f.values(&format!("{prefix}.{b}.running_var")),
        );
        let dy = f.values(&format!("{prefix}.{b}.dy"));
        let (mut dx, mut dweight, mut dbias) =
            (vec![0.0; x.len()], vec![0.0; width], vec![0.0; width]);
        batch_norm_backward(&dy, norm, &saved, &mut dx, &mut dweight, &mut dbias);
        assert_close(
            &format!("batch {b} dx"),
            &dx,
            &f.values(&format!("{prefix}.{b}.dx")),
        );
        assert_close(
            &format!("batch {b} dweight"),
            &dweight,
            &f.values(&format!("{prefix}.{b}.dweight")),
        );
        assert_close(
            &format!("batch {b} dbias"),
            &dbias,
            &f.values(&format!("{prefix}.{b}.dbias")),
        );
    }
    assert_eq!(running.batches, batches as u64);
    let x = f.values(&format!("{prefix}.eval.x"));
    let mut y = vec![0.0; x.len()];
    batch_norm_forward_eval(&x, norm, &running, &mut y);
    assert_close("evaluation y", &y, &f.values(&format!("{prefix}.eval.y")));
}

#[test]
fn batch_norm_is_torchs_in_training_and_evaluation() {
    batch_norm_case("batch_norm", 2, 1e-5, 0.1);
}

#[test]
fn batch_norm_of_two_rows_uses_the_unbiased_running_variance() {
    batch_norm_case("batch_norm_two_rows", 1, 1e-3, 0.5);
}

#[test]
fn batch_norm_refuses_a_batch_of_one_row_by_name() {
    let (weight, bias) = ([1.0f32; 3], [0.0f32; 3]);
    let norm = Norm {
        width: 3,
        weight: &weight,
        bias: &bias,
        eps: 1e-5,
    };
    let mut running = RunningStats::new(3);
    let (mut y, mut saved) = (vec![0.0; 3], NormSaved::default());
    let err = batch_norm_forward_train(
        &[1.0, 2.0, 3.0],
        norm,
        0.1,
        &mut running,
        &mut y,
        &mut saved,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("at least 2 rows") && err.contains("got 1"),
        "{err}"
    );
    assert_eq!(
        running,
        RunningStats::new(3),
        "a refused batch moves nothing"
    );
}
