//! A run's settings and state in a checkpoint's metadata: each setting by
//! its one text form (`retroprop.settings.optimizer` holds
//! `adam:lr=0.01,betas=0.9/0.999,…` as `{:#}` writes it), early stopping's
//! best epoch (`retroprop.best_epoch`, and its parameters as the tensor
//! `early_stopping.best_params`) and the changes made on resume
//! (`retroprop.changed_on_resume`, also in model files).

use super::{LoadedModel, f32_tensor};
use crate::checkpoint::{
    BestEpoch, Checkpoint, EarlyStopping, EpochOrder, RunSettings, ValidationSplit,
};
use crate::data::ShuffleWindow;
use crate::error::{Error, Result};
use crate::optim::{GradClip, Optimizer};
use crate::real::Precision;
use crate::schedule::LrSchedule;
use safetensors::tensor::SafeTensors;
#[cfg(not(target_arch = "wasm32"))]
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

const SETTINGS: &str = "retroprop.settings.";
const BEST: &str = "retroprop.best_epoch";
const BEST_PARAMS: &str = "early_stopping.best_params";
/// The best epoch's running statistics, where the network keeps any.
const BEST_BUFFERS: &str = "early_stopping.best_buffers";
/// The order of the epoch in progress, where a resume kept its own.
const EPOCH_ORDER: &str = "retroprop.epoch_order";
/// Where model files and checkpoints list the settings changed on resume.
pub(super) const CHANGES: &str = "retroprop.changed_on_resume";
/// Between the changes of one resume and the next in [`CHANGES`].
const SEPARATOR: &str = "; ";

/// The metadata and tensors that record `checkpoint`'s settings, best
/// epoch and changes.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn write(
    checkpoint: &Checkpoint,
    meta: &mut BTreeMap<String, String>,
    tensors: &mut Vec<(String, Vec<u8>, Vec<usize>)>,
) {
    if let Some(s) = &checkpoint.settings {
        let mut set = |key: &str, value: String| meta.insert(format!("{SETTINGS}{key}"), value);
        let or_none = |v: Option<f64>| v.map_or("none".into(), |v| v.to_string());
        set("optimizer", format!("{:#}", s.optimizer));
        set("lr_schedule", s.lr_schedule.to_string());
        set("batch_size", s.batch_size_text());
        set("shuffle", s.shuffle.to_string());
        set("shuffle_window", s.shuffle_window.to_string());
        set("seed", s.seed.to_string());
        set("clip_grad_norm", or_none(s.grad_clip.max_norm));
        set("clip_grad_value", or_none(s.grad_clip.max_value));
        set("dropout", super::join(&s.dropout));
        set("early_stopping", s.early_stopping_text());
        set("validation_split", s.validation_split_text());
        set("precision", s.precision.to_string());
        // As a model file names it: a checkpoint loads as a model too.
        meta.insert(super::PRECISION_KEY.into(), s.precision.to_string());
    }
    if let Some(best) = &checkpoint.best {
        meta.insert(BEST.into(), format!("{},{}", best.epoch, best.loss));
        tensors.push((
            BEST_PARAMS.into(),
            super::bytes(&best.params),
            vec![best.params.len()],
        ));
        if !best.buffers.is_empty() {
            tensors.push((
                BEST_BUFFERS.into(),
                super::bytes(&best.buffers),
                vec![best.buffers.len()],
            ));
        }
    }
    if let Some(changes) = changes_text(&checkpoint.changes) {
        meta.insert(CHANGES.into(), changes);
    }
    if let Some(order) = checkpoint.epoch_order {
        meta.insert(EPOCH_ORDER.into(), order.to_string());
    }
}

/// The metadata value that lists `changes`, when there are any.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn changes_text(changes: &[String]) -> Option<String> {
    (!changes.is_empty()).then(|| changes.join(SEPARATOR))
}

/// What [`write`] recorded, read back into `checkpoint`: settings and best
/// epoch are `None` where the file has none (checkpoints written before
/// they were recorded).
pub(super) fn read(
    meta: &HashMap<String, String>,
    file: &SafeTensors,
    model: &LoadedModel,
    path: &Path,
    checkpoint: &mut Checkpoint,
) -> Result<()> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    checkpoint.changes = meta
        .get(CHANGES)
        .map(|c| c.split(SEPARATOR).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(text) = meta.get(BEST) {
        let bad = || parse(format!("metadata {BEST}: `{text}` is not EPOCH,LOSS"));
        let (epoch, loss) = text.split_once(',').ok_or_else(bad)?;
        let (shape, params) = f32_tensor(file, BEST_PARAMS, path)?;
        if shape != [model.params.len()] {
            return Err(parse(format!(
                "tensor {BEST_PARAMS} has shape {shape:?}, expected [{}]",
                model.params.len()
            )));
        }
        let buffers = match model.buffers.len() {
            0 => Vec::new(),
            count => {
                let (shape, buffers) = f32_tensor(file, BEST_BUFFERS, path)?;
                if shape != [count] {
                    return Err(parse(format!(
                        "tensor {BEST_BUFFERS} has shape {shape:?}, expected [{count}]"
                    )));
                }
                if let Some(i) = buffers.iter().position(|v| !v.is_finite()) {
                    return Err(parse(format!(
                        "tensor {BEST_BUFFERS}: value {i} is not finite"
                    )));
                }
                buffers
            }
        };
        checkpoint.best = Some(BestEpoch {
            loss: loss.parse().map_err(|_| bad())?,
            epoch: epoch.parse().map_err(|_| bad())?,
            params,
            buffers,
        });
    }
    if let Some(text) = meta.get(EPOCH_ORDER) {
        let bad = || {
            parse(format!(
                "metadata {EPOCH_ORDER}: `{text}` is not shuffle=…,seed=…[,window=…]"
            ))
        };
        let mut parts = text.splitn(3, ',');
        let (shuffle, seed) = parts.next().zip(parts.next()).ok_or_else(bad)?;
        fn value<T: FromStr>(part: &str, name: &str) -> Option<T> {
            part.strip_prefix(name)?.strip_prefix('=')?.parse().ok()
        }
        // Kept orders written before windows were whole shuffles.
        let window = match parts.next() {
            None => ShuffleWindow::Full,
            Some(part) => value(part, "window").ok_or_else(bad)?,
        };
        checkpoint.epoch_order = Some(EpochOrder {
            shuffle: value(shuffle, "shuffle").ok_or_else(bad)?,
            seed: value(seed, "seed").ok_or_else(bad)?,
            window,
        });
    }
    if !meta.contains_key(&format!("{SETTINGS}optimizer")) {
        return Ok(());
    }
    let text = |key: &str| {
        let key = format!("{SETTINGS}{key}");
        meta.get(&key)
            .map(|v| (key.clone(), v.as_str()))
            .ok_or_else(|| parse(format!("metadata {key} is missing")))
    };
    fn value<T: FromStr>(
        (key, text): (String, &str),
        parse: &impl Fn(String) -> Error,
    ) -> Result<T> {
        text.parse()
            .map_err(|_| parse(format!("metadata {key}: `{text}` is not valid")))
    }
    let optional = |(key, text): (String, &str)| -> Result<Option<f64>> {
        match text {
            "none" => Ok(None),
            _ => value((key, text), &parse).map(Some),
        }
    };
    // `name=value,…` with exactly these names, in order.
    let fields = |(key, text): (String, &str), names: [&str; 2]| -> Result<Option<[String; 2]>> {
        if text == "none" {
            return Ok(None);
        }
        let parts: Vec<&str> = text.split(',').collect();
        let values: Option<Vec<String>> = parts
            .iter()
            .zip(names)
            .map(|(part, name)| Some(part.strip_prefix(name)?.strip_prefix('=')?.to_string()))
            .collect();
        match values {
            Some(v) if parts.len() == 2 => Ok(Some([v[0].clone(), v[1].clone()])),
            _ => Err(parse(format!(
                "metadata {key}: `{text}` is not {}=…,{}=…",
                names[0], names[1]
            ))),
        }
    };
    let missing = |what: &str| parse(format!("the checkpoint's model has no {what}"));
    let activations = model
        .activations
        .clone()
        .ok_or_else(|| missing("activations"))?;
    let optimizer: Optimizer = value(text("optimizer")?, &parse)?;
    let lr_schedule: LrSchedule = value(text("lr_schedule")?, &parse)?;
    let batch_size = match text("batch_size")? {
        (_, "full") => None,
        field => Some(value(field, &parse)?),
    };
    let dropout = text("dropout")?;
    let early_stopping = match fields(text("early_stopping")?, ["patience", "min_delta"])? {
        None => None,
        Some([patience, min_delta]) => Some(EarlyStopping {
            patience: value((format!("{SETTINGS}early_stopping"), &patience), &parse)?,
            min_delta: value((format!("{SETTINGS}early_stopping"), &min_delta), &parse)?,
        }),
    };
    let validation_split = match fields(text("validation_split")?, ["fraction", "seed"])? {
        None => None,
        Some([fraction, seed]) => Some(ValidationSplit {
            fraction: value((format!("{SETTINGS}validation_split"), &fraction), &parse)?,
            seed: value((format!("{SETTINGS}validation_split"), &seed), &parse)?,
        }),
    };
    // Checkpoints written before the precision was recorded ran in f32.
    let precision = match meta.get(&format!("{SETTINGS}precision")) {
        None => Precision::F32,
        Some(_) => value(text("precision")?, &parse)?,
    };
    // Runs checkpointed before windows shuffled whole.
    let shuffle_window = match meta.get(&format!("{SETTINGS}shuffle_window")) {
        None => ShuffleWindow::Full,
        Some(_) => value(text("shuffle_window")?, &parse)?,
    };
    checkpoint.settings = Some(RunSettings {
        sizes: model.sizes.clone(),
        activations,
        residual: model.residual,
        tabm: model.tabm.clone(),
        loss: model.loss.ok_or_else(|| missing("loss"))?,
        optimizer,
        lr_schedule,
        batch_size,
        shuffle: value(text("shuffle")?, &parse)?,
        shuffle_window,
        seed: value(text("seed")?, &parse)?,
        grad_clip: GradClip {
            max_norm: optional(text("clip_grad_norm")?)?,
            max_value: optional(text("clip_grad_value")?)?,
        },
        dropout: super::parse_list(path, &dropout.0, dropout.1)?,
        early_stopping,
        validation_split,
        precision,
    });
    Ok(())
}
