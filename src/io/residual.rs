//! A residual network ([`Mlp::residual`]) in a model file: its tensors by
//! the names and shapes of rtdl's `ResNet` `state_dict` (the `rtdl`
//! package 0.0.13, "Revisiting Deep Learning Models for Tabular Data"),
//!
//! ```text
//! first_layer.{weight,bias}                      Linear(inputs, width)
//! blocks.{i}.normalization.{weight,bias}         LayerNorm / BatchNorm1d(width)
//! blocks.{i}.normalization.{running_mean,running_var,num_batches_tracked}  (BatchNorm)
//! blocks.{i}.linear_first.{weight,bias}          Linear(width, hidden)
//! blocks.{i}.linear_second.{weight,bias}         Linear(hidden, width)
//! head.normalization.…                           as a block's
//! head.linear.{weight,bias}                      Linear(width, outputs)
//! ```
//!
//! (no `normalization` tensors without a norm: torch's `nn.Identity`), so
//! a file loads with `strict=True` into the module README.md's "Residual
//! networks in torch" defines. The metadata's `retroprop.residual` holds
//! what the module is made from ([`spec_text`]); `retroprop.arch` and
//! `retroprop.activations` list the dense layers as for a plain network.

use super::f32_tensor;
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::model::{Mlp, NormKind, Residual};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

/// Where the metadata holds the residual network's spec.
pub(super) const KEY: &str = "retroprop.residual";

/// Where a tensor's values come from.
pub(super) enum Slot {
    /// A range of the flat parameters.
    Parameter(Range<usize>),
    /// A range of the flat buffers ([`Mlp::buffer_ranges`]).
    Buffer(Range<usize>),
    /// A BatchNorm's `num_batches_tracked`: int64, shape `[]`.
    BatchesTracked,
}

/// One tensor of the file: its torch name, shape and values' place.
pub(super) struct Tensor {
    pub(super) name: String,
    pub(super) shape: Vec<usize>,
    pub(super) slot: Slot,
}

/// Dense layer `l`'s module: `first_layer`, `blocks.{i}.linear_first`,
/// `blocks.{i}.linear_second` or `head.linear`.
pub(super) fn dense_name(spec: &Residual, l: usize) -> String {
    match l {
        0 => "first_layer".to_string(),
        l if l == 2 * spec.blocks + 1 => "head.linear".to_string(),
        l if l % 2 == 1 => format!("blocks.{}.linear_first", (l - 1) / 2),
        l => format!("blocks.{}.linear_second", (l - 1) / 2),
    }
}

/// Normalisation `n`'s module: one a block, then the head's.
pub(super) fn norm_name(spec: &Residual, n: usize) -> String {
    if n < spec.blocks {
        format!("blocks.{n}.normalization")
    } else {
        "head.normalization".to_string()
    }
}

/// Every tensor of a residual network's file, in the network's order.
pub(super) fn tensors(mlp: &Mlp, spec: &Residual) -> Vec<Tensor> {
    let mut out = Vec::new();
    for (l, layer) in mlp.layers().iter().enumerate() {
        let prefix = dense_name(spec, l);
        out.push(Tensor {
            name: format!("{prefix}.weight"),
            shape: vec![layer.outputs, layer.inputs],
            slot: Slot::Parameter(mlp.weight_range(l)),
        });
        out.push(Tensor {
            name: format!("{prefix}.bias"),
            shape: vec![layer.outputs],
            slot: Slot::Parameter(mlp.bias_range(l)),
        });
    }
    for (n, norm) in mlp.norms().iter().enumerate() {
        let prefix = norm_name(spec, n);
        let (gamma, beta) = mlp.norm_ranges(n);
        let mut push = |what: &str, shape: Vec<usize>, slot| {
            out.push(Tensor {
                name: format!("{prefix}.{what}"),
                shape,
                slot,
            })
        };
        push("weight", vec![norm.width], Slot::Parameter(gamma));
        push("bias", vec![norm.width], Slot::Parameter(beta));
        if let Some((mean, var)) = mlp.buffer_ranges(n) {
            push("running_mean", vec![norm.width], Slot::Buffer(mean));
            push("running_var", vec![norm.width], Slot::Buffer(var));
            push("num_batches_tracked", Vec::new(), Slot::BatchesTracked);
        }
    }
    out
}

/// `retroprop.residual`'s text: `blocks=2,width=32,hidden=64,norm=batch,
/// activation=relu,eps=0.00001,momentum=0.1` (`norm=none` without one);
/// eps and momentum are the norms' (torch's defaults).
pub(super) fn spec_text(mlp: &Mlp, spec: &Residual) -> String {
    let (eps, momentum) = mlp
        .norms()
        .first()
        .map_or((1e-5, 0.1), |n| (n.eps, n.momentum));
    format!(
        "blocks={},width={},hidden={},norm={},activation={},eps={eps},momentum={momentum}",
        spec.blocks,
        spec.width,
        spec.hidden,
        spec.norm.map_or("none".to_string(), |n| n.to_string()),
        spec.activation,
    )
}

/// The network `retroprop.residual`'s `text` describes, with the inputs
/// and outputs of the file's `first_layer` and `head.linear`.
pub(super) fn parse_spec(text: &str, file: &SafeTensors, path: &Path) -> Result<(Mlp, Residual)> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message: format!("metadata {KEY}: {message}"),
    };
    let fields: HashMap<&str, &str> = text
        .split(',')
        .map(|part| part.split_once('=').ok_or(part))
        .collect::<std::result::Result<_, _>>()
        .map_err(|part| parse(format!("`{part}` is not name=value")))?;
    let field = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| parse(format!("no {name}= in `{text}`")))
    };
    let number = |name: &str| -> Result<usize> {
        let value = field(name)?;
        value
            .parse()
            .map_err(|_| parse(format!("{name}={value} is not a whole number")))
    };
    let float = |name: &str| -> Result<f64> {
        let value = field(name)?;
        value
            .parse()
            .map_err(|_| parse(format!("{name}={value} is not a number")))
    };
    let norm = match field("norm")? {
        "none" => None,
        text => Some(text.parse::<NormKind>().map_err(parse)?),
    };
    let activation: Activation = field("activation")?.parse().map_err(parse)?;
    let width_of = |name: &str, side: usize| -> Result<usize> {
        let shape = file
            .tensor(name)
            .map_err(|_| Error::Parse {
                path: path.to_path_buf(),
                message: format!(
                    "tensor {name} is missing (the file's {KEY} names a residual network)"
                ),
            })?
            .shape()
            .to_vec();
        match shape[..] {
            [outputs, inputs] => Ok([outputs, inputs][side]),
            _ => Err(Error::Parse {
                path: path.to_path_buf(),
                message: format!("tensor {name} has shape {shape:?}, expected [out, in]"),
            }),
        }
    };
    let spec = Residual {
        inputs: width_of("first_layer.weight", 1)?,
        width: number("width")?,
        hidden: number("hidden")?,
        blocks: number("blocks")?,
        outputs: width_of("head.linear.weight", 0)?,
        norm,
        activation,
    };
    let mlp = Mlp::residual(spec).map_err(|e| parse(e.to_string()))?;
    // The network builds its norms with torch's eps and momentum: a file
    // with others would predict otherwise than it says.
    for (name, value) in [("eps", float("eps")?), ("momentum", float("momentum")?)] {
        if let Some(norm) = mlp.norms().first() {
            let built = if name == "eps" {
                norm.eps
            } else {
                norm.momentum
            };
            if value != built {
                return Err(parse(format!(
                    "{name}={value}, but this version builds its norms with {name} {built}"
                )));
            }
        }
    }
    Ok((mlp, spec))
}

/// What [`read`] returns: the flat parameters, the flat buffers and the
/// BatchNorms' `num_batches_tracked` (0 without one).
pub(super) type Read = (Vec<f32>, Vec<f32>, u64);

/// The tensors [`tensors`] names, read from `file` into `mlp`'s layout;
/// every one must be there with its shape.
pub(super) fn read(file: &SafeTensors, mlp: &Mlp, spec: &Residual, path: &Path) -> Result<Read> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut params = vec![0.0; mlp.parameter_count()];
    let mut buffers = vec![0.0; mlp.buffer_count()];
    let mut tracked = None;
    for tensor in tensors(mlp, spec) {
        let name = &tensor.name;
        if let Slot::BatchesTracked = tensor.slot {
            let view = file
                .tensor(name)
                .map_err(|_| parse(format!("tensor {name} is missing")))?;
            if view.dtype() != Dtype::I64 || !view.shape().is_empty() {
                return Err(parse(format!(
                    "tensor {name} is {:?} of shape {:?}, expected I64 of shape []",
                    view.dtype(),
                    view.shape()
                )));
            }
            let count = i64::from_le_bytes(view.data()[..8].try_into().expect("8 bytes"));
            let count = u64::try_from(count)
                .map_err(|_| parse(format!("tensor {name} is {count}, a negative count")))?;
            tracked.get_or_insert(count);
            continue;
        }
        let (shape, values) = f32_tensor(file, name, path)?;
        if shape != tensor.shape {
            return Err(parse(format!(
                "tensor {name} has shape {shape:?}, expected {:?}",
                tensor.shape
            )));
        }
        match tensor.slot {
            Slot::Parameter(range) => params[range].copy_from_slice(&values),
            Slot::Buffer(range) => buffers[range].copy_from_slice(&values),
            Slot::BatchesTracked => unreachable!("read above"),
        }
    }
    Ok((params, buffers, tracked.unwrap_or(0)))
}

/// One tensor of a model's `state_dict`: its values, float32 or (torch's
/// `num_batches_tracked`) int64.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValues {
    /// A parameter or a running statistic.
    F32(Vec<f32>),
    /// BatchNorm's batches tracked (the optimizer steps).
    I64(i64),
}

/// A model's `state_dict` as its file names it: `layers.{l}.weight` and
/// `.bias` for a plain network, rtdl's `ResNet` names with the running
/// statistics for a residual one (see the README's "Residual networks in
/// torch"): `(name, shape, values)` in the file's order.
pub fn state_dict(model: &super::SavedModel) -> Vec<(String, Vec<usize>, StateValues)> {
    let mlp = &model.mlp;
    if mlp.tabm_spec().is_some() {
        let tensors = mlp.tabm_tensors().into_iter();
        return tensors
            .map(|t| {
                (
                    t.name,
                    t.shape,
                    StateValues::F32(model.params[t.range].to_vec()),
                )
            })
            .collect();
    }
    let Some(spec) = mlp.residual_spec() else {
        return (mlp.layers().iter().enumerate())
            .flat_map(|(l, layer)| {
                let weight = model.params[mlp.weight_range(l)].to_vec();
                let bias = model.params[mlp.bias_range(l)].to_vec();
                [
                    (
                        format!("layers.{l}.weight"),
                        vec![layer.outputs, layer.inputs],
                        weight,
                    ),
                    (format!("layers.{l}.bias"), vec![layer.outputs], bias),
                ]
            })
            .map(|(name, shape, values)| (name, shape, StateValues::F32(values)))
            .collect();
    };
    tensors(mlp, &spec)
        .into_iter()
        .map(|tensor| {
            let values = match tensor.slot {
                Slot::Parameter(range) => StateValues::F32(model.params[range].to_vec()),
                Slot::Buffer(range) => StateValues::F32(model.buffers[range].to_vec()),
                Slot::BatchesTracked => StateValues::I64(model.num_batches_tracked as i64),
            };
            (tensor.name, tensor.shape, values)
        })
        .collect()
}
