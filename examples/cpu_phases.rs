//! Where a CPU training step of the standard work goes (development aid).
use retroprop::cpu::Network;
use retroprop::{Activation, Adam, Init, Loss, Mlp, TargetBatch};
use std::time::Instant;

fn main() {
    let mlp = Mlp::new(
        &[784, 1024, 1024, 10],
        Activation::Relu,
        Activation::Identity,
    )
    .unwrap();
    let params = mlp.init(Init::KaimingUniform, 0);
    let mut net = Network::<f32>::new(mlp, params, Adam::default().into());
    for batch in [64usize, 1024] {
        let x: Vec<f32> = (0..batch * 784).map(|i| (i % 97) as f32 / 97.0).collect();
        let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
        let targets = TargetBatch::Classes(&labels);
        net.loss_and_gradients(&x, Loss::CrossEntropy, targets);
        let reps = 10;
        let t = Instant::now();
        for _ in 0..reps {
            net.forward(&x);
        }
        let fwd = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            net.loss_and_gradients(&x, Loss::CrossEntropy, targets);
        }
        let fb = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            net.update(None);
        }
        let up = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "batch {batch}: forward {:.2} ms, forward+backward {:.2} ms, update {:.2} ms",
            fwd * 1e3,
            fb * 1e3,
            up * 1e3
        );
    }
}
