//! retroprop trains dense neural networks (multilayer perceptrons) by
//! backpropagation, with the whole forward/backward/update loop in WGSL
//! compute shaders run through wgpu, and a CPU reference backend that
//! computes the same thing.
//!
//! ```
//! use retroprop::{Activation, Adam, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
//! // y = x₀ − x₁ on a small grid.
//! let mut x = Vec::new();
//! let mut y = Vec::new();
//! for i in 0..8 {
//!     for j in 0..8 {
//!         let (a, b) = (i as f32 / 8.0, j as f32 / 8.0);
//!         x.extend([a, b]);
//!         y.push(a - b);
//!     }
//! }
//! let data = Dataset::new(x, 2, Targets::Values { values: y, width: 1 })?;
//! let mlp = Mlp::new(&[2, 16, 1], Activation::Tanh, Activation::Identity)?;
//! let config = TrainConfig::default()
//!     .loss(Loss::Mse)
//!     .optimizer(Adam::default().lr(1e-2))
//!     .batch_size(16)
//!     .epochs(100)
//!     .device(Device::Cpu);
//! let mut trainer = Trainer::new(mlp, config)?;
//! let history = trainer.fit(&data, None)?;
//! assert!(history.epochs.last().unwrap().train_loss < 1e-3);
//! # Ok::<(), retroprop::Error>(())
//! ```

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod activation;
pub mod backend;
pub mod checkpoint;
pub mod cpu;
pub mod data;
mod dropout;
pub mod embedding;
pub mod error;
pub mod gpu;
pub mod io;
pub mod loss;
pub mod model;
pub mod optim;
// In the browser (wasm32) no collective can be set (no threads, no MPI):
// what only a collective reaches goes unused there.
#[cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]
pub mod parallel;
pub mod real;
pub mod schedule;
pub mod stop;
#[cfg(not(target_arch = "wasm32"))]
pub mod stream;
pub mod train;

pub use activation::Activation;
pub use backend::LayerNorms;
pub use checkpoint::Checkpoint;
pub use data::{Dataset, LossChoice, SharedRows, Standardizer, Targets};
pub use error::{Error, Result};
pub use loss::{Loss, TargetBatch};
pub use model::{Blocks, Init, Layer, LayerKind, Mlp, NormKind, NormLayer, Residual};
pub use optim::{Adagrad, Adam, AdamW, GradClip, Optimizer, RmsProp, Sgd};
pub use real::{Precision, Real};
pub use schedule::{LrSchedule, Scheduler};
pub use stop::StopFlag;
pub use train::{
    Device, DropoutRates, EarlyStopping, EpochRecord, Evaluation, History, TrainConfig, Trainer,
};
