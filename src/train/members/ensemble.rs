//! Members as an ensemble: each member's predictions, their mean, and the
//! mean scored against targets, on rows held or read a part at a time.

// Prediction blocks on the device: native only, as `Trainer::predict`.
#![cfg_attr(target_arch = "wasm32", allow(unused_imports))]

use super::Members;
use crate::data::{Dataset, Targets};
use crate::error::Result;
use crate::loss::Loss;
#[cfg(not(target_arch = "wasm32"))]
use crate::stream::Streamed;
use crate::train::Evaluation;

#[cfg(not(target_arch = "wasm32"))]
impl Members {
    /// Each member's outputs for inputs `x` (rows × inputs): logits for
    /// the classification losses.
    pub fn predict_members(&mut self, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.trainers.iter_mut().map(|t| t.predict(x)).collect()
    }

    /// The ensemble's prediction for inputs `x`: the mean of the members'
    /// probabilities for the classification losses (softmax for
    /// cross-entropy, sigmoid for BCE), the mean of their outputs for the
    /// regression losses; summed in f64 in member order.
    pub fn predict_ensemble(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        let loss = self.trainers[0].config.loss;
        let width = self.trainers[0].mlp.outputs();
        let outputs = self.predict_members(x)?;
        Ok(ensemble_mean(
            outputs
                .iter()
                .map(|o| loss.probabilities(o, width))
                .collect(),
        ))
    }

    /// The ensemble's loss and accuracy on `data`: its prediction
    /// ([`predict_ensemble`](Self::predict_ensemble)) scored as torch
    /// scores probabilities: cross-entropy as `NLLLoss` of the log of the
    /// mean probabilities (−ln p̄ of each row's class), BCE as `BCELoss`
    /// of the mean probabilities (each log clamped at −100), the squared
    /// errors of the mean outputs as the loss itself; averaged as the
    /// trainer averages a loss (over rows for cross-entropy, elements
    /// otherwise; by the rows' weights when `data` has them). Accuracy:
    /// the class of the largest mean probability (cross-entropy), p̄ > 0.5
    /// against y > 0.5 for each element (BCE).
    pub fn evaluate_ensemble(&mut self, data: &Dataset) -> Result<Evaluation> {
        self.trainers[0].check_data(data, "evaluation data")?;
        let mean = self.predict_ensemble(data.x())?;
        let mut score = self.ensemble_score();
        score.add(&mean, data.targets(), data.weights());
        Ok(score.evaluation(data.weights()))
    }

    /// [`predict_ensemble`](Self::predict_ensemble) on inputs read from a
    /// file a part at a time ([`Trainer::predict_streamed`](crate::train::Trainer::predict_streamed)'s parts): each
    /// part's prediction handed to `on_part` in order, the same values as
    /// the rows held in memory. Returns the rows predicted.
    pub fn predict_ensemble_streamed(
        &mut self,
        inputs: &Streamed,
        mut on_part: impl FnMut(&[f32]) -> Result<()>,
    ) -> Result<usize> {
        self.trainers[0].check_stream_inputs(inputs)?;
        let parts = inputs.parts(0..inputs.rows(), self.trainers[0].part_rows(), false);
        let mut rows = 0;
        while let Some(part) = parts.next_part(None)? {
            on_part(&self.predict_ensemble(&part.x)?)?;
            rows += part.x.len() / inputs.features();
        }
        Ok(rows)
    }

    /// [`evaluate_ensemble`](Self::evaluate_ensemble) on rows read from a
    /// file a part at a time: the rows' terms added in file order, part
    /// after part, as the rows held in memory add them (the same bits).
    pub fn evaluate_ensemble_streamed(&mut self, data: &Streamed) -> Result<Evaluation> {
        self.trainers[0].check_stream(data, "evaluation data")?;
        let parts = data.parts(0..data.rows(), self.trainers[0].part_rows(), false);
        let mut score = self.ensemble_score();
        while let Some(part) = parts.next_part(None)? {
            let part = data.dataset(part)?;
            self.trainers[0].check_data(&part, "evaluation data")?;
            let mean = self.predict_ensemble(part.x())?;
            score.add(&mean, part.targets(), None);
        }
        Ok(score.evaluation(None))
    }

    /// An ensemble's score before any row.
    fn ensemble_score(&self) -> EnsembleScore {
        EnsembleScore {
            loss: self.trainers[0].config.loss,
            width: self.trainers[0].mlp.outputs(),
            rows: 0,
            loss_sum: 0.0,
            correct: 0,
        }
    }
}

/// An ensemble's loss and accuracy summed over rows given part after part
/// ([`Members::evaluate_ensemble`]): each row's term added in order, in
/// f64.
#[cfg(not(target_arch = "wasm32"))]
struct EnsembleScore {
    loss: Loss,
    width: usize,
    rows: usize,
    loss_sum: f64,
    correct: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl EnsembleScore {
    /// Adds the rows whose mean prediction is `mean`, with their targets
    /// and weights.
    fn add(&mut self, mean: &[f32], targets: &Targets, weights: Option<&[f32]>) {
        let (loss, width) = (self.loss, self.width);
        let weight = |row: usize| weights.map_or(1.0, |w| w[row] as f64);
        let ln = |p: f64| p.ln().max(-100.0);
        match targets {
            Targets::Classes(labels) => {
                for (row, (p, &label)) in mean.chunks_exact(width).zip(labels).enumerate() {
                    self.loss_sum -= weight(row) * (p[label as usize] as f64).ln();
                    self.correct += usize::from(crate::loss::argmax(p) == label as usize);
                }
            }
            Targets::Values { values, .. } => {
                for (i, (&p, &y)) in mean.iter().zip(values).enumerate() {
                    let (p, y) = (p as f64, y as f64);
                    let element = match loss {
                        Loss::BceWithLogits => -(y * ln(p) + (1.0 - y) * ln(1.0 - p)),
                        Loss::HalfMse => 0.5 * (p - y) * (p - y),
                        Loss::Mse | Loss::CrossEntropy => (p - y) * (p - y),
                    };
                    self.loss_sum += weight(i / width) * element;
                    self.correct += usize::from((p > 0.5) == (y > 0.5));
                }
            }
        }
        self.rows += mean.len() / width.max(1);
    }

    /// The mean over the rows (by `weights`, all the rows' weights, where
    /// they have them).
    fn evaluation(&self, weights: Option<&[f32]>) -> Evaluation {
        let elements = match self.loss {
            Loss::CrossEntropy => self.rows,
            _ => self.rows * self.width,
        };
        let divisor = match weights {
            Some(w) => w.iter().map(|&w| w as f64).sum(),
            None => elements as f64,
        };
        Evaluation {
            loss: self.loss_sum / divisor,
            accuracy: self
                .loss
                .is_classification()
                .then(|| self.correct as f64 / elements as f64),
        }
    }
}

/// The element-wise mean of `members`' vectors, summed in f64 in order.
pub fn ensemble_mean(members: Vec<Vec<f32>>) -> Vec<f32> {
    let count = members.len().max(1) as f64;
    let len = members.first().map_or(0, Vec::len);
    (0..len)
        .map(|i| (members.iter().map(|v| v[i] as f64).sum::<f64>() / count) as f32)
        .collect()
}
