//! Many networks of one architecture trained together: a search over
//! learning rates and decays, the folds of a cross-validation, seeds, an
//! ensemble. Each member is a whole run of its own ([`Member`] says what
//! it has of its own over the run's [`TrainConfig`]), trained epoch by
//! epoch beside the others; on the CPU the members share the pool's
//! threads, a member a thread, each member's passes on its thread alone.
//!
//! Member m ends where a lone run with m's settings, on m's rows, in m's
//! order, with m's weights ends: bit for bit on the CPU, where it is that
//! run, step for step (a product's bits do not depend on the threads that
//! share it). Each member has its own life: early stopping, the plateau
//! schedule and a divergence act on it alone; a member that stops keeps
//! its best (or last good) parameters and takes no more steps while the
//! others go on; the run ends when every member has stopped or the epochs
//! run out. A stop flag stops every member at a step boundary.
//!
//! ```
//! use retroprop::train::{Member, Members};
//! use retroprop::{Activation, Dataset, Device, Loss, Mlp, Targets, TrainConfig, Trainer};
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 / 8.0).sin()).collect();
//! let labels = (0..32).map(|i| (i % 2) as u32).collect();
//! let data = Dataset::new(x, 2, Targets::Classes(labels))?;
//! let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity)?;
//! let config = TrainConfig::default().loss(Loss::CrossEntropy).batch_size(8).epochs(3).device(Device::Cpu);
//! // Three learning rates, the second on the first 24 rows only.
//! let members = vec![
//!     Member::options(&[("lr", "0.001")]),
//!     Member { rows: Some((0..24).collect()), ..Member::options(&[("lr", "0.01")]) },
//!     Member::options(&[("lr", "0.1")]),
//! ];
//! let mut run = Members::new(mlp.clone(), config.clone(), members)?;
//! let history = run.fit(&data, None)?;
//! assert_eq!(history.members.len(), 3);
//! // The second member is the lone run with its settings on its rows.
//! let mut alone = Trainer::new(mlp, config.optimizer(retroprop::Adam::default().lr(0.01)))?;
//! alone.fit(&data.select(&(0..24).collect::<Vec<_>>()), None)?;
//! assert_eq!(run.member_mut(1).parameters()?, alone.parameters()?);
//! # Ok::<(), retroprop::Error>(())
//! ```

use super::config::Device;
use super::fit::{EpochEnd, NextEpoch};
use super::{EpochRecord, History, TrainConfig, Trainer};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{GpuMembers, MemberPlan, MemberView};
use crate::model::Mlp;
use crate::schedule::LrSchedule;
use std::sync::{Arc, Mutex};
use web_time::Instant;

mod ensemble;
pub use ensemble::ensemble_mean;

/// What one member of a run has of its own; everything left `None` (or
/// empty) is the run's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// Seeds its initialisation, its shuffles and its dropout masks.
    pub seed: Option<u64>,
    /// Options set over the run's optimizer, by torch's names, as text
    /// (`("lr", "0.003")`, `("weight_decay", "1e-4")`, `("betas",
    /// "0.9/0.99")`): numbers only; the optimizer's kind and the options
    /// that shape its state are the run's.
    pub optimizer_options: Vec<(String, String)>,
    /// Its learning-rate schedule.
    pub lr_schedule: Option<LrSchedule>,
    /// Its dropout after every hidden layer.
    pub dropout: Option<f32>,
    /// The rows of the training data it trains on (a fold's, a bootstrap
    /// sample's; each at most once), shuffled by its seed as a data set of
    /// just those rows would be.
    pub rows: Option<Vec<u32>>,
    /// The rows of the validation data it is evaluated on (a fold's
    /// held-out rows).
    pub validation_rows: Option<Vec<u32>>,
    /// Each training row's weight in its loss, one a row of the training
    /// data (`Dataset::with_weights`; 0/1 weights make folds whose batches
    /// the members share).
    pub weights: Option<Vec<f32>>,
}

impl Member {
    /// A member with only these optimizer options of its own.
    pub fn options(options: &[(&str, &str)]) -> Member {
        Member {
            optimizer_options: options
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            ..Member::default()
        }
    }

    /// `count` members that differ only by their seed, 0, 1, 2, …: an
    /// ensemble, or a run's spread over seeds.
    pub fn seeds(count: usize) -> Vec<Member> {
        (0..count as u64)
            .map(|seed| Member {
                seed: Some(seed),
                ..Member::default()
            })
            .collect()
    }

    /// The configuration of this member's lone run: `run`'s with this
    /// member's own settings.
    ///
    /// # Errors
    /// An option `run`'s optimizer does not have, or one that would change
    /// the shape of its state (members share the optimizer's kind and
    /// state layout), naming it.
    pub fn config(&self, run: &TrainConfig) -> Result<TrainConfig> {
        let mut config = run.clone();
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        for (option, value) in &self.optimizer_options {
            config.optimizer.set_option(option, value)?;
        }
        if config.optimizer.state_names() != run.optimizer.state_names() {
            return Err(Error::Config(format!(
                "a member's optimizer options ({}) change the shape of the optimizer's state; \
                 members share it (give amsgrad, centered and a momentum of 0 or not to the \
                 run, not to a member)",
                self.options_text()
            )));
        }
        config.optimizer.validate()?;
        if let Some(schedule) = self.lr_schedule {
            config.lr_schedule = schedule;
        }
        if let Some(p) = self.dropout {
            config = config.dropout(p);
        }
        Ok(config)
    }

    /// What this member has of its own, in words, as files record it:
    /// `seed=3 lr=0.01 lr_schedule=step:2:0.5 dropout=0.2 rows=45#1f0c…`
    /// (a row list or weights by their count and a hash, so that a resume
    /// given other folds is told apart); empty for a member with nothing
    /// of its own.
    ///
    /// ```
    /// use retroprop::train::Member;
    /// let member = Member { seed: Some(3), rows: Some(vec![0, 2, 4]), ..Member::options(&[("lr", "0.01")]) };
    /// assert!(member.text().starts_with("seed=3 lr=0.01 rows=3#"));
    /// ```
    pub fn text(&self) -> String {
        let mut words = Vec::new();
        if let Some(seed) = self.seed {
            words.push(format!("seed={seed}"));
        }
        for (name, value) in &self.optimizer_options {
            words.push(format!("{name}={value}"));
        }
        if let Some(schedule) = self.lr_schedule {
            words.push(format!("lr_schedule={schedule}"));
        }
        if let Some(p) = self.dropout {
            words.push(format!("dropout={p}"));
        }
        if let Some(rows) = &self.rows {
            words.push(format!(
                "rows={}#{:016x}",
                rows.len(),
                fnv(rows.iter().map(|&r| r as u64))
            ));
        }
        if let Some(rows) = &self.validation_rows {
            words.push(format!(
                "validation_rows={}#{:016x}",
                rows.len(),
                fnv(rows.iter().map(|&r| r as u64))
            ));
        }
        if let Some(w) = &self.weights {
            words.push(format!(
                "weights={}#{:016x}",
                w.len(),
                fnv(w.iter().map(|w| w.to_bits() as u64))
            ));
        }
        words.join(" ")
    }

    /// The optimizer options as `name=value,…`.
    pub fn options_text(&self) -> String {
        self.optimizer_options
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where a member stands in its run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MemberState {
    /// It trains on.
    Training,
    /// Early stopping ended it; it keeps the best epoch's parameters.
    StoppedEarly,
    /// The caller ended it ([`Members::stop_member`], as a lone fit's
    /// `stop()` between epochs); it keeps its last parameters.
    Stopped,
    /// A step's loss was not finite; it keeps the parameters from before
    /// that step.
    Diverged {
        /// The step (1-based) whose loss was not finite.
        step: u64,
        /// That loss.
        loss: f64,
    },
}

/// What a [`Members::fit`] did: each member's history and state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MembersHistory {
    /// Each member's history, as its lone run's.
    pub members: Vec<History>,
    /// Each member's state at the end.
    pub states: Vec<MemberState>,
    /// Whether the stop flag ended the run (every member at a step
    /// boundary).
    pub interrupted: bool,
}

/// The members of one run, each a [`Trainer`] of its own, trained
/// together (see the module `train::members`).
#[derive(Debug)]
pub struct Members {
    members: Vec<Member>,
    trainers: Vec<Trainer>,
    states: Vec<MemberState>,
    /// On the GPU, the engine every member's steps run in together (each
    /// member's trainer reads its own through a `MemberView`); `None`
    /// where each member's trainer steps alone (the CPU, or a GPU run the
    /// engine does not hold).
    engine: Option<Arc<Mutex<GpuMembers>>>,
}

impl std::fmt::Debug for GpuMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// One member's epoch to run: the trainer, its plan and its data.
struct Job<'a> {
    trainer: &'a mut Trainer,
    plan: super::fit::EpochPlan,
    train: &'a Dataset,
    validation: Option<&'a Dataset>,
    batch_rows: usize,
    start: Instant,
}

impl Job<'_> {
    /// The epoch's steps and its end (validation, schedule, best epoch).
    async fn run(self) -> Result<EpochEnd> {
        let Job {
            trainer,
            plan,
            train,
            validation,
            batch_rows,
            start,
        } = self;
        let data = trainer.device_data(train);
        let steps = match data {
            Ok(data) => {
                trainer
                    .run_steps(&data, plan.rows(), batch_rows, plan.remaining, plan.lr)
                    .await
            }
            Err(e) => Err(e),
        };
        trainer
            .end_epoch(plan, steps, train, validation, start)
            .await
    }
}

impl Members {
    /// The members of a run of `mlp` with `config`, each drawing its
    /// parameters with its seed (see [`Member`]).
    ///
    /// # Errors
    /// No member; a member's setting the run cannot take; what
    /// [`Trainer::new`] refuses.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(mlp: Mlp, config: TrainConfig, members: Vec<Member>) -> Result<Members> {
        Members::build(mlp, config, members, None)
    }

    /// The members of a run starting from `params`, one flat vector a
    /// member (a checkpoint's, or a front's).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_parameters(
        mlp: Mlp,
        config: TrainConfig,
        members: Vec<Member>,
        params: Vec<Vec<f32>>,
    ) -> Result<Members> {
        if params.len() != members.len() {
            return Err(Error::Shape {
                what: "parameter vectors (one a member)".into(),
                expected: members.len(),
                got: params.len(),
            });
        }
        Members::build(mlp, config, members, Some(params))
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn build(
        mlp: Mlp,
        config: TrainConfig,
        members: Vec<Member>,
        params: Option<Vec<Vec<f32>>>,
    ) -> Result<Members> {
        if members.is_empty() {
            return Err(Error::Empty {
                what: "the members of the run".into(),
            });
        }
        let configs = members
            .iter()
            .enumerate()
            .map(|(m, member)| {
                member
                    .config(&config)
                    .map_err(|e| Error::Config(format!("member {m}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let params = match params {
            Some(params) => params,
            None => configs.iter().map(|c| mlp.init(c.init, c.seed)).collect(),
        };
        let engine = Members::engine(&mlp, &config, &configs, &params)?;
        let mut views = engine.as_ref().map(MemberView::every).map(Vec::into_iter);
        let mut trainers = Vec::with_capacity(members.len());
        for (m, (member, own)) in members.iter().zip(configs).enumerate() {
            let named = |e: Error| Error::Config(format!("member {m}: {e}"));
            let mut trainer = match views.as_mut().and_then(Iterator::next) {
                Some(view) => Trainer::with_backend(mlp.clone(), own, Box::new(view)),
                None => Trainer::with_parameters(mlp.clone(), params[m].clone(), own),
            }
            .map_err(named)?;
            trainer
                .train_on_rows(member.rows.clone(), member.validation_rows.clone())
                .map_err(named)?;
            trainers.push(trainer);
        }
        Ok(Members {
            states: vec![MemberState::Training; members.len()],
            members,
            trainers,
            engine,
        })
    }

    /// The GPU engine of a run whose members train on a GPU and that it
    /// holds (a batch size, f32, one dropout rate a member, every member
    /// in a binding): every member's step in the same dispatches. `None`
    /// on the CPU, and where it does not hold the run: then each member's
    /// GPU trainer steps alone, side by side (logged).
    #[cfg(not(target_arch = "wasm32"))]
    fn engine(
        mlp: &Mlp,
        config: &TrainConfig,
        configs: &[TrainConfig],
        params: &[Vec<f32>],
    ) -> Result<Option<Arc<Mutex<GpuMembers>>>> {
        let hardware_only = match config.device {
            Device::Cpu => return Ok(None),
            Device::Gpu => false,
            Device::Auto => true,
        };
        let Some(batch) = config.batch_size else {
            log::info!("members on the GPU: full batches step member by member");
            return Ok(None);
        };
        let backend_configs: Vec<_> = configs.iter().map(|c| c.backend_config(mlp)).collect();
        match GpuMembers::new(mlp, params, &backend_configs, batch, hardware_only) {
            Ok(engine) => Ok(Some(Arc::new(Mutex::new(engine)))),
            // Device auto without a hardware GPU: the CPU, as a lone run.
            Err(Error::NoAdapter(_)) if hardware_only => Ok(None),
            Err(e @ (Error::NoAdapter(_) | Error::Gpu(_))) => Err(e),
            Err(e) => {
                log::info!("members on the GPU step member by member: {e}");
                Ok(None)
            }
        }
    }

    /// How many members the run has.
    pub fn len(&self) -> usize {
        self.trainers.len()
    }

    /// Whether the run has no member (never: [`new`](Self::new) refuses
    /// none).
    pub fn is_empty(&self) -> bool {
        self.trainers.is_empty()
    }

    /// Member `m`'s own settings.
    pub fn settings(&self, m: usize) -> &Member {
        &self.members[m]
    }

    /// Member `m`'s trainer: its configuration, steps, parameters.
    pub fn member(&self, m: usize) -> &Trainer {
        &self.trainers[m]
    }

    /// Member `m`'s trainer, to evaluate, predict or checkpoint with.
    pub fn member_mut(&mut self, m: usize) -> &mut Trainer {
        &mut self.trainers[m]
    }

    /// Where each member stands.
    pub fn states(&self) -> &[MemberState] {
        &self.states
    }

    /// Ends member `m` where it stands: it takes no more steps, in this
    /// fit or a later one, and keeps its last parameters (as a lone fit
    /// stopped between two epochs by its stop flag). From `between`, it
    /// ends the member after the epoch just reported. A member that
    /// diverged or stopped early stays so.
    pub fn stop_member(&mut self, m: usize) -> Result<()> {
        let count = self.len();
        let state = self.states.get_mut(m).ok_or_else(|| {
            Error::Config(format!("member {m} to stop: the run has {count} members"))
        })?;
        if *state == MemberState::Training {
            *state = MemberState::Stopped;
        }
        Ok(())
    }

    /// The device the members train on, in words (the first member's).
    pub fn device_name(&self) -> String {
        self.trainers[0].device_name()
    }

    /// Trains every member for the run's epochs (see the module `train::members`),
    /// counted from the furthest member: after a restore, a member that
    /// stands epochs behind it (its step bound cut it short, or the stop
    /// flag came inside an epoch the others had ended) runs those too, so
    /// that each member ends where its lone run resumed from its own
    /// checkpoint ends.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit(&mut self, train: &Dataset, validation: Option<&Dataset>) -> Result<MembersHistory> {
        self.fit_between_epochs(train, validation, |_, _, _| {}, 0, |_| Ok(()))
    }

    /// [`fit`](Self::fit), handing `between` each member's record after
    /// its epoch (with the run, to read, evaluate or checkpoint), and
    /// `on_checkpoint` every member's checkpoint after every `every` epochs
    /// of the run (never when 0).
    ///
    /// # Errors
    /// What fails the data's checks, and what a member's step fails with
    /// other than a divergence (which ends that member alone).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_between_epochs(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        between: impl FnMut(&mut Members, usize, &EpochRecord),
        every: u64,
        mut on_checkpoint: impl FnMut(Vec<Checkpoint>) -> Result<()>,
    ) -> Result<MembersHistory> {
        self.fit_checkpointed(train, validation, between, every, |checkpoints, _| {
            on_checkpoint(checkpoints)
        })
    }

    /// [`fit_between_epochs`](Self::fit_between_epochs), handing `between`
    /// the records of each epoch of the run together, in member order
    /// (those of the members that ended an epoch in it; none where every
    /// member that ran diverged), once every member's state after that
    /// epoch is settled. A front that takes each record to another thread
    /// (the Python package's callback, which runs on the caller's) then
    /// crosses once an epoch of the run rather than once a member: each
    /// crossing is a send, a wake-up and the GIL, while the pool waits.
    ///
    /// # Errors
    /// As [`fit_between_epochs`](Self::fit_between_epochs).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_epoch_by_epoch(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        between: impl FnMut(&mut Members, &[(usize, EpochRecord)]),
        every: u64,
        mut on_checkpoint: impl FnMut(Vec<Checkpoint>) -> Result<()>,
    ) -> Result<MembersHistory> {
        self.fit_epochs_checkpointed(train, validation, between, every, |checkpoints, _| {
            on_checkpoint(checkpoints)
        })
    }

    /// [`fit_between_epochs`](Self::fit_between_epochs), handing
    /// `on_checkpoint` where each member stands beside its checkpoint
    /// (what a file of the members' checkpoints records: a member that
    /// diverged or stopped early in the epoch just ended is so there).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fit_checkpointed(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        mut between: impl FnMut(&mut Members, usize, &EpochRecord),
        every: u64,
        on_checkpoint: impl FnMut(Vec<Checkpoint>, &[MemberState]) -> Result<()>,
    ) -> Result<MembersHistory> {
        self.fit_epochs_checkpointed(
            train,
            validation,
            |run, records| {
                for (m, record) in records {
                    between(run, *m, record);
                }
            },
            every,
            on_checkpoint,
        )
    }

    /// The run itself: [`fit_epoch_by_epoch`](Self::fit_epoch_by_epoch)'s
    /// records an epoch at a time, with
    /// [`fit_checkpointed`](Self::fit_checkpointed)'s checkpoints.
    #[cfg(not(target_arch = "wasm32"))]
    fn fit_epochs_checkpointed(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        mut between: impl FnMut(&mut Members, &[(usize, EpochRecord)]),
        every: u64,
        mut on_checkpoint: impl FnMut(Vec<Checkpoint>, &[MemberState]) -> Result<()>,
    ) -> Result<MembersHistory> {
        self.trainers[0].check_data(train, "training data")?;
        if let Some(v) = validation {
            self.trainers[0].check_data(v, "validation data")?;
        }
        // Rows of validation data that is not there would go unscored
        // without a word: the member's early stopping would never act.
        if validation.is_none()
            && let Some(m) = self
                .members
                .iter()
                .position(|m| m.validation_rows.is_some())
        {
            return Err(Error::Config(format!(
                "member {m}: validation rows are given, but the fit has no validation data"
            )));
        }
        // Every member's rows checked before any member steps: a run
        // refused halfway would leave the members before it trained.
        for (m, member) in self.members.iter().enumerate() {
            let named = |e: Error| Error::Config(format!("member {m}: {e}"));
            if let Some(rows) = &member.rows {
                super::check_rows(rows, train, "training").map_err(named)?;
            }
            if let (Some(rows), Some(v)) = (&member.validation_rows, validation) {
                super::check_rows(rows, v, "validation").map_err(named)?;
            }
        }
        let sets = self.member_data(train)?;
        let start = Instant::now();
        let mut history = MembersHistory {
            members: vec![History::default(); self.len()],
            states: Vec::new(),
            interrupted: false,
        };
        // The run's epochs count from its furthest member: one behind it
        // (cut short by its step bound, or stopped by the flag inside an
        // epoch the others had ended) also runs the epochs it lacks, as its
        // lone run resumed from its own checkpoint would.
        let furthest = self.trainers.iter().map(Trainer::epochs_done).max();
        let epochs: Vec<u64> = self
            .trainers
            .iter()
            .map(|t| t.config.epochs as u64 + furthest.unwrap_or(0) - t.epochs_done())
            .collect();
        for epoch in 1..=epochs.iter().copied().max().unwrap_or(0) {
            let turns: Vec<bool> = epochs.iter().map(|&e| epoch <= e).collect();
            let ends = self.run_epoch(&sets, validation, start, &turns)?;
            if ends.is_empty() {
                break;
            }
            let mut records = Vec::new();
            for (m, end) in ends {
                match end {
                    Ok(EpochEnd::Interrupted) => history.interrupted = true,
                    Ok(EpochEnd::Cut(record)) => {
                        history.members[m].cut_mid_epoch = true;
                        records.push((m, record));
                    }
                    Ok(EpochEnd::Ended(record)) => records.push((m, record)),
                    Err(Error::Diverged { step, loss, .. }) => {
                        self.states[m] = MemberState::Diverged { step, loss };
                    }
                    Err(e) => return Err(Error::Config(format!("member {m}: {e}"))),
                }
            }
            between(self, &records);
            for (m, record) in records {
                history.members[m].epochs.push(record);
            }
            if history.interrupted {
                history.states = self.states.clone();
                return Ok(history);
            }
            if every > 0 && epoch.is_multiple_of(every) {
                let checkpoints = self.checkpoint()?;
                on_checkpoint(checkpoints, &self.states)?;
            }
        }
        for (m, trainer) in self.trainers.iter_mut().enumerate() {
            if trainer.patience_spent() {
                history.members[m].stopped_early = true;
            }
            // A member cut short by its step bound is paused, not done: it
            // keeps its last step's parameters, as its lone fit does. One
            // that stopped early keeps its best epoch's (again), and says
            // which.
            let done = match self.states[m] {
                MemberState::Training => !history.members[m].cut_mid_epoch,
                MemberState::StoppedEarly => true,
                MemberState::Stopped | MemberState::Diverged { .. } => false,
            };
            if done {
                history.members[m].best_epoch = trainer.keep_best()?;
            }
        }
        history.states = self.states.clone();
        Ok(history)
    }

    /// Each member's training data: the data set itself, or (a member with
    /// weights of its own) the same rows, shared, with its weights.
    fn member_data(&self, train: &Dataset) -> Result<Vec<Dataset>> {
        self.members
            .iter()
            .enumerate()
            .map(|(m, member)| match &member.weights {
                Some(w) => train
                    .clone()
                    .with_weights(w.clone())
                    .map_err(|e| Error::Config(format!("member {m}: {e}"))),
                None => Ok(train.clone()),
            })
            .collect()
    }

    /// One epoch of every member still training whose turn it is
    /// (`turns[m]`: it has epochs left in this fit): planned, run side by
    /// side, ended. A member whose plan says it is done stops here (early
    /// stopping's patience spent, or its step bound reached). Returns each
    /// member's end, empty when no member trains on.
    #[cfg(not(target_arch = "wasm32"))]
    fn run_epoch(
        &mut self,
        sets: &[Dataset],
        validation: Option<&Dataset>,
        start: Instant,
        turns: &[bool],
    ) -> Result<Vec<(usize, Result<EpochEnd>)>> {
        let mut jobs = Vec::new();
        for (m, trainer) in self.trainers.iter_mut().enumerate() {
            if self.states[m] != MemberState::Training || !turns[m] {
                continue;
            }
            match trainer.plan_epoch(&sets[m]) {
                NextEpoch::Run(plan) => jobs.push((
                    m,
                    Job {
                        batch_rows: trainer.batch_rows(&sets[m]),
                        trainer,
                        plan,
                        train: &sets[m],
                        validation,
                        start,
                    },
                )),
                // Its step bound reached, it takes no more steps in this fit
                // (a later one with a higher bound goes on).
                NextEpoch::Done {
                    stopped_early: false,
                } => {}
                NextEpoch::Done {
                    stopped_early: true,
                } => {
                    self.states[m] = MemberState::StoppedEarly;
                    trainer.keep_best()?;
                }
            }
        }
        match &self.engine {
            Some(engine) => together(engine, jobs, sets),
            None => Ok(side_by_side(jobs)),
        }
    }

    /// Every member's checkpoint, in member order.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&mut self) -> Result<Vec<Checkpoint>> {
        self.trainers.iter_mut().map(Trainer::checkpoint).collect()
    }

    /// Continues every member from its checkpoint (see
    /// [`Trainer::restore`]), `states` saying where each stood.
    pub fn restore(&mut self, checkpoints: &[Checkpoint], states: &[MemberState]) -> Result<()> {
        if checkpoints.len() != self.len() || states.len() != self.len() {
            return Err(Error::Shape {
                what: "checkpoints of the members".into(),
                expected: self.len(),
                got: checkpoints.len().min(states.len()),
            });
        }
        for (m, (trainer, c)) in self.trainers.iter_mut().zip(checkpoints).enumerate() {
            trainer
                .restore(c)
                .map_err(|e| Error::Config(format!("member {m}: {e}")))?;
        }
        self.states = states.to_vec();
        Ok(())
    }
}

/// The 64-bit FNV-1a hash of `values` (each as 8 bytes).
fn fnv(values: impl Iterator<Item = u64>) -> u64 {
    values.fold(0xcbf2_9ce4_8422_2325, |hash, v| {
        v.to_le_bytes().iter().fold(hash, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    })
}

/// Runs `jobs` (each a member's epoch) in the GPU `engine`: every member's
/// steps at once, then each member's epoch ended by its own trainer (its
/// validation answered from one evaluation of every member).
#[cfg(not(target_arch = "wasm32"))]
fn together(
    engine: &Mutex<GpuMembers>,
    jobs: Vec<(usize, Job<'_>)>,
    sets: &[Dataset],
) -> Result<Vec<(usize, Result<EpochEnd>)>> {
    let reports = {
        let mut engine = crate::gpu::members_lock(engine);
        let sets: Vec<&Dataset> = sets.iter().collect();
        engine.upload(&sets)?;
        let plans: Vec<MemberPlan> = jobs
            .iter()
            .map(|(m, job)| MemberPlan {
                member: *m,
                order: job.plan.rows(),
                max_steps: job.plan.remaining,
                lr: job.plan.lr,
            })
            .collect();
        engine.train(&plans)?
    };
    Ok(jobs
        .into_iter()
        .zip(reports)
        .map(|((m, job), steps)| {
            let Job {
                trainer,
                plan,
                train,
                validation,
                start,
                ..
            } = job;
            let end = pollster::block_on(trainer.end_epoch(plan, steps, train, validation, start));
            (m, end)
        })
        .collect())
}

/// Runs `jobs` (each a member's epoch): on the CPU pool, a member a thread
/// with its passes on that thread alone, where there are at least as many
/// members as threads; one after another, each with every thread, where
/// there are fewer.
#[cfg(not(target_arch = "wasm32"))]
fn side_by_side(jobs: Vec<(usize, Job<'_>)>) -> Vec<(usize, Result<EpochEnd>)> {
    let threads = rayon::current_num_threads();
    if jobs.len() < threads.max(2) {
        return jobs
            .into_iter()
            .map(|(m, job)| (m, pollster::block_on(job.run())))
            .collect();
    }
    crate::cpu::run_on_pool(|| {
        crate::cpu::share::share(jobs, |(m, job)| {
            (
                m,
                crate::cpu::share::serially(|| pollster::block_on(job.run())),
            )
        })
    })
}
