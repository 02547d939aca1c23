//! Standardisation: the one scaling of features, fitted on data held in
//! memory or in two passes over parts of a file.

use super::{Dataset, new_version};
use crate::error::{Error, Result};

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
