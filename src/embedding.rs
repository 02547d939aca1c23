//! Embeddings of numerical features, the `rtdl_num_embeddings` package's
//! (TabM's first layer): what an embedding is, its tensors by the
//! package's `state_dict` names, their initialisation, and the bins of a
//! piecewise-linear one (`bins.rs`). The passes are
//! `cpu/embedding.rs`'s.
//!
//! Each feature j of a row becomes a vector of `d_embedding` values, and
//! the row's vectors lie side by side (`x.flatten(1, -1)`, as TabM lays
//! them out): input `[rows, n_features]`, output `[rows, n_features ·
//! d_embedding]`.
//!
//! ```text
//! piecewise-linear (version B): e = x·w₀ + b₀ + f(ple(x) · W)        (f: ReLU or none)
//! periodic (PLR):               e = f(concat(cos v, sin v) · W + b),  v = 2π · c · x
//! periodic lite:                the same with one W and b for every feature
//! ```

mod bins;

pub use bins::{check_bins, compute_bins};

use crate::error::{Error, Result};
use crate::real::Real;
use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};
use std::ops::Range;

/// An embedding of `n_features` numerical features into `d_embedding`
/// values each.
///
/// ```
/// use retroprop::embedding::{Embedding, Periodic};
/// let plr = Embedding::periodic(3, 24, Periodic::default().n_frequencies(16))?;
/// assert_eq!(plr.output_width(), 3 * 24);
/// let names: Vec<_> = plr.tensors().iter().map(|t| t.name).collect();
/// assert_eq!(names, ["periodic.weight", "linear.weight", "linear.bias"]);
/// assert_eq!(plr.parameter_count(), 3 * 16 + 3 * 32 * 24 + 3 * 24);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    n_features: usize,
    d_embedding: usize,
    kind: EmbeddingKind,
}

/// The kinds of embedding.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingKind {
    /// `PiecewiseLinearEmbeddings(bins, d_embedding, activation,
    /// version='B')`.
    PiecewiseLinear(PiecewiseLinear),
    /// `PeriodicEmbeddings(n_features, d_embedding, ...)`.
    Periodic(Periodic),
}

/// The settings of `PeriodicEmbeddings`, by the package's names and
/// defaults: 48 frequencies, `frequency_init_scale` 0.01 (σ, the frequencies'
/// spread; an important hyperparameter), ReLU on, not lite.
///
/// - PLR: `activation` on, `lite` off (each feature its own linear layer);
/// - PL: `activation` off;
/// - PLR-lite: `lite` on (one linear layer for every feature; needs
///   `activation`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Periodic {
    /// Frequencies per feature (k).
    pub n_frequencies: usize,
    /// σ: the frequencies start ~ N(0, σ²) truncated to ±3σ.
    pub frequency_init_scale: f64,
    /// ReLU at the end.
    pub activation: bool,
    /// One linear layer shared by every feature.
    pub lite: bool,
}

impl Default for Periodic {
    fn default() -> Self {
        Periodic {
            n_frequencies: 48,
            frequency_init_scale: 0.01,
            activation: true,
            lite: false,
        }
    }
}

impl Periodic {
    /// Sets `n_frequencies`.
    pub fn n_frequencies(mut self, n_frequencies: usize) -> Self {
        self.n_frequencies = n_frequencies;
        self
    }
    /// Sets `frequency_init_scale`.
    pub fn frequency_init_scale(mut self, frequency_init_scale: f64) -> Self {
        self.frequency_init_scale = frequency_init_scale;
        self
    }
    /// Sets `activation`.
    pub fn activation(mut self, activation: bool) -> Self {
        self.activation = activation;
        self
    }
    /// Sets `lite`.
    pub fn lite(mut self, lite: bool) -> Self {
        self.lite = lite;
        self
    }
}

/// A piecewise-linear embedding's bins and the encoding they define
/// (`_PiecewiseLinearEncodingImpl`'s buffers).
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinear {
    bins: Vec<Vec<f64>>,
    activation: bool,
    encoding: PiecewiseLinearEncoding,
}

impl PiecewiseLinear {
    /// Each feature's bin edges.
    pub fn bins(&self) -> &[Vec<f64>] {
        &self.bins
    }
    /// ReLU on the piecewise-linear part.
    pub fn activation(&self) -> bool {
        self.activation
    }
    /// The encoding the bins define.
    pub fn encoding(&self) -> &PiecewiseLinearEncoding {
        &self.encoding
    }
}

/// The piecewise-linear encoding of `_PiecewiseLinearEncodingImpl`: each
/// feature i gives `max_n_bins` components `clamp(w[i, j] · x + b[i, j])`,
/// where bin j of edges e spans [eⱼ, eⱼ₊₁], w = 1/(eⱼ₊₁ − eⱼ) and b = −eⱼ
/// · w; a feature of fewer bins has its leading bins first, its last bin in
/// the last component and zeros between. Component 0 is clamped above at
/// 1, the middle ones to [0, 1], the last below at 0 (not at all for a
/// feature of one bin), so values past the first and last edges go on
/// linearly.
#[derive(Debug, Clone, PartialEq)]
pub struct PiecewiseLinearEncoding {
    /// The most bins of any feature: the components per feature.
    pub max_n_bins: usize,
    /// `impl.weight`, `[n_features, max_n_bins]`.
    pub weight: Vec<f64>,
    /// `impl.bias`, `[n_features, max_n_bins]`.
    pub bias: Vec<f64>,
    /// `impl.single_bin_mask`: which features have one bin.
    pub single_bin: Vec<bool>,
    /// `impl.mask`: which components are a feature's bins (not padding).
    pub mask: Vec<bool>,
}

impl PiecewiseLinearEncoding {
    /// The encoding of checked bins.
    fn new(bins: &[Vec<f64>]) -> Self {
        let max_n_bins = bins.iter().map(|e| e.len() - 1).max().unwrap_or(0);
        let n = bins.len() * max_n_bins;
        let mut encoding = PiecewiseLinearEncoding {
            max_n_bins,
            weight: vec![0.0; n],
            bias: vec![0.0; n],
            single_bin: bins.iter().map(|e| e.len() == 2).collect(),
            mask: vec![false; n],
        };
        for (i, edges) in bins.iter().enumerate() {
            let n_bins = edges.len() - 1;
            let row = i * max_n_bins;
            // The leading bins first, the last bin in the last component.
            let places = (0..n_bins - 1).chain([max_n_bins - 1]);
            for (bin, place) in places.enumerate() {
                let width = edges[bin + 1] - edges[bin];
                encoding.weight[row + place] = 1.0 / width;
                encoding.bias[row + place] = -edges[bin] / width;
                encoding.mask[row + place] = true;
            }
        }
        encoding
    }

    /// Whether a feature has fewer bins than another (the package then
    /// keeps `impl.mask`).
    pub fn padded(&self) -> bool {
        self.mask.iter().any(|&m| !m)
    }
}

/// What a tensor of an embedding's `state_dict` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// Trained: in the flat parameter vector, in this order.
    Parameter,
    /// A float buffer the bins fix (`impl.weight`, `impl.bias`).
    Buffer,
    /// A boolean buffer (`impl.single_bin_mask`, `impl.mask`).
    Mask,
}

/// One tensor of an embedding's `state_dict`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingTensor {
    /// The package's name, e.g. `linear0.weight`.
    pub name: &'static str,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Trained or fixed.
    pub role: TensorRole,
}

impl Embedding {
    /// `PiecewiseLinearEmbeddings(bins, d_embedding, activation=activation,
    /// version='B')`: TabM's piecewise-linear embedding, a linear
    /// embedding (`linear0`) plus the piecewise-linear encoding through
    /// each feature's own linear layer without bias (`linear`, starting at
    /// zero), ReLU'd when `activation`. As in the package, ReLU's
    /// gradient at that zero start is zero, so with `activation` the
    /// piecewise-linear part never leaves zero from [`Embedding::init`]
    /// (TabM uses it without).
    ///
    /// # Errors
    /// Bins the package refuses ([`check_bins`]), or `d_embedding` 0.
    pub fn piecewise_linear(
        bins: Vec<Vec<f64>>,
        d_embedding: usize,
        activation: bool,
    ) -> Result<Self> {
        positive("d_embedding", d_embedding)?;
        check_bins(&bins)?;
        let encoding = PiecewiseLinearEncoding::new(&bins);
        Ok(Embedding {
            n_features: bins.len(),
            d_embedding,
            kind: EmbeddingKind::PiecewiseLinear(PiecewiseLinear {
                bins,
                activation,
                encoding,
            }),
        })
    }

    /// `PeriodicEmbeddings(n_features, d_embedding, n_frequencies=...,
    /// frequency_init_scale=..., activation=..., lite=...)`.
    ///
    /// # Errors
    /// A size 0, σ not positive and finite, or `lite` without
    /// `activation` (as the package).
    pub fn periodic(n_features: usize, d_embedding: usize, periodic: Periodic) -> Result<Self> {
        positive("n_features", n_features)?;
        positive("d_embedding", d_embedding)?;
        positive("n_frequencies", periodic.n_frequencies)?;
        let sigma = periodic.frequency_init_scale;
        if !(sigma > 0.0 && sigma.is_finite()) {
            return Err(Error::Hyperparameter {
                name: "frequency_init_scale",
                value: sigma,
                reason: "must be positive and finite",
            });
        }
        if periodic.lite && !periodic.activation {
            return Err(Error::Config(
                "periodic embeddings: lite is allowed only with activation".into(),
            ));
        }
        Ok(Embedding {
            n_features,
            d_embedding,
            kind: EmbeddingKind::Periodic(periodic),
        })
    }

    /// The features embedded.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The values per feature.
    pub fn d_embedding(&self) -> usize {
        self.d_embedding
    }

    /// What kind of embedding.
    pub fn kind(&self) -> &EmbeddingKind {
        &self.kind
    }

    /// The values per row out: `n_features · d_embedding`.
    pub fn output_width(&self) -> usize {
        self.n_features * self.d_embedding
    }

    /// Every tensor of the package's `state_dict`, in its order, with its
    /// shape (F features, d values each, B = the most bins, k
    /// frequencies):
    ///
    /// - piecewise-linear: `linear0.weight` [F, d], `linear0.bias` [F, d],
    ///   buffers `impl.weight` [F, B], `impl.bias` [F, B],
    ///   `impl.single_bin_mask` [F] (only when a feature has one bin),
    ///   `impl.mask` [F, B] (only when the features' bins differ in
    ///   number), then `linear.weight` [F, B, d];
    /// - periodic: `periodic.weight` [F, k], `linear.weight` [F, 2k, d]
    ///   and `linear.bias` [F, d]; lite: `linear.weight` [d, 2k] and
    ///   `linear.bias` [d] (torch's `nn.Linear`).
    pub fn tensors(&self) -> Vec<EmbeddingTensor> {
        let (f, d) = (self.n_features, self.d_embedding);
        let tensor = |name, shape: &[usize], role| EmbeddingTensor {
            name,
            shape: shape.to_vec(),
            role,
        };
        use TensorRole::{Buffer, Mask, Parameter};
        match &self.kind {
            EmbeddingKind::PiecewiseLinear(p) => {
                let b = p.encoding.max_n_bins;
                let mut list = vec![
                    tensor("linear0.weight", &[f, d], Parameter),
                    tensor("linear0.bias", &[f, d], Parameter),
                    tensor("impl.weight", &[f, b], Buffer),
                    tensor("impl.bias", &[f, b], Buffer),
                ];
                if p.encoding.single_bin.iter().any(|&s| s) {
                    list.push(tensor("impl.single_bin_mask", &[f], Mask));
                }
                if p.encoding.padded() {
                    list.push(tensor("impl.mask", &[f, b], Mask));
                }
                list.push(tensor("linear.weight", &[f, b, d], Parameter));
                list
            }
            EmbeddingKind::Periodic(p) => {
                let (k, two_k) = (p.n_frequencies, 2 * p.n_frequencies);
                let (weight, bias): (&[usize], &[usize]) = if p.lite {
                    (&[d, two_k], &[d])
                } else {
                    (&[f, two_k, d], &[f, d])
                };
                vec![
                    tensor("periodic.weight", &[f, k], Parameter),
                    tensor("linear.weight", weight, Parameter),
                    tensor("linear.bias", bias, Parameter),
                ]
            }
        }
    }

    /// The trained tensors' places in the flat parameter vector, in
    /// `state_dict` order.
    pub fn parameter_ranges(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut start = 0;
        self.tensors()
            .into_iter()
            .filter(|t| t.role == TensorRole::Parameter)
            .map(|t| {
                let n: usize = t.shape.iter().product();
                start += n;
                (t.name, start - n..start)
            })
            .collect()
    }

    /// The trained values, all tensors together.
    pub fn parameter_count(&self) -> usize {
        self.parameter_ranges().last().map_or(0, |(_, r)| r.end)
    }

    /// Fresh parameters (the flat vector of [`Embedding::parameter_ranges`])
    /// drawn as the package draws them, from `rng`, tensor by tensor:
    ///
    /// - `linear0.weight`, `linear0.bias`: U(±1/√d); `linear.weight` of
    ///   the piecewise-linear part: zeros;
    /// - `periodic.weight`: N(0, σ²) truncated to ±3σ;
    /// - `linear.weight`, `linear.bias` (either form): U(±1/√(2k)).
    ///
    /// The same distributions, not torch's numbers.
    pub fn init<T: Real, R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<T> {
        let mut params = vec![T::zero(); self.parameter_count()];
        for (name, range) in self.parameter_ranges() {
            let values = &mut params[range];
            match (&self.kind, name) {
                (EmbeddingKind::PiecewiseLinear(_), "linear.weight") => {}
                (EmbeddingKind::PiecewiseLinear(_), _) => {
                    fill_uniform(values, (self.d_embedding as f64).powf(-0.5), rng)
                }
                (EmbeddingKind::Periodic(p), "periodic.weight") => {
                    fill_truncated_normal(values, p.frequency_init_scale, rng)
                }
                (EmbeddingKind::Periodic(p), _) => {
                    fill_uniform(values, (2.0 * p.n_frequencies as f64).powf(-0.5), rng)
                }
            }
        }
        params
    }
}

fn positive(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Hyperparameter {
            name,
            value: 0.0,
            reason: "must be at least 1",
        });
    }
    Ok(())
}

/// U[−bound, bound), torch's `uniform_`.
fn fill_uniform<T: Real, R: Rng + ?Sized>(values: &mut [T], bound: f64, rng: &mut R) {
    let dist = Uniform::new(-bound, bound).expect("bound is positive and finite");
    for v in values {
        *v = T::of(dist.sample(rng));
    }
}

/// N(0, σ²) truncated to [−3σ, 3σ], torch's `trunc_normal_(0, σ, −3σ,
/// 3σ)`, by rejection.
fn fill_truncated_normal<T: Real, R: Rng + ?Sized>(values: &mut [T], sigma: f64, rng: &mut R) {
    let dist = Normal::new(0.0, sigma).expect("σ is positive and finite");
    for v in values {
        *v = T::of(loop {
            let draw: f64 = dist.sample(rng);
            if draw.abs() <= 3.0 * sigma {
                break draw;
            }
        });
    }
}
