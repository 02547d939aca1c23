//! The same run in f32 and in f64 agrees to within f32 rounding.

mod common;

use common::{max_rel_error, widen};
use retroprop::cpu::Network;
use retroprop::{Activation, Adam, Init, Loss, Mlp, TargetBatch};

#[test]
fn f32_run_tracks_f64_run() {
    let data = common::two_spirals(32);
    let mlp = Mlp::new(&[2, 16, 16, 2], Activation::Gelu, Activation::Identity).unwrap();
    let init = mlp.init(Init::XavierUniform, 9);
    let optimizer = Adam::default().lr(1e-2).into();
    let mut single = Network::<f32>::new(mlp.clone(), init.clone(), optimizer);
    let mut double = Network::<f64>::new(mlp, widen(&init), optimizer);
    let Some(labels) = (match data.targets() {
        retroprop::Targets::Classes(l) => Some(l.clone()),
        _ => None,
    }) else {
        unreachable!()
    };
    let x64 = widen(data.x());
    for step in 0..20 {
        let l32 = single.train_step(data.x(), Loss::CrossEntropy, TargetBatch::Classes(&labels));
        let l64 = double.train_step(&x64, Loss::CrossEntropy, TargetBatch::Classes(&labels));
        assert!(
            (l32 as f64 - l64).abs() < 1e-5 * l64.abs().max(1.0),
            "step {step}: loss {l32} vs {l64}"
        );
    }
    // Adam divides by √v, so a parameter whose gradient is near zero moves by
    // up to lr on rounding noise: compare against the weights' scale (0.1)
    // for parameters smaller than that.
    let (err, at) = max_rel_error(&widen(single.params()), double.params(), 0.1);
    assert!(
        err < 1e-4,
        "parameter {at}: f32 {} vs f64 {} ({err:.1e})",
        single.params()[at],
        double.params()[at]
    );
}
