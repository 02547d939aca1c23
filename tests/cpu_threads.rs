//! CPU trainers on several threads at once: the first run of steps takes
//! rayon's pool (`on_pool` in src/cpu/backend.rs), the others run on their
//! callers' threads; each must train exactly as it does alone.

use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};

/// Rows big enough that a step's products are split over threads
/// (200 × 64 × 256 ≥ 2²¹ multiply-adds).
fn data(seed: u32) -> Dataset {
    let (rows, features) = (600, 64);
    let x: Vec<f32> = (0..rows * features)
        .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let labels = x
        .chunks(features)
        .map(|r| u32::from(r[0] > r[1]) + u32::from(r[2] > 0.0))
        .collect();
    Dataset::new(x, features, Targets::Classes(labels)).unwrap()
}

fn train(seed: u32) -> Vec<f32> {
    let mlp = Mlp::new(&[64, 256, 256, 3], Activation::Relu, Activation::Identity).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(1e-3))
        .batch_size(200)
        .epochs(3)
        .seed(u64::from(seed))
        .device(Device::Cpu);
    let mut trainer = Trainer::new(mlp, config).unwrap();
    trainer.fit(&data(seed), None).unwrap();
    trainer.parameters().unwrap()
}

#[test]
fn trainers_on_several_threads_train_as_each_does_alone() {
    let alone: Vec<Vec<f32>> = (0..3).map(train).collect();
    let together: Vec<Vec<f32>> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3).map(|seed| s.spawn(move || train(seed))).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(
        alone[0] != alone[1] && alone[1] != alone[2],
        "the three runs must differ from one another, or the comparison proves nothing"
    );
    for (seed, (a, t)) in alone.iter().zip(&together).enumerate() {
        let a_bits: Vec<u32> = a.iter().map(|x| x.to_bits()).collect();
        let t_bits: Vec<u32> = t.iter().map(|x| x.to_bits()).collect();
        assert!(
            a_bits == t_bits,
            "trainer {seed}: on a thread beside two others it trained differently"
        );
    }
}
