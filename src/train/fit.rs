//! The training loop: whole runs (`fit`), and steps at a time
//! (`train_steps`, `profile_steps`).

use crate::backend::{DeviceData, StepsReport};
use crate::data::{Dataset, windowed_order};
use crate::error::{Error, Kept, Result};
// Instant on native, performance.now() in the browser.
use web_time::Instant;

use super::{EpochPosition, EpochRecord, History, Trainer};
use crate::checkpoint::{BestEpoch, Checkpoint, EpochOrder};

/// What comes next in a fit ([`Trainer::plan_epoch`]).
pub(crate) enum NextEpoch {
    /// An epoch to run.
    Run(EpochPlan),
    /// Nothing: the step bound is reached, or (`stopped_early`) early
    /// stopping's patience is spent.
    Done { stopped_early: bool },
}

/// The end of training ([`Trainer::epoch_start`]): the step bound is
/// reached, or (`stopped_early`) early stopping's patience is spent.
pub(crate) struct TrainingDone {
    pub(crate) stopped_early: bool,
}

/// An epoch about to run: its order, the rows of it already done, the
/// learning rate and the steps the bound leaves.
pub(crate) struct EpochPlan {
    order: Vec<u32>,
    /// Rows of `order` done before (a resumed or paused epoch).
    skip: usize,
    /// The position the epoch starts from (their loss, the order's seed).
    start: EpochPosition,
    pub(crate) lr: f64,
    pub(crate) remaining: u64,
}

impl EpochPlan {
    /// The rows its steps go over, in order.
    pub(crate) fn rows(&self) -> &[u32] {
        &self.order[self.skip..]
    }
}

/// An epoch as [`Trainer::close_epoch`] takes it in: its rows, the rows
/// done before its steps, their learning rate and where it started.
pub(crate) struct EpochSpan {
    pub(crate) rows: usize,
    pub(crate) skip: usize,
    pub(crate) lr: f64,
    pub(crate) start: EpochPosition,
}

/// The rows an epoch is validated on.
pub(crate) enum Validation<'a> {
    /// Held in memory.
    Held(&'a Dataset),
    /// Read from a file a part at a time.
    #[cfg(not(target_arch = "wasm32"))]
    Streamed(&'a crate::stream::Streamed),
}

/// How an epoch's steps ended ([`Trainer::end_epoch`]).
pub(crate) enum EpochEnd {
    /// The stop flag ended them: the epoch has no record.
    Interrupted,
    /// The step bound ended them inside the epoch: its record so far.
    Cut(EpochRecord),
    /// The epoch ended.
    Ended(EpochRecord),
}

impl Trainer {
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
    /// When [`TrainConfig::stop_flag`](super::TrainConfig::stop_flag) is requested, training ends at the
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
        on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        self.fit_between_epochs_async(
            train,
            validation,
            |_, record| on_epoch(record),
            every,
            on_checkpoint,
        )
        .await
    }

    /// [`fit_checkpointed`](Self::fit_checkpointed), handing `between`
    /// the trainer itself with each epoch's record, once the epoch's
    /// bookkeeping is done (the schedule stepped, early stopping's best
    /// epoch taken): what it reads, evaluates, predicts or checkpoints
    /// there is the run as a checkpoint after that epoch holds it, so a
    /// checkpoint saved from `between` resumes to the same run. It may do
    /// anything but train (a `fit` or `train_steps` inside it would move
    /// the run on under the loop).
    ///
    /// ```
    /// use retroprop::{Activation, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig, Trainer};
    /// let xor = Dataset::new(vec![0., 0., 0., 1., 1., 0., 1., 1.], 2, Targets::Classes(vec![0, 1, 1, 0]))?;
    /// let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity)?;
    /// let config = TrainConfig::default().loss(Loss::CrossEntropy).optimizer(Sgd::default().lr(0.5))
    ///     .full_batch().epochs(3).device(Device::Cpu);
    /// let mut trainer = Trainer::new(mlp, config)?;
    /// let mut steps_seen = Vec::new();
    /// trainer.fit_between_epochs(&xor, None, |t, _| steps_seen.push(t.steps()), 0, |_| Ok(()))?;
    /// assert_eq!(steps_seen, [1, 2, 3]);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_between_epochs(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        between: impl FnMut(&mut Trainer, &EpochRecord),
        every: u64,
        on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        pollster::block_on(self.fit_between_epochs_async(
            train,
            validation,
            between,
            every,
            on_checkpoint,
        ))
    }

    /// [`fit_between_epochs`](Self::fit_between_epochs), awaited.
    pub async fn fit_between_epochs_async(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        mut between: impl FnMut(&mut Trainer, &EpochRecord),
        every: u64,
        mut on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        // Every rank first, so that a rank whose data fails the checks
        // after it fails them with every other rank, not alone.
        self.check_same_data(train, "training data")?;
        if let Some(v) = validation {
            self.check_same_data(v, "validation data")?;
        }
        self.check_data(train, "training data")?;
        if let Some(v) = validation {
            self.check_data(v, "validation data")?;
        }
        let data = self.device_data(train)?;
        if self.config.early_stopping.is_some() && validation.is_none() {
            return Err(Error::Config("early stopping needs validation data".into()));
        }
        let start = Instant::now();
        let mut history = History::default();
        let batch_size = self.batch_rows(train);
        check_batch_norm_batches(&self.mlp, train.rows(), batch_size)?;
        for _ in 0..self.config.epochs {
            let plan = match self.plan_epoch(train) {
                NextEpoch::Run(plan) => plan,
                NextEpoch::Done { stopped_early } => {
                    history.stopped_early = stopped_early;
                    break;
                }
            };
            let steps = self
                .run_steps(&data, plan.rows(), batch_size, plan.remaining, plan.lr)
                .await;
            match self
                .end_epoch(plan, steps, train, validation, start)
                .await?
            {
                EpochEnd::Interrupted => {
                    history.interrupted = true;
                    return Ok(history);
                }
                EpochEnd::Cut(record) => {
                    // Paused, not finished: the parameters stay those of the
                    // last step (not the best epoch's), as for an interrupt.
                    history.cut_mid_epoch = true;
                    between(self, &record);
                    history.epochs.push(record);
                    return Ok(history);
                }
                EpochEnd::Ended(record) => {
                    between(self, &record);
                    history.epochs.push(record);
                }
            }
            if every > 0 && self.epochs_done.is_multiple_of(every) {
                let checkpoint = self.checkpoint_async().await?;
                on_checkpoint(checkpoint)?;
            }
            if self.patience_spent() {
                history.stopped_early = true;
                break;
            }
        }
        history.best_epoch = self.keep_best()?;
        Ok(history)
    }

    /// Rows a step of `train` takes: the batch size, at most the rows
    /// this trainer trains on.
    pub(crate) fn batch_rows(&self, train: &Dataset) -> usize {
        let rows = self.train_rows(train);
        self.config.batch_size.unwrap_or(rows).min(rows)
    }

    /// The rows of `train` this trainer trains on: all of them, or a
    /// member's own ([`Trainer::train_on_rows`]).
    pub(crate) fn train_rows(&self, train: &Dataset) -> usize {
        self.rows.as_ref().map_or(train.rows(), |r| r.len())
    }

    /// The next epoch of a fit: its order and where it starts, or the end
    /// of training (the step bound reached, or early stopping's patience
    /// spent, as a run resumed after early stopping ended it finds it).
    pub(crate) fn plan_epoch(&mut self, train: &Dataset) -> NextEpoch {
        let (start, remaining) = match self.epoch_start() {
            Ok(next) => next,
            Err(TrainingDone { stopped_early }) => return NextEpoch::Done { stopped_early },
        };
        // After a mid-epoch restore or train_steps, the epoch's first rows
        // are done (its order depends only on the seed and the epoch
        // number, so it is derived again here).
        let order = self.epoch_order(self.train_rows(train), start.order_of);
        NextEpoch::Run(EpochPlan {
            skip: start.rows_done.min(order.len()),
            order,
            start,
            lr: self.scheduler.lr(),
            remaining,
        })
    }

    /// Where the next epoch starts (the position taken from the trainer,
    /// its kept order dropped) and the steps the bound leaves; or the end
    /// of training.
    pub(crate) fn epoch_start(
        &mut self,
    ) -> std::result::Result<(EpochPosition, u64), TrainingDone> {
        let remaining = self
            .config
            .max_steps
            .map_or(u64::MAX, |m| m.saturating_sub(self.steps));
        if remaining == 0 {
            return Err(TrainingDone {
                stopped_early: false,
            });
        }
        if self.patience_spent() {
            return Err(TrainingDone {
                stopped_early: true,
            });
        }
        let start = std::mem::take(&mut self.position);
        Ok((
            EpochPosition {
                order: None,
                ..start
            },
            remaining,
        ))
    }

    /// What the steps of `plan` did, taken in: the counters and position
    /// moved on, the epoch's loss, validation, schedule step and early
    /// stopping's best epoch (for an epoch that ended). `start`: when the
    /// fit began (the record's seconds).
    pub(crate) async fn end_epoch(
        &mut self,
        plan: EpochPlan,
        steps: Result<StepsReport>,
        train: &Dataset,
        validation: Option<&Dataset>,
        start: Instant,
    ) -> Result<EpochEnd> {
        let EpochPlan {
            order,
            skip,
            lr,
            start: done,
            ..
        } = plan;
        let span = EpochSpan {
            rows: order.len(),
            skip,
            lr,
            start: done,
        };
        let weight_of = |rows: usize| train.weight_of(&order[..rows]);
        self.close_epoch(
            span,
            steps,
            weight_of,
            validation.map(Validation::Held),
            start,
        )
        .await
    }

    /// [`end_epoch`](Self::end_epoch) for an epoch of `span.rows` rows,
    /// whatever holds them: `weight_of(n)` is what the mean loss of its
    /// first `n` rows divides by.
    pub(crate) async fn close_epoch(
        &mut self,
        span: EpochSpan,
        steps: Result<StepsReport>,
        weight_of: impl Fn(usize) -> f64,
        validation: Option<Validation<'_>>,
        start: Instant,
    ) -> Result<EpochEnd> {
        let EpochSpan {
            rows,
            skip,
            lr,
            start: done,
        } = span;
        let epoch = match steps {
            Ok(epoch) => epoch,
            Err(e) => return Err(self.keep_position(e, done)),
        };
        self.steps += epoch.steps;
        let reached = EpochPosition {
            rows_done: skip + epoch.rows,
            loss_sum: done.loss_sum + epoch.loss_sum,
            order_of: done.order_of,
            order: None,
        };
        if epoch.stopped {
            // The epoch goes on after a restore from `checkpoint()`.
            self.position = reached;
            return Ok(EpochEnd::Interrupted);
        }
        // The step limit ended the epoch before its last row.
        let cut = skip + epoch.rows < rows;
        if cut {
            self.position = reached;
        } else {
            self.epochs_done += 1;
        }
        let train_loss = match skip + epoch.rows {
            0 => done.loss_sum + epoch.loss_sum,
            trained => (done.loss_sum + epoch.loss_sum) / weight_of(trained),
        };
        if !train_loss.is_finite() {
            return Err(self.diverged(train_loss));
        }
        let validation = match validation {
            Some(Validation::Held(v)) => Some(self.evaluate_own_async(v).await?),
            #[cfg(not(target_arch = "wasm32"))]
            Some(Validation::Streamed(v)) => Some(self.evaluate_streamed(v)?),
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
        if cut {
            return Ok(EpochEnd::Cut(record));
        }
        self.scheduler.step(self.epochs_done as usize - 1, metric);
        // Before the checkpoint, which records the best epoch.
        if let Some(rule) = self.config.early_stopping {
            let improved = self
                .best
                .as_ref()
                .is_none_or(|best| metric < best.loss - rule.min_delta);
            if improved {
                self.best = Some(BestEpoch {
                    loss: metric,
                    epoch: self.epochs_done,
                    params: self.backend.parameters_async().await?,
                    buffers: self.backend.buffers_async().await?,
                });
            }
        }
        Ok(EpochEnd::Ended(record))
    }

    /// With early stopping, puts back the best epoch's parameters and
    /// running statistics and returns its number (what a fit keeps at its
    /// end).
    pub(crate) fn keep_best(&mut self) -> Result<Option<usize>> {
        match (&self.config.early_stopping, &self.best) {
            (Some(_), Some(best)) => {
                self.backend.set_parameters(&best.params)?;
                self.backend.set_buffers(&best.buffers)?;
                Ok(Some(best.epoch as usize))
            }
            _ => Ok(None),
        }
    }

    /// Whether early stopping's patience ran out: more epochs done since
    /// the best than it tolerates.
    pub(crate) fn patience_spent(&self) -> bool {
        match (self.config.early_stopping, &self.best) {
            (Some(rule), Some(best)) => {
                self.epochs_done.saturating_sub(best.epoch) > rule.patience as u64
            }
            _ => false,
        }
    }

    /// `error`, from steps that began at `start` (its order kept where
    /// `train_steps` keeps it): on a divergence, the trainer's counters
    /// and position are moved to the state the backend kept, and the
    /// error says it from the epoch's start.
    fn keep_position(&mut self, error: Error, start: EpochPosition) -> Error {
        let Error::Diverged { step, loss, kept } = error else {
            // Another error: the position is where the steps began.
            self.position = start;
            return error;
        };
        self.steps = kept.steps;
        self.position = EpochPosition {
            rows_done: start.rows_done + kept.rows_done,
            loss_sum: start.loss_sum + kept.loss_sum,
            ..start
        };
        Error::Diverged {
            step,
            loss,
            kept: self.kept(),
        }
    }

    /// What the trainer holds now, as [`Error::Diverged`] reports it.
    fn kept(&self) -> Kept {
        Kept {
            steps: self.steps,
            epoch: self.epochs_done,
            rows_done: self.position.rows_done,
            loss_sum: self.position.loss_sum,
        }
    }

    /// A divergence found after the steps (a mean loss that is not finite
    /// though every step's was): everything as it stands is kept.
    fn diverged(&self, loss: f64) -> Error {
        Error::Diverged {
            step: self.steps,
            loss,
            kept: self.kept(),
        }
    }

    /// The order of the current epoch over `rows` rows: by `order_of`
    /// where a resume kept the epoch's own, else by the configuration.
    /// A member's order is its own rows' (its `rows`, shuffled as a data
    /// set of just those rows would be), as rows of the whole data set.
    fn epoch_order(&self, rows: usize, order_of: Option<EpochOrder>) -> Vec<u32> {
        let EpochOrder {
            shuffle,
            seed,
            window,
        } = self.order_of(order_of);
        let order = windowed_order(rows, shuffle, seed, self.epochs_done, window);
        match &self.rows {
            Some(own) => order.into_iter().map(|i| own[i as usize]).collect(),
            None => order,
        }
    }

    /// What decides the current epoch's order: `order_of` where a resume
    /// kept the epoch's own, else the configuration's.
    pub(crate) fn order_of(&self, order_of: Option<EpochOrder>) -> EpochOrder {
        order_of.unwrap_or(EpochOrder {
            shuffle: self.config.shuffle,
            seed: self.config.seed,
            window: self.config.shuffle_window,
        })
    }

    /// The backend's handle on `train`: the current upload while the data
    /// set is the one uploaded (same [`Dataset::version`]), else a new one.
    pub(crate) fn device_data<'a>(&mut self, train: &'a Dataset) -> Result<DeviceData<'a>> {
        match self.uploaded {
            Some((id, version)) if version == train.version() => Ok(DeviceData::new(id, train)),
            _ => {
                let data = self.backend.upload(train)?;
                self.uploaded = Some((data.id(), train.version()));
                Ok(data)
            }
        }
    }

    /// Runs `steps` optimizer steps as [`train_steps`](Self::train_steps)
    /// does (they are real steps: training moves on), counting every
    /// dispatch they record and timing every kernel they dispatch. Returns
    /// each kernel's dispatches a step, by layer, and, where the adapter
    /// has timestamp queries inside compute passes, the mean time a step
    /// spent in it; `None` on the CPU, which dispatches nothing.
    ///
    /// ```no_run
    /// # use retroprop::*;
    /// # fn main() -> retroprop::Result<()> {
    /// # let data = Dataset::new(vec![0.0; 64 * 4], 4, Targets::Classes(vec![0; 64]))?;
    /// let mlp = Mlp::new(&[4, 16, 2], Activation::Relu, Activation::Identity)?;
    /// let config = TrainConfig::default().batch_size(16).device(Device::Gpu);
    /// let mut trainer = Trainer::new(mlp, config)?;
    /// if let Some(profile) = trainer.profile_steps(&data, 8)? {
    ///     println!("{} dispatches a step", profile.dispatches());
    ///     for k in &profile.kernels {
    ///         println!("{} {:?}: {} dispatches, {:?} ms", k.kernel, k.layer, k.dispatches, k.ms_per_step);
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
    ) -> Result<Option<crate::backend::StepProfile>> {
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
    /// When [`TrainConfig::stop_flag`](super::TrainConfig::stop_flag) is requested it returns early, at a
    /// step boundary, with the mean loss of the steps that ran (0 when
    /// none did); [`steps`](Self::steps) says how many have run in all,
    /// and [`checkpoint`](Self::checkpoint) records the position.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn train_steps(&mut self, train: &Dataset, steps: u64) -> Result<f64> {
        pollster::block_on(self.train_steps_async(train, steps))
    }

    /// [`train_steps`](Self::train_steps), awaited.
    pub async fn train_steps_async(&mut self, train: &Dataset, steps: u64) -> Result<f64> {
        self.check_same_data(train, "training data")?;
        self.check_data(train, "training data")?;
        let data = self.device_data(train)?;
        let rows = self.train_rows(train);
        let batch_size = self.batch_rows(train);
        let (mut remaining, mut total) = (steps, StepsReport::default());
        // What the mean loss over the steps' rows divides by: their count,
        // or their weight.
        let mut total_weight = 0.0;
        while remaining > 0 {
            let mut position = std::mem::take(&mut self.position);
            let order = match position.order.take() {
                Some(order) => order,
                None => {
                    position.rows_done = position.rows_done.min(rows);
                    self.epoch_order(rows, position.order_of)
                }
            };
            let lr = self.scheduler.lr();
            let result = self
                .run_steps(
                    &data,
                    &order[position.rows_done..],
                    batch_size,
                    remaining,
                    lr,
                )
                .await;
            let result = match result {
                Ok(result) => result,
                Err(e) => {
                    position.order = Some(order);
                    return Err(self.keep_position(e, position));
                }
            };
            self.steps += result.steps;
            remaining -= result.steps;
            total.loss_sum += result.loss_sum;
            total.rows += result.rows;
            let trained = position.rows_done..position.rows_done + result.rows;
            total_weight += train.weight_of(&order[trained]);
            position.rows_done += result.rows;
            position.loss_sum += result.loss_sum;
            if position.rows_done >= rows {
                self.epochs_done += 1;
                let epoch_loss = position.loss_sum / train.weight_of(&order);
                self.scheduler
                    .step(self.epochs_done as usize - 1, epoch_loss);
            } else {
                position.order = Some(order);
                self.position = position;
            }
            if result.stopped {
                break;
            }
        }
        let loss = match total.rows {
            0 => total.loss_sum,
            _ => total.loss_sum / total_weight,
        };
        if !loss.is_finite() {
            return Err(self.diverged(loss));
        }
        Ok(loss)
    }
}

/// Before any step: an epoch whose last batch would hold one row cannot
/// normalise it by the batch (torch raises there, mid-epoch).
pub(super) fn check_batch_norm_batches(
    mlp: &crate::model::Mlp,
    rows: usize,
    batch_size: usize,
) -> Result<()> {
    if mlp.has_batch_norm() && (rows == 1 || (batch_size > 1 && rows % batch_size == 1)) {
        return Err(Error::Config(format!(
            "batch normalisation needs at least 2 rows a batch, and the last batch of each \
             epoch would hold 1 ({rows} rows in batches of {batch_size}): choose a batch size \
             that leaves none or more than one"
        )));
    }
    Ok(())
}
