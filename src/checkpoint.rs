//! The state a run resumes from: below the trainer that takes it, the
//! files that hold it (`io`) and the ranks that share it (`parallel`).

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
