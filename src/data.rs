//! Data sets: features and targets held row-major in memory, validated once,
//! with seeded shuffling and splitting, and a CSV reader.

use crate::error::{Error, Result};
use crate::loss::{Loss, TargetBatch};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

mod categorical;
mod csv_file;
mod order;
mod standardize;
pub use categorical::{CategoricalColumn, Categories};
pub use csv_file::{CsvCategorical, CsvOptions, CsvTable};
pub use order::{EpochWindows, ShuffleWindow, epoch_order, share_bounds, windowed_order};
pub use standardize::{Standardizer, StandardizerFit};

/// What a data set's rows are labelled with.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per row, for cross-entropy.
    Classes(Vec<u32>),
    /// `width` values per row, row-major, for MSE and BCE.
    Values {
        /// The values.
        values: Vec<f32>,
        /// Values per row.
        width: usize,
    },
}

/// Inputs held elsewhere and shared, not copied, by a [`Dataset`]
/// ([`Dataset::shared`]): anything that lends its values as a slice, such
/// as a `Vec<f32>`, a memory map, or the Python package's hold on a NumPy
/// array. The values must not change while a data set holds them: the
/// library reads them from its own threads without a lock.
pub type SharedRows = Arc<dyn AsRef<[f32]> + Send + Sync>;

/// A data set's inputs: its own, or shared with whoever made them.
#[derive(Clone)]
enum Rows {
    /// The data set's own (a clone shares them until one is changed).
    Owned(std::sync::Arc<Vec<f32>>),
    Shared(SharedRows),
}

impl Rows {
    fn as_slice(&self) -> &[f32] {
        match self {
            Rows::Owned(x) => x.as_slice(),
            Rows::Shared(x) => (**x).as_ref(),
        }
    }

    /// The inputs to change in place: shared ones are copied first, and
    /// the data set owns the copy from then on.
    fn to_mut(&mut self) -> &mut Vec<f32> {
        if let Rows::Shared(x) = self {
            *self = Rows::Owned(std::sync::Arc::new((**x).as_ref().to_vec()));
        }
        match self {
            Rows::Owned(x) => std::sync::Arc::make_mut(x),
            Rows::Shared(_) => unreachable!("made owned above"),
        }
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Rows::Owned(_) => "Owned",
            Rows::Shared(_) => "Shared",
        };
        f.debug_tuple(kind).field(&self.as_slice()).finish()
    }
}

/// A labelled data set, validated: rectangular, finite, not empty.
///
/// The inputs are its own ([`Dataset::new`]) or shared without a copy
/// ([`Dataset::shared`]); every reader sees the same row-major slice
/// ([`Dataset::x`]). What changes the inputs ([`Standardizer::apply`])
/// copies shared ones first, so the owner's values are never written.
///
/// ```
/// use retroprop::{Dataset, Targets};
/// let xor = Dataset::new(
///     vec![0., 0., 0., 1., 1., 0., 1., 1.],
///     2,
///     Targets::Values { values: vec![0., 1., 1., 0.], width: 1 },
/// )?;
/// assert_eq!(xor.rows(), 4);
/// assert!(Dataset::new(vec![f32::NAN, 0.], 2, Targets::Classes(vec![0])).is_err());
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    x: Rows,
    features: usize,
    targets: Targets,
    /// Each row's weight in the loss ([`Dataset::with_weights`]).
    weights: Option<std::sync::Arc<[f32]>>,
    /// Changes whenever the contents may have (see [`Dataset::version`]).
    version: u64,
}

/// Equal rows, targets and weights; the version is not compared.
impl PartialEq for Dataset {
    fn eq(&self, other: &Dataset) -> bool {
        self.x() == other.x()
            && self.features == other.features
            && self.targets == other.targets
            && self.weights() == other.weights()
    }
}

/// A number no data set has had before in this process.
fn new_version() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// The loss a data set's targets suggest, and why in words
/// ([`Dataset::suggested_loss`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LossChoice {
    /// Cross-entropy for class labels, MSE otherwise.
    pub loss: Loss,
    /// What in the targets decided it, and the flag that changes it.
    pub reason: String,
}

impl Dataset {
    /// A data set of `x.len() / features` rows. Fails if it is empty, if the
    /// sizes disagree, or if any input or target is NaN or infinite (naming
    /// the row and column).
    pub fn new(x: Vec<f32>, features: usize, targets: Targets) -> Result<Dataset> {
        Dataset::validated(Rows::Owned(std::sync::Arc::new(x)), features, targets)
    }

    /// A data set that reads its inputs where they are, without copying
    /// them: `x` lends `rows × features` values, row-major, and must not
    /// change while the data set (or a clone, which shares them too) is
    /// alive. Checked as [`new`](Self::new) checks.
    ///
    /// ```
    /// use retroprop::{Dataset, SharedRows, Targets};
    /// use std::sync::Arc;
    /// let rows: SharedRows = Arc::new(vec![0f32, 0., 0., 1., 1., 0., 1., 1.]);
    /// let xor = Dataset::shared(rows.clone(), 2, Targets::Classes(vec![0, 1, 1, 0]))?;
    /// assert!(xor.is_shared());
    /// assert_eq!(xor.x().as_ptr(), (*rows).as_ref().as_ptr()); // not copied
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn shared(x: SharedRows, features: usize, targets: Targets) -> Result<Dataset> {
        Dataset::validated(Rows::Shared(x), features, targets)
    }

    fn validated(x: Rows, features: usize, targets: Targets) -> Result<Dataset> {
        let values = x.as_slice();
        if features == 0 {
            return Err(Error::Empty {
                what: "the feature list".into(),
            });
        }
        if values.is_empty() {
            return Err(Error::Empty {
                what: "the data set".into(),
            });
        }
        if !values.len().is_multiple_of(features) {
            return Err(Error::Shape {
                what: format!(
                    "inputs ({} values) as rows of {features} features",
                    values.len()
                ),
                expected: values.len().div_ceil(features) * features,
                got: values.len(),
            });
        }
        let rows = values.len() / features;
        check_finite("inputs", values, features)?;
        match &targets {
            Targets::Classes(labels) => {
                if labels.len() != rows {
                    return Err(Error::Shape {
                        what: "class labels (one per row)".into(),
                        expected: rows,
                        got: labels.len(),
                    });
                }
            }
            Targets::Values { values, width } => {
                if *width == 0 {
                    return Err(Error::Empty {
                        what: "the target columns".into(),
                    });
                }
                if values.len() != rows * width {
                    return Err(Error::Shape {
                        what: format!("targets ({width} per row)"),
                        expected: rows * width,
                        got: values.len(),
                    });
                }
                check_finite("targets", values, *width)?;
            }
        }
        Ok(Dataset {
            x,
            features,
            targets,
            weights: None,
            version: new_version(),
        })
    }

    /// This data set with a weight for each row's loss: a batch's loss is
    /// `Σ wᵢ lᵢ / Σ wᵢ` over its rows (each row's `lᵢ` the mean over its
    /// outputs), as PyTorch's `reduction="none"` followed by
    /// `(w * l).sum() / w.sum()`, and scikit-learn's `sample_weight`. A
    /// weight of 0 leaves its row out of the loss and the gradients (a
    /// fold's held-out rows, for one); with every weight 1 the losses are
    /// the unweighted ones, computed another way (other last bits).
    /// Evaluation weighs the loss the same way; accuracy counts rows. A
    /// batch whose rows all weigh 0 has no loss and no gradient (its step
    /// still counts, with zero gradients).
    ///
    /// # Errors
    /// A weight count other than the rows, a weight that is negative or
    /// not finite (naming the row), or weights that are all 0.
    ///
    /// ```
    /// use retroprop::{Dataset, Targets};
    /// let data = Dataset::new(vec![0.0, 1.0, 2.0], 1, Targets::Classes(vec![0, 1, 1]))?;
    /// let weighted = data.with_weights(vec![1.0, 0.5, 2.0])?;
    /// assert_eq!(weighted.weights(), Some(&[1.0, 0.5, 2.0][..]));
    /// assert!(Dataset::new(vec![0.0], 1, Targets::Classes(vec![0]))?.with_weights(vec![-1.0]).is_err());
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn with_weights(mut self, weights: Vec<f32>) -> Result<Dataset> {
        check_weights(&weights, self.rows())?;
        self.weights = Some(weights.into());
        self.version = new_version();
        Ok(self)
    }

    /// Each row's weight in the loss, when the data set has them.
    pub fn weights(&self) -> Option<&[f32]> {
        self.weights.as_deref()
    }

    /// The weights of rows `indices`, in that order, into `out` (left
    /// empty for a data set without weights).
    pub fn gather_weights(&self, indices: &[u32], out: &mut Vec<f32>) {
        out.clear();
        if let Some(w) = &self.weights {
            out.extend(indices.iter().map(|&i| w[i as usize]));
        }
    }

    /// Σ of the weights of rows `indices` (in f64, in their order), or
    /// their count for a data set without weights: what a weighted mean
    /// over them divides by.
    pub fn weight_of(&self, indices: &[u32]) -> f64 {
        match &self.weights {
            Some(w) => indices.iter().map(|&i| w[i as usize] as f64).sum(),
            None => indices.len() as f64,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.x().len() / self.features
    }

    /// Number of input features per row.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The inputs, row-major.
    pub fn x(&self) -> &[f32] {
        self.x.as_slice()
    }

    /// Whether the inputs are shared ([`shared`](Self::shared)) rather
    /// than the data set's own.
    pub fn is_shared(&self) -> bool {
        matches!(self.x, Rows::Shared(_))
    }

    /// The targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Targets per row: 1 for class labels.
    pub fn target_width(&self) -> usize {
        match &self.targets {
            Targets::Classes(_) => 1,
            Targets::Values { width, .. } => *width,
        }
    }

    /// The targets of rows `range`, as a loss takes them.
    pub fn target_batch(&self, range: std::ops::Range<usize>) -> TargetBatch<'_> {
        match &self.targets {
            Targets::Classes(labels) => TargetBatch::Classes(&labels[range]),
            Targets::Values { values, width } => {
                TargetBatch::Values(&values[range.start * width..range.end * width])
            }
        }
    }

    /// Copies the rows listed in `indices`, in that order, into reusable
    /// buffers: inputs into `x`, and targets into `values` or `labels`
    /// (whichever kind this data set has; the other is left empty).
    pub fn gather(
        &self,
        indices: &[u32],
        x: &mut Vec<f32>,
        values: &mut Vec<f32>,
        labels: &mut Vec<u32>,
    ) {
        let (f, rows) = (self.features, self.x());
        x.clear();
        values.clear();
        labels.clear();
        for &i in indices {
            x.extend_from_slice(&rows[i as usize * f..(i as usize + 1) * f]);
        }
        match &self.targets {
            Targets::Classes(all) => labels.extend(indices.iter().map(|&i| all[i as usize])),
            Targets::Values { values: all, width } => {
                for &i in indices {
                    values.extend_from_slice(&all[i as usize * width..(i as usize + 1) * width]);
                }
            }
        }
    }

    /// Identifies the contents: a number unique in this process, given anew
    /// whenever a method changes the rows (a clone keeps it, as its rows are
    /// the same). A trainer re-uploads data whose version it has not seen.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The rows listed in `indices`, in that order, as a new data set.
    pub fn select(&self, indices: &[u32]) -> Dataset {
        let (mut x, mut values, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        self.gather(indices, &mut x, &mut values, &mut labels);
        let targets = match &self.targets {
            Targets::Classes(_) => Targets::Classes(labels),
            Targets::Values { width, .. } => Targets::Values {
                values,
                width: *width,
            },
        };
        let weights = self.weights.as_ref().map(|_| {
            let mut picked = Vec::new();
            self.gather_weights(indices, &mut picked);
            picked.into()
        });
        Dataset {
            x: Rows::Owned(std::sync::Arc::new(x)),
            features: self.features,
            targets,
            weights,
            version: new_version(),
        }
    }

    /// A seeded random split: `(rest, held_out)` with `fraction` of the rows
    /// (rounded, at least one of each) held out.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Error::Hyperparameter {
                name: "validation fraction",
                value: fraction,
                reason: "must be strictly between 0 and 1",
            });
        }
        let rows = self.rows();
        if rows < 2 {
            return Err(Error::Config(format!(
                "cannot split a data set of {rows} row"
            )));
        }
        let held = ((rows as f64 * fraction).round() as usize).clamp(1, rows - 1);
        let mut order: Vec<u32> = (0..rows as u32).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let (held_out, rest) = order.split_at(held);
        Ok((self.select(rest), self.select(held_out)))
    }

    /// Checks class labels against the number of classes a network outputs.
    pub fn check_classes(&self, classes: usize) -> Result<()> {
        if let Targets::Classes(labels) = &self.targets
            && let Some(row) = labels.iter().position(|&l| l as usize >= classes)
        {
            return Err(Error::LabelOutOfRange {
                row,
                label: labels[row] as f64,
                classes,
            });
        }
        Ok(())
    }

    /// The loss these targets suggest when none is named, and why. One
    /// target column is read as class labels only when it looks like
    /// classes as people write them: whole numbers starting at 0, nearly
    /// every one from 0 to the largest present (at least 90 %), and at
    /// least two rows a class on average. Anything else (real values,
    /// counts, a regression target that happens to be whole, such as
    /// scikit-learn's diabetes data, 25 to 346) suggests MSE; several
    /// columns too.
    ///
    /// ```
    /// use retroprop::{Dataset, Loss, Targets};
    /// let values = |v: Vec<f32>| Targets::Values { values: v, width: 1 };
    /// let labels = Dataset::new(vec![0.0; 6], 1, values(vec![0., 1., 2., 1., 0., 2.]))?;
    /// assert_eq!(labels.suggested_loss().loss, Loss::CrossEntropy);
    /// let counts = Dataset::new(vec![0.0; 4], 1, values(vec![3., 17., 250., 41.]))?;
    /// assert_eq!(counts.suggested_loss().loss, Loss::Mse);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn suggested_loss(&self) -> LossChoice {
        TargetSummary::of(self).suggested_loss()
    }

    /// Reads a CSV file whose last `target_columns` columns are targets. A
    /// first row that is not all numbers is taken as a header. With
    /// `classes`, the single target column holds class indices 0, 1, 2, …
    /// Errors name the file, the row (1-based, as an editor shows it) and the
    /// column. Every feature is a number: [`CsvTable`] reads categorical
    /// features too.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_csv(
        path: impl AsRef<Path>,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let options = numeric_csv(target_columns, classes);
        Ok(CsvTable::open(path.as_ref(), &options)?.data)
    }

    /// [`from_csv`](Self::from_csv) on any reader; `path` names it in errors.
    pub fn from_csv_reader(
        reader: impl std::io::Read,
        path: &Path,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let options = numeric_csv(target_columns, classes);
        Ok(CsvTable::read(reader, path, &options)?.data)
    }
}

/// How [`Dataset::from_csv`] reads: every feature a number.
fn numeric_csv(targets: usize, classes: bool) -> CsvOptions {
    CsvOptions {
        targets,
        classes,
        categorical: CsvCategorical::None,
    }
}

/// What a data set's targets say, gathered a part at a time (from memory,
/// or from a file streamed in chunks): the loss they suggest
/// ([`Dataset::suggested_loss`] is this summary's), the largest class
/// label, and the first value outside [0, 1] (which binary
/// cross-entropy refuses). Parts come in row order.
///
/// ```
/// use retroprop::data::TargetSummary;
/// use retroprop::Loss;
/// let mut summary = TargetSummary::new(1, 6);
/// summary.add_values(&[0., 1., 2.]);
/// summary.add_values(&[1., 0., 2.]);
/// assert_eq!(summary.suggested_loss().loss, Loss::CrossEntropy);
/// assert_eq!(summary.classes(), 3);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TargetSummary {
    width: usize,
    /// Rows added so far.
    rows: usize,
    /// Rows the data set has in all: values above half of them cannot be
    /// classes (fewer than two rows a class), so they are not tracked.
    expected_rows: usize,
    /// Whether the targets are class labels (added by `add_labels`).
    labels: bool,
    /// The largest class label added.
    max_label: u32,
    /// The first value that is negative or not whole.
    first_not_label: Option<f32>,
    low: f32,
    high: f32,
    /// Which whole values up to `expected_rows / 2` are present, a bit each.
    seen: Vec<u64>,
    /// The first value outside [0, 1], with its row and column.
    first_outside_unit: Option<(usize, usize, f32)>,
}

impl TargetSummary {
    /// A summary of `width` targets a row over a data set of `rows` rows,
    /// before any row.
    pub fn new(width: usize, rows: usize) -> TargetSummary {
        TargetSummary {
            width: width.max(1),
            rows: 0,
            expected_rows: rows,
            labels: false,
            max_label: 0,
            first_not_label: None,
            low: f32::MAX,
            high: 0.0,
            seen: Vec::new(),
            first_outside_unit: None,
        }
    }

    /// The summary of a data set's targets.
    pub fn of(data: &Dataset) -> TargetSummary {
        let mut summary = TargetSummary::new(data.target_width(), data.rows());
        match &data.targets {
            Targets::Classes(labels) => summary.add_labels(labels),
            Targets::Values { values, .. } => summary.add_values(values),
        }
        summary
    }

    /// The next rows' target values, row-major.
    pub fn add_values(&mut self, values: &[f32]) {
        let cap = self.expected_rows / 2;
        for (i, &v) in values.iter().enumerate() {
            if self.first_not_label.is_none() && (v < 0.0 || v.fract() != 0.0) {
                self.first_not_label = Some(v);
            }
            if self.first_outside_unit.is_none() && !(0.0..=1.0).contains(&v) {
                let at = self.rows * self.width + i;
                self.first_outside_unit = Some((at / self.width, at % self.width, v));
            }
            self.low = self.low.min(v);
            self.high = self.high.max(v);
            if v >= 0.0 && v.fract() == 0.0 && v as f64 <= cap as f64 {
                self.see(v as usize);
            }
        }
        self.rows += values.len() / self.width;
    }

    /// The next rows' class labels.
    pub fn add_labels(&mut self, labels: &[u32]) {
        self.labels = true;
        self.max_label = labels.iter().copied().fold(self.max_label, u32::max);
        self.rows += labels.len();
    }

    fn see(&mut self, value: usize) {
        let word = value / 64;
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        self.seen[word] |= 1 << (value % 64);
    }

    /// The number of classes the labels need: the largest label plus one,
    /// at least 2 (a network's outputs for cross-entropy).
    pub fn classes(&self) -> usize {
        let largest = match self.labels {
            true => self.max_label as usize,
            false => self.high as usize,
        };
        match self.rows {
            0 => 2,
            _ => (largest + 1).max(2),
        }
    }

    /// The loss the targets suggest and why ([`Dataset::suggested_loss`]).
    pub fn suggested_loss(&self) -> LossChoice {
        let regression = |reason: String| LossChoice {
            loss: Loss::Mse,
            reason: format!("{reason}; --loss cross_entropy to classify"),
        };
        if self.labels {
            let classes = match self.rows {
                0 => 0,
                _ => self.max_label as usize + 1,
            };
            return LossChoice {
                loss: Loss::CrossEntropy,
                reason: format!("class indices 0 to {}", classes.saturating_sub(1)),
            };
        }
        if self.width > 1 {
            return LossChoice {
                loss: Loss::Mse,
                reason: format!("{} target columns", self.width),
            };
        }
        if let Some(v) = self.first_not_label {
            return regression(format!("the target column holds {v}, not a class label"));
        }
        let (low, high) = if self.rows == 0 {
            (f32::MAX, 0.0)
        } else {
            (self.low, self.high)
        };
        if low != 0.0 {
            return regression(format!(
                "the target column holds whole numbers from {low} to {high}, not classes from 0"
            ));
        }
        if (self.rows as f64) < 2.0 * (high as f64 + 1.0) {
            return regression(format!(
                "the target column holds whole numbers from 0 to {high}, fewer than two rows for each as a class"
            ));
        }
        let classes = high as usize + 1;
        let present: usize = self.seen.iter().map(|w| w.count_ones() as usize).sum();
        if present * 10 < classes * 9 {
            return regression(format!(
                "the target column holds {present} distinct whole numbers from 0 to {high}: too sparse for classes"
            ));
        }
        LossChoice {
            loss: Loss::CrossEntropy,
            reason: format!(
                "the target column holds class labels 0 to {high}, {:.0} rows a class; --loss mse to regress",
                self.rows as f64 / classes as f64
            ),
        }
    }

    /// [`Loss::check_targets`] on the values summed up: for
    /// `BceWithLogits`, an error naming the first value outside [0, 1].
    pub fn check_targets(&self, loss: Loss, what: &str) -> Result<()> {
        match self.first_outside_unit {
            Some((row, column, value)) if loss == Loss::BceWithLogits && !self.labels => {
                Err(Error::TargetOutOfRange {
                    what: what.to_string(),
                    row,
                    column,
                    value: value as f64,
                    loss: loss.to_string(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Row weights for `rows` rows: as many, each finite and ≥ 0, not all 0.
fn check_weights(weights: &[f32], rows: usize) -> Result<()> {
    if weights.len() != rows {
        return Err(Error::Shape {
            what: "sample weights (one per row)".into(),
            expected: rows,
            got: weights.len(),
        });
    }
    if let Some(row) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
        return Err(Error::Config(format!(
            "sample weight {} at row {row} is not a finite number ≥ 0",
            weights[row]
        )));
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Err(Error::Config(
            "every sample weight is 0: no row would count in the loss".into(),
        ));
    }
    Ok(())
}

fn check_finite(what: &str, values: &[f32], width: usize) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::NonFinite {
            what: what.into(),
            row: i / width,
            column: i % width,
            value: values[i] as f64,
        }),
    }
}

// The check of a data set's targets against a loss reads the data set, so
// it sits with the data, above `loss`, which knows no data set.
impl Loss {
    /// Checks that `data`'s targets are ones this loss can learn from:
    /// for `BceWithLogits`, probabilities in [0, 1] (others give a loss with
    /// no minimum, which torch trains on silently). `what` names the data
    /// in the error, which gives the row and column.
    pub fn check_targets(self, data: &Dataset, what: &str) -> Result<()> {
        let Targets::Values { values, width } = data.targets() else {
            return Ok(());
        };
        if self != Loss::BceWithLogits {
            return Ok(());
        }
        match values.iter().position(|v| !(0.0..=1.0).contains(v)) {
            None => Ok(()),
            Some(i) => Err(Error::TargetOutOfRange {
                what: what.to_string(),
                row: i / width,
                column: i % width,
                value: values[i] as f64,
                loss: self.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(values: Vec<f32>) -> SharedRows {
        Arc::new(values)
    }

    #[test]
    fn shared_rows_are_read_in_place_and_never_written() {
        let owner = shared(vec![1., 10., 3., 10., 5., 10.]);
        let start = (*owner).as_ref().as_ptr();
        let data = Dataset::shared(owner.clone(), 2, Targets::Classes(vec![0, 1, 0])).unwrap();
        assert!(data.is_shared());
        assert_eq!(data.x().as_ptr(), start);
        assert_eq!((data.rows(), data.features()), (3, 2));
        // A clone shares them too; equality compares values, not storage.
        let copy = data.clone();
        assert_eq!(copy.x().as_ptr(), start);
        let owned = Dataset::new(data.x().to_vec(), 2, data.targets().clone()).unwrap();
        assert!(!owned.is_shared());
        assert_eq!(data, owned);
        // Reading rows out copies only those rows.
        assert_eq!(data.select(&[2, 0]).x(), [5., 10., 1., 10.]);
        // Scaling copies them first: the owner keeps its values.
        let mut scaled = data.clone();
        let version = scaled.version();
        Standardizer::fit(&data).apply(&mut scaled).unwrap();
        assert!(!scaled.is_shared());
        assert_ne!(scaled.version(), version);
        assert_eq!(scaled.x(), [-1.224_744_8, 0., 0., 0., 1.224_744_8, 0.]);
        assert_eq!((*owner).as_ref(), [1., 10., 3., 10., 5., 10.]);
        assert_eq!(data.x().as_ptr(), start);
    }

    #[test]
    fn shared_rows_are_checked_as_owned_ones() {
        let targets = || Targets::Classes(vec![0, 1]);
        let err = Dataset::shared(shared(vec![0., 1., f32::NAN, 2.]), 2, targets()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NonFinite {
                    row: 1,
                    column: 0,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Dataset::shared(shared(vec![0.; 5]), 2, targets()).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err:?}");
        let err = Dataset::shared(shared(Vec::new()), 2, targets()).unwrap_err();
        assert!(matches!(err, Error::Empty { .. }), "{err:?}");
    }
}
