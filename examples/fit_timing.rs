//! How long `Trainer::fit` takes on a data file, for the Python package's
//! overhead measurement (`dev/python_bench.py overhead` runs this beside
//! the same call through Python).
//!
//!     cargo run --release --example fit_timing -- DATA.safetensors SIZES EPOCHS BATCH DEVICE
//!
//! Prints the seconds of `fit` alone (the trainer built and the data
//! loaded before the clock starts), then the last epoch's training loss.
use retroprop::{Activation, Adam, Dataset, Loss, Mlp, TrainConfig, Trainer};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, sizes, epochs, batch, device] = &args[..] else {
        return Err("usage: fit_timing DATA.safetensors SIZES EPOCHS BATCH DEVICE".into());
    };
    let data = Dataset::from_safetensors(path, true)?;
    let sizes = retroprop::model::parse_sizes(sizes)?;
    let mlp = Mlp::new(&sizes, Activation::Relu, Activation::Identity)?;
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default())
        .batch_size(batch.parse()?)
        .epochs(epochs.parse()?)
        .device(device.parse()?);
    let mut trainer = Trainer::new(mlp, config)?;
    let start = Instant::now();
    let history = trainer.fit(&data, None)?;
    let seconds = start.elapsed().as_secs_f64();
    let loss = history.epochs.last().map_or(f64::NAN, |e| e.train_loss);
    println!("{seconds} {loss}");
    Ok(())
}
