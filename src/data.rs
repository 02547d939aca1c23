//! Data sets: features and targets held row-major in memory, validated once,
//! with seeded shuffling and splitting, and a CSV reader.

use crate::error::{Error, Result};
use crate::loss::{Loss, TargetBatch};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::sync::Arc;

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
    /// column.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_csv(
        path: impl AsRef<Path>,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Dataset::from_csv_reader(std::io::BufReader::new(file), path, target_columns, classes)
    }

    /// [`from_csv`](Self::from_csv) on any reader; `path` names it in errors.
    pub fn from_csv_reader(
        reader: impl std::io::Read,
        path: &Path,
        target_columns: usize,
        classes: bool,
    ) -> Result<Dataset> {
        let parse_err = |message: String| Error::Parse {
            path: path.to_path_buf(),
            message,
        };
        if target_columns == 0 {
            return Err(parse_err("needs at least one target column".into()));
        }
        if classes && target_columns != 1 {
            return Err(parse_err(format!(
                "class labels come from one column, but {target_columns} target columns were asked for"
            )));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut width = None;
        for (index, record) in reader.records().enumerate() {
            let line = index + 1;
            let record = record.map_err(|e| parse_err(format!("row {line}: {e}")))?;
            if record.iter().all(|f| f.is_empty()) {
                continue;
            }
            if index == 0 && record.iter().any(|f| f.parse::<f64>().is_err()) {
                continue; // header
            }
            let columns = record.len();
            match width {
                None => {
                    if columns <= target_columns {
                        return Err(parse_err(format!(
                            "row {line} has {columns} columns, but {target_columns} are targets: no feature columns are left"
                        )));
                    }
                    width = Some(columns);
                }
                Some(w) if w != columns => {
                    return Err(parse_err(format!(
                        "row {line} has {columns} columns, expected {w} like the rows before it"
                    )));
                }
                _ => {}
            }
            for (c, field) in record.iter().enumerate() {
                let value: f64 = field.parse().map_err(|_| {
                    parse_err(format!(
                        "row {line}, column {}: `{field}` is not a number",
                        c + 1
                    ))
                })?;
                if !value.is_finite() {
                    return Err(parse_err(format!(
                        "row {line}, column {}: `{field}` is not a finite number",
                        c + 1
                    )));
                }
                // f32 is what trains: a value past its range would become
                // infinite, and be reported later without its place here.
                if value.abs() > f32::MAX as f64 {
                    return Err(parse_err(format!(
                        "row {line}, column {}: `{field}` is beyond the range of 32-bit floats (±{:e})",
                        c + 1,
                        f32::MAX
                    )));
                }
                if c < columns - target_columns {
                    x.push(value as f32);
                } else if classes {
                    if value < 0.0 || value.fract() != 0.0 || value > u32::MAX as f64 {
                        return Err(parse_err(format!(
                            "row {line}, column {}: class label `{field}` is not a non-negative integer",
                            c + 1
                        )));
                    }
                    y.push(value as f32);
                } else {
                    y.push(value as f32);
                }
            }
        }
        let Some(width) = width else {
            return Err(parse_err("no data rows".into()));
        };
        let targets = if classes {
            Targets::Classes(y.iter().map(|&v| v as u32).collect())
        } else {
            Targets::Values {
                values: y,
                width: target_columns,
            }
        };
        Dataset::new(x, width - target_columns, targets)
    }
}

/// Standardisation, the one way features are scaled: (x − mean) / std per
/// feature, with the mean and (population) standard deviation of the
/// training data. Fitted once, applied to the training and validation
/// data, saved with the model (`io::SavedModel::standardizer`) and applied
/// again by whoever predicts with it.
///
/// ```
/// use retroprop::{Dataset, Standardizer, Targets};
/// let mut data = Dataset::new(vec![1., 10., 3., 10.], 2, Targets::Classes(vec![0, 1]))?;
/// let standardizer = Standardizer::fit(&data);
/// assert_eq!(standardizer.mean, [2.0, 10.0]);
/// assert_eq!(standardizer.std, [1.0, 1.0]); // a constant feature keeps its scale
/// standardizer.apply(&mut data)?;
/// assert_eq!(data.x(), [-1.0, 0.0, 1.0, 0.0]);
/// let mut row = vec![2.5, 11.0];
/// standardizer.apply_rows(&mut row)?;
/// assert_eq!(row, [0.5, 1.0]);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Each feature's mean over the training rows.
    pub mean: Vec<f32>,
    /// Each feature's standard deviation over the training rows (1 where
    /// the feature is constant).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// The mean and standard deviation of every feature of `data`,
    /// summed in f64; a constant feature gets a deviation of 1.
    pub fn fit(data: &Dataset) -> Standardizer {
        let mut fit = StandardizerFit::new(data.features);
        fit.add_to_means(data.x());
        fit.end_means();
        fit.add_to_deviations(data.x());
        fit.finish()
    }

    /// Statistics from elsewhere (a model file): one mean and one
    /// deviation per feature, finite, the deviations positive.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Standardizer> {
        let standardizer = Standardizer { mean, std };
        standardizer.check_sizes()?;
        let (mean, std) = (&standardizer.mean, &standardizer.std);
        if let Some(i) = mean.iter().position(|m| !m.is_finite()) {
            return Err(Error::Config(format!(
                "standardisation mean of feature {i} is not finite ({})",
                mean[i]
            )));
        }
        if let Some(i) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::Config(format!(
                "standardisation deviation of feature {i} is not a positive number ({})",
                std[i]
            )));
        }
        Ok(standardizer)
    }

    /// Features it scales.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Scales `data`'s inputs in place (a new [`Dataset::version`]);
    /// shared inputs are copied first, and the owner's left as they were.
    pub fn apply(&self, data: &mut Dataset) -> Result<()> {
        self.check_sizes()?;
        if data.features != self.features() {
            return Err(Error::Shape {
                what: "features of the data to standardise".into(),
                expected: self.features(),
                got: data.features,
            });
        }
        self.scale(data.x.to_mut());
        data.version = new_version();
        Ok(())
    }

    /// Scales rows of inputs in place: `x` holds whole rows of
    /// [`features`](Self::features) values, row-major.
    pub fn apply_rows(&self, x: &mut [f32]) -> Result<()> {
        self.check_sizes()?;
        if !x.len().is_multiple_of(self.features()) {
            return Err(Error::Shape {
                what: format!(
                    "inputs to standardise ({} values) as rows of {}",
                    x.len(),
                    self.features()
                ),
                expected: x.len().div_ceil(self.features()) * self.features(),
                got: x.len(),
            });
        }
        self.scale(x);
        Ok(())
    }

    /// The fields are public: one deviation per mean, at least one.
    fn check_sizes(&self) -> Result<()> {
        if self.mean.is_empty() {
            return Err(Error::Empty {
                what: "the standardisation statistics".into(),
            });
        }
        if self.std.len() != self.mean.len() {
            return Err(Error::Shape {
                what: "standardisation deviations (one per mean)".into(),
                expected: self.mean.len(),
                got: self.std.len(),
            });
        }
        Ok(())
    }

    fn scale(&self, x: &mut [f32]) {
        for row in x.chunks_exact_mut(self.features()) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
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

/// [`Standardizer::fit`] in two passes over rows given a part at a time
/// (a file streamed in chunks): the means from the first, the deviations
/// from the second. Each sum runs over the rows in the order given, in
/// f64, as `fit` sums a data set's rows, so the rows of a file in its
/// order give the bits `fit` gives the same rows in memory.
///
/// ```
/// use retroprop::data::StandardizerFit;
/// use retroprop::{Dataset, Standardizer, Targets};
/// let x = vec![1., 10., 3., 10., 8., 2.];
/// let mut fit = StandardizerFit::new(2);
/// for part in x.chunks(2) { fit.add_to_means(part); }
/// fit.end_means();
/// for part in x.chunks(4) { fit.add_to_deviations(part); }
/// let data = Dataset::new(x, 2, Targets::Classes(vec![0, 1, 0]))?;
/// assert_eq!(fit.finish(), Standardizer::fit(&data));
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StandardizerFit {
    features: usize,
    rows: usize,
    /// Σ v per feature (first pass), then Σ (v − mean)² (second pass).
    sums: Vec<f64>,
    /// The means, once the first pass ended.
    mean: Option<Vec<f64>>,
}

impl StandardizerFit {
    /// A fit of `features` features, before any row.
    pub fn new(features: usize) -> StandardizerFit {
        StandardizerFit {
            features,
            rows: 0,
            sums: vec![0.0; features],
            mean: None,
        }
    }

    /// First pass: whole rows of inputs, row-major, the next in order.
    pub fn add_to_means(&mut self, x: &[f32]) {
        for row in x.chunks_exact(self.features) {
            for (m, &v) in self.sums.iter_mut().zip(row) {
                *m += v as f64;
            }
            self.rows += 1;
        }
    }

    /// Ends the first pass: the means are the sums over the rows.
    pub fn end_means(&mut self) {
        let n = self.rows as f64;
        let mean = self.sums.iter().map(|m| m / n).collect();
        self.mean = Some(mean);
        self.sums.iter_mut().for_each(|s| *s = 0.0);
    }

    /// Second pass: the same rows again, in the same order.
    ///
    /// # Panics
    /// Before [`end_means`](Self::end_means).
    pub fn add_to_deviations(&mut self, x: &[f32]) {
        let mean = self.mean.as_ref().expect("the means come first");
        for row in x.chunks_exact(self.features) {
            for ((s, &v), m) in self.sums.iter_mut().zip(row).zip(mean) {
                *s += (v as f64 - m).powi(2);
            }
        }
    }

    /// The standardisation: each feature's mean and population deviation
    /// (1 for a constant feature).
    pub fn finish(self) -> Standardizer {
        let n = self.rows as f64;
        let mean = self.mean.unwrap_or_default();
        let std = self
            .sums
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                if sd > 1e-12 { sd as f32 } else { 1.0 }
            })
            .collect();
        Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
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

/// The order rows are visited in during `epoch` (0-based): a seeded shuffle,
/// the same for every backend and every run, or file order without shuffle.
/// Every row may go anywhere: [`ShuffleWindow::Full`]'s order, and that of
/// any window at least as large as the data set.
pub fn epoch_order(rows: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..rows as u32).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed(seed, epoch)));
    }
    order
}

/// One generator per epoch, derived from the seed, so that a resumed run
/// sees the same order without replaying earlier epochs.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// How far a shuffled epoch moves a row: anywhere ([`Full`](Self::Full)),
/// or within a window of rows that can be read from a file and held
/// while the next is read ([`Rows`](Self::Rows)), so that training from
/// a file larger than memory takes the order the same run held in memory
/// takes (`--shuffle-window` in the program).
///
/// With windows, each epoch takes the rows in chunks of `chunk_rows`
/// consecutive rows of the file (the last chunk may be shorter), permutes
/// the chunks (seeded by the seed and the epoch), groups them in that
/// order into windows of `rows / chunk_rows` chunks, and visits each
/// window's rows (its chunks' rows in file order) in a seeded permutation
/// of their own ([`EpochWindows`]). A data set that fits in one window is
/// shuffled whole, exactly as [`epoch_order`] does, so the default window
/// (2^20 rows in chunks of 2^13) changes nothing for smaller data sets.
/// Without shuffling the order is the file's, whatever the window.
///
/// Its text form is `full`, or `ROWS` or `ROWS:CHUNK_ROWS` (a window of
/// ROWS rows in chunks of CHUNK_ROWS, 8192 by default; ROWS a multiple of
/// CHUNK_ROWS); `Display` writes `ROWS:CHUNK_ROWS`.
///
/// ```
/// use retroprop::data::{ShuffleWindow, epoch_order, windowed_order};
/// let window: ShuffleWindow = "4:2".parse()?;
/// assert_eq!(window, ShuffleWindow::Rows { rows: 4, chunk_rows: 2 });
/// assert_eq!(window.to_string(), "4:2");
/// let order = windowed_order(10, true, 7, 0, window);
/// // Every row once; each window of 2 chunks (4 rows) visited whole.
/// let mut sorted = order.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<u32>>());
/// // A data set of one window is shuffled as a whole.
/// assert_eq!(windowed_order(4, true, 7, 0, window), epoch_order(4, true, 7, 0));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuffleWindow {
    /// The whole data set is one window: any row may go anywhere.
    Full,
    /// Windows of `rows` rows (a multiple of `chunk_rows`), made of
    /// chunks of `chunk_rows` consecutive rows.
    Rows {
        /// Rows a window.
        rows: usize,
        /// Rows a chunk.
        chunk_rows: usize,
    },
}

impl ShuffleWindow {
    /// Rows a chunk when only the window's rows are given.
    pub const CHUNK_ROWS: usize = 1 << 13;

    /// Chunks of `chunk_rows` rows and windows of `chunks` of them, over
    /// a data set of `rows` rows: the whole data set one window for
    /// [`Full`](Self::Full).
    fn shape(self, rows: usize) -> (usize, usize) {
        match self {
            ShuffleWindow::Full => (rows.max(1), 1),
            ShuffleWindow::Rows { rows, chunk_rows } => {
                (chunk_rows.max(1), (rows / chunk_rows.max(1)).max(1))
            }
        }
    }

    /// The most rows a window holds (the data set's rows for
    /// [`Full`](Self::Full)).
    pub fn window_rows(self, rows: usize) -> usize {
        let (chunk_rows, chunks) = self.shape(rows);
        chunk_rows.saturating_mul(chunks).min(rows)
    }
}

impl Default for ShuffleWindow {
    /// Windows of 2^20 rows in chunks of 2^13: data sets up to 1 048 576
    /// rows are shuffled whole, as before windows existed.
    fn default() -> ShuffleWindow {
        ShuffleWindow::Rows {
            rows: 1 << 20,
            chunk_rows: ShuffleWindow::CHUNK_ROWS,
        }
    }
}

impl std::fmt::Display for ShuffleWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShuffleWindow::Full => f.write_str("full"),
            ShuffleWindow::Rows { rows, chunk_rows } => write!(f, "{rows}:{chunk_rows}"),
        }
    }
}

impl std::str::FromStr for ShuffleWindow {
    type Err = String;
    fn from_str(text: &str) -> std::result::Result<ShuffleWindow, String> {
        let text = text.trim();
        if text == "full" {
            return Ok(ShuffleWindow::Full);
        }
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    format!(
                        "shuffle window `{text}`: {what} `{part}` is not a whole number ≥ 1 \
                         (expected full, ROWS or ROWS:CHUNK_ROWS)"
                    )
                })
        };
        let (rows, chunk_rows) = match text.split_once(':') {
            Some((rows, chunk)) => (number(rows, "rows")?, number(chunk, "chunk rows")?),
            None => (
                number(text, "rows")?,
                ShuffleWindow::CHUNK_ROWS.min(number(text, "rows")?),
            ),
        };
        if !rows.is_multiple_of(chunk_rows) {
            return Err(format!(
                "shuffle window `{text}`: {rows} rows are not whole chunks of {chunk_rows} rows"
            ));
        }
        if u32::try_from(rows).is_err() {
            return Err(format!(
                "shuffle window `{text}`: {rows} rows are more than a data set may hold (2^32)"
            ));
        }
        Ok(ShuffleWindow::Rows { rows, chunk_rows })
    }
}

/// The windows of one epoch ([`ShuffleWindow`]): which chunks each holds
/// and the order of its rows. The program's reader takes them one by one
/// from a file; [`windowed_order`] lays them end to end for data in
/// memory. Both visit the same rows in the same order.
#[derive(Debug, Clone)]
pub struct EpochWindows {
    rows: usize,
    chunk_rows: usize,
    /// Each window's chunks, in file order.
    windows: Vec<Vec<usize>>,
    shuffle: bool,
    seed: u64,
}

impl EpochWindows {
    /// Epoch `epoch`'s windows over `rows` rows.
    pub fn new(
        rows: usize,
        shuffle: bool,
        seed: u64,
        epoch: u64,
        window: ShuffleWindow,
    ) -> EpochWindows {
        let (chunk_rows, per_window) = window.shape(rows);
        let chunks = rows.div_ceil(chunk_rows);
        let mut order: Vec<usize> = (0..chunks).collect();
        // One window needs no chunk order (its rows are shuffled whole), so
        // a data set of one window takes `epoch_order`'s order exactly.
        if shuffle && chunks > per_window {
            let chunk_seed = epoch_seed(seed, epoch) ^ 0x2545_F491_4F6C_DD1D;
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(chunk_seed));
        }
        let windows = order
            .chunks(per_window)
            .map(|w| {
                let mut w = w.to_vec();
                w.sort_unstable();
                w
            })
            .collect();
        EpochWindows {
            rows,
            chunk_rows,
            windows,
            shuffle,
            seed: epoch_seed(seed, epoch),
        }
    }

    /// The number of windows.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether there are none (a data set of no rows).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Window `w`'s chunks, in file order.
    pub fn chunks(&self, w: usize) -> &[usize] {
        &self.windows[w]
    }

    /// The rows of chunk `c` of the data set.
    pub fn chunk_rows(&self, c: usize) -> std::ops::Range<usize> {
        c * self.chunk_rows..((c + 1) * self.chunk_rows).min(self.rows)
    }

    /// The rows window `w` holds.
    pub fn window_len(&self, w: usize) -> usize {
        self.windows[w]
            .iter()
            .map(|&c| self.chunk_rows(c).len())
            .sum()
    }

    /// The order window `w`'s rows are visited in, as indices into its
    /// rows (its chunks' rows one after another, in file order): a seeded
    /// permutation of their own, or file order without shuffling.
    pub fn window_order(&self, w: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.window_len(w) as u32).collect();
        if self.shuffle {
            // Window 0's generator is the epoch's, so that one window is
            // `epoch_order`.
            let seed = self.seed ^ (w as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
            order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        }
        order
    }

    /// The data set's row at index `i` of window `w`'s rows.
    pub fn row_of(&self, w: usize, i: usize) -> usize {
        let mut i = i;
        for &c in &self.windows[w] {
            let rows = self.chunk_rows(c);
            if i < rows.len() {
                return rows.start + i;
            }
            i -= rows.len();
        }
        panic!("index {i} is past window {w}'s rows")
    }
}

/// The order of `epoch` with windows ([`ShuffleWindow`]): every window's
/// order, one after the other, as rows of the data set. What a streamed
/// epoch visits, for data held in memory.
pub fn windowed_order(
    rows: usize,
    shuffle: bool,
    seed: u64,
    epoch: u64,
    window: ShuffleWindow,
) -> Vec<u32> {
    let windows = EpochWindows::new(rows, shuffle, seed, epoch, window);
    let mut order = Vec::with_capacity(rows);
    for w in 0..windows.len() {
        // Each window's rows are its chunks' rows in file order.
        let firsts: Vec<u32> = windows
            .chunks(w)
            .iter()
            .flat_map(|&c| windows.chunk_rows(c))
            .map(|r| r as u32)
            .collect();
        order.extend(
            windows
                .window_order(w)
                .into_iter()
                .map(|i| firsts[i as usize]),
        );
    }
    order
}

/// Rank `rank` of `size`'s share of `len` rows: a contiguous range, the
/// shares in rank order, their sizes differing by at most one (what a
/// data-parallel run gives each rank of a batch; `parallel::share_bounds`).
pub fn share_bounds(len: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    len * rank / size..len * (rank + 1) / size
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
