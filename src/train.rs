//! The trainer: fit, evaluate and predict, the same calls on either backend.

use crate::backend::{Backend, BackendConfig, DeviceData, StepsLoss};
use crate::cpu::CpuBackend;
use crate::data::{Dataset, Targets, epoch_order};
use crate::error::{Error, Result};
use crate::gpu::GpuBackend;
use crate::loss::Loss;
use crate::model::{Init, Mlp};
use crate::optim::{GradClip, Optimizer};
use crate::parallel::{self, Collective};
use crate::schedule::{LrSchedule, Scheduler};
use crate::stop::StopFlag;
use std::fmt;
use std::str::FromStr;
// Instant on native, performance.now() in the browser.
use web_time::Instant;

pub use crate::backend::LayerNorms;

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
    /// GPU: the most rows one pass over the network may hold. Batches
    /// larger than this, or than the adapter's binding limits allow, are
    /// split into micro-batches whose gradients accumulate before one
    /// update: the same step. `None`: as many as the limits allow.
    pub max_rows_per_pass: Option<usize>,
    /// GPU: treat the adapter's largest storage binding as at most this
    /// many bytes. Training data larger than a binding is streamed from
    /// host memory; activations larger than one split into micro-batches.
    /// A test hook, and a way to keep device memory low.
    pub max_binding_bytes: Option<u64>,
    /// Record every layer's gradient and weight norms at every this many
    /// optimizer steps (on the GPU, computed there), into
    /// [`EpochRecord::layer_norms`].
    pub norms_every: Option<u64>,
    /// Dropout on hidden layers' outputs during training (inverted scaling,
    /// seeded, off in evaluation and prediction).
    pub dropout: DropoutRates,
    /// Ends [`Trainer::fit`] and [`Trainer::train_steps`] at the next step
    /// boundary once requested (on the GPU, the next submission of up to
    /// 64 steps), keeping the steps that ran: see [`StopFlag`].
    pub stop_flag: Option<StopFlag>,
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

/// Early stopping on the validation loss: stop after `patience` epochs in
/// which it did not improve on the best by more than `min_delta`, and put
/// back the parameters of the best epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Epochs without improvement tolerated.
    pub patience: usize,
    /// Smallest decrease that counts as an improvement.
    pub min_delta: f64,
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
            seed: 0,
            init: Init::TorchDefault,
            device: Device::Auto,
            lr_schedule: LrSchedule::Constant,
            early_stopping: None,
            grad_clip: GradClip::default(),
            max_rows_per_pass: None,
            max_binding_bytes: None,
            norms_every: None,
            dropout: DropoutRates::Off,
            stop_flag: None,
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
    /// themselves).
    pub fn max_rows_per_pass(mut self, rows: usize) -> Self {
        self.max_rows_per_pass = Some(rows);
        self
    }
    /// GPU: lowers the largest storage binding to `bytes` (see
    /// [`TrainConfig::max_binding_bytes`]).
    pub fn max_binding_bytes(mut self, bytes: u64) -> Self {
        self.max_binding_bytes = Some(bytes);
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
            max_rows_per_pass: self.max_rows_per_pass,
            max_binding_bytes: self.max_binding_bytes,
            stop_flag: self.stop_flag.clone(),
        }
    }

    fn validate(&self, mlp: &Mlp) -> Result<()> {
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
        if self.max_rows_per_pass == Some(0) {
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

/// What one epoch did.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Optimizer steps taken so far, in total.
    pub step: u64,
    /// Mean training loss over the epoch's rows (each batch's mean loss,
    /// weighted by its rows).
    pub train_loss: f64,
    /// Validation result after the epoch, when validation data was given.
    pub validation: Option<Evaluation>,
    /// Learning rate used.
    pub lr: f64,
    /// Wall-clock seconds since `fit` began.
    pub seconds: f64,
    /// Per-layer norms sampled during the epoch (`TrainConfig::norms_every`).
    pub layer_norms: Vec<LayerNorms>,
}

/// The record of a `fit` call, one entry per epoch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// The epochs, in order.
    pub epochs: Vec<EpochRecord>,
    /// With early stopping: the epoch (1-based) whose parameters were kept.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended training before `epochs`.
    pub stopped_early: bool,
    /// Whether [`TrainConfig::stop_flag`] ended training. The epoch it
    /// stopped in has no record: the parameters are those after the last
    /// step that ran (not the best epoch's, with early stopping), and
    /// [`Trainer::checkpoint`] records the rows of that epoch already done.
    pub interrupted: bool,
    /// Whether [`TrainConfig::max_steps`] ended training inside an epoch.
    /// That epoch's record covers the rows it reached, it does not count as
    /// done (no schedule step, no early-stopping verdict, no checkpoint
    /// callback), the parameters are those after the last step (not the
    /// best epoch's, with early stopping), and [`Trainer::checkpoint`]
    /// records where it stopped, so a run resumed from it with more steps
    /// takes the steps one longer run would have taken.
    pub cut_mid_epoch: bool,
}

/// Loss and, for classification, accuracy over a data set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss over the rows.
    pub loss: f64,
    /// Fraction right: rows for cross-entropy, elements for BCE.
    pub accuracy: Option<f64>,
}

/// Everything a run needs to continue exactly where it stopped: parameters,
/// optimizer state, step and epoch counts, the position inside the current
/// epoch, and the learning-rate scheduler. The shuffle order of an epoch is
/// derived from the seed and the epoch number, so no generator state is
/// needed beyond these.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Flat parameters.
    pub params: Vec<f32>,
    /// Optimizer state, slot-major (`state_slots()` × parameters).
    pub optimizer_state: Vec<f32>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Rows of the current epoch already trained on (mid-epoch resume).
    pub rows_done: usize,
    /// The summed loss of those rows (each batch's mean × its rows), so
    /// that the epoch's mean training loss, which the learning-rate
    /// schedule may read, is the same as without the interruption.
    pub epoch_loss_sum: f64,
    /// The scheduler's (lr, best, bad epochs, cooldown left).
    pub scheduler: (f64, f64, usize, usize),
}

/// Where `train_steps` stands inside an epoch.
#[derive(Debug)]
struct Cursor {
    order: Vec<u32>,
    rows_done: usize,
    loss_sum: f64,
}

/// Trains one network on one backend.
///
/// ```
/// use retroprop::{Activation, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig, Trainer};
/// let xor = Dataset::new(
///     vec![0., 0., 0., 1., 1., 0., 1., 1.],
///     2,
///     Targets::Classes(vec![0, 1, 1, 0]),
/// )?;
/// let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity)?;
/// let config = TrainConfig::default()
///     .loss(Loss::CrossEntropy)
///     .optimizer(Sgd::default().lr(0.5).momentum(0.9))
///     .full_batch()
///     .epochs(200)
///     .device(Device::Cpu);
/// let mut trainer = Trainer::new(mlp, config)?;
/// trainer.fit(&xor, None)?;
/// assert_eq!(trainer.evaluate(&xor)?.accuracy, Some(1.0));
/// # Ok::<(), retroprop::Error>(())
/// ```
pub struct Trainer {
    mlp: Mlp,
    config: TrainConfig,
    backend: Box<dyn Backend>,
    steps: u64,
    epochs_done: u64,
    /// Mid-epoch position of `train_steps`: the epoch's order, how many of
    /// its rows are done, and their summed loss (for the scheduler).
    cursor: Option<Cursor>,
    /// The backend's current upload of training data: its id, and the
    /// [`Dataset::version`] it was made from.
    uploaded: Option<(u64, u64)>,
    scheduler: Scheduler,
    /// Rows of the current epoch done before a restore, to skip.
    pending_rows: usize,
    /// Their summed loss.
    pending_loss: f64,
    /// The ranks of a data-parallel run ([`Trainer::with_collective`]).
    collective: Option<Box<dyn Collective>>,
}

impl fmt::Debug for Trainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trainer")
            .field("mlp", &self.mlp)
            .field("config", &self.config)
            .field("device", &self.backend.name())
            .field("steps", &self.steps)
            .finish()
    }
}

impl Trainer {
    /// A trainer whose parameters are drawn from `config.init` with
    /// `config.seed`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(mlp: Mlp, config: TrainConfig) -> Result<Trainer> {
        pollster::block_on(Trainer::new_async(mlp, config))
    }

    /// [`new`](Self::new), awaited (opening a GPU is asynchronous in the
    /// browser).
    pub async fn new_async(mlp: Mlp, config: TrainConfig) -> Result<Trainer> {
        mlp.check_training_memory(config.batch_size, config.optimizer.state_slots())?;
        let params = mlp.init(config.init, config.seed);
        Trainer::with_parameters_async(mlp, params, config).await
    }

    /// A trainer that starts from the given flat parameters.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_parameters(mlp: Mlp, params: Vec<f32>, config: TrainConfig) -> Result<Trainer> {
        pollster::block_on(Trainer::with_parameters_async(mlp, params, config))
    }

    /// [`with_parameters`](Self::with_parameters), awaited.
    pub async fn with_parameters_async(
        mlp: Mlp,
        params: Vec<f32>,
        config: TrainConfig,
    ) -> Result<Trainer> {
        config.validate(&mlp)?;
        mlp.check_training_memory(config.batch_size, config.optimizer.state_slots())?;
        check_parameters(&mlp, &params)?;
        let spec = config.backend_config(&mlp);
        let backend: Box<dyn Backend> = match config.device {
            Device::Cpu => Box::new(CpuBackend::new(&mlp, params, &spec)),
            Device::Gpu => Box::new(GpuBackend::new_async(&mlp, params, &spec, false).await?),
            Device::Auto => match GpuBackend::new_async(&mlp, params.clone(), &spec, true).await {
                Ok(gpu) => Box::new(gpu),
                Err(e) => {
                    log::info!("device auto: using the CPU ({e})");
                    Box::new(CpuBackend::new(&mlp, params, &spec))
                }
            },
        };
        log::info!("training on {}", backend.name());
        Ok(Trainer {
            backend,
            steps: 0,
            epochs_done: 0,
            cursor: None,
            uploaded: None,
            scheduler: Scheduler::new(config.lr_schedule, config.optimizer.lr()),
            pending_rows: 0,
            pending_loss: 0.0,
            collective: None,
            mlp,
            config,
        })
    }

    /// This trainer as one rank of a data-parallel run over `collective`
    /// (see [`crate::parallel`]): every rank must be built with the same
    /// network and configuration (checked), and starts from rank 0's
    /// parameters, optimizer state and position. From then on each step
    /// runs on every rank's share of the batch and sums the gradients;
    /// [`evaluate`](Self::evaluate) sums over every rank's share of the
    /// rows; every rank sees the same numbers and takes the same
    /// decisions. With one rank nothing changes.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_collective(mut self, collective: Box<dyn Collective>) -> Result<Trainer> {
        if collective.size() > 1 {
            // The stop flag and the device are each rank's own.
            let run = TrainConfig {
                stop_flag: None,
                device: Device::Auto,
                ..self.config.clone()
            };
            parallel::check_same_run(collective.as_ref(), &format!("{:?} {run:?}", self.mlp))?;
        }
        self.collective = Some(collective);
        self.sync_from_rank_0()?;
        Ok(self)
    }

    /// The collective given to [`with_collective`](Self::with_collective).
    pub fn collective(&self) -> Option<&dyn Collective> {
        self.collective.as_deref()
    }

    /// An error unless `data` fits this trainer's network and loss as
    /// training data (the check [`fit`](Self::fit) makes first): for a
    /// data-parallel program to check every rank's data and
    /// [`parallel::agree`] before training.
    pub fn check_training_data(&self, data: &Dataset) -> Result<()> {
        self.check_data(data, "training data")
    }

    /// The collective of a data-parallel run with more than one rank.
    fn ranks(&self) -> Option<&dyn Collective> {
        self.collective.as_deref().filter(|c| c.size() > 1)
    }

    /// Takes rank 0's state on every rank.
    #[cfg(target_arch = "wasm32")]
    fn sync_from_rank_0(&mut self) -> Result<()> {
        // The browser has neither threads nor MPI: no collective is ever set.
        Ok(())
    }

    /// Takes rank 0's state on every rank.
    #[cfg(not(target_arch = "wasm32"))]
    fn sync_from_rank_0(&mut self) -> Result<()> {
        let Some(collective) = self.collective.take() else {
            return Ok(());
        };
        let synced = (|| {
            if collective.size() == 1 {
                return Ok(());
            }
            let mut state = self.checkpoint()?;
            parallel::broadcast_checkpoint(collective.as_ref(), &mut state)?;
            if collective.rank() != 0 {
                self.restore_state(&state)?;
            }
            Ok(())
        })();
        self.collective = Some(collective);
        synced
    }

    /// Whole steps over `order`: the backend's own, fused, on one rank;
    /// step by step with the gradients summed over ranks on several.
    async fn run_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsLoss> {
        match self.collective.as_deref().filter(|c| c.size() > 1) {
            None => {
                self.backend
                    .train_steps_async(data, order, batch_size, max_steps, lr)
                    .await
            }
            Some(collective) => parallel::train_steps(
                collective,
                self.backend.as_mut(),
                &self.mlp,
                data,
                order,
                batch_size,
                max_steps,
                lr,
                self.steps,
                self.config.stop_flag.as_ref(),
                self.config.norms_every,
            ),
        }
    }

    /// The network description.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Which backend runs, in words: `cpu: ` and the GEMM it uses
    /// (`OpenBLAS 0.3.21, Zen` or `built-in GEMM`, see [`crate::cpu::gemm`]),
    /// or `gpu: ` and the adapter's name and graphics API.
    pub fn device_name(&self) -> String {
        self.backend.name()
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The current parameters (read back from the GPU if it runs there).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn parameters(&mut self) -> Result<Vec<f32>> {
        pollster::block_on(self.parameters_async())
    }

    /// [`parameters`](Self::parameters), awaited.
    pub async fn parameters_async(&mut self) -> Result<Vec<f32>> {
        self.backend.parameters_async().await
    }

    /// Replaces the parameters (optimizer state is kept).
    pub fn set_parameters(&mut self, params: &[f32]) -> Result<()> {
        check_parameters(&self.mlp, params)?;
        self.backend.set_parameters(params)
    }

    /// Trains for `config.epochs` epochs (or until `config.max_steps`),
    /// evaluating on `validation` after each epoch when given.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit(&mut self, train: &Dataset, validation: Option<&Dataset>) -> Result<History> {
        self.fit_with(train, validation, |_| {})
    }

    /// [`fit`](Self::fit), awaited: the core every target runs (the
    /// browser's GPU read-backs are awaited, never blocked on).
    pub async fn fit_async(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
    ) -> Result<History> {
        self.fit_checkpointed_async(train, validation, |_| {}, 0, |_| Ok(()))
            .await
    }

    /// [`fit`](Self::fit), calling `on_epoch` after each epoch (for
    /// progress bars and metrics files).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_with(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<History> {
        self.fit_checkpointed(train, validation, on_epoch, 0, |_| Ok(()))
    }

    /// [`fit_with`](Self::fit_with), handing `on_checkpoint` a
    /// [`Checkpoint`] after every `every` epochs (never when 0); an error it
    /// returns stops training.
    ///
    /// Every `fit` continues where training stands: after a
    /// [`restore`](Self::restore) or a [`train_steps`](Self::train_steps)
    /// that ended inside an epoch, it first finishes that epoch's rows.
    ///
    /// When [`TrainConfig::stop_flag`] is requested, training ends at the
    /// next step boundary and `fit` returns `Ok` with
    /// [`History::interrupted`] set: the steps that ran are whole, the
    /// epoch cut short gets no record, validation, schedule step or
    /// `on_checkpoint`, and [`checkpoint`](Self::checkpoint) then records
    /// the exact position inside it. Restored into a trainer with the same
    /// configuration, which fits the epochs left, that checkpoint ends with
    /// the same parameters as a run never interrupted.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_checkpointed(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        on_epoch: impl FnMut(&EpochRecord),
        every: u64,
        on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        pollster::block_on(self.fit_checkpointed_async(
            train,
            validation,
            on_epoch,
            every,
            on_checkpoint,
        ))
    }

    /// [`fit_checkpointed`](Self::fit_checkpointed), awaited.
    pub async fn fit_checkpointed_async(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        mut on_epoch: impl FnMut(&EpochRecord),
        every: u64,
        mut on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        self.check_data(train, "training data")?;
        if let Some(v) = validation {
            self.check_data(v, "validation data")?;
        }
        let data = self.device_data(train)?;
        // A train_steps that ended mid-epoch left its position here; an
        // epoch's order depends only on the seed and the epoch number.
        if let Some(cursor) = self.cursor.take() {
            self.pending_rows = cursor.rows_done;
            self.pending_loss = cursor.loss_sum;
        }
        if self.config.early_stopping.is_some() && validation.is_none() {
            return Err(Error::Config("early stopping needs validation data".into()));
        }
        let start = Instant::now();
        let mut history = History::default();
        let batch_size = self
            .config
            .batch_size
            .unwrap_or(train.rows())
            .min(train.rows());
        let mut best: Option<(f64, usize, Vec<f32>)> = None;
        for _ in 0..self.config.epochs {
            let remaining = self
                .config
                .max_steps
                .map_or(u64::MAX, |m| m.saturating_sub(self.steps));
            if remaining == 0 {
                break;
            }
            let order = epoch_order(
                train.rows(),
                self.config.shuffle,
                self.config.seed,
                self.epochs_done,
            );
            let lr = self.scheduler.lr();
            // After a mid-epoch restore, the epoch's first rows are done.
            let skip = std::mem::take(&mut self.pending_rows).min(order.len());
            let skipped_loss = std::mem::take(&mut self.pending_loss);
            let epoch = self
                .run_steps(&data, &order[skip..], batch_size, remaining, lr)
                .await?;
            self.steps += epoch.steps;
            if epoch.stopped {
                // The epoch goes on after a restore from `checkpoint()`.
                self.pending_rows = skip + epoch.rows;
                self.pending_loss = skipped_loss + epoch.loss_sum;
                history.interrupted = true;
                return Ok(history);
            }
            // The step limit ended the epoch before its last row.
            let cut = skip + epoch.rows < order.len();
            if cut {
                self.pending_rows = skip + epoch.rows;
                self.pending_loss = skipped_loss + epoch.loss_sum;
                history.cut_mid_epoch = true;
            } else {
                self.epochs_done += 1;
            }
            let train_loss = (skipped_loss + epoch.loss_sum) / (skip + epoch.rows).max(1) as f64;
            if !train_loss.is_finite() {
                return Err(Error::Diverged {
                    step: self.steps,
                    loss: train_loss,
                });
            }
            let validation = match validation {
                Some(v) => Some(self.evaluate_async(v).await?),
                None => None,
            };
            let metric = validation.map_or(train_loss, |v| v.loss);
            let record = EpochRecord {
                epoch: self.epochs_done as usize + usize::from(cut),
                step: self.steps,
                train_loss,
                validation,
                lr,
                seconds: start.elapsed().as_secs_f64(),
                layer_norms: epoch.norms,
            };
            on_epoch(&record);
            history.epochs.push(record);
            if cut {
                // Paused, not finished: the parameters stay those of the
                // last step (not the best epoch's), as for an interrupt.
                return Ok(history);
            }
            self.scheduler.step(self.epochs_done as usize - 1, metric);
            if every > 0 && self.epochs_done.is_multiple_of(every) {
                let checkpoint = self.checkpoint_async().await?;
                on_checkpoint(checkpoint)?;
            }
            if let Some(rule) = self.config.early_stopping {
                let epoch_number = history.epochs.len();
                match &best {
                    Some((loss, _, _)) if metric >= loss - rule.min_delta => {}
                    _ => {
                        best = Some((metric, epoch_number, self.backend.parameters_async().await?))
                    }
                }
                let best_epoch = best.as_ref().map_or(epoch_number, |b| b.1);
                if epoch_number - best_epoch > rule.patience {
                    history.stopped_early = true;
                    break;
                }
            }
        }
        if let Some((_, epoch, params)) = best {
            self.backend.set_parameters(&params)?;
            history.best_epoch = Some(epoch);
        }
        Ok(history)
    }

    /// The backend's handle on `train`: the current upload while the data
    /// set is the one uploaded (same [`Dataset::version`]), else a new one.
    fn device_data<'a>(&mut self, train: &'a Dataset) -> Result<DeviceData<'a>> {
        match self.uploaded {
            Some((id, version)) if version == train.version() => Ok(DeviceData::new(id, train)),
            _ => {
                let data = self.backend.upload(train)?;
                self.uploaded = Some((data.id, train.version()));
                Ok(data)
            }
        }
    }

    /// Runs `steps` optimizer steps as [`train_steps`](Self::train_steps)
    /// does (they are real steps: training moves on), timing every kernel
    /// they dispatch. Returns the mean time a step spent in each kernel, by
    /// layer, or `None` where the backend cannot time its kernels (the CPU,
    /// and adapters without timestamp queries inside compute passes).
    ///
    /// ```no_run
    /// # use retroprop::*;
    /// # fn main() -> retroprop::Result<()> {
    /// # let data = Dataset::new(vec![0.0; 64 * 4], 4, Targets::Classes(vec![0; 64]))?;
    /// let mlp = Mlp::new(&[4, 16, 2], Activation::Relu, Activation::Identity)?;
    /// let config = TrainConfig::default().batch_size(16).device(Device::Gpu);
    /// let mut trainer = Trainer::new(mlp, config)?;
    /// if let Some(profile) = trainer.profile_steps(&data, 8)? {
    ///     for k in &profile.kernels {
    ///         println!("{} {:?}: {:.3} ms", k.kernel, k.layer, k.ms_per_step);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_steps(
        &mut self,
        train: &Dataset,
        steps: u64,
    ) -> Result<Option<crate::gpu::StepProfile>> {
        if !self.backend.start_profile()? {
            self.train_steps(train, steps)?;
            return Ok(None);
        }
        let trained = self.train_steps(train, steps);
        let profile = self.backend.finish_profile();
        trained?;
        profile
    }

    /// Runs `steps` optimizer steps from where training stands, continuing
    /// the current epoch's order and starting new epochs as needed: step
    /// by step control for benchmarks and custom loops. Returns the mean
    /// loss over the rows of those steps. On the GPU the steps are recorded
    /// into few submissions and read back once, as in [`fit`](Self::fit).
    /// The learning-rate schedule steps at each epoch's end, as in `fit`,
    /// on the epoch's mean training loss.
    ///
    /// When [`TrainConfig::stop_flag`] is requested it returns early, at a
    /// step boundary, with the mean loss of the steps that ran (0 when
    /// none did); [`steps`](Self::steps) says how many have run in all,
    /// and [`checkpoint`](Self::checkpoint) records the position.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_steps(&mut self, train: &Dataset, steps: u64) -> Result<f64> {
        pollster::block_on(self.train_steps_async(train, steps))
    }

    /// [`train_steps`](Self::train_steps), awaited.
    pub async fn train_steps_async(&mut self, train: &Dataset, steps: u64) -> Result<f64> {
        self.check_data(train, "training data")?;
        let data = self.device_data(train)?;
        let rows = train.rows();
        let batch_size = self.config.batch_size.unwrap_or(rows).min(rows);
        let (mut remaining, mut total) = (steps, StepsLoss::default());
        while remaining > 0 {
            let mut cursor = match self.cursor.take() {
                Some(cursor) => cursor,
                None => Cursor {
                    order: epoch_order(
                        rows,
                        self.config.shuffle,
                        self.config.seed,
                        self.epochs_done,
                    ),
                    rows_done: std::mem::take(&mut self.pending_rows).min(rows),
                    loss_sum: std::mem::take(&mut self.pending_loss),
                },
            };
            let lr = self.scheduler.lr();
            let result = self
                .run_steps(
                    &data,
                    &cursor.order[cursor.rows_done..],
                    batch_size,
                    remaining,
                    lr,
                )
                .await?;
            self.steps += result.steps;
            remaining -= result.steps;
            total.loss_sum += result.loss_sum;
            total.rows += result.rows;
            cursor.rows_done += result.rows;
            cursor.loss_sum += result.loss_sum;
            if cursor.rows_done >= rows {
                self.epochs_done += 1;
                let epoch_loss = cursor.loss_sum / rows as f64;
                self.scheduler
                    .step(self.epochs_done as usize - 1, epoch_loss);
            } else {
                self.cursor = Some(cursor);
            }
            if result.stopped {
                break;
            }
        }
        let loss = total.loss_sum / total.rows.max(1) as f64;
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: self.steps,
                loss,
            });
        }
        Ok(loss)
    }

    /// A checkpoint of the run as it stands (read back from the GPU).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&mut self) -> Result<Checkpoint> {
        pollster::block_on(self.checkpoint_async())
    }

    /// [`checkpoint`](Self::checkpoint), awaited.
    pub async fn checkpoint_async(&mut self) -> Result<Checkpoint> {
        let (optimizer_state, step) = self.backend.optimizer_state_async().await?;
        Ok(Checkpoint {
            params: self.backend.parameters_async().await?,
            optimizer_state,
            step,
            epoch: self.epochs_done,
            rows_done: self
                .cursor
                .as_ref()
                .map_or(self.pending_rows, |c| c.rows_done),
            epoch_loss_sum: self
                .cursor
                .as_ref()
                .map_or(self.pending_loss, |c| c.loss_sum),
            scheduler: self.scheduler.state(),
        })
    }

    /// Continues from `checkpoint`: an interrupted run resumed this way ends
    /// with the same parameters as one never interrupted (same config).
    /// In a data-parallel run every rank calls it, and every rank takes
    /// rank 0's checkpoint.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let restored = self.restore_state(checkpoint);
        match self.ranks() {
            Some(ranks) => parallel::agree(ranks, restored)?,
            None => return restored,
        }
        self.sync_from_rank_0()
    }

    fn restore_state(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        check_parameters(&self.mlp, &checkpoint.params)?;
        let slots = self.config.optimizer.state_slots() * self.mlp.parameter_count();
        if checkpoint.optimizer_state.len() != slots {
            return Err(Error::Shape {
                what: format!(
                    "optimizer state for {} in the checkpoint",
                    self.config.optimizer.name()
                ),
                expected: slots,
                got: checkpoint.optimizer_state.len(),
            });
        }
        self.backend.set_parameters(&checkpoint.params)?;
        self.backend
            .set_optimizer_state(&checkpoint.optimizer_state, checkpoint.step)?;
        self.steps = checkpoint.step;
        self.epochs_done = checkpoint.epoch;
        self.scheduler.set_state(checkpoint.scheduler);
        // The epoch's order is a function of the seed and epoch number.
        self.pending_rows = checkpoint.rows_done;
        self.pending_loss = checkpoint.epoch_loss_sum;
        self.cursor = None;
        Ok(())
    }

    /// Bytes of device (or, on the CPU, host) memory this trainer's backend
    /// has allocated for parameters, state, activations and data.
    pub fn memory_bytes(&self) -> u64 {
        self.backend.memory_bytes()
    }

    /// Mean loss and, for classification losses, accuracy over `data`.
    /// In a data-parallel run every rank calls it with the same `data`:
    /// each evaluates its share of the rows and the sums are added over
    /// ranks, so every rank gets the same numbers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Evaluation> {
        pollster::block_on(self.evaluate_async(data))
    }

    /// [`evaluate`](Self::evaluate), awaited.
    pub async fn evaluate_async(&mut self, data: &Dataset) -> Result<Evaluation> {
        self.check_data(data, "evaluation data")?;
        let (loss_sum, correct) = match self.collective.as_deref().filter(|c| c.size() > 1) {
            None => self.backend.evaluate_async(data).await?,
            Some(ranks) => {
                let backend = &mut self.backend;
                parallel::evaluate_shard(ranks, data, |shard| backend.evaluate(shard))?
            }
        };
        let elements = match self.config.loss {
            Loss::CrossEntropy => data.rows(),
            _ => data.rows() * self.mlp.outputs(),
        };
        Ok(Evaluation {
            loss: loss_sum / data.rows() as f64,
            accuracy: correct.map(|c| c as f64 / elements as f64),
        })
    }

    /// The network's outputs (rows × outputs, before any softmax or sigmoid)
    /// for inputs `x` (rows × inputs, row-major).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn predict(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        pollster::block_on(self.predict_async(x))
    }

    /// [`predict`](Self::predict), awaited.
    pub async fn predict_async(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let inputs = self.mlp.inputs();
        if x.is_empty() {
            return Err(Error::Empty {
                what: "the inputs to predict".into(),
            });
        }
        if !x.len().is_multiple_of(inputs) {
            return Err(Error::Shape {
                what: format!("inputs to predict ({} values) as rows of {inputs}", x.len()),
                expected: x.len().div_ceil(inputs) * inputs,
                got: x.len(),
            });
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "inputs to predict".into(),
                row: i / inputs,
                column: i % inputs,
                value: x[i] as f64,
            });
        }
        self.backend.predict_async(x).await
    }

    fn check_data(&self, data: &Dataset, what: &str) -> Result<()> {
        if data.features() != self.mlp.inputs() {
            return Err(Error::Shape {
                what: format!("features of the {what} (network inputs)"),
                expected: self.mlp.inputs(),
                got: data.features(),
            });
        }
        self.config.loss.check_targets(data, what)?;
        match (data.targets(), self.config.loss.takes_classes()) {
            (Targets::Classes(_), true) => data.check_classes(self.mlp.outputs()),
            (Targets::Values { width, .. }, false) if *width == self.mlp.outputs() => Ok(()),
            (Targets::Values { width, .. }, false) => Err(Error::Shape {
                what: format!("target columns of the {what} (network outputs)"),
                expected: self.mlp.outputs(),
                got: *width,
            }),
            (Targets::Classes(_), false) => Err(Error::Config(format!(
                "the {what} has class labels, but {} needs target values",
                self.config.loss
            ))),
            (Targets::Values { .. }, true) => Err(Error::Config(format!(
                "the {what} has target values, but cross_entropy needs class labels"
            ))),
        }
    }
}

fn check_parameters(mlp: &Mlp, params: &[f32]) -> Result<()> {
    if params.len() != mlp.parameter_count() {
        return Err(Error::Shape {
            what: "parameters of the network".into(),
            expected: mlp.parameter_count(),
            got: params.len(),
        });
    }
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        let layer = (0..mlp.layers().len())
            .find(|&l| i < mlp.bias_range(l).end)
            .unwrap_or(0);
        return Err(Error::Config(format!(
            "parameter {i} (layer {layer}) is not finite ({})",
            params[i]
        )));
    }
    Ok(())
}
