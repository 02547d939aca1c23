//! What a run records: each epoch, the history, an evaluation (the
//! checkpoint to resume from is `crate::checkpoint`).

use crate::backend::LayerNorms;

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
    /// Whether [`TrainConfig::stop_flag`](super::TrainConfig::stop_flag) ended training. The epoch it
    /// stopped in has no record: the parameters are those after the last
    /// step that ran (not the best epoch's, with early stopping), and
    /// [`Trainer::checkpoint`](super::Trainer::checkpoint) records the rows of that epoch already done.
    pub interrupted: bool,
    /// Whether [`TrainConfig::max_steps`](super::TrainConfig::max_steps) ended training inside an epoch.
    /// That epoch's record covers the rows it reached, it does not count as
    /// done (no schedule step, no early-stopping verdict, no checkpoint
    /// callback), the parameters are those after the last step (not the
    /// best epoch's, with early stopping), and [`Trainer::checkpoint`](super::Trainer::checkpoint)
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
