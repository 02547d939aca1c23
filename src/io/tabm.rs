//! A TabM network ([`Mlp::tabm`]) in a model file: its tensors by the
//! names and shapes of the `tabm` package's `TabM.make(...)` `state_dict`
//! ([`Mlp::tabm_tensors`]: `backbone.blocks.{i}.0.weight`, `.r`, `.s`,
//! `.bias`, `backbone.affine.weight` for `tabm-mini`, `output.weight`
//! `[k, in, out]` and `output.bias`), so that a file loads with
//! `strict=True` into `tabm.TabM.make` of the same settings. The
//! metadata's `retroprop.tabm` holds the members, the architecture and
//! the ensemble's mean ([`spec_text`]); `retroprop.arch` and
//! `retroprop.activations` list each member's layers as for a plain
//! network.

use super::f32_tensor;
use crate::activation::Activation;
use crate::embedding::{Embedding, EmbeddingKind, Periodic};
use crate::error::{Error, Result};
use crate::model::{EnsembleMean, Mlp, Tabm};
use safetensors::SafeTensors;
use std::path::Path;

/// Where the metadata holds the TabM spec.
pub(super) const KEY: &str = "retroprop.tabm";

/// The spec as the metadata holds it: `k=32,arch=tabm,mean=probabilities`.
pub(super) fn spec_text(spec: &Tabm) -> String {
    let mean = match spec.mean {
        EnsembleMean::Probabilities => "probabilities",
        EnsembleMean::Sigmoid => "sigmoid",
        EnsembleMean::Values => "values",
    };
    let mut text = format!("k={},arch={},mean={mean}", spec.k, spec.arch);
    if let Some(embedding) = &spec.embedding
        && let EmbeddingKind::Periodic(p) = embedding.kind()
    {
        text += &format!(
            ",embedding=periodic:features={}:d={}:frequencies={}:sigma={}:lite={}:activation={}",
            embedding.n_features(),
            embedding.d_embedding(),
            p.n_frequencies,
            p.frequency_init_scale,
            p.lite,
            p.activation
        );
    }
    text
}

/// `periodic:features=F:d=D:frequencies=K:sigma=S:lite=B:activation=B`.
fn parse_embedding(text: &str) -> std::result::Result<Embedding, String> {
    let mut parts = text.split(':');
    if parts.next() != Some("periodic") {
        return Err(format!("embedding `{text}` is not periodic:…"));
    }
    let (mut features, mut d, mut periodic) = (0, 0, Periodic::default());
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("embedding's `{part}` is not key=value"))?;
        let bad = || format!("embedding's {key} `{value}` does not parse");
        match key {
            "features" => features = value.parse().map_err(|_| bad())?,
            "d" => d = value.parse().map_err(|_| bad())?,
            "frequencies" => periodic.n_frequencies = value.parse().map_err(|_| bad())?,
            "sigma" => periodic.frequency_init_scale = value.parse().map_err(|_| bad())?,
            "lite" => periodic.lite = value.parse().map_err(|_| bad())?,
            "activation" => periodic.activation = value.parse().map_err(|_| bad())?,
            other => return Err(format!("embedding's key `{other}` is unknown")),
        }
    }
    Embedding::periodic(features, d, periodic).map_err(|e| e.to_string())
}

/// [`spec_text`] read back.
fn parse_spec(text: &str) -> std::result::Result<Tabm, String> {
    let mut spec = Tabm::default();
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not key=value"))?;
        match key.trim() {
            "k" => {
                spec.k = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("k `{value}` is not a count"))?
            }
            "arch" => spec.arch = value.parse()?,
            "mean" => {
                spec.mean = match value.trim() {
                    "probabilities" => EnsembleMean::Probabilities,
                    "sigmoid" => EnsembleMean::Sigmoid,
                    "values" => EnsembleMean::Values,
                    other => return Err(format!("unknown mean `{other}`")),
                }
            }
            "embedding" => spec.embedding = Some(parse_embedding(value.trim())?),
            other => return Err(format!("unknown key `{other}`")),
        }
    }
    if spec.k == 0 {
        return Err("k is missing or 0".into());
    }
    Ok(spec)
}

/// The file's tensors: `(name, little-endian float32 bytes, shape)`.
pub(super) fn tensors(mlp: &Mlp, params: &[f32]) -> Vec<(String, Vec<u8>, Vec<usize>)> {
    mlp.tabm_tensors()
        .into_iter()
        .map(|t| {
            let bytes = params[t.range]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (t.name, bytes, t.shape)
        })
        .collect()
}

/// The network a file's `retroprop.tabm` and tensors describe (each
/// member's hidden layers ReLU until the activations are read), and its
/// flat parameters.
pub(super) fn read(text: &str, file: &SafeTensors, path: &Path) -> Result<(Mlp, Vec<f32>)> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let spec = parse_spec(text).map_err(|e| parse(format!("metadata {KEY}: {e}")))?;
    let mut sizes = sizes(file, spec.k).map_err(parse)?;
    if let Some(embedding) = &spec.embedding {
        sizes[0] = embedding.n_features();
    }
    let plain = Mlp::new(&sizes, Activation::Relu, Activation::Identity)?;
    let mlp = Mlp::tabm(&plain, spec)?;
    let mut params = vec![0.0; mlp.parameter_count()];
    for tensor in mlp.tabm_tensors() {
        let (shape, values) = f32_tensor(file, &tensor.name, path)?;
        if shape != tensor.shape {
            return Err(parse(format!(
                "tensor {} has shape {shape:?}, expected {:?} for TabM {}",
                tensor.name,
                tensor.shape,
                spec_text(mlp.tabm_spec().expect("a TabM network"))
            )));
        }
        params[tensor.range].copy_from_slice(&values);
    }
    Ok((mlp, params))
}

/// Each member's layer sizes, from the blocks' weights and the output's
/// (`[k, in, out]`).
fn sizes(file: &SafeTensors, k: usize) -> std::result::Result<Vec<usize>, String> {
    let shape = |name: &str| file.tensor(name).ok().map(|t| t.shape().to_vec());
    let mut sizes = Vec::new();
    for block in 0.. {
        let Some(shape) = shape(&format!("backbone.blocks.{block}.0.weight")) else {
            break;
        };
        let (inputs, outputs) = match shape[..] {
            [outputs, inputs] => (inputs, outputs),
            [members, inputs, outputs] if members == k => (inputs, outputs),
            _ => {
                return Err(format!(
                    "tensor backbone.blocks.{block}.0.weight has shape {shape:?}, not [out, in] or [{k}, in, out]"
                ));
            }
        };
        if sizes.is_empty() {
            sizes.push(inputs);
        }
        sizes.push(outputs);
    }
    match shape("output.weight").as_deref() {
        Some(&[members, _, outputs]) if members == k && !sizes.is_empty() => sizes.push(outputs),
        Some(other) => {
            return Err(format!(
                "tensor output.weight has shape {other:?}, not [{k}, in, out] after the blocks"
            ));
        }
        None => return Err("no tensor output.weight (a TabM file's output layer)".into()),
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TabmArch;

    #[test]
    fn the_spec_reads_back_as_written() {
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            for mean in [
                EnsembleMean::Probabilities,
                EnsembleMean::Sigmoid,
                EnsembleMean::Values,
            ] {
                let spec = Tabm::new(7, arch, mean);
                assert_eq!(parse_spec(&spec_text(&spec)), Ok(spec.clone()));
                let periodic = Periodic::default().lite(true).frequency_init_scale(0.3);
                let embedded = Tabm {
                    embedding: Some(Embedding::periodic(5, 8, periodic).unwrap()),
                    ..spec
                };
                assert_eq!(parse_spec(&spec_text(&embedded)), Ok(embedded));
            }
        }
        assert!(
            parse_spec("k=0,arch=tabm")
                .unwrap_err()
                .contains("k is missing")
        );
        assert!(
            parse_spec("k=2,arch=big")
                .unwrap_err()
                .contains("unknown TabM architecture")
        );
    }
}
