//! Training, validation and prediction on rows read from a file a part at
//! a time ([`Streamed`]): the loop of `fit` (the same epochs, position,
//! checkpoints, schedule, early stopping and stop flag), each epoch's
//! batches handed over by the reader thread a window at a time
//! ([`EpochReader`]) in the order [`windowed_order`] gives the same rows
//! in memory, so the two runs give the same bits.
//!
//! [`windowed_order`]: crate::data::windowed_order

use super::fit::{EpochEnd, EpochSpan, TrainingDone, Validation, check_batch_norm_batches};
use super::{EpochRecord, Evaluation, History, Trainer};
use crate::backend::StepsReport;
use crate::checkpoint::Checkpoint;
use crate::data::share_bounds;
use crate::error::{Error, Kept, Result};
use crate::loss::Loss;
use crate::parallel::{self, StepRows};
use crate::stream::{EpochReader, EpochSpec, Next, PART_ROWS, Segment, Streamed};
use web_time::Instant;

/// Steps that ran before a failure, and the failure.
type Failed = (StepsReport, Error);

impl Trainer {
    /// [`fit_checkpointed`](Self::fit_checkpointed) on rows read from a
    /// file while training goes on, never held whole: each epoch is read
    /// a window of rows at a time (the configuration's
    /// [`shuffle_window`](super::TrainConfig::shuffle_window)) on a thread
    /// of its own, the next window while the device trains on this one,
    /// and visited in [`windowed_order`](crate::data::windowed_order)'s
    /// order, so the run is the one `fit` makes of the same rows held in
    /// memory with the same configuration, bit for bit (validation too,
    /// read in the parts the backend evaluates at once). A checkpoint
    /// records the position in the epoch's order; a stop request ends the
    /// run at a step boundary (also while it waits for the reader); a read
    /// that fails ends it with the error, which names the file and the
    /// place. On a data-parallel run each rank reads only the chunks
    /// holding its share of each batch, and keeps only those rows.
    ///
    /// ```
    /// use retroprop::stream::Streamed;
    /// use retroprop::{Activation, Dataset, Device, Loss, Mlp, Sgd, Targets, TrainConfig, Trainer};
    /// let x: Vec<f32> = (0..200).map(|i| (i as f32 * 0.37).sin()).collect();
    /// let labels = (0..100).map(|i| (x[2 * i] > 0.0) as u32).collect();
    /// let data = Dataset::new(x, 2, Targets::Classes(labels))?;
    /// let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, Activation::Identity)?;
    /// let config = TrainConfig::default().loss(Loss::CrossEntropy).optimizer(Sgd::default().lr(0.1))
    ///     .batch_size(7).epochs(3).device(Device::Cpu)
    ///     .shuffle_window("32:8".parse().unwrap());
    /// let mut held = Trainer::new(mlp.clone(), config.clone())?;
    /// held.fit(&data, None)?;
    /// let mut streamed = Trainer::new(mlp, config)?;
    /// streamed.fit_streamed(&Streamed::new(data), None, |_| {}, 0, |_| Ok(()))?;
    /// assert_eq!(streamed.parameters()?, held.parameters()?);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn fit_streamed(
        &mut self,
        train: &Streamed,
        validation: Option<&Streamed>,
        mut on_epoch: impl FnMut(&EpochRecord),
        every: u64,
        mut on_checkpoint: impl FnMut(Checkpoint) -> Result<()>,
    ) -> Result<History> {
        self.check_same_stream(train, "training data")?;
        if let Some(v) = validation {
            self.check_same_stream(v, "validation data")?;
        }
        self.check_stream(train, "training data")?;
        if let Some(v) = validation {
            self.check_stream(v, "validation data")?;
        }
        if self.rows.is_some() {
            return Err(Error::Config(
                "a trainer of some rows (train_on_rows) trains on data held in memory, not streamed"
                    .into(),
            ));
        }
        if self.config.early_stopping.is_some() && validation.is_none() {
            return Err(Error::Config("early stopping needs validation data".into()));
        }
        let start = Instant::now();
        let mut history = History::default();
        let rows = train.rows();
        let batch_size = self.config.batch_size.unwrap_or(rows).min(rows);
        check_batch_norm_batches(&self.mlp, rows, batch_size)?;
        for _ in 0..self.config.epochs {
            let (position, remaining) = match self.epoch_start() {
                Ok(next) => next,
                Err(TrainingDone { stopped_early }) => {
                    history.stopped_early = stopped_early;
                    break;
                }
            };
            let order = self.order_of(position.order_of);
            let skip = position.rows_done.min(rows);
            let lr = self.scheduler.lr();
            let spec = EpochSpec {
                shuffle: order.shuffle,
                seed: order.seed,
                window: order.window,
                epoch: self.epochs_done,
                start: skip,
                batch_rows: batch_size,
                share: self.ranks().map(|c| (c.rank(), c.size())),
            };
            let reader = EpochReader::start(train, spec);
            let steps = pollster::block_on(self.stream_steps(&reader, batch_size, remaining, lr));
            // Its thread stops before validation reads.
            drop(reader);
            let steps = match steps {
                Ok(report) => Ok(report),
                Err((_, e @ Error::Diverged { .. })) => Err(e),
                Err((report, e)) => {
                    // What ran before the failure stays: the trainer stands
                    // at the last whole step, as after a stop.
                    self.steps += report.steps;
                    self.position = crate::train::EpochPosition {
                        rows_done: skip + report.rows,
                        loss_sum: position.loss_sum + report.loss_sum,
                        order_of: position.order_of,
                        order: None,
                    };
                    return Err(e);
                }
            };
            let span = EpochSpan {
                rows,
                skip,
                lr,
                start: position,
            };
            let validation = validation.map(Validation::Streamed);
            let end = self.close_epoch(span, steps, |n| n as f64, validation, start);
            match pollster::block_on(end)? {
                EpochEnd::Interrupted => {
                    history.interrupted = true;
                    return Ok(history);
                }
                EpochEnd::Cut(record) => {
                    history.cut_mid_epoch = true;
                    on_epoch(&record);
                    history.epochs.push(record);
                    return Ok(history);
                }
                EpochEnd::Ended(record) => {
                    on_epoch(&record);
                    history.epochs.push(record);
                }
            }
            if every > 0 && self.epochs_done.is_multiple_of(every) {
                on_checkpoint(self.checkpoint()?)?;
            }
            if self.patience_spent() {
                history.stopped_early = true;
                break;
            }
        }
        history.best_epoch = self.keep_best()?;
        Ok(history)
    }

    /// The steps of one streamed epoch, segment by segment, at most
    /// `remaining` of them: what they did, or what ran before a failure
    /// and the failure (a divergence's position counted from the epoch's
    /// steps' start).
    async fn stream_steps(
        &mut self,
        reader: &EpochReader,
        batch_size: usize,
        remaining: u64,
        lr: f64,
    ) -> std::result::Result<StepsReport, Failed> {
        let mut total = StepsReport::default();
        while total.steps < remaining {
            let segment = match reader.next(self.config.stop_flag.as_ref()) {
                Next::Item(segment) => segment,
                Next::End => break,
                Next::Stopped => {
                    total.stopped = true;
                    break;
                }
                Next::Failed(e) => return Err((total, e)),
            };
            let left = remaining - total.steps;
            let steps_done = self.steps + total.steps;
            match self
                .train_segment(&segment, batch_size, left, lr, steps_done)
                .await
            {
                Ok(report) => {
                    total.loss_sum += report.loss_sum;
                    total.rows += report.rows;
                    total.steps += report.steps;
                    total.norms.extend(report.norms);
                    if report.stopped {
                        total.stopped = true;
                        break;
                    }
                }
                Err(Error::Diverged { step, loss, kept }) => {
                    let kept = Kept {
                        rows_done: total.rows + kept.rows_done,
                        loss_sum: total.loss_sum + kept.loss_sum,
                        ..kept
                    };
                    return Err((total, Error::Diverged { step, loss, kept }));
                }
                Err(e) => return Err((total, e)),
            }
        }
        Ok(total)
    }

    /// The whole batches of `segment`: on one rank the backend's fused
    /// steps over its order; on several, this rank's shares.
    async fn train_segment(
        &mut self,
        segment: &Segment,
        batch_size: usize,
        max_steps: u64,
        lr: f64,
        steps_done: u64,
    ) -> Result<StepsReport> {
        self.check_data(&segment.data, "training data")?;
        let data = self.backend.upload(&segment.data)?;
        // The backend's current upload is this segment's now.
        self.uploaded = None;
        let rows = match self.ranks() {
            None => StepRows::All(&segment.order),
            Some(_) => StepRows::Own {
                positions: segment.positions,
                own: &segment.order,
            },
        };
        self.run_rows(&data, rows, batch_size, max_steps, lr, steps_done)
            .await
    }

    /// [`evaluate`](Self::evaluate) on rows read from a file a part at a
    /// time: the parts the backend evaluates at once
    /// ([`Backend::evaluation_rows`](crate::backend::Backend::evaluation_rows)),
    /// their losses added in order, so the numbers are those of the rows
    /// held in memory, bit for bit. On a data-parallel run each rank reads
    /// its share of the rows and the sums are added over ranks.
    pub fn evaluate_streamed(&mut self, data: &Streamed) -> Result<Evaluation> {
        self.check_stream(data, "evaluation data")?;
        let rows = data.rows();
        let share = match self.ranks() {
            None => 0..rows,
            Some(c) => share_bounds(rows, c.rank(), c.size()),
        };
        let part_rows = self.part_rows();
        let local = (|| {
            let parts = data.parts(share, part_rows, false);
            let (mut loss_sum, mut correct) = (0.0, None);
            while let Some(part) = parts.next_part(None)? {
                let part = data.dataset(part)?;
                self.check_data(&part, "evaluation data")?;
                let (loss, right) = self.backend.evaluate(&part)?;
                loss_sum += loss;
                if let Some(right) = right {
                    *correct.get_or_insert(0) += right;
                }
            }
            Ok((loss_sum, correct))
        })();
        let (loss_sum, correct) = match self.ranks() {
            None => local?,
            Some(ranks) => parallel::sum_evaluations(ranks, local)?,
        };
        let elements = match self.config.loss {
            Loss::CrossEntropy => rows,
            _ => rows * self.mlp.outputs(),
        };
        Ok(Evaluation {
            loss: loss_sum / rows as f64,
            accuracy: correct.map(|c| c as f64 / elements as f64),
        })
    }

    /// [`predict`](Self::predict) on inputs read from a file a part at a
    /// time (a source of inputs only, or any): each part's outputs (rows ×
    /// outputs) handed to `on_part` in order, the parts those the backend
    /// predicts at once, so the outputs are those of the rows held in
    /// memory. Returns the rows predicted.
    pub fn predict_streamed(
        &mut self,
        inputs: &Streamed,
        mut on_part: impl FnMut(&[f32]) -> Result<()>,
    ) -> Result<usize> {
        self.check_stream_inputs(inputs)?;
        let parts = inputs.parts(0..inputs.rows(), self.part_rows(), false);
        let mut rows = 0;
        while let Some(part) = parts.next_part(None)? {
            let outputs = self.predict(&part.x)?;
            rows += part.x.len() / inputs.features();
            on_part(&outputs)?;
        }
        Ok(rows)
    }

    /// Rows a streamed pass reads and hands the backend at once: those it
    /// evaluates or predicts in one call, so the parts give the bits of
    /// the rows held in memory.
    pub(super) fn part_rows(&self) -> usize {
        self.backend.evaluation_rows().unwrap_or(PART_ROWS)
    }

    /// An error unless inputs to predict on have the network's inputs.
    pub(super) fn check_stream_inputs(&self, inputs: &Streamed) -> Result<()> {
        if inputs.features() != self.mlp.inputs() {
            return Err(Error::Shape {
                what: format!("inputs to predict of {} (network inputs)", inputs.name()),
                expected: self.mlp.inputs(),
                got: inputs.features(),
            });
        }
        Ok(())
    }

    /// On a data-parallel run, an error on every rank unless every rank
    /// streams the same file as rank 0 (rows, features, targets and the
    /// source's fingerprint: its length and layout); `what` names it.
    /// [`fit_streamed`](Self::fit_streamed) checks what it is given; a
    /// program calls it first to have the files named.
    pub fn check_same_stream(&mut self, data: &Streamed, what: &str) -> Result<()> {
        match self.ranks() {
            Some(ranks) => parallel::check_same_fingerprint(ranks, data.fingerprint(), what),
            None => Ok(()),
        }
    }

    /// What [`check_data`](Self::check_data) checks of a data set's
    /// shape, for rows still in a file: the features, and targets the
    /// loss takes (the values are checked as each part is read).
    pub(super) fn check_stream(&self, data: &Streamed, what: &str) -> Result<()> {
        let what = format!("{what} ({})", data.name());
        if data.features() != self.mlp.inputs() {
            return Err(Error::Shape {
                what: format!("features of the {what} (network inputs)"),
                expected: self.mlp.inputs(),
                got: data.features(),
            });
        }
        match (data.classes(), self.config.loss.takes_classes()) {
            (true, true) => Ok(()),
            (false, false) if data.target_width() == self.mlp.outputs() => Ok(()),
            (false, false) => Err(Error::Shape {
                what: format!("target columns of the {what} (network outputs)"),
                expected: self.mlp.outputs(),
                got: data.target_width(),
            }),
            (true, false) => Err(Error::Config(format!(
                "the {what} has class labels, but {} needs target values",
                self.config.loss
            ))),
            (false, true) => Err(Error::Config(format!(
                "the {what} has target values, but cross_entropy needs class labels"
            ))),
        }
    }
}
