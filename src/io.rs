//! Files: models as safetensors that PyTorch loads directly, data sets from
//! safetensors, Parquet ([`parquet`]) and NumPy's files ([`npy`]), atomic
//! writes, and ONNX export ([`onnx`]).
//!
//! A model file holds `layers.{i}.weight` (`[out, in]`, float32) and
//! `layers.{i}.bias` (`[out]`), exactly the `state_dict` of
//!
//! ```python
//! class Mlp(torch.nn.Module):
//!     def __init__(self, sizes):
//!         super().__init__()
//!         self.layers = torch.nn.ModuleList(
//!             [torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])
//! ```
//!
//! so `model.load_state_dict(safetensors.torch.load_file(path))` works. The
//! architecture, activations, loss and standardisation statistics travel in
//! the safetensors metadata (string to string). A residual network's file
//! is rtdl's `ResNet` `state_dict` instead, running statistics included
//! ([`residual`]).

use crate::activation::Activation;
use crate::checkpoint::Checkpoint;
use crate::data::{Categories, Standardizer};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{Mlp, Residual};
#[cfg(not(target_arch = "wasm32"))]
use crate::optim::Optimizer;
use crate::real::Precision;
use safetensors::tensor::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

mod dataset;
mod inputs;
#[cfg(not(target_arch = "wasm32"))]
pub mod members;
// Native only, and each behind a default cargo feature: the browser
// builds neither arrow-rs nor zip.
#[cfg(not(target_arch = "wasm32"))]
mod atomic;
#[cfg(all(feature = "npy", not(target_arch = "wasm32")))]
pub mod npy;
pub mod onnx;
#[cfg(all(feature = "parquet", not(target_arch = "wasm32")))]
pub mod parquet;
mod residual;
mod tabm;
#[cfg(not(target_arch = "wasm32"))]
pub use atomic::{AtomicFile, write_atomic};
pub use residual::{StateValues, state_dict};
mod run;
#[cfg(all(any(feature = "parquet", feature = "npy"), not(target_arch = "wasm32")))]
mod values;

/// A trained model: network, parameters, and what is needed to use it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    /// The network.
    pub mlp: Mlp,
    /// Flat parameters in the network's layout.
    pub params: Vec<f32>,
    /// The batch normalisations' running statistics, torch's buffers
    /// ([`Mlp::buffer_ranges`]; empty for a network without), which
    /// evaluation mode normalises by: set them on whatever predicts
    /// ([`Trainer::set_buffers`](crate::Trainer::set_buffers)).
    pub buffers: Vec<f32>,
    /// Every BatchNorm's `num_batches_tracked` in the file: the optimizer
    /// steps that moved the running statistics.
    pub num_batches_tracked: u64,
    /// The loss it was trained with (decides how predictions read).
    pub loss: Loss,
    /// The standardisation the training data had, which whoever predicts
    /// applies to the inputs first; `None` when the inputs go in as they are.
    pub standardizer: Option<Standardizer>,
}

/// What a model file holds: always the parameters (and from their shapes
/// the layer sizes); the rest only when its metadata says so.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedModel {
    /// Layer sizes from the tensor shapes, input first (a residual
    /// network's dense layers, as [`Mlp::sizes`]).
    pub sizes: Vec<usize>,
    /// Flat parameters in the network's layout.
    pub params: Vec<f32>,
    /// The running statistics (see [`SavedModel::buffers`]).
    pub buffers: Vec<f32>,
    /// The BatchNorms' `num_batches_tracked` (0 without one).
    pub num_batches_tracked: u64,
    /// The residual network the file holds (`retroprop.residual`), `None`
    /// for a plain one.
    pub residual: Option<Residual>,
    /// The TabM ensemble the file holds (`retroprop.tabm`).
    pub tabm: Option<crate::model::Tabm>,
    /// Activations, one per layer, if recorded.
    pub activations: Option<Vec<Activation>>,
    /// The loss, if recorded.
    pub loss: Option<Loss>,
    /// The standardisation, if recorded.
    pub standardizer: Option<Standardizer>,
    /// The categorical features the inputs one-hot encode ([`CATEGORIES_KEY`]).
    pub categories: Option<Categories>,
    /// The precision of the matrix products it was trained with
    /// (`retroprop.precision`), if recorded.
    pub precision: Option<Precision>,
}

/// Where a model file or checkpoint names the precision of the matrix
/// products it was trained with (`f32` or `mixed`).
pub const PRECISION_KEY: &str = "retroprop.precision";

/// Where a model file keeps the categories its inputs one-hot encode
/// ([`Categories::to_json`]); absent when every feature is a number.
pub const CATEGORIES_KEY: &str = "retroprop.categories";

impl LoadedModel {
    /// The saved model, when the file carried its activations and loss.
    pub fn complete(self, path: &Path) -> Result<SavedModel> {
        let missing = |what: &str| Error::Parse {
            path: path.to_path_buf(),
            message: format!(
                "the metadata has no {what}; it is a bare state_dict, so say the architecture with --arch and --activations"
            ),
        };
        let activations = self.activations.ok_or_else(|| missing("activations"))?;
        let loss = self.loss.ok_or_else(|| missing("loss"))?;
        let mlp = match (self.residual, self.tabm) {
            (Some(spec), _) => Mlp::residual(spec)?,
            (None, Some(spec)) => {
                Mlp::tabm(&Mlp::with_activations(&self.sizes, &activations)?, spec)?
            }
            (None, None) => Mlp::with_activations(&self.sizes, &activations)?,
        };
        Ok(SavedModel {
            mlp,
            params: self.params,
            buffers: self.buffers,
            num_batches_tracked: self.num_batches_tracked,
            loss,
            standardizer: self.standardizer,
        })
    }
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `model` to `path` as safetensors, atomically: the bytes go to a
/// temporary file beside it, are flushed to disk, and only then renamed
/// over `path`. Refuses parameters that are NaN or infinite.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_model(path: &Path, model: &SavedModel) -> Result<()> {
    write_model(path, model, Vec::new(), BTreeMap::new())
}

/// [`save_model`] for a run stopped before its end (a
/// [`StopFlag`](crate::StopFlag), Ctrl-C): the metadata adds
/// `retroprop.interrupted_at_step`, the optimizer steps taken.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_interrupted_model(path: &Path, model: &SavedModel, step: u64) -> Result<()> {
    let notes = RunNotes {
        interrupted_at_step: Some(step),
        ..RunNotes::default()
    };
    save_noted_model(path, model, &notes)
}

/// What a model file may say of the run that wrote it, beside the model;
/// a run with nothing to say writes the bytes [`save_model`] writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunNotes {
    /// The run was stopped before its end, after this many optimizer
    /// steps (`retroprop.interrupted_at_step`).
    pub interrupted_at_step: Option<u64>,
    /// The settings changed on resume
    /// ([`Trainer::changes`](crate::Trainer::changes)),
    /// as `retroprop.changed_on_resume`.
    pub changed_on_resume: Vec<String>,
    /// The precision of the matrix products the run trained with, as
    /// `retroprop.precision` ([`PRECISION_KEY`]).
    pub precision: Option<Precision>,
    /// The categories of the training data ([`CATEGORIES_KEY`]).
    pub categories: Option<Categories>,
}

/// [`save_model`] with `notes` in the metadata.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_noted_model(path: &Path, model: &SavedModel, notes: &RunNotes) -> Result<()> {
    write_model(path, model, Vec::new(), notes_metadata(notes))
}

/// The bytes [`save_noted_model`] writes, in memory; `name` names the
/// file in errors.
#[cfg(not(target_arch = "wasm32"))]
pub fn noted_model_bytes(name: &Path, model: &SavedModel, notes: &RunNotes) -> Result<Vec<u8>> {
    encode_model(name, model, Vec::new(), notes_metadata(notes))
}

/// The metadata entries of `notes`.
#[cfg(not(target_arch = "wasm32"))]
fn notes_metadata(notes: &RunNotes) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    if let Some(step) = notes.interrupted_at_step {
        meta.insert(
            "retroprop.interrupted_at_step".to_string(),
            step.to_string(),
        );
    }
    if let Some(changes) = run::changes_text(&notes.changed_on_resume) {
        meta.insert(run::CHANGES.to_string(), changes);
    }
    if let Some(precision) = notes.precision {
        meta.insert(PRECISION_KEY.to_string(), precision.to_string());
    }
    if let Some(categories) = &notes.categories {
        meta.insert(CATEGORIES_KEY.to_string(), categories.to_json());
    }
    meta
}

/// Writes a checkpoint: the model (so a checkpoint loads as a model too,
/// in retroprop and in PyTorch), the optimizer state as one tensor per
/// slot named as `torch.optim` names it (`optimizer.exp_avg`,
/// `optimizer.exp_avg_sq`, …: [`Optimizer::state_names`], each
/// `[parameters]` in the flat layout), and the counters and scheduler
/// state in the metadata, with the run's settings (each by its text
/// form, `retroprop.settings.*`), early stopping's best epoch (its
/// parameters as the tensor `early_stopping.best_params`, its running
/// statistics as `early_stopping.best_buffers`) and the changes made on
/// resume. The model's running statistics are the checkpoint's, and
/// their `num_batches_tracked` its step. Atomic like [`save_model`];
/// refuses NaN.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_checkpoint(
    path: &Path,
    model: &SavedModel,
    optimizer: &Optimizer,
    checkpoint: &Checkpoint,
) -> Result<()> {
    let model = checkpoint_model(model, checkpoint);
    let (tensors, meta) = checkpoint_parts(path, &model, optimizer, checkpoint)?;
    write_model(path, &model, tensors, meta)
}

/// `model` with `checkpoint`'s running statistics and batch count.
#[cfg(not(target_arch = "wasm32"))]
fn checkpoint_model(model: &SavedModel, checkpoint: &Checkpoint) -> SavedModel {
    SavedModel {
        buffers: checkpoint.buffers.clone(),
        num_batches_tracked: checkpoint.step,
        ..model.clone()
    }
}

/// What [`save_checkpoint`] writes beside the model: the optimizer
/// state's tensors and the run's metadata.
type Parts = (Vec<(String, Vec<u8>, Vec<usize>)>, BTreeMap<String, String>);

#[cfg(not(target_arch = "wasm32"))]
fn checkpoint_parts(
    path: &Path,
    model: &SavedModel,
    optimizer: &Optimizer,
    checkpoint: &Checkpoint,
) -> Result<Parts> {
    if let Some(i) = checkpoint
        .optimizer_state
        .iter()
        .position(|v| !v.is_finite())
    {
        return Err(Error::Config(format!(
            "refusing to write {}: optimizer state {i} is {} (the run diverged)",
            path.display(),
            checkpoint.optimizer_state[i]
        )));
    }
    let n = model.params.len();
    let names = optimizer.state_names();
    if checkpoint.optimizer_state.len() != names.len() * n {
        return Err(Error::Shape {
            what: format!(
                "optimizer state of {} for {}",
                optimizer.name(),
                path.display()
            ),
            expected: names.len() * n,
            got: checkpoint.optimizer_state.len(),
        });
    }
    let mut tensors = names
        .iter()
        .zip(checkpoint.optimizer_state.chunks_exact(n.max(1)))
        .map(|(name, slot)| (format!("optimizer.{name}"), bytes(slot), vec![n]))
        .collect();
    let (lr, best, bad, cooldown) = checkpoint.scheduler;
    let mut meta = BTreeMap::new();
    meta.insert(
        "retroprop.optimizer".to_string(),
        optimizer.name().to_string(),
    );
    meta.insert("retroprop.optimizer_state".to_string(), names.join(","));
    meta.insert("retroprop.step".to_string(), checkpoint.step.to_string());
    meta.insert("retroprop.epoch".to_string(), checkpoint.epoch.to_string());
    meta.insert(
        "retroprop.rows_done".to_string(),
        checkpoint.rows_done.to_string(),
    );
    meta.insert(
        "retroprop.scheduler".to_string(),
        format!("{lr},{best},{bad},{cooldown}"),
    );
    meta.insert(
        "retroprop.epoch_loss_sum".to_string(),
        checkpoint.epoch_loss_sum.to_string(),
    );
    run::write(checkpoint, &mut meta, &mut tensors);
    Ok((tensors, meta))
}

/// Reads a checkpoint written by [`save_checkpoint`]: the model, the name of
/// the optimizer it was written with, and the checkpoint. One written
/// before checkpoints recorded the run's settings and early stopping's
/// best epoch has neither (`settings` and `best` are `None`): it resumes
/// with the settings the caller gives, compared with nothing, and early
/// stopping starts its count again.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_checkpoint(path: &Path) -> Result<(LoadedModel, String, Checkpoint)> {
    parse_checkpoint(&read_file(path)?, path)
}

/// [`load_checkpoint`] on a file's bytes; `path` names it in errors.
pub fn parse_checkpoint(buffer: &[u8], path: &Path) -> Result<(LoadedModel, String, Checkpoint)> {
    let model = parse_model(buffer, path)?;
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let (meta, file) = open_safetensors(buffer, path)?;
    let field = |key: &str| {
        meta.get(key).ok_or_else(|| {
            parse(format!(
                "metadata {key} is missing: not a checkpoint (write one with --checkpoint)"
            ))
        })
    };
    let number = |key: &str| -> Result<f64> {
        field(key)?
            .parse::<f64>()
            .map_err(|_| parse(format!("metadata {key} is not a number")))
    };
    let n = model.params.len();
    let state = match meta.get("retroprop.optimizer_state") {
        // One tensor per slot, named as torch names the state.
        Some(names) => {
            let mut state = Vec::new();
            for name in names.split(',').filter(|name| !name.is_empty()) {
                let tensor = format!("optimizer.{name}");
                let (shape, values) = f32_tensor(&file, &tensor, path)?;
                if shape != [n] {
                    return Err(parse(format!(
                        "tensor {tensor} has shape {shape:?}, expected [{n}]"
                    )));
                }
                state.extend(values);
            }
            state
        }
        // Checkpoints written before: every slot in one tensor.
        None => {
            let (shape, state) = f32_tensor(&file, "optimizer.state", path)?;
            if shape.len() != 2 || shape[1] != n {
                return Err(parse(format!(
                    "tensor optimizer.state has shape {shape:?}, expected [slots, {n}]"
                )));
            }
            state
        }
    };
    if let Some(i) = state.iter().position(|v| !v.is_finite()) {
        return Err(parse(format!("optimizer state {i} is not finite")));
    }
    let scheduler: Vec<f64> =
        parse_list(path, "retroprop.scheduler", field("retroprop.scheduler")?)?;
    let [lr, best, bad, cooldown] = scheduler[..] else {
        return Err(parse("metadata retroprop.scheduler needs 4 numbers".into()));
    };
    let mut checkpoint = Checkpoint {
        params: model.params.clone(),
        optimizer_state: state,
        buffers: model.buffers.clone(),
        step: number("retroprop.step")? as u64,
        epoch: number("retroprop.epoch")? as u64,
        rows_done: number("retroprop.rows_done")? as usize,
        // Absent from checkpoints written before it was kept.
        epoch_loss_sum: match meta.get("retroprop.epoch_loss_sum") {
            Some(_) => number("retroprop.epoch_loss_sum")?,
            None => 0.0,
        },
        scheduler: (lr, best, bad as usize, cooldown as usize),
        ..Checkpoint::default()
    };
    run::read(&meta, &file, &model, path, &mut checkpoint)?;
    Ok((model, field("retroprop.optimizer")?.clone(), checkpoint))
}

#[cfg(not(target_arch = "wasm32"))]
fn write_model(
    path: &Path,
    model: &SavedModel,
    extra_tensors: Vec<(String, Vec<u8>, Vec<usize>)>,
    extra_metadata: BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(
        path,
        &encode_model(path, model, extra_tensors, extra_metadata)?,
    )
}

/// The bytes [`save_model`] writes, in memory: what the browser hands the
/// user as a download. `name` names the file in errors.
pub fn model_bytes(name: &Path, model: &SavedModel) -> Result<Vec<u8>> {
    encode_model(name, model, Vec::new(), BTreeMap::new())
}

/// A model file's bytes: the model's tensors after `extra_tensors`, its
/// metadata and `extra_metadata`.
fn encode_model(
    path: &Path,
    model: &SavedModel,
    extra_tensors: Vec<(String, Vec<u8>, Vec<usize>)>,
    extra_metadata: BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    let (tensors, metadata) = model_parts(path, model, extra_tensors, extra_metadata)?;
    encode_f32_safetensors(tensors, &metadata).map_err(|message| Error::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// The tensors and metadata [`encode_model`] encodes.
fn model_parts(
    path: &Path,
    model: &SavedModel,
    extra_tensors: Vec<(String, Vec<u8>, Vec<usize>)>,
    extra_metadata: BTreeMap<String, String>,
) -> Result<Parts> {
    if let Some(i) = model.params.iter().position(|p| !p.is_finite()) {
        return Err(Error::Config(format!(
            "refusing to write {}: parameter {i} is {} (the model diverged)",
            path.display(),
            model.params[i]
        )));
    }
    let mlp = &model.mlp;
    if model.buffers.len() != mlp.buffer_count() {
        return Err(Error::Shape {
            what: format!(
                "buffers (batch normalisations' running statistics) for {}",
                path.display()
            ),
            expected: mlp.buffer_count(),
            got: model.buffers.len(),
        });
    }
    if let Some(i) = model.buffers.iter().position(|p| !p.is_finite()) {
        return Err(Error::Config(format!(
            "refusing to write {}: running statistic {i} is {} (the model diverged)",
            path.display(),
            model.buffers[i]
        )));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        "retroprop.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    metadata.insert("retroprop.arch".to_string(), join(&mlp.sizes()));
    let activations: Vec<Activation> = mlp.layers().iter().map(|l| l.activation).collect();
    metadata.insert("retroprop.activations".to_string(), join(&activations));
    metadata.insert("retroprop.loss".to_string(), model.loss.to_string());
    if let Some(s) = &model.standardizer {
        metadata.insert("retroprop.mean".to_string(), join(&s.mean));
        metadata.insert("retroprop.std".to_string(), join(&s.std));
    }
    if let Some(spec) = mlp.residual_spec() {
        metadata.insert(residual::KEY.to_string(), residual::spec_text(mlp, &spec));
    }
    if let Some(spec) = mlp.tabm_spec() {
        metadata.insert(tabm::KEY.to_string(), tabm::spec_text(spec));
    }
    metadata.extend(extra_metadata);
    let mut tensors = extra_tensors;
    if mlp.tabm_spec().is_some() {
        tensors.extend(tabm::tensors(mlp, &model.params));
        return Ok((tensors, metadata));
    }
    if let Some(spec) = mlp.residual_spec() {
        for tensor in residual::tensors(mlp, &spec) {
            let data = match tensor.slot {
                residual::Slot::Parameter(range) => bytes(&model.params[range]),
                residual::Slot::Buffer(range) => bytes(&model.buffers[range]),
                // torch's int64, the one tensor that is not float32.
                residual::Slot::BatchesTracked => {
                    (model.num_batches_tracked as i64).to_le_bytes().to_vec()
                }
            };
            tensors.push((tensor.name, data, tensor.shape));
        }
        return Ok((tensors, metadata));
    }
    for (l, layer) in mlp.layers().iter().enumerate() {
        tensors.push((
            format!("layers.{l}.weight"),
            bytes(&model.params[mlp.weight_range(l)]),
            vec![layer.outputs, layer.inputs],
        ));
        tensors.push((
            format!("layers.{l}.bias"),
            bytes(&model.params[mlp.bias_range(l)]),
            vec![layer.outputs],
        ));
    }
    Ok((tensors, metadata))
}

/// The safetensors crate's own header limit: a larger one does not load.
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Encodes float32 tensors `(name, little-endian bytes, shape)` and string
/// metadata as a safetensors file whose bytes depend only on the contents
/// (a tensor of 8 bytes an element is int64: BatchNorm's
/// `num_batches_tracked`):
/// the header lists the metadata in key order and the tensors in name
/// order. (`safetensors::serialize` takes the metadata as a `HashMap` and
/// writes it in that map's random order, so equal models gave different
/// files.)
fn encode_f32_safetensors(
    mut tensors: Vec<(String, Vec<u8>, Vec<usize>)>,
    metadata: &BTreeMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<String> = metadata
        .iter()
        .map(|(key, value)| format!("{}:{}", json_string(key), json_string(value)))
        .collect();
    let mut header = format!("{{\"__metadata__\":{{{}}}", entries.join(","));
    let mut offset = 0;
    for (name, data, shape) in &tensors {
        let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let dtype = if elements.and_then(|n| n.checked_mul(4)) == Some(data.len()) {
            "F32"
        } else if elements.is_some_and(|n| n > 0)
            && elements.and_then(|n| n.checked_mul(8)) == Some(data.len())
        {
            "I64"
        } else {
            return Err(format!(
                "tensor {name}: shape {shape:?} does not match its {} bytes",
                data.len()
            ));
        };
        header += &format!(
            ",{}:{{\"dtype\":\"{dtype}\",\"shape\":{},\"data_offsets\":[{offset},{}]}}",
            json_string(name),
            format_args!("[{}]", join(shape)),
            offset + data.len()
        );
        offset += data.len();
    }
    header.push('}');
    // Tensor data starts 8-byte aligned, as the format asks.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    if header.len() > MAX_HEADER_BYTES {
        return Err(format!(
            "the header would be {} bytes, over safetensors' limit of {MAX_HEADER_BYTES}",
            header.len()
        ));
    }
    let mut encoded = Vec::with_capacity(8 + header.len() + offset);
    encoded.extend((header.len() as u64).to_le_bytes());
    encoded.extend(header.as_bytes());
    for (_, data, _) in &tensors {
        encoded.extend(data);
    }
    Ok(encoded)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Parses a safetensors file's bytes: its string metadata and its tensors.
fn open_safetensors<'a>(
    buffer: &'a [u8],
    path: &Path,
) -> Result<(HashMap<String, String>, SafeTensors<'a>)> {
    let parse = |e: safetensors::SafeTensorError| Error::Parse {
        path: path.to_path_buf(),
        message: format!("not a valid safetensors file: {e}"),
    };
    let (_, header) = SafeTensors::read_metadata(buffer).map_err(parse)?;
    let file = SafeTensors::deserialize(buffer).map_err(parse)?;
    Ok((header.metadata().clone().unwrap_or_default(), file))
}

#[cfg(not(target_arch = "wasm32"))]
fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_list<T: std::str::FromStr>(path: &Path, key: &str, text: &str) -> Result<Vec<T>> {
    text.split(',')
        .map(|v| {
            v.trim().parse().map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                message: format!("metadata {key}: `{v}` is not valid"),
            })
        })
        .collect()
}

/// Reads a model file written by [`save_model`] or by
/// `safetensors.torch.save_file(model.state_dict(), path)`.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_model(path: &Path) -> Result<LoadedModel> {
    parse_model(&read_file(path)?, path)
}

/// [`load_model`] on a file's bytes; `path` names it in errors.
pub fn parse_model(buffer: &[u8], path: &Path) -> Result<LoadedModel> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let (meta, file) = open_safetensors(buffer, path)?;
    let tabm = meta
        .get(tabm::KEY)
        .map(|text| tabm::read(text, &file, path))
        .transpose()?;
    let (sizes, params, buffers, num_batches_tracked, residual) = match meta.get(residual::KEY) {
        _ if tabm.is_some() => {
            let (mlp, params) = tabm.clone().expect("read above");
            (mlp.sizes(), params, Vec::new(), 0, None)
        }
        Some(text) => {
            let (mlp, spec) = residual::parse_spec(text, &file, path)?;
            let (params, buffers, tracked) = residual::read(&file, &mlp, &spec, path)?;
            (mlp.sizes(), params, buffers, tracked, Some(spec))
        }
        None => {
            let (sizes, params) = plain_layers(&file, path)?;
            (sizes, params, Vec::new(), 0, None)
        }
    };
    let layers = sizes.len() - 1;
    if let Some(i) = params.iter().position(|p| !p.is_finite()) {
        return Err(parse(format!(
            "parameter {i} is not finite ({})",
            params[i]
        )));
    }
    if let Some(i) = buffers.iter().position(|p| !p.is_finite()) {
        return Err(parse(format!(
            "running statistic {i} is not finite ({})",
            buffers[i]
        )));
    }
    let activations = meta
        .get("retroprop.activations")
        .map(|text| {
            let list: Vec<Activation> = text
                .split(',')
                .map(|a| {
                    a.parse()
                        .map_err(|e: String| parse(format!("metadata retroprop.activations: {e}")))
                })
                .collect::<Result<_>>()?;
            if list.len() != layers {
                return Err(parse(format!(
                    "metadata lists {} activations for {layers} layers",
                    list.len()
                )));
            }
            Ok(list)
        })
        .transpose()?;
    let loss = meta
        .get("retroprop.loss")
        .map(|l| {
            l.parse()
                .map_err(|e: String| parse(format!("metadata retroprop.loss: {e}")))
        })
        .transpose()?;
    let precision = meta
        .get(PRECISION_KEY)
        .map(|p| {
            p.parse()
                .map_err(|e: String| parse(format!("metadata {PRECISION_KEY}: {e}")))
        })
        .transpose()?;
    let (standardizer, categories) = inputs::read(&meta, sizes[0], path)?;
    Ok(LoadedModel {
        sizes,
        params,
        buffers,
        num_batches_tracked,
        residual,
        tabm: tabm.and_then(|(mlp, _)| mlp.tabm_spec().cloned()),
        activations,
        loss,
        standardizer,
        categories,
        precision,
    })
}

/// A plain network's `layers.{i}.weight` and `.bias`: its sizes and flat
/// parameters.
fn plain_layers(file: &SafeTensors, path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let layers = (0..)
        .take_while(|l| file.tensor(&format!("layers.{l}.weight")).is_ok())
        .count();
    if layers == 0 {
        let mut names = file.names();
        names.sort();
        if names.contains(&"first_layer.weight") {
            return Err(parse(format!(
                "tensor first_layer.weight, a residual network's, but no metadata {}: the file needs retroprop's record of the blocks (as `retroprop train --blocks --save` writes it)",
                residual::KEY
            )));
        }
        return Err(parse(format!(
            "no tensor layers.0.weight (found: {}); a model file holds layers.{{i}}.weight and layers.{{i}}.bias",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let mut sizes = Vec::new();
    let mut params = Vec::new();
    for l in 0..layers {
        let weight_name = format!("layers.{l}.weight");
        let weight = f32_tensor(file, &weight_name, path)?;
        let [outputs, inputs] = weight.0[..] else {
            return Err(parse(format!(
                "tensor {weight_name} has shape {:?}, expected [out, in]",
                weight.0
            )));
        };
        if l == 0 {
            sizes.push(inputs);
        } else if sizes[l] != inputs {
            return Err(parse(format!(
                "tensor {weight_name} has {inputs} inputs, but layers.{}.weight has {} outputs",
                l - 1,
                sizes[l]
            )));
        }
        sizes.push(outputs);
        let bias_name = format!("layers.{l}.bias");
        let bias = f32_tensor(file, &bias_name, path)?;
        if bias.0 != [outputs] {
            return Err(parse(format!(
                "tensor {bias_name} has shape {:?}, expected [{outputs}]",
                bias.0
            )));
        }
        params.extend(weight.1);
        params.extend(bias.1);
    }
    Ok((sizes, params))
}

/// A tensor's shape and values, which must be float32.
fn f32_tensor(file: &SafeTensors, name: &str, path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let view = file
        .tensor(name)
        .map_err(|_| parse(format!("tensor {name} is missing")))?;
    if view.dtype() != Dtype::F32 {
        return Err(parse(format!(
            "tensor {name} is {:?}, expected F32",
            view.dtype()
        )));
    }
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok((view.shape().to_vec(), values))
}
