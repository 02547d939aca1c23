//! Checkpoints: the run's state read out, and put back.

use crate::error::{Error, Result};
use crate::parallel;

use super::{EpochPosition, Trainer, check_buffers, check_parameters};
use crate::checkpoint::{Checkpoint, EpochOrder};

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
            buffers: self.backend.buffers_async().await?,
            step,
            epoch: self.epochs_done,
            rows_done: self.position.rows_done,
            epoch_loss_sum: self.position.loss_sum,
            scheduler: self.scheduler.state(),
            best: self.best.clone(),
            settings: Some(self.config.settings(&self.mlp)),
            changes: self.changes.clone(),
            epoch_order: self.position.order_of,
        })
    }

    /// Continues from `checkpoint`: an interrupted run resumed this way ends
    /// with the same parameters as one never interrupted (same config).
    /// In a data-parallel run every rank calls it, and every rank takes
    /// rank 0's checkpoint.
    ///
    /// The checkpoint's settings are compared with this trainer's
    /// ([`RunSettings::changes`](crate::checkpoint::RunSettings::changes)):
    /// a setting the saved state cannot carry (layer sizes, activations,
    /// loss, the optimizer and the options that shape its state, the
    /// validation rows) is an [`Error::Config`] naming every such
    /// difference and its two values; one that only steers the rest of
    /// the run (learning rate, schedule, clipping, batch size, seed, …) is
    /// taken, listed by [`resume_changes`](Self::resume_changes) and
    /// recorded in [`changes`](Self::changes). A checkpoint without
    /// settings (written before they were recorded) is compared with
    /// nothing.
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        let restored = self.check_settings(checkpoint).and_then(|()| {
            self.restore_state(checkpoint)?;
            self.take_changes(checkpoint);
            Ok(())
        });
        match self.ranks() {
            Some(ranks) => parallel::agree(ranks, restored)?,
            None => return restored,
        }
        self.sync_from_rank_0()
    }

    /// An error naming every setting of `checkpoint` this trainer differs
    /// in that the saved state cannot carry.
    fn check_settings(&self, checkpoint: &Checkpoint) -> Result<()> {
        let Some(saved) = &checkpoint.settings else {
            return Ok(());
        };
        let refused: Vec<String> = saved
            .changes(&self.config.settings(&self.mlp))
            .iter()
            .filter(|c| c.refused)
            .map(ToString::to_string)
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "the checkpoint's run cannot continue with {}: {} (the saved state \
             cannot carry {}; to train its parameters anew, start a new run from them)",
            if refused.len() == 1 {
                "this setting changed"
            } else {
                "these settings changed"
            },
            refused.join("; "),
            if refused.len() == 1 { "it" } else { "them" }
        )))
    }

    /// Takes the steering changes of `checkpoint`'s settings (checked):
    /// lists them, records them, and moves the learning rate to what a
    /// changed rate or schedule gives.
    fn take_changes(&mut self, checkpoint: &Checkpoint) {
        self.changes = checkpoint.changes.clone();
        self.resume_changes.clear();
        let Some(saved) = &checkpoint.settings else {
            return;
        };
        let now = self.config.settings(&self.mlp);
        self.resume_changes = saved.changes(&now);
        if self.resume_changes.is_empty() {
            return;
        }
        if saved.optimizer.lr() != now.optimizer.lr() || saved.lr_schedule != now.lr_schedule {
            self.scheduler.restart_at(self.epochs_done as usize);
        }
        // A new order starts with the next epoch: the rest of this one
        // keeps the order its first rows were taken in.
        let saved_order = EpochOrder {
            shuffle: saved.shuffle,
            seed: saved.seed,
            window: saved.shuffle_window,
        };
        let order_changed = (saved.shuffle, saved.seed, saved.shuffle_window)
            != (now.shuffle, now.seed, now.shuffle_window);
        if order_changed && checkpoint.rows_done > 0 && self.position.order_of.is_none() {
            self.position.order_of = Some(saved_order);
        }
        if self.position.order_of
            == Some(EpochOrder {
                shuffle: now.shuffle,
                seed: now.seed,
                window: now.shuffle_window,
            })
        {
            self.position.order_of = None;
        }
        if now.early_stopping.is_none() {
            self.best = None;
        }
        let changed: Vec<String> = self.resume_changes.iter().map(|c| c.to_string()).collect();
        self.changes
            .push(format!("at step {}: {}", self.steps, changed.join(", ")));
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
        if let Some(best) = &checkpoint.best {
            check_parameters(&self.mlp, &best.params)?;
            check_buffers(&self.mlp, &best.buffers, "early stopping's best epoch")?;
        }
        check_buffers(&self.mlp, &checkpoint.buffers, "the checkpoint")?;
        self.backend.set_parameters(&checkpoint.params)?;
        self.backend
            .set_optimizer_state(&checkpoint.optimizer_state, checkpoint.step)?;
        // After the step count: the statistics' batch count is the steps'.
        self.backend.set_buffers(&checkpoint.buffers)?;
        self.steps = checkpoint.step;
        self.epochs_done = checkpoint.epoch;
        self.scheduler.set_state(checkpoint.scheduler);
        self.best = checkpoint.best.clone();
        // The epoch's order is a function of the seed and epoch number.
        self.position = EpochPosition {
            rows_done: checkpoint.rows_done,
            loss_sum: checkpoint.epoch_loss_sum,
            order_of: checkpoint.epoch_order.filter(|_| checkpoint.rows_done > 0),
            order: None,
        };
        Ok(())
    }
}
