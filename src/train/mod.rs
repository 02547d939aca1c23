//! The trainer: fit, evaluate and predict, the same calls on either backend.

mod checkpoint;
mod config;
mod fit;
#[cfg(not(target_arch = "wasm32"))]
mod members;
mod records;
mod resolve;
#[cfg(not(target_arch = "wasm32"))]
mod stream;

use crate::backend::{Backend, DeviceData, StepsReport};
use crate::checkpoint::{BestEpoch, EpochOrder, SettingChange};
use crate::cpu::CpuBackend;
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::gpu::GpuBackend;
use crate::loss::Loss;
use crate::model::Mlp;
use crate::parallel::{self, Collective, StepRows};
use crate::real::Precision;
use crate::schedule::Scheduler;
use std::fmt;

pub use crate::backend::LayerNorms;
pub use crate::checkpoint::EarlyStopping;
pub use config::{Device, DropoutRates, TrainConfig};
#[cfg(not(target_arch = "wasm32"))]
pub use members::{Member, MemberState, Members, MembersHistory, ensemble_mean};
pub use records::{EpochRecord, Evaluation, History};
pub use resolve::{Blocks, ResolvedRun, RunRequest, Saved, refusal};

/// Where training stands inside the current epoch: the rows done and
/// their summed loss (what a checkpoint records), and the epoch's order
/// while `train_steps` goes through it. Fit, `train_steps`, checkpoints and
/// restores all read and write this one position.
#[derive(Debug, Default)]
pub(crate) struct EpochPosition {
    /// Rows of the epoch's order already trained on.
    rows_done: usize,
    /// Σ over those steps of the batch's mean loss × its rows.
    loss_sum: f64,
    /// The shuffle and seed of this epoch's order where they are not the
    /// configuration's (a resume that changed them mid-epoch).
    order_of: Option<EpochOrder>,
    /// The epoch's order, kept by `train_steps` between calls; `None` when
    /// it is to be derived again (from the seed and the epoch number).
    order: Option<Vec<u32>>,
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
    /// Where training stands inside the current epoch.
    position: EpochPosition,
    /// The backend's current upload of training data: its id, and the
    /// [`Dataset::version`] it was made from.
    uploaded: Option<(u64, u64)>,
    scheduler: Scheduler,
    /// The ranks of a data-parallel run ([`Trainer::with_collective`]).
    collective: Option<Box<dyn Collective>>,
    /// Why device `auto` trains on the CPU, when it does.
    fallback: Option<String>,
    /// The [`Dataset::version`]s every rank has been found to hold alike
    /// ([`Trainer::check_same_data`]), the latest last.
    agreed_data: Vec<u64>,
    /// Early stopping's best epoch so far.
    best: Option<BestEpoch>,
    /// Every change of a setting on resume, as a checkpoint records them.
    changes: Vec<String>,
    /// The settings the last [`restore`](Trainer::restore) changed.
    resume_changes: Vec<SettingChange>,
    /// The rows of the training data this trainer trains on, when not all
    /// ([`train_on_rows`](Trainer::train_on_rows): a member's).
    rows: Option<std::sync::Arc<[u32]>>,
    /// The rows of the validation data it is evaluated on, when not all.
    validation_rows: Option<std::sync::Arc<[u32]>>,
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

/// The refusal of mixed precision where the CPU would train: the CPU
/// reference computes in f32 only.
fn mixed_on_cpu(why: &str) -> Error {
    Error::Config(format!(
        "--precision mixed needs a GPU with shader-f16 (f16 operands, f32 sums), and {why}: \
         the CPU backend computes in f32 only; use --device gpu on such an adapter, or --precision f32"
    ))
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
        let gpu = |params, hardware_only| {
            GpuBackend::new_async(&mlp, params, &spec, config.gpu, hardware_only)
        };
        let mut fallback = None;
        let backend: Box<dyn Backend> = match config.device {
            Device::Cpu if config.precision == Precision::Mixed => {
                return Err(mixed_on_cpu("device cpu"));
            }
            Device::Cpu => Box::new(CpuBackend::new(&mlp, params, &spec)),
            Device::Gpu => Box::new(gpu(params, false).await?),
            Device::Auto => match gpu(params.clone(), true).await {
                Ok(gpu) => Box::new(gpu),
                Err(e) => {
                    let why = match e {
                        Error::NoAdapter(_) => "there is no hardware GPU (a software one, such as lavapipe or SwiftShader, is taken only with device gpu)".to_string(),
                        e => format!("the GPU failed to start: {e}"),
                    };
                    if config.precision == Precision::Mixed {
                        return Err(mixed_on_cpu(&format!(
                            "device auto fell back to the CPU: {why}"
                        )));
                    }
                    log::info!("device auto: using the CPU: {why}");
                    fallback = Some(why);
                    Box::new(CpuBackend::new(&mlp, params, &spec))
                }
            },
        };
        let mut trainer = Trainer::assemble(mlp, config, backend);
        trainer.fallback = fallback;
        Ok(trainer)
    }

    /// A trainer that trains on `backend`, any implementation of
    /// [`Backend`]: the seam for a backend written outside this crate.
    /// The backend holds the starting parameters, and must have been made
    /// for `mlp` and for `config`'s
    /// [`backend_config`](TrainConfig::backend_config) (the loss, the
    /// optimizer, clipping, dropout, the stop flag); `config.device` is
    /// not read. Everything else (the loop, schedules, validation, early
    /// stopping, checkpoints) is the trainer's, as with
    /// [`new`](Self::new).
    ///
    /// ```
    /// use retroprop::cpu::CpuBackend;
    /// use retroprop::{Activation, Dataset, Loss, Mlp, Sgd, Targets, TrainConfig, Trainer};
    /// let xor = Dataset::new(vec![0., 0., 0., 1., 1., 0., 1., 1.], 2, Targets::Classes(vec![0, 1, 1, 0]))?;
    /// let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity)?;
    /// let config = TrainConfig::default()
    ///     .loss(Loss::CrossEntropy)
    ///     .optimizer(Sgd::default().lr(0.5).momentum(0.9))
    ///     .full_batch()
    ///     .epochs(200);
    /// let params = mlp.init(config.init, config.seed);
    /// let backend = CpuBackend::new(&mlp, params, &config.backend_config(&mlp));
    /// let mut trainer = Trainer::with_backend(mlp, config, Box::new(backend))?;
    /// trainer.fit(&xor, None)?;
    /// assert_eq!(trainer.evaluate(&xor)?.accuracy, Some(1.0));
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn with_backend(
        mlp: Mlp,
        config: TrainConfig,
        backend: Box<dyn Backend>,
    ) -> Result<Trainer> {
        config.validate(&mlp)?;
        Ok(Trainer::assemble(mlp, config, backend))
    }

    /// The trainer of a checked configuration and its backend, at step 0.
    fn assemble(mlp: Mlp, config: TrainConfig, backend: Box<dyn Backend>) -> Trainer {
        log::info!("training on {}", backend.name());
        Trainer {
            backend,
            steps: 0,
            epochs_done: 0,
            position: EpochPosition::default(),
            uploaded: None,
            scheduler: Scheduler::new(config.lr_schedule, config.optimizer.lr()),
            collective: None,
            agreed_data: Vec::new(),
            fallback: None,
            best: None,
            changes: Vec::new(),
            resume_changes: Vec::new(),
            rows: None,
            validation_rows: None,
            mlp,
            config,
        }
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
        // Data checked before there were ranks was compared with nobody.
        self.agreed_data.clear();
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

    /// On a data-parallel run, an error on every rank unless every rank
    /// holds the same `data` as rank 0: its rows, features, targets and a
    /// hash of every value; `what` names it in the message (a file, say).
    /// [`fit`](Self::fit) and [`train_steps`](Self::train_steps) check the
    /// data they are given unless it has been checked: ranks with
    /// different data would run different numbers of steps and wait for
    /// each other's sums forever. A program that reads its data from files
    /// calls it first, to have the files named. With one rank, or none,
    /// nothing is compared.
    ///
    /// # Errors
    /// [`Error::Rank`] naming the lowest rank whose data differs, and how.
    pub fn check_same_data(&mut self, data: &Dataset, what: &str) -> Result<()> {
        if self.agreed_data.contains(&data.version()) {
            return Ok(());
        }
        if let Some(ranks) = self.ranks() {
            parallel::check_same_data(ranks, data, what)?;
        }
        // Few data sets are in use at once: training and validation.
        if self.agreed_data.len() == 4 {
            self.agreed_data.remove(0);
        }
        self.agreed_data.push(data.version());
        Ok(())
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
    pub(crate) async fn run_steps(
        &mut self,
        data: &DeviceData<'_>,
        order: &[u32],
        batch_size: usize,
        max_steps: u64,
        lr: f64,
    ) -> Result<StepsReport> {
        let steps_done = self.steps;
        self.run_rows(
            data,
            StepRows::All(order),
            batch_size,
            max_steps,
            lr,
            steps_done,
        )
        .await
    }

    /// [`run_steps`](Self::run_steps) over `rows`: the whole order, or (a
    /// streamed epoch on several ranks) this rank's shares alone;
    /// `steps_done` is the optimizer's step count before the first.
    pub(crate) async fn run_rows(
        &mut self,
        data: &DeviceData<'_>,
        rows: StepRows<'_>,
        batch_size: usize,
        max_steps: u64,
        lr: f64,
        steps_done: u64,
    ) -> Result<StepsReport> {
        match self.collective.as_deref().filter(|c| c.size() > 1) {
            None => {
                // One rank's shares are the batches' every row.
                let (StepRows::All(order) | StepRows::Own { own: order, .. }) = rows;
                self.backend
                    .train_steps_async(data, order, batch_size, max_steps, lr)
                    .await
            }
            Some(collective) => parallel::train_steps(
                collective,
                self.backend.as_mut(),
                &self.mlp,
                data,
                rows,
                batch_size,
                max_steps,
                lr,
                steps_done,
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

    /// Why [`Device::Auto`] fell back to the CPU (no hardware GPU, or one
    /// that failed to start, with its error), for the program to say; `None`
    /// when it did not, or another device was asked for.
    pub fn device_fallback(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Which backend runs, in words: `cpu: ` and the GEMM its training
    /// steps use (`OpenBLAS 0.3.21, Zen` or `built-in GEMM`, see
    /// [`crate::cpu::gemm`]; evaluation in chunks of 8 192 rows may use the
    /// library where small batches do not),
    /// or `gpu: ` and the adapter's name and graphics API.
    pub fn device_name(&self) -> String {
        self.backend.name()
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Epochs completed so far (an epoch cut short is not).
    pub fn epochs_done(&self) -> u64 {
        self.epochs_done
    }

    /// The settings that the last [`restore`](Self::restore) found
    /// changed from the checkpoint's and took (each only steers the rest
    /// of the run), for a front to show; empty after a resume that
    /// changed nothing.
    pub fn resume_changes(&self) -> &[SettingChange] {
        &self.resume_changes
    }

    /// Every change of a setting made on resume in this run's life
    /// (`at step 40: lr 0.01 -> 0.005`), for the metadata of the files
    /// it writes; empty for a run never changed.
    pub fn changes(&self) -> &[String] {
        &self.changes
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

    /// The model's buffers: each batch normalisation's running mean and
    /// variance ([`Mlp::buffer_ranges`]; empty for a network without),
    /// which a model file and a checkpoint hold beside the parameters.
    pub fn buffers(&mut self) -> Result<Vec<f32>> {
        self.backend.buffers()
    }

    /// [`buffers`](Self::buffers), awaited.
    pub async fn buffers_async(&mut self) -> Result<Vec<f32>> {
        self.backend.buffers_async().await
    }

    /// Replaces the buffers (the running statistics of a loaded model).
    pub fn set_buffers(&mut self, buffers: &[f32]) -> Result<()> {
        check_buffers(&self.mlp, buffers, "the buffers given")?;
        self.backend.set_buffers(buffers)
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
        let all: Vec<u32> = match data.weights() {
            Some(_) => (0..data.rows() as u32).collect(),
            None => Vec::new(),
        };
        let divisor = match data.weights() {
            Some(_) => data.weight_of(&all),
            None => data.rows() as f64,
        };
        Ok(Evaluation {
            loss: loss_sum / divisor,
            accuracy: correct.map(|c| c as f64 / elements as f64),
        })
    }

    /// Trains on rows `rows` of the training data alone (each at most
    /// once, in a seeded order of its own: the order a data set of just
    /// those rows, `Dataset::select(rows)`, would be taken in), and
    /// validates on rows `validation_rows` of the validation data: a
    /// fold's or a bootstrap sample's rows, without copying them. `None`:
    /// every row. The result is that of training on those rows' own data
    /// set, bit for bit on the CPU.
    ///
    /// ```
    /// use retroprop::{Activation, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
    /// let x: Vec<f32> = (0..40).map(|i| i as f32 / 40.0).collect();
    /// let data = Dataset::new(x, 1, Targets::Classes((0..40).map(|i| (i % 2) as u32).collect()))?;
    /// let rows: Vec<u32> = (0..40).filter(|i| i % 4 != 0).collect();
    /// let config = TrainConfig::default().loss(Loss::CrossEntropy).batch_size(8).epochs(2).device(Device::Cpu);
    /// let mlp = Mlp::new(&[1, 4, 2], Activation::Tanh, Activation::Identity)?;
    /// let mut fold = Trainer::new(mlp.clone(), config.clone())?;
    /// fold.train_on_rows(Some(rows.clone()), None)?;
    /// fold.fit(&data, None)?;
    /// let mut alone = Trainer::new(mlp, config)?;
    /// alone.fit(&data.select(&rows), None)?;
    /// assert_eq!(fold.parameters()?, alone.parameters()?);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn train_on_rows(
        &mut self,
        rows: Option<Vec<u32>>,
        validation_rows: Option<Vec<u32>>,
    ) -> Result<()> {
        for (what, list) in [("training", &rows), ("validation", &validation_rows)] {
            if list.as_ref().is_some_and(|r| r.is_empty()) {
                return Err(Error::Empty {
                    what: format!("the {what} rows of the trainer"),
                });
            }
        }
        self.rows = rows.map(Into::into);
        self.validation_rows = validation_rows.map(Into::into);
        Ok(())
    }

    /// The rows of the training data this trainer trains on, when not all.
    pub fn rows(&self) -> Option<&[u32]> {
        self.rows.as_deref()
    }

    /// [`evaluate`](Self::evaluate) on the rows of `data` this trainer
    /// validates on (all, or its `validation_rows`).
    pub(crate) async fn evaluate_own_async(&mut self, data: &Dataset) -> Result<Evaluation> {
        match self.validation_rows.clone() {
            Some(rows) => {
                check_rows(&rows, data, "validation")?;
                self.evaluate_async(&data.select(&rows)).await
            }
            None => self.evaluate_async(data).await,
        }
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

    pub(crate) fn check_data(&self, data: &Dataset, what: &str) -> Result<()> {
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

/// An error unless every one of `rows` is a row of `data`.
pub(crate) fn check_rows(rows: &[u32], data: &Dataset, what: &str) -> Result<()> {
    match rows.iter().position(|&r| r as usize >= data.rows()) {
        None => Ok(()),
        Some(at) => Err(Error::Config(format!(
            "{what} row list: entry {at} is row {}, but the {what} data has {} rows",
            rows[at],
            data.rows()
        ))),
    }
}

/// An error unless `buffers` (of `what`) are the network's running
/// statistics: [`Mlp::buffer_count`] finite values.
fn check_buffers(mlp: &Mlp, buffers: &[f32], what: &str) -> Result<()> {
    if buffers.len() != mlp.buffer_count() {
        return Err(Error::Shape {
            what: format!("running statistics (buffers) of the network in {what}"),
            expected: mlp.buffer_count(),
            got: buffers.len(),
        });
    }
    if let Some(i) = buffers.iter().position(|v| !v.is_finite()) {
        return Err(Error::Config(format!(
            "running statistic {i} in {what} is not finite ({})",
            buffers[i]
        )));
    }
    Ok(())
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
