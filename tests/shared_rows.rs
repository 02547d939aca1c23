//! A data set that shares its inputs (`Dataset::shared`, as the Python
//! package lends a NumPy array) trains exactly as one that owns a copy:
//! on the CPU, on the GPU (which uploads from the shared rows), through a
//! checkpoint and resume (whose data check hashes the rows), and with the
//! standardisation (which copies shared rows before scaling them).

mod common;

use common::trainer;
use retroprop::{
    Activation, Adam, Dataset, Device, Loss, Mlp, SharedRows, Standardizer, TrainConfig,
};
use std::sync::Arc;

fn config() -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(0.01))
        .batch_size(16)
        .epochs(3)
        .seed(5)
}

fn both(data: &Dataset) -> (Dataset, Dataset, SharedRows) {
    let rows: SharedRows = Arc::new(data.x().to_vec());
    let shared = Dataset::shared(rows.clone(), data.features(), data.targets().clone()).unwrap();
    let owned = Dataset::new(data.x().to_vec(), data.features(), data.targets().clone()).unwrap();
    (shared, owned, rows)
}

#[test]
fn shared_inputs_train_bit_for_bit_as_owned_ones_on_every_device() {
    let (shared, owned, rows) = both(&common::two_spirals(40));
    let mlp = Mlp::new(&[2, 16, 2], Activation::Tanh, Activation::Identity).unwrap();
    for device in [Device::Cpu, Device::Gpu] {
        let mut a = trainer(mlp.clone(), config(), device);
        let mut b = trainer(mlp.clone(), config(), device);
        let ha = a.fit(&shared, Some(&shared)).unwrap();
        let hb = b.fit(&owned, Some(&owned)).unwrap();
        assert_eq!(ha.epochs.len(), 3);
        for (ra, rb) in ha.epochs.iter().zip(&hb.epochs) {
            assert_eq!(ra.train_loss, rb.train_loss, "{device}");
            assert_eq!(ra.validation, rb.validation, "{device}");
        }
        assert_eq!(a.parameters().unwrap(), b.parameters().unwrap(), "{device}");
    }
    // Nothing wrote to the shared rows.
    assert_eq!((*rows).as_ref(), owned.x());
    assert_eq!(shared.x().as_ptr(), (*rows).as_ref().as_ptr());
}

#[test]
fn a_run_resumed_on_shared_inputs_ends_as_one_uninterrupted_run() {
    let (shared, owned, _) = both(&common::two_spirals(40));
    let mlp = Mlp::new(&[2, 16, 2], Activation::Tanh, Activation::Identity).unwrap();
    let mut whole = trainer(mlp.clone(), config(), Device::Cpu);
    whole.fit(&owned, None).unwrap();
    let mut first = trainer(mlp.clone(), config().epochs(1), Device::Cpu);
    first.fit(&shared, None).unwrap();
    let checkpoint = first.checkpoint().unwrap();
    let mut rest = trainer(mlp, config().epochs(2), Device::Cpu);
    rest.restore(&checkpoint).unwrap();
    rest.fit(&shared, None).unwrap();
    assert_eq!(rest.parameters().unwrap(), whole.parameters().unwrap());
}

#[test]
fn standardising_shared_inputs_scales_a_copy() {
    let (mut shared, mut owned, rows) = both(&common::two_spirals(10));
    let standardizer = Standardizer::fit(&shared);
    standardizer.apply(&mut shared).unwrap();
    standardizer.apply(&mut owned).unwrap();
    assert!(!shared.is_shared());
    assert_eq!(shared.x(), owned.x());
    assert_ne!(
        shared.x(),
        (*rows).as_ref(),
        "the scaled copy differs from the rows"
    );
}
