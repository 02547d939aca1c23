//! Checkpoints: the run's state read out, and put back.

use crate::error::{Error, Result};
use crate::parallel;

use super::{EpochPosition, Trainer, check_parameters};
use crate::checkpoint::Checkpoint;

impl Trainer {
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
            rows_done: self.position.rows_done,
            epoch_loss_sum: self.position.loss_sum,
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

    pub(super) fn restore_state(&mut self, checkpoint: &Checkpoint) -> Result<()> {
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
        self.position = EpochPosition {
            rows_done: checkpoint.rows_done,
            loss_sum: checkpoint.epoch_loss_sum,
            order: None,
        };
        Ok(())
    }
}
