//! A run's settings as the Python side gives them (`RunArgs`), each
//! parsed by the library's one parser into its `RunRequest`: what
//! `NativeTrainer` and `NativeMembers` share.

use crate::errors::to_py;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use retroprop::embedding::{Embedding, Periodic};
use retroprop::model::{EnsembleMean, ScalingInit, Tabm, TabmArch};
use retroprop::train::RunRequest;
use retroprop::{Blocks, NormKind, Optimizer};

/// A run's settings as the Python side gives them (`None`: not given),
/// by the library's names; a dict of them for `NativeMembers`.
#[derive(FromPyObject, Default)]
#[pyo3(from_item_all)]
pub struct RunArgs {
    pub sizes: Vec<usize>,
    #[pyo3(default)]
    pub activations: Option<String>,
    /// Residual blocks over the one hidden size (`retroprop::Blocks`).
    #[pyo3(default)]
    pub blocks: Option<usize>,
    /// `batch`, `layer` or `none`: the blocks' normalisation.
    #[pyo3(default)]
    pub norm: Option<String>,
    /// A block's hidden width ÷ its width.
    #[pyo3(default)]
    pub block_multiplier: Option<f64>,
    /// TabM's members over the network of `sizes` (`retroprop::model::Tabm`).
    #[pyo3(default)]
    pub k: Option<usize>,
    /// TabM's architecture: `tabm`, `tabm-mini` or `tabm-packed`.
    #[pyo3(default)]
    pub arch_type: Option<String>,
    /// TabM's first scaling's chunks: a feature's columns each (a
    /// categorical one's one-hot block).
    #[pyo3(default)]
    pub chunks: Option<Vec<usize>>,
    /// TabM's numerical embeddings: `periodic` (PLR) or `periodic-lite`,
    /// with `rtdl_num_embeddings`' defaults.
    #[pyo3(default)]
    pub num_embeddings: Option<String>,
    #[pyo3(default)]
    pub loss: Option<String>,
    #[pyo3(default)]
    pub optimizer: Option<String>,
    #[pyo3(default)]
    pub optimizer_options: Vec<(String, String)>,
    /// Rows a step; 0: the whole data set.
    #[pyo3(default)]
    pub batch_size: Option<usize>,
    #[pyo3(default)]
    pub epochs: Option<usize>,
    #[pyo3(default)]
    pub max_steps: Option<u64>,
    #[pyo3(default)]
    pub shuffle: Option<bool>,
    #[pyo3(default)]
    pub seed: Option<u64>,
    #[pyo3(default)]
    pub init: Option<String>,
    #[pyo3(default)]
    pub device: Option<String>,
    #[pyo3(default)]
    pub lr_schedule: Option<String>,
    #[pyo3(default)]
    pub clip_grad_norm: Option<f64>,
    #[pyo3(default)]
    pub clip_grad_value: Option<f64>,
    #[pyo3(default)]
    pub dropout: Option<f32>,
    #[pyo3(default)]
    pub early_stopping: Option<usize>,
    #[pyo3(default)]
    pub min_delta: Option<f64>,
    #[pyo3(default)]
    pub norms_every: Option<u64>,
    #[pyo3(default)]
    pub standardize: Option<bool>,
    #[pyo3(default)]
    pub precision: Option<String>,
}

/// `text` parsed by the setting's one parser, a `ValueError` with its
/// message when it is not one.
pub fn parsed<T: std::str::FromStr<Err = String>>(text: Option<&str>) -> PyResult<Option<T>> {
    text.map(str::parse)
        .transpose()
        .map_err(PyValueError::new_err)
}

impl RunArgs {
    /// The library's request: each setting parsed by its own parser.
    pub fn request(self) -> PyResult<RunRequest> {
        Ok(RunRequest {
            blocks: self.blocks()?,
            tabm: self.tabm()?,
            sizes: Some(self.sizes),
            activations: self.activations,
            loss: parsed(self.loss.as_deref())?,
            optimizer: self
                .optimizer
                .as_deref()
                .map(Optimizer::with_name)
                .transpose()
                .map_err(to_py)?,
            optimizer_options: self.optimizer_options,
            lr_schedule: parsed(self.lr_schedule.as_deref())?,
            batch_size: self.batch_size.map(|rows| (rows > 0).then_some(rows)),
            shuffle: self.shuffle,
            seed: self.seed,
            init: parsed(self.init.as_deref())?,
            clip_grad_norm: self.clip_grad_norm,
            clip_grad_value: self.clip_grad_value,
            dropout: self.dropout,
            early_stopping: self.early_stopping,
            min_delta: self.min_delta,
            standardize: self.standardize,
            precision: parsed(self.precision.as_deref())?,
            epochs: self.epochs,
            max_steps: self.max_steps,
            device: parsed(self.device.as_deref())?,
            norms_every: self.norms_every,
            ..RunRequest::default()
        })
    }
}

impl RunArgs {
    /// TabM of `k` members and `arch_type` (default `tabm`); an
    /// architecture without `k` is a `ValueError`.
    fn tabm(&self) -> PyResult<Option<Tabm>> {
        let Some(k) = self.k else {
            if self.arch_type.is_some() {
                return Err(PyValueError::new_err(
                    "arch_type shapes TabM's members: give k too",
                ));
            }
            return Ok(None);
        };
        let arch: TabmArch = parsed(self.arch_type.as_deref())?.unwrap_or_default();
        let features = self.sizes.first().copied().unwrap_or(0);
        let embedding = match self.num_embeddings.as_deref() {
            None => None,
            Some(kind @ ("periodic" | "periodic-lite")) => {
                let periodic = Periodic::default().lite(kind == "periodic-lite");
                Some(Embedding::periodic(features, 24, periodic).map_err(to_py)?)
            }
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "num_embeddings `{other}`: expected None, 'periodic' or 'periodic-lite' (piecewise-linear in TabM is not built yet)"
                )));
            }
        };
        // The package's start with embeddings: N(0, 1) a feature's chunk.
        let start_scaling = if embedding.is_some() {
            ScalingInit::Normal
        } else {
            ScalingInit::RandomSigns
        };
        Ok(Some(Tabm {
            embedding,
            start_scaling,
            chunks: self.chunks.clone().unwrap_or_default(),
            ..Tabm::new(k, arch, EnsembleMean::default())
        }))
    }

    /// `blocks` with `norm` and `block_multiplier` (the defaults of
    /// `Blocks::new` where not given); those two without `blocks` are a
    /// `ValueError`.
    fn blocks(&self) -> PyResult<Option<Blocks>> {
        let Some(blocks) = self.blocks.filter(|&b| b > 0) else {
            if self.blocks.is_none() && (self.norm.is_some() || self.block_multiplier.is_some()) {
                return Err(PyValueError::new_err(
                    "norm and block_multiplier shape residual blocks: give blocks too",
                ));
            }
            return Ok(None);
        };
        let defaults = Blocks::new(blocks);
        let norm = match self.norm.as_deref() {
            Some(text) => NormKind::parse_option(text)
                .map_err(|e| PyValueError::new_err(format!("norm {e}")))?,
            None => defaults.norm,
        };
        Ok(Some(Blocks {
            norm,
            multiplier: self.block_multiplier.unwrap_or(defaults.multiplier),
            ..defaults
        }))
    }
}
