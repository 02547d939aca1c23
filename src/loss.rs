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
