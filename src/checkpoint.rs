//! The state a run resumes from: below the trainer that takes it, the
//! files that hold it (`io`) and the ranks that share it (`parallel`).
//! With it, the settings of the run ([`RunSettings`]) and what a resume
//! that changes them may change ([`SettingChange`]).

use crate::activation::Activation;
use crate::data::ShuffleWindow;
use crate::loss::Loss;
use crate::model::Residual;
use crate::optim::{GradClip, Optimizer};
use crate::real::Precision;
use crate::schedule::LrSchedule;
use std::fmt;

/// Everything a run needs to continue exactly where it stopped: parameters,
/// optimizer state, step and epoch counts, the position inside the current
/// epoch, the learning-rate scheduler, early stopping's best epoch, and the
/// settings that decide the result. The shuffle order of an epoch is
/// derived from the seed and the epoch number, so no generator state is
/// needed beyond these.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checkpoint {
    /// Flat parameters.
    pub params: Vec<f32>,
    /// Optimizer state, slot-major (`state_slots()` × parameters).
    pub optimizer_state: Vec<f32>,
    /// The batch normalisations' running statistics (torch's buffers,
    /// [`Mlp::buffer_ranges`](crate::Mlp::buffer_ranges); empty for a
    /// network without): state the next steps move, as the optimizer's.
    pub buffers: Vec<f32>,
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
    /// With early stopping: the best epoch so far, its validation loss,
    /// its parameters and running statistics (what the run keeps at its
    /// end).
    pub best: Option<BestEpoch>,
    /// The settings the run trains with; `None` in checkpoints written
    /// before they were recorded (then nothing is compared on resume).
    pub settings: Option<RunSettings>,
    /// Every change of a setting made on resume, in order, as
    /// `at step N: lr 0.01 -> 0.005` (empty for a run never changed).
    pub changes: Vec<String>,
    /// The order of the epoch in progress, where it is not the settings'
    /// (a resume in the middle of an epoch that changed the seed or the
    /// shuffle: the change takes effect at the next epoch, so that no row
    /// of this one is visited twice or missed).
    pub epoch_order: Option<EpochOrder>,
}

/// What decides an epoch's order of rows besides the epoch's number
/// ([`windowed_order`](crate::data::windowed_order)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochOrder {
    /// Whether the rows are shuffled.
    pub shuffle: bool,
    /// The seed of the shuffle.
    pub seed: u64,
    /// How far a row may move ([`ShuffleWindow`]; `full` in checkpoints
    /// written before windows, whose orders were whole shuffles).
    pub window: ShuffleWindow,
}

impl fmt::Display for EpochOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shuffle={},seed={},window={}",
            self.shuffle, self.seed, self.window
        )
    }
}

/// Early stopping's best epoch so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BestEpoch {
    /// Its validation loss.
    pub loss: f64,
    /// Its number (1-based, counted from the start of the run).
    pub epoch: u64,
    /// Its parameters.
    pub params: Vec<f32>,
    /// Its running statistics (the buffers; empty without batch
    /// normalisation): the model of that epoch predicts by them.
    pub buffers: Vec<f32>,
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

/// The validation rows a front held out of the training data
/// (`Dataset::split(fraction, seed)`): recorded, so that a resumed run
/// holds out the same rows (the trainer itself splits nothing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidationSplit {
    /// The fraction of rows held out.
    pub fraction: f64,
    /// The seed of the split (the run's first seed: a seed changed on
    /// resume does not move rows between the sets).
    pub seed: u64,
}

/// Every setting that changes what a run computes, as a checkpoint
/// records it. Not here: the bounds (epochs, steps), which belong to each
/// invocation; the device and what only steers speed; the initialisation,
/// which the parameters already hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSettings {
    /// Layer sizes, inputs first.
    pub sizes: Vec<usize>,
    /// One activation a layer.
    pub activations: Vec<Activation>,
    /// The residual network the dense layers belong to (`None`: a plain
    /// network; checkpoints read it from their model).
    pub residual: Option<Residual>,
    /// The TabM ensemble the network is (`None`: not one; checkpoints
    /// read it from their model).
    pub tabm: Option<crate::model::Tabm>,
    /// The loss.
    pub loss: Loss,
    /// The optimizer with every option (the learning rate among them).
    pub optimizer: Optimizer,
    /// The learning-rate schedule.
    pub lr_schedule: LrSchedule,
    /// Rows a step (`None`: the whole data set).
    pub batch_size: Option<usize>,
    /// Whether each epoch visits the rows in a new seeded order.
    pub shuffle: bool,
    /// How far a shuffle moves a row (checkpoints written before windows
    /// read as `full`, the whole shuffle they took).
    pub shuffle_window: ShuffleWindow,
    /// The seed of the shuffles and the dropout masks.
    pub seed: u64,
    /// Gradient clipping.
    pub grad_clip: GradClip,
    /// The dropout probability of each layer.
    pub dropout: Vec<f32>,
    /// Early stopping, when on.
    pub early_stopping: Option<EarlyStopping>,
    /// The validation rows held out of the training data, when they were.
    pub validation_split: Option<ValidationSplit>,
    /// The precision of the matrix products (checkpoints written before
    /// it was recorded read as f32).
    pub precision: Precision,
}

/// One setting that differs between a checkpoint and the run resuming it.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingChange {
    /// The setting, by its library name (`lr`, `batch_size`, `activations`,
    /// an optimizer option by torch's name).
    pub setting: &'static str,
    /// Its value in the checkpoint, as text.
    pub from: String,
    /// Its value now.
    pub to: String,
    /// Whether the saved state cannot carry it (layer sizes, activations,
    /// loss, the optimizer and the options that shape its state, the
    /// validation rows, the precision): a resume with it is refused. Otherwise it only
    /// steers the rest of the run, and may change.
    pub refused: bool,
}

impl fmt::Display for SettingChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.setting, self.from, self.to)
    }
}

fn list<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn or_none<T: ToString>(value: Option<T>) -> String {
    value.map_or("none".into(), |v| v.to_string())
}

impl RunSettings {
    /// The batch size as text: a number, or `full`.
    pub fn batch_size_text(&self) -> String {
        self.batch_size.map_or("full".into(), |b| b.to_string())
    }

    /// Early stopping as text: `patience=P,min_delta=D`, or `none`.
    pub fn early_stopping_text(&self) -> String {
        self.early_stopping.map_or("none".into(), |e| {
            format!("patience={},min_delta={}", e.patience, e.min_delta)
        })
    }

    /// The validation split as text: `fraction=F,seed=S`, or `none`.
    pub fn validation_split_text(&self) -> String {
        self.validation_split.map_or("none".into(), |v| {
            format!("fraction={},seed={}", v.fraction, v.seed)
        })
    }

    /// Every setting in which `now` differs from these (a checkpoint's),
    /// in the order of the fields, each marked refused or steering.
    ///
    /// ```
    /// use retroprop::checkpoint::RunSettings;
    /// use retroprop::{Activation, Adam, GradClip, Loss, LrSchedule, Precision};
    /// use retroprop::data::ShuffleWindow;
    /// let saved = RunSettings {
    ///     sizes: vec![2, 8, 3],
    ///     activations: vec![Activation::Relu, Activation::Identity],
    ///     residual: None,
    ///     tabm: None,
    ///     loss: Loss::CrossEntropy,
    ///     optimizer: Adam::default().lr(0.01).into(),
    ///     lr_schedule: LrSchedule::Constant,
    ///     batch_size: Some(4),
    ///     shuffle: true,
    ///     shuffle_window: ShuffleWindow::default(),
    ///     seed: 0,
    ///     grad_clip: GradClip::default(),
    ///     dropout: vec![0.0, 0.0],
    ///     early_stopping: None,
    ///     validation_split: None,
    ///     precision: Precision::F32,
    /// };
    /// let mut now = saved.clone();
    /// now.optimizer = Adam::default().lr(0.005).amsgrad(true).into();
    /// now.activations[0] = Activation::Sigmoid;
    /// let changes: Vec<String> = saved
    ///     .changes(&now)
    ///     .iter()
    ///     .map(|c| format!("{c} ({})", if c.refused { "refused" } else { "steers" }))
    ///     .collect();
    /// assert_eq!(
    ///     changes,
    ///     [
    ///         "activations relu,identity -> sigmoid,identity (refused)",
    ///         "lr 0.01 -> 0.005 (steers)",
    ///         "amsgrad false -> true (refused)",
    ///     ]
    /// );
    /// ```
    pub fn changes(&self, now: &RunSettings) -> Vec<SettingChange> {
        let mut out = Vec::new();
        let mut add = |setting, from: String, to: String, refused| {
            if from != to {
                out.push(SettingChange {
                    setting,
                    from,
                    to,
                    refused,
                });
            }
        };
        add("sizes", list(&self.sizes), list(&now.sizes), true);
        add(
            "activations",
            list(&self.activations),
            list(&now.activations),
            true,
        );
        add(
            "blocks",
            or_none(self.residual.as_ref()),
            or_none(now.residual.as_ref()),
            true,
        );
        add(
            "tabm",
            or_none(self.tabm.as_ref()),
            or_none(now.tabm.as_ref()),
            true,
        );
        add("loss", self.loss.to_string(), now.loss.to_string(), true);
        let (saved, new) = (self.optimizer, now.optimizer);
        if saved.name() != new.name() {
            // Its options are another optimizer's: the names say it all.
            add("optimizer", saved.name().into(), new.name().into(), true);
        } else {
            for option in saved.options() {
                let (from, to) = (saved.option(option), new.option(option));
                let (Some(from), Some(to)) = (from, to) else {
                    continue;
                };
                // An option shapes the state when it alone changes the
                // state's slots (amsgrad, centered, momentum from or to 0).
                let mut probe = saved;
                let shapes = probe.set_option(option, &to).is_err()
                    || probe.state_names() != saved.state_names();
                add(option, from, to, shapes);
            }
        }
        add(
            "lr_schedule",
            self.lr_schedule.to_string(),
            now.lr_schedule.to_string(),
            false,
        );
        add(
            "batch_size",
            self.batch_size_text(),
            now.batch_size_text(),
            false,
        );
        add(
            "shuffle",
            self.shuffle.to_string(),
            now.shuffle.to_string(),
            false,
        );
        add(
            "shuffle_window",
            self.shuffle_window.to_string(),
            now.shuffle_window.to_string(),
            false,
        );
        add("seed", self.seed.to_string(), now.seed.to_string(), false);
        add(
            "clip_grad_norm",
            or_none(self.grad_clip.max_norm),
            or_none(now.grad_clip.max_norm),
            false,
        );
        add(
            "clip_grad_value",
            or_none(self.grad_clip.max_value),
            or_none(now.grad_clip.max_value),
            false,
        );
        add("dropout", list(&self.dropout), list(&now.dropout), false);
        add(
            "early_stopping",
            self.early_stopping_text(),
            now.early_stopping_text(),
            false,
        );
        add(
            "validation_split",
            self.validation_split_text(),
            now.validation_split_text(),
            true,
        );
        // The run's numbers are those of its precision: a resume in
        // another would be a different run from the checkpoint on.
        add(
            "precision",
            self.precision.to_string(),
            now.precision.to_string(),
            true,
        );
        out
    }
}
