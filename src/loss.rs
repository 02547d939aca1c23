//! Losses, averaged over the batch as torch's `reduction='mean'`, with their
//! gradients with respect to the network output: the CPU formulas that
//! `shaders/loss.wgsl` mirrors.

use crate::activation::sigmoid;
use crate::error::Result;
use crate::real::Real;
use std::fmt;
use std::str::FromStr;

/// The training objective. Softmax and sigmoid belong to their losses (the
/// network's last layer outputs logits), as in torch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// torch `MSELoss`: mean over all B·K elements of (ŷ − y)²;
    /// gradient 2 (ŷ − y) / (B·K).
    #[default]
    Mse,
    /// The classic ½ convention: mean over all B·K elements of ½ (ŷ − y)²;
    /// gradient (ŷ − y) / (B·K), half of `Mse`'s.
    HalfMse,
    /// torch `CrossEntropyLoss` on integer class targets, softmax fused:
    /// mean over the batch of logsumexp(z) − z_y; gradient
    /// (softmax(z) − onehot(y)) / B. The row max is subtracted first.
    CrossEntropy,
    /// torch `BCEWithLogitsLoss`, sigmoid fused: mean over B·K elements of
    /// max(z, 0) − z·y + log(1 + e^−|z|); gradient (σ(z) − y) / (B·K).
    BceWithLogits,
}

/// The targets of one batch, in the form its loss needs.
#[derive(Debug, Clone, Copy)]
pub enum TargetBatch<'a> {
    /// One class index per row (cross-entropy).
    Classes(&'a [u32]),
    /// `rows × width` values, row-major (MSE, BCE).
    Values(&'a [f32]),
}

/// Each row's weight in a batch's loss, and the weight of the whole batch
/// the loss is divided by (which a share of a batch does not hold alone).
#[derive(Debug, Clone, Copy)]
pub struct RowWeights<'a> {
    /// The rows' weights, in the batch's order.
    pub weights: &'a [f32],
    /// Σ of the whole batch's weights.
    pub total: f64,
}

impl Loss {
    /// Whether targets are class indices (one per row) rather than values.
    pub fn takes_classes(self) -> bool {
        matches!(self, Loss::CrossEntropy)
    }

    /// Whether accuracy means something for this loss.
    pub fn is_classification(self) -> bool {
        matches!(self, Loss::CrossEntropy | Loss::BceWithLogits)
    }

    /// The mean loss over a batch of `rows` outputs of width `width`, and its
    /// gradient with respect to `output`, written into `grad`.
    ///
    /// # Panics
    /// If the slices do not match `rows × width` or the target kind does not
    /// fit the loss; the public entry points validate both first.
    pub fn forward_backward<T: Real>(
        self,
        output: &[T],
        width: usize,
        targets: TargetBatch<'_>,
        grad: &mut [T],
    ) -> T {
        let rows = output.len() / width;
        self.forward_backward_in_batch(output, width, targets, grad, rows)
    }

    /// [`forward_backward`](Self::forward_backward) for `output`'s rows as
    /// a share of a batch of `batch_rows` rows: the sum of their losses and
    /// their gradients are divided by the whole batch (so the shares of a
    /// batch add up to the batch's mean and gradient), not by the share.
    ///
    /// # Panics
    /// As `forward_backward`.
    pub fn forward_backward_in_batch<T: Real>(
        self,
        output: &[T],
        width: usize,
        targets: TargetBatch<'_>,
        grad: &mut [T],
        batch_rows: usize,
    ) -> T {
        let rows = output.len() / width;
        assert_eq!(grad.len(), output.len());
        match (self, targets) {
            (Loss::Mse | Loss::HalfMse, TargetBatch::Values(y)) => {
                assert_eq!(y.len(), output.len());
                let n = T::of((batch_rows * width) as f64);
                let (value_scale, grad_scale) = if self == Loss::Mse {
                    (T::one(), T::of(2.0))
                } else {
                    (T::of(0.5), T::one())
                };
                let mut sum = T::zero();
                for ((g, &o), &t) in grad.iter_mut().zip(output).zip(y) {
                    let d = o - T::of(t as f64);
                    sum = sum + d * d;
                    *g = grad_scale * d / n;
                }
                value_scale * sum / n
            }
            (Loss::BceWithLogits, TargetBatch::Values(y)) => {
                assert_eq!(y.len(), output.len());
                let n = T::of((batch_rows * width) as f64);
                let mut sum = T::zero();
                for ((g, &z), &t) in grad.iter_mut().zip(output).zip(y) {
                    let t = T::of(t as f64);
                    // The GPU writes log(1 + e^−|z|): WGSL has no log1p.
                    sum = sum + z.max(T::zero()) - z * t + (-z.abs()).exp().ln_1p();
                    *g = (sigmoid(z) - t) / n;
                }
                sum / n
            }
            (Loss::CrossEntropy, TargetBatch::Classes(labels)) => {
                assert_eq!(labels.len(), rows);
                let b = T::of(batch_rows as f64);
                let mut sum = T::zero();
                for ((z, g), &label) in output
                    .chunks_exact(width)
                    .zip(grad.chunks_exact_mut(width))
                    .zip(labels)
                {
                    let max = z.iter().copied().fold(T::neg_infinity(), T::max);
                    let mut denom = T::zero();
                    for (gi, &zi) in g.iter_mut().zip(z) {
                        *gi = (zi - max).exp();
                        denom = denom + *gi;
                    }
                    sum = sum + denom.ln() - (z[label as usize] - max);
                    for gi in g.iter_mut() {
                        *gi = *gi / denom / b;
                    }
                    g[label as usize] = g[label as usize] - T::one() / b;
                }
                sum / b
            }
            (loss, _) => panic!("{loss} given the wrong kind of targets"),
        }
    }

    /// [`forward_backward_in_batch`](Self::forward_backward_in_batch)
    /// with a weight for each row: the loss is `Σ wᵢ lᵢ / Σ wᵢ` over the
    /// whole batch (`weights.total`), each row's `lᵢ` the mean of its
    /// elements' losses for the losses on target values (so weights of 1
    /// give the unweighted mean), and the gradient of row i is its
    /// unweighted one times `wᵢ · rows / Σ wᵢ`. Returns the share's
    /// `Σ wᵢ lᵢ / Σ wᵢ`. The GPU's `loss.wgsl` scales the same way.
    ///
    /// ```
    /// use retroprop::loss::RowWeights;
    /// use retroprop::{Loss, TargetBatch};
    /// let (output, targets) = ([1.0f64, 3.0], [0.0f32, 0.0]);
    /// let mut grad = [0.0; 2];
    /// let weights = RowWeights { weights: &[1.0, 3.0], total: 4.0 };
    /// let loss = Loss::Mse.forward_backward_weighted(&output, 1, TargetBatch::Values(&targets), &mut grad, weights);
    /// assert_eq!(loss, (1.0 * 1.0 + 3.0 * 9.0) / 4.0);
    /// assert_eq!(grad, [2.0 * 1.0 * 1.0 / 4.0, 2.0 * 3.0 * 3.0 / 4.0]);
    /// ```
    pub fn forward_backward_weighted<T: Real>(
        self,
        output: &[T],
        width: usize,
        targets: TargetBatch<'_>,
        grad: &mut [T],
        weights: RowWeights<'_>,
    ) -> T {
        let rows = output.len() / width;
        assert_eq!(grad.len(), output.len());
        assert_eq!(weights.weights.len(), rows, "a weight a row");
        let total = weights.total;
        let mut sum = T::zero();
        if total == 0.0 {
            // A batch of rows that all weigh nothing: no loss, no gradient
            // (where torch's `(w * l).sum() / w.sum()` would be 0/0).
            grad.fill(T::zero());
            return sum;
        }
        match (self, targets) {
            (Loss::Mse | Loss::HalfMse | Loss::BceWithLogits, TargetBatch::Values(y)) => {
                assert_eq!(y.len(), output.len());
                let norm = total * width as f64;
                for (((g, o), y), &w) in grad
                    .chunks_exact_mut(width)
                    .zip(output.chunks_exact(width))
                    .zip(y.chunks_exact(width))
                    .zip(weights.weights)
                {
                    let scale = T::of(w as f64 / norm);
                    let mut row = T::zero();
                    for ((g, &o), &t) in g.iter_mut().zip(o).zip(y) {
                        let t = T::of(t as f64);
                        match self {
                            Loss::BceWithLogits => {
                                row = row + o.max(T::zero()) - o * t + (-o.abs()).exp().ln_1p();
                                *g = (sigmoid(o) - t) * scale;
                            }
                            Loss::Mse => {
                                let d = o - t;
                                row = row + d * d;
                                *g = T::of(2.0) * d * scale;
                            }
                            _ => {
                                let d = o - t;
                                row = row + T::of(0.5) * d * d;
                                *g = d * scale;
                            }
                        }
                    }
                    sum = sum + T::of(w as f64) * row;
                }
                sum / T::of(norm)
            }
            (Loss::CrossEntropy, TargetBatch::Classes(labels)) => {
                assert_eq!(labels.len(), rows);
                for (((z, g), &label), &w) in output
                    .chunks_exact(width)
                    .zip(grad.chunks_exact_mut(width))
                    .zip(labels)
                    .zip(weights.weights)
                {
                    let scale = T::of(w as f64 / total);
                    let max = z.iter().copied().fold(T::neg_infinity(), T::max);
                    let mut denom = T::zero();
                    for (gi, &zi) in g.iter_mut().zip(z) {
                        *gi = (zi - max).exp();
                        denom = denom + *gi;
                    }
                    sum = sum + T::of(w as f64) * (denom.ln() - (z[label as usize] - max));
                    for gi in g.iter_mut() {
                        *gi = *gi / denom * scale;
                    }
                    g[label as usize] = g[label as usize] - scale;
                }
                sum / T::of(total)
            }
            (loss, _) => panic!("{loss} given the wrong kind of targets"),
        }
    }

    /// Number of correct predictions in a batch: argmax against the class for
    /// cross-entropy, `z > 0` against `y > 0.5` per element for BCE (so the
    /// count is out of rows × width there). `None` for regression losses.
    pub fn correct<T: Real>(
        self,
        output: &[T],
        width: usize,
        targets: TargetBatch<'_>,
    ) -> Option<usize> {
        match (self, targets) {
            (Loss::CrossEntropy, TargetBatch::Classes(labels)) => Some(
                output
                    .chunks_exact(width)
                    .zip(labels)
                    .filter(|(z, label)| argmax(z) == **label as usize)
                    .count(),
            ),
            (Loss::BceWithLogits, TargetBatch::Values(y)) => Some(
                output
                    .iter()
                    .zip(y)
                    .filter(|(z, t)| (**z > T::zero()) == (**t > 0.5))
                    .count(),
            ),
            _ => None,
        }
    }

    /// What a network trained with this loss predicts, from its outputs
    /// (rows of `width`): class probabilities for cross-entropy (softmax
    /// per row, the row max subtracted, summed in f64), per-output
    /// probabilities for BCE with logits (the sigmoid), the outputs
    /// themselves for the squared errors. What `retroprop predict` prints,
    /// and what the ONNX export's `probabilities` option computes.
    ///
    /// ```
    /// use retroprop::Loss;
    /// let p = Loss::CrossEntropy.probabilities(&[0.0, 0.0, 2.0, 0.0], 2);
    /// assert_eq!(p[..2], [0.5, 0.5]);
    /// assert_eq!(Loss::BceWithLogits.probabilities(&[0.0], 1), [0.5]);
    /// ```
    pub fn probabilities(self, outputs: &[f32], width: usize) -> Vec<f32> {
        match self {
            Loss::CrossEntropy => outputs.chunks_exact(width).flat_map(softmax).collect(),
            Loss::BceWithLogits => outputs.iter().map(|&z| sigmoid(z as f64) as f32).collect(),
            Loss::Mse | Loss::HalfMse => outputs.to_vec(),
        }
    }

    /// Every loss: for tests and help text.
    pub const ALL: [Loss; 4] = [
        Loss::Mse,
        Loss::HalfMse,
        Loss::CrossEntropy,
        Loss::BceWithLogits,
    ];

    /// The code the GPU shaders switch on (`LOSS_*`, generated by
    /// src/gpu/codes.rs).
    pub(crate) fn code(self) -> u32 {
        match self {
            Loss::Mse => 0,
            Loss::HalfMse => 1,
            Loss::CrossEntropy => 2,
            Loss::BceWithLogits => 3,
        }
    }
}

/// Index of the largest value (the first one on ties, as torch's argmax).
pub fn argmax<T: PartialOrd + Copy>(row: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// The probabilities a row of logits gives under softmax, for showing
/// predictions (training fuses softmax into [`Loss::CrossEntropy`]):
/// computed in f64 after subtracting the row's largest logit.
///
/// ```
/// let p = retroprop::loss::softmax(&[1000.0, 1000.0, f32::NEG_INFINITY]);
/// assert_eq!(p, [0.5, 0.5, 0.0]);
/// ```
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&z| ((z - max) as f64).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| (e / sum) as f32).collect()
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::Mse => "mse",
            Loss::HalfMse => "half_mse",
            Loss::CrossEntropy => "cross_entropy",
            Loss::BceWithLogits => "bce_with_logits",
        })
    }
}

impl FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Loss::ALL
            .into_iter()
            .find(|l| l.to_string() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown loss `{s}` (expected mse, half_mse, cross_entropy or bce_with_logits)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs, value targets and class labels for 5 rows of 3.
    fn batch() -> (Vec<f64>, Vec<f32>, Vec<u32>) {
        let output: Vec<f64> = (0..15).map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0).collect();
        let values: Vec<f32> = (0..15).map(|i| (i % 4) as f32 / 3.0).collect();
        (output, values, vec![0, 2, 1, 1, 0])
    }

    fn targets<'a>(loss: Loss, values: &'a [f32], labels: &'a [u32]) -> TargetBatch<'a> {
        if loss.takes_classes() {
            TargetBatch::Classes(labels)
        } else {
            TargetBatch::Values(values)
        }
    }

    #[test]
    fn weights_of_one_are_the_unweighted_mean_and_zeros_leave_rows_out() {
        let (output, values, labels) = batch();
        for loss in Loss::ALL {
            let t = targets(loss, &values, &labels);
            let mut plain = vec![0.0; 15];
            let want = loss.forward_backward(&output, 3, t, &mut plain);
            let mut weighted = vec![0.0; 15];
            let ones = RowWeights {
                weights: &[1.0; 5],
                total: 5.0,
            };
            let got = loss.forward_backward_weighted(&output, 3, t, &mut weighted, ones);
            assert!((got - want).abs() < 1e-12, "{loss}: {got} against {want}");
            for (a, b) in weighted.iter().zip(&plain) {
                assert!((a - b).abs() < 1e-12, "{loss}: gradient {a} against {b}");
            }
            // Rows 1 and 3 weigh nothing: the loss of rows 0, 2 and 4.
            let kept = [0usize, 2, 4];
            let pick = |v: &[f64]| {
                kept.iter()
                    .flat_map(|&r| v[3 * r..3 * r + 3].to_vec())
                    .collect::<Vec<_>>()
            };
            let (values3, labels3): (Vec<f32>, Vec<u32>) = (
                kept.iter()
                    .flat_map(|&r| values[3 * r..3 * r + 3].to_vec())
                    .collect(),
                kept.iter().map(|&r| labels[r]).collect(),
            );
            let mut subset_grad = vec![0.0; 9];
            let subset = loss.forward_backward(
                &pick(&output),
                3,
                targets(loss, &values3, &labels3),
                &mut subset_grad,
            );
            let masked = RowWeights {
                weights: &[1.0, 0.0, 1.0, 0.0, 1.0],
                total: 3.0,
            };
            let got = loss.forward_backward_weighted(&output, 3, t, &mut weighted, masked);
            assert!(
                (got - subset).abs() < 1e-12,
                "{loss}: masked {got} against the subset's {subset}"
            );
            assert!(
                weighted[3..6]
                    .iter()
                    .chain(&weighted[9..12])
                    .all(|&g| g == 0.0)
            );
            for (a, b) in pick(&weighted).iter().zip(&subset_grad) {
                assert!(
                    (a - b).abs() < 1e-12,
                    "{loss}: masked gradient {a} against {b}"
                );
            }
        }
    }

    #[test]
    fn a_batch_that_weighs_nothing_has_no_loss_and_no_gradient() {
        let (output, values, labels) = batch();
        for loss in Loss::ALL {
            let mut grad = vec![1.0; 15];
            let none = RowWeights {
                weights: &[0.0; 5],
                total: 0.0,
            };
            let value = loss.forward_backward_weighted(
                &output,
                3,
                targets(loss, &values, &labels),
                &mut grad,
                none,
            );
            assert_eq!(value, 0.0, "{loss}");
            assert!(grad.iter().all(|&g| g == 0.0), "{loss}");
        }
    }
}
