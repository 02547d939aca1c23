//! The retroprop program (for now: the main job, training on the bundled
//! digits data set).

use retroprop::{
    Activation, Adam, Dataset, Device, Init, Loss, Mlp, Targets, TrainConfig, Trainer,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> retroprop::Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv");
    let raw = Dataset::from_csv(path, 1, true)?;
    let x = raw.x().iter().map(|v| v / 16.0).collect();
    let Targets::Classes(labels) = raw.targets().clone() else {
        unreachable!()
    };
    let data = Dataset::new(x, raw.features(), Targets::Classes(labels))?;
    let (train, test) = data.split(0.2, 42)?;
    let mlp = Mlp::new(&[64, 64, 10], Activation::Relu, Activation::Identity)?;
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(3e-3))
        .batch_size(64)
        .epochs(25)
        .init(Init::KaimingUniform)
        .device(Device::Auto);
    let mut trainer = Trainer::new(mlp, config)?;
    let history = trainer.fit(&train, None)?;
    let eval = trainer.evaluate(&test)?;
    println!(
        "digits on {}: train loss {:.4}, held-out accuracy {:.2}%",
        trainer.device_name(),
        history.epochs.last().map_or(f64::NAN, |e| e.train_loss),
        100.0 * eval.accuracy.unwrap_or(0.0)
    );
    Ok(())
}
