//! A BatchEnsemble dense layer on the CPU (src/cpu/ensemble.rs) against
//! the `tabm` package's LinearBatchEnsemble and an activation, in float64:
//! the output and the gradients of the input, W, r, s and the bias. The
//! expected values are the package's, made by dev/ensemble_fixtures.py
//! into tests/fixtures/ensemble.safetensors.

mod common;
use common::{Fixture, assert_close_to};
use retroprop::Activation;
use retroprop::cpu::ensemble::{
    Ensemble, EnsembleGradients, EnsembleSaved, ensemble_backward, ensemble_forward,
};

/// `(rows, k, width)` as the package lays it out, to `[k, rows, width]`.
fn members_first(v: &[f64], rows: usize, k: usize, width: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    for m in 0..k {
        for r in 0..rows {
            out.extend_from_slice(&v[(r * k + m) * width..(r * k + m + 1) * width]);
        }
    }
    out
}

fn case(name: &str, activation: Activation) {
    let f = Fixture::load("ensemble", "dev/ensemble_fixtures.py");
    let get = |t: &str| f.get(&format!("{name}.{t}"));
    let (x, shape) = get("x");
    let (rows, k, inputs) = (shape[0], shape[1], shape[2]);
    let (weight, r, s, bias) = (get("weight").0, get("r").0, get("s").0, get("bias").0);
    let outputs = s.len() / k;
    let layer = Ensemble {
        members: k,
        weight: &weight,
        r: &r,
        s: &s,
        bias: &bias,
        activation,
    };
    let x = members_first(&x, rows, k, inputs);
    let mut a = vec![0.0; k * rows * outputs];
    let mut saved = EnsembleSaved::default();
    ensemble_forward(&x, layer, &mut a, &mut saved);
    let close = |what: &str, ours: &[f64], theirs: &[f64]| {
        assert_close_to(&format!("{name} {what}"), ours, theirs, 1e-12)
    };
    close("a", &a, &members_first(&get("a").0, rows, k, outputs));

    let mut grad = members_first(&get("da").0, rows, k, outputs);
    let mut gradients = EnsembleGradients::default();
    let mut dx = Vec::new();
    ensemble_backward(&x, layer, &saved, &mut grad, &mut gradients, Some(&mut dx));
    close("dx", &dx, &members_first(&get("dx").0, rows, k, inputs));
    close("dweight", &gradients.weight, &get("dweight").0);
    close("dr", &gradients.r, &get("dr").0);
    close("ds", &gradients.s, &get("ds").0);
    close("dbias", &gradients.bias, &get("dbias").0);
}

#[test]
fn a_batch_ensemble_layer_with_relu_is_the_tabm_packages() {
    case("relu", Activation::Relu);
}

#[test]
fn a_batch_ensemble_layer_without_activation_is_the_tabm_packages() {
    case("identity", Activation::Identity);
}

#[test]
fn eight_members_of_a_wide_tanh_layer_are_the_tabm_packages() {
    case("tanh_wide", Activation::Tanh);
}
