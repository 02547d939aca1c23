//! The configuration of a run: where it trains and how (`TrainConfig`).

use crate::backend::BackendConfig;
use crate::checkpoint::{EarlyStopping, RunSettings, ValidationSplit};
use crate::data::ShuffleWindow;
use crate::error::{Error, Result};
use crate::gpu::GpuOptions;
use crate::loss::Loss;
use crate::model::{Init, Mlp};
use crate::optim::{GradClip, Optimizer};
use crate::real::Precision;
use crate::schedule::LrSchedule;
use crate::stop::StopFlag;
use std::fmt;
use std::str::FromStr;

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU reference backend.
    Cpu,
    /// A wgpu adapter, whatever it is (a real GPU, or Mesa's lavapipe).
    Gpu,
    /// A hardware GPU when there is one, otherwise the CPU.
    #[default]
    Auto,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
            Device::Auto => "auto",
        })
    }
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            "auto" => Ok(Device::Auto),
            other => Err(format!(
                "unknown device `{other}` (expected auto, cpu or gpu)"
            )),
        }
    }
}

/// How to train: the loss, the optimizer, and how data is batched.
///
/// Defaults: MSE, Adam (torch defaults), mini-batches of 32 shuffled each
/// epoch, 10 epochs, seed 0, torch's default init, device `auto`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The training objective.
    pub loss: Loss,
    /// The optimizer and its hyperparameters.
    pub optimizer: Optimizer,
    /// Rows per step: `None` for full-batch gradient descent, `Some(1)` for
    /// stochastic gradient descent. A last, smaller batch is kept
    /// (`drop_last=False`).
    pub batch_size: Option<usize>,
    /// Passes over the training data.
    pub epochs: usize,
    /// Stop after this many optimizer steps in total, even mid-epoch.
    pub max_steps: Option<u64>,
    /// Visit rows in a new seeded random order each epoch (else file order).
    pub shuffle: bool,
    /// How far the shuffle moves a row: within windows of rows that a
    /// streamed file holds at once ([`ShuffleWindow`]; by default 2^20
    /// rows, so smaller data sets are shuffled whole). The same window
    /// gives the same order in memory and streamed.
    pub shuffle_window: ShuffleWindow,
    /// Seeds the initialisation and the shuffles.
    pub seed: u64,
    /// How parameters start (ignored when parameters are given).
    pub init: Init,
    /// Which backend runs the training.
    pub device: Device,
    /// How the learning rate changes from epoch to epoch.
    pub lr_schedule: LrSchedule,
    /// Stop when the validation loss stops improving, keeping the best
    /// parameters.
    pub early_stopping: Option<EarlyStopping>,
    /// Gradient clipping by global norm and/or by value.
    pub grad_clip: GradClip,
    /// What only the GPU backend reads (the most rows a pass holds, the
    /// largest binding); the CPU ignores it.
    pub gpu: GpuOptions,
    /// Record every layer's gradient and weight norms at every this many
    /// optimizer steps (on the GPU, computed there), into
    /// [`EpochRecord::layer_norms`](super::EpochRecord::layer_norms).
    pub norms_every: Option<u64>,
    /// Dropout on hidden layers' outputs during training (inverted scaling,
    /// seeded, off in evaluation and prediction).
    pub dropout: DropoutRates,
    /// Ends [`Trainer::fit`](super::Trainer::fit) and [`Trainer::train_steps`](super::Trainer::train_steps) at the next step
    /// boundary once requested (on the GPU, within two windows of 64
    /// steps), keeping the steps that ran: see [`StopFlag`].
    pub stop_flag: Option<StopFlag>,
    /// The validation rows the caller held out of the training data
    /// (`Dataset::split`), when it did: not applied here, only recorded in
    /// checkpoints ([`RunSettings::validation_split`]), so that a resume
    /// holds out the same rows.
    pub validation_split: Option<ValidationSplit>,
    /// The number format of the matrix products: f32 (the default), or
    /// [`Precision::Mixed`] (f16 operands, f32 sums, f32 weights and
    /// optimizer state; GPU only, refused on the CPU).
    pub precision: Precision,
}

/// Dropout probabilities.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DropoutRates {
    /// No dropout.
    #[default]
    Off,
    /// The same probability after every hidden layer.
    Hidden(f32),
    /// One probability per layer (the output layer's must be 0).
    PerLayer(Vec<f32>),
}

impl DropoutRates {
    /// The probability of each of `layers` layers.
    pub fn per_layer(&self, layers: usize) -> Vec<f32> {
        match self {
            DropoutRates::Off => vec![0.0; layers],
            DropoutRates::Hidden(p) => (0..layers)
                .map(|l| if l + 1 < layers { *p } else { 0.0 })
                .collect(),
            DropoutRates::PerLayer(v) => (0..layers)
                .map(|l| v.get(l).copied().unwrap_or(0.0))
                .collect(),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            loss: Loss::Mse,
            optimizer: Optimizer::default(),
            batch_size: Some(32),
            epochs: 10,
            max_steps: None,
            shuffle: true,
            shuffle_window: ShuffleWindow::default(),
            seed: 0,
            init: Init::TorchDefault,
            device: Device::Auto,
            lr_schedule: LrSchedule::Constant,
            early_stopping: None,
            grad_clip: GradClip::default(),
            gpu: GpuOptions::default(),
            norms_every: None,
            dropout: DropoutRates::Off,
            stop_flag: None,
            validation_split: None,
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Sets the loss.
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }
    /// Sets the optimizer.
    pub fn optimizer(mut self, optimizer: impl Into<Optimizer>) -> Self {
        self.optimizer = optimizer.into();
        self
    }
    /// Mini-batch gradient descent with `batch_size` rows per step.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }
    /// Full-batch gradient descent: one step per epoch over every row.
    pub fn full_batch(mut self) -> Self {
        self.batch_size = None;
        self
    }
    /// Stochastic gradient descent: one row per step.
    pub fn stochastic(mut self) -> Self {
        self.batch_size = Some(1);
        self
    }
    /// Sets the number of epochs.
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }
    /// Stops after `steps` optimizer steps.
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.max_steps = Some(steps);
        self
    }
    /// Turns per-epoch shuffling on or off.
    pub fn shuffle(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }
    /// Sets how far the shuffle moves a row ([`ShuffleWindow`]).
    pub fn shuffle_window(mut self, window: ShuffleWindow) -> Self {
        self.shuffle_window = window;
        self
    }
    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Sets the initialisation.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }
    /// Sets the device.
    pub fn device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }
    /// Clips the gradient's global L2 norm to `max_norm` (torch's
    /// `clip_grad_norm_`).
    pub fn clip_grad_norm(mut self, max_norm: f64) -> Self {
        self.grad_clip.max_norm = Some(max_norm);
        self
    }
    /// Clips every gradient element to ±`max_value` (torch's
    /// `clip_grad_value_`).
    pub fn clip_grad_value(mut self, max_value: f64) -> Self {
        self.grad_clip.max_value = Some(max_value);
        self
    }
    /// GPU: splits every pass into at most `rows` rows (micro-batches
    /// whose gradients accumulate; the adapter's limits do this by
    /// themselves). Sets [`GpuOptions::max_rows_per_pass`].
    pub fn max_rows_per_pass(mut self, rows: usize) -> Self {
        self.gpu.max_rows_per_pass = Some(rows);
        self
    }
    /// GPU: lowers the largest storage binding to `bytes` (see
    /// [`GpuOptions::max_binding_bytes`]).
    pub fn max_binding_bytes(mut self, bytes: u64) -> Self {
        self.gpu.max_binding_bytes = Some(bytes);
        self
    }
    /// GPU: runs the matrix products with `choice` (see
    /// [`GpuOptions::matmul`]), e.g. to force split-K.
    pub fn matmul(mut self, choice: crate::gpu::MatmulChoice) -> Self {
        self.gpu.matmul = Some(choice);
        self
    }
    /// Dropout with probability `p` after every hidden layer.
    pub fn dropout(mut self, p: f32) -> Self {
        self.dropout = DropoutRates::Hidden(p);
        self
    }
    /// Records per-layer gradient and weight norms every `steps` steps.
    pub fn norms_every(mut self, steps: u64) -> Self {
        self.norms_every = Some(steps);
        self
    }
    /// Stops training at the next step boundary once `flag` is requested
    /// (see [`TrainConfig::stop_flag`]).
    pub fn stop_flag(mut self, flag: StopFlag) -> Self {
        self.stop_flag = Some(flag);
        self
    }
    /// Sets the precision of the matrix products (`--precision`).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
    /// Sets the learning-rate schedule.
    pub fn lr_schedule(mut self, schedule: LrSchedule) -> Self {
        self.lr_schedule = schedule;
        self
    }
    /// Stops early after `patience` epochs without a validation improvement
    /// larger than `min_delta`, restoring the best parameters.
    pub fn early_stopping(mut self, patience: usize, min_delta: f64) -> Self {
        self.early_stopping = Some(EarlyStopping {
            patience,
            min_delta,
        });
        self
    }

    /// The settings of a run of `mlp` with this configuration, as a
    /// checkpoint records them.
    pub fn settings(&self, mlp: &Mlp) -> RunSettings {
        RunSettings {
            sizes: mlp.sizes(),
            activations: mlp.layers().iter().map(|l| l.activation).collect(),
            residual: mlp.residual_spec(),
            tabm: mlp.tabm_spec().cloned(),
            loss: self.loss,
            optimizer: self.optimizer,
            lr_schedule: self.lr_schedule,
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            shuffle_window: self.shuffle_window,
            seed: self.seed,
            grad_clip: self.grad_clip,
            dropout: self.dropout.per_layer(mlp.layers().len()),
            early_stopping: self.early_stopping,
            validation_split: self.validation_split,
            precision: self.precision,
        }
    }

    /// This configuration with every setting of `settings` (a
    /// checkpoint's) in place of its own: what a resume that names no
    /// setting trains with. The network is `settings`' sizes and
    /// activations; the bounds, device and what steers only speed stay.
    pub fn with_settings(mut self, settings: &RunSettings) -> Self {
        self.loss = settings.loss;
        self.optimizer = settings.optimizer;
        self.lr_schedule = settings.lr_schedule;
        self.batch_size = settings.batch_size;
        self.shuffle = settings.shuffle;
        self.shuffle_window = settings.shuffle_window;
        self.seed = settings.seed;
        self.grad_clip = settings.grad_clip;
        self.dropout = if settings.dropout.iter().all(|&p| p == 0.0) {
            DropoutRates::Off
        } else {
            DropoutRates::PerLayer(settings.dropout.clone())
        };
        self.early_stopping = settings.early_stopping;
        self.validation_split = settings.validation_split;
        self.precision = settings.precision;
        self
    }

    /// What a backend needs of this configuration, for `mlp`.
    pub fn backend_config(&self, mlp: &Mlp) -> BackendConfig {
        BackendConfig {
            loss: self.loss,
            optimizer: self.optimizer,
            grad_clip: self.grad_clip,
            dropout: self.dropout.per_layer(mlp.layers().len()),
            seed: self.seed,
            norms_every: self.norms_every,
            batch_rows: self.batch_size,
            stop_flag: self.stop_flag.clone(),
            precision: self.precision,
        }
    }

    pub(super) fn validate(&self, mlp: &Mlp) -> Result<()> {
        self.optimizer.validate()?;
        self.lr_schedule.validate()?;
        self.grad_clip.validate()?;
        if let Some(e) = self.early_stopping
            && !(e.min_delta >= 0.0 && e.min_delta.is_finite())
        {
            return Err(Error::Hyperparameter {
                name: "min_delta",
                value: e.min_delta,
                reason: "must be ≥ 0",
            });
        }
        check_batch_norm(self, mlp)?;
        let rates = self.dropout.per_layer(mlp.layers().len());
        if let Some(&p) = rates.iter().find(|p| !(**p >= 0.0 && **p < 1.0)) {
            return Err(Error::Hyperparameter {
                name: "dropout",
                value: p as f64,
                reason: "must be in [0, 1)",
            });
        }
        if let DropoutRates::PerLayer(v) = &self.dropout {
            if v.len() > mlp.layers().len() {
                return Err(Error::Shape {
                    what: "dropout probabilities (one per layer)".into(),
                    expected: mlp.layers().len(),
                    got: v.len(),
                });
            }
            if rates.last().is_some_and(|&p| p > 0.0) {
                return Err(Error::Config(
                    "dropout on the output layer is not supported: the loss reads it".into(),
                ));
            }
        }
        if self.norms_every == Some(0) {
            return Err(Error::Hyperparameter {
                name: "norms_every",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        if self.gpu.max_rows_per_pass == Some(0) {
            return Err(Error::Hyperparameter {
                name: "max_rows_per_pass",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        if self.batch_size == Some(0) {
            return Err(Error::Hyperparameter {
                name: "batch_size",
                value: 0.0,
                reason: "must be at least 1",
            });
        }
        if self.loss == Loss::CrossEntropy && mlp.outputs() < 2 {
            return Err(Error::Config(format!(
                "cross_entropy needs at least 2 outputs (one per class), the network has {}",
                mlp.outputs()
            )));
        }
        Ok(())
    }
}

/// What a network with batch normalisation cannot train with: batches
/// of one row (a variance of one row is not defined; torch raises for it
/// too).
fn check_batch_norm(config: &TrainConfig, mlp: &Mlp) -> Result<()> {
    if !mlp.has_batch_norm() {
        return Ok(());
    }
    if config.batch_size == Some(1) {
        return Err(Error::Config(
            "batch normalisation needs at least 2 rows a batch, and the batch size is 1".into(),
        ));
    }
    Ok(())
}
