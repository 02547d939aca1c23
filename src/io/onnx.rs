//! ONNX export: a trained model as a standard ONNX graph that ONNX Runtime
//! (or any other ONNX consumer) runs without retroprop.
//!
//! The graph, in ONNX opset 17 (IR version 8), reads `input`
//! `[batch, features]` float32 and computes what `retroprop predict` does:
//!
//! - the saved standardisation first, when there is one: `Sub` the mean,
//!   `Div` by the standard deviation;
//! - each layer `l` as `Gemm(x, layers.{l}.weight, layers.{l}.bias,
//!   transB=1)`, the weight kept in its `[out, in]` layout (the model
//!   file's, `torch.nn.Linear`'s), then its activation: `Sigmoid`, `Tanh`,
//!   `Relu`, `LeakyRelu` (with its slope as `alpha`), nothing for identity,
//!   and GELU decomposed into opset-17 operators, because `Gelu` is an
//!   operator only from opset 20 and opset 17 runs on more runtimes: the
//!   exact form as ½ x (1 + `Erf`(x / √2)), the tanh form as
//!   ½ x (1 + `Tanh`(√(2/π) (x + 0.044715 x³)));
//! - for a residual network ([`Mlp::residual`](crate::Mlp::residual)),
//!   the forward pass kind by kind, its constants by the model file's
//!   names (`first_layer.weight`, `blocks.{i}.normalization.running_mean`,
//!   …): each dense layer a `Gemm` and its activation, LayerNorm as
//!   `LayerNormalization` over the last axis, BatchNorm as
//!   `BatchNormalization` in inference mode (the running statistics), a
//!   block's end as `Add` of its input (both operators are in opset 17);
//! - with [`OnnxOptions::probabilities`], the output the loss implies:
//!   `Softmax` over the classes for cross-entropy, `Sigmoid` for BCE with
//!   logits (nothing for MSE, whose outputs are the predictions).
//!
//! The output is named `logits` (classification), `probabilities` (with
//! the option), or `predictions` (MSE). The architecture, activations and
//! loss travel in the model's metadata properties, under the safetensors
//! metadata's names.
//!
//! The bytes are encoded by `prost` from [`proto`], which mirrors
//! `onnx.proto`'s messages and field numbers.

pub mod proto;
mod tabm;

use super::{SavedModel, residual};
use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{LayerKind, Residual};
use prost::Message;
use proto::{
    AttributeProto, AttributeType, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto,
    TypeProto, ValueInfoProto,
};
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

/// The ONNX operator set the graph uses.
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with [`OPSET`].
pub const IR_VERSION: i64 = 8;
/// The graph's input.
pub const INPUT: &str = "input";

/// Choices for [`onnx_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnnxOptions {
    /// End with the probabilities the loss implies (softmax for
    /// cross-entropy, sigmoid for BCE with logits) instead of the logits.
    /// No effect for MSE.
    pub probabilities: bool,
    /// With `probabilities`, a network of one BCE output (two classes)
    /// ends with both classes' probabilities, `[1 - p, p]`, as
    /// scikit-learn's `predict_proba` gives them (`Sigmoid`, `Sub`,
    /// `Concat`); the output is then 2 wide. No effect otherwise.
    pub both_classes: bool,
}

impl OnnxOptions {
    /// Whether the graph ends with both classes' probabilities.
    fn two_class_columns(&self, model: &SavedModel) -> bool {
        self.probabilities
            && self.both_classes
            && model.loss == Loss::BceWithLogits
            && model.mlp.outputs() == 1
    }
}

/// The name of the graph's output for `loss` under `options`.
pub fn output_name(loss: Loss, options: &OnnxOptions) -> &'static str {
    match loss {
        Loss::Mse | Loss::HalfMse => "predictions",
        Loss::CrossEntropy | Loss::BceWithLogits if options.probabilities => "probabilities",
        Loss::CrossEntropy | Loss::BceWithLogits => "logits",
    }
}

/// `model` as an ONNX file's bytes (see the [module](self) for the graph).
/// Refuses parameters that are NaN or infinite, as the model writer does.
pub fn onnx_bytes(model: &SavedModel, options: &OnnxOptions) -> Result<Vec<u8>> {
    if let Some(i) = model.params.iter().position(|p| !p.is_finite()) {
        return Err(Error::Config(format!(
            "refusing to export: parameter {i} is {} (the model diverged)",
            model.params[i]
        )));
    }
    if model.params.len() != model.mlp.parameter_count() {
        return Err(Error::Shape {
            what: "parameters of the model to export".into(),
            expected: model.mlp.parameter_count(),
            got: model.params.len(),
        });
    }
    if model.buffers.len() != model.mlp.buffer_count() {
        return Err(Error::Shape {
            what: "running statistics (buffers) of the model to export".into(),
            expected: model.mlp.buffer_count(),
            got: model.buffers.len(),
        });
    }
    if let Some(i) = model.buffers.iter().position(|p| !p.is_finite()) {
        return Err(Error::Config(format!(
            "refusing to export: running statistic {i} is {} (the model diverged)",
            model.buffers[i]
        )));
    }
    if model.mlp.tabm_embedding().is_some() {
        return Err(Error::Config(
            "ONNX export of TabM with numerical embeddings is not built yet (TabM without them exports)".into(),
        ));
    }
    if model.mlp.tabm_spec().is_some() {
        return Ok(tabm::tabm_onnx(model, options));
    }
    Ok(model_proto(model, options).encode_to_vec())
}

/// Writes [`onnx_bytes`] to `path`, atomically as
/// [`save_model`](super::save_model) writes.
#[cfg(not(target_arch = "wasm32"))]
pub fn export_onnx(path: &Path, model: &SavedModel, options: &OnnxOptions) -> Result<()> {
    super::write_atomic(path, &onnx_bytes(model, options)?)
}

fn model_proto(model: &SavedModel, options: &OnnxOptions) -> ModelProto {
    let mlp = &model.mlp;
    let activations: Vec<Activation> = mlp.layers().iter().map(|l| l.activation).collect();
    let mut metadata = vec![
        ("retroprop.arch", super::join(&mlp.sizes())),
        ("retroprop.activations", super::join(&activations)),
        ("retroprop.loss", model.loss.to_string()),
    ];
    if let Some(spec) = mlp.residual_spec() {
        metadata.push((residual::KEY, residual::spec_text(mlp, &spec)));
    }
    let what = match mlp.residual_spec() {
        Some(_) => "residual network",
        None => "multilayer perceptron",
    };
    ModelProto {
        ir_version: IR_VERSION,
        producer_name: "retroprop".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "A {} {what} trained with {} by retroprop",
            super::join(&mlp.sizes()),
            model.loss
        ),
        graph: Some(graph(model, options)),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto {
                key: key.into(),
                value,
            })
            .collect(),
    }
}

/// The graph under construction: nodes and initializers, named in order.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Builder {
    /// Adds `op(inputs) -> output` with `attributes`; returns `output`.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: String,
        attributes: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: format!("{op}:{output}"),
            op_type: op.into(),
            attribute: attributes,
        });
        output
    }

    /// Adds a float32 constant; returns its name.
    fn constant(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: proto::FLOAT,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// A scalar constant, added once.
    fn scalar(&mut self, name: &str, value: f32) -> String {
        if !self.initializers.iter().any(|t| t.name == name) {
            self.constant(name.into(), &[], &[value]);
        }
        name.into()
    }

    /// `activation` applied to `x`, the layer's affine output; `prefix`
    /// names the values it makes.
    fn activation(&mut self, activation: Activation, x: String, prefix: &str) -> String {
        let out = format!("{prefix}.output");
        match activation {
            Activation::Identity => x,
            Activation::Sigmoid => self.node("Sigmoid", &[&x], out, vec![]),
            Activation::Tanh => self.node("Tanh", &[&x], out, vec![]),
            Activation::Relu => self.node("Relu", &[&x], out, vec![]),
            Activation::LeakyRelu { slope } => {
                self.node("LeakyRelu", &[&x], out, vec![float("alpha", slope)])
            }
            // ½ x (1 + erf(x / √2))
            Activation::Gelu => {
                let sqrt2 = self.scalar("gelu.sqrt2", std::f32::consts::SQRT_2);
                let scaled = self.node(
                    "Div",
                    &[&x, &sqrt2],
                    format!("{prefix}.gelu_scaled"),
                    vec![],
                );
                let erf = self.node("Erf", &[&scaled], format!("{prefix}.gelu_erf"), vec![]);
                self.half_x_one_plus(&x, &erf, prefix, out)
            }
            // ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))
            Activation::GeluTanh => {
                let c = self.scalar("gelu_tanh.c", 0.044_715);
                let k = self.scalar("gelu_tanh.sqrt_2_over_pi", 0.797_884_6);
                let square = self.node("Mul", &[&x, &x], format!("{prefix}.gelu_square"), vec![]);
                let cube = self.node("Mul", &[&square, &x], format!("{prefix}.gelu_cube"), vec![]);
                let scaled_cube =
                    self.node("Mul", &[&cube, &c], format!("{prefix}.gelu_c_cube"), vec![]);
                let inner = self.node(
                    "Add",
                    &[&x, &scaled_cube],
                    format!("{prefix}.gelu_inner"),
                    vec![],
                );
                let u = self.node("Mul", &[&inner, &k], format!("{prefix}.gelu_u"), vec![]);
                let tanh = self.node("Tanh", &[&u], format!("{prefix}.gelu_tanh"), vec![]);
                self.half_x_one_plus(&x, &tanh, prefix, out)
            }
        }
    }

    /// ½ x (1 + t): how both GELU forms end, t = erf(x / √2) or the tanh.
    fn half_x_one_plus(&mut self, x: &str, t: &str, prefix: &str, out: String) -> String {
        let one = self.scalar("gelu.one", 1.0);
        let half = self.scalar("gelu.half", 0.5);
        let plus = self.node("Add", &[t, &one], format!("{prefix}.gelu_plus_one"), vec![]);
        let times = self.node("Mul", &[x, &plus], format!("{prefix}.gelu_times_x"), vec![]);
        self.node("Mul", &[&times, &half], out, vec![])
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: value,
        i: 0,
        r#type: AttributeType::Float as i32,
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f: 0.0,
        i: value,
        r#type: AttributeType::Int as i32,
    }
}

/// A float32 tensor value `[batch, width]`, the batch free.
fn batch_tensor(name: &str, width: usize) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: proto::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: vec![
                        Dimension {
                            dim_value: None,
                            dim_param: Some("batch".into()),
                        },
                        Dimension {
                            dim_value: Some(width as i64),
                            dim_param: None,
                        },
                    ],
                }),
            }),
        }),
    }
}

fn graph(model: &SavedModel, options: &OnnxOptions) -> GraphProto {
    let mlp = &model.mlp;
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let x = b.standardization(model);
    let x = match mlp.residual_spec() {
        Some(spec) => b.residual(model, &spec, x),
        None => b.layers(model, &model.params, x, "layers"),
    };
    let output = output_name(model.loss, options);
    match (model.loss, options.probabilities) {
        (Loss::CrossEntropy, true) => {
            b.node("Softmax", &[&x], output.into(), vec![int("axis", 1)]);
        }
        (Loss::BceWithLogits, true) if options.two_class_columns(model) => {
            let positive = b.node("Sigmoid", &[&x], "probability.positive".into(), vec![]);
            b.both_classes(&positive, output);
        }
        (Loss::BceWithLogits, true) => {
            b.node("Sigmoid", &[&x], output.into(), vec![]);
        }
        _ => {
            // The last value takes the output's name: rename where it is
            // made (the input itself only for a graph with no nodes, which
            // a network of at least one layer never is).
            let last = b.nodes.last_mut().expect("every layer adds a Gemm");
            last.output[0] = output.into();
        }
    }
    let width = if options.two_class_columns(model) {
        2
    } else {
        mlp.outputs()
    };
    b.graph(output, mlp.inputs(), width)
}

impl Builder {
    /// The standardisation of the input, when the model has one; returns
    /// the value the layers read.
    fn standardization(&mut self, model: &SavedModel) -> String {
        let x = INPUT.to_string();
        let Some(s) = &model.standardizer else {
            return x;
        };
        let mean = self.constant("standardization.mean".into(), &[s.mean.len()], &s.mean);
        let std = self.constant("standardization.std".into(), &[s.std.len()], &s.std);
        let centred = self.node(
            "Sub",
            &[&x, &mean],
            "standardization.centred".into(),
            vec![],
        );
        self.node(
            "Div",
            &[&centred, &std],
            "standardization.output".into(),
            vec![],
        )
    }

    /// `model`'s layers with parameters `params` on `x`, each a `Gemm`
    /// (torch's layout) and its activation, named under `prefix`; returns
    /// the last layer's output.
    fn layers(
        &mut self,
        model: &SavedModel,
        params: &[f32],
        mut x: String,
        prefix: &str,
    ) -> String {
        let mlp = &model.mlp;
        for (l, layer) in mlp.layers().iter().enumerate() {
            let prefix = format!("{prefix}.{l}");
            let weight = self.constant(
                format!("{prefix}.weight"),
                &[layer.outputs, layer.inputs],
                &params[mlp.weight_range(l)],
            );
            let bias = self.constant(
                format!("{prefix}.bias"),
                &[layer.outputs],
                &params[mlp.bias_range(l)],
            );
            let linear = self.node(
                "Gemm",
                &[&x, &weight, &bias],
                format!("{prefix}.linear"),
                vec![int("transB", 1)],
            );
            x = self.activation(layer.activation, linear, &prefix);
        }
        x
    }

    /// A residual network's forward pass on `x`, kind by kind
    /// ([`LayerKind`]), its constants by the model file's names: each
    /// dense layer a `Gemm` and its activation, a LayerNorm as
    /// `LayerNormalization` (over the last axis), a BatchNorm as
    /// `BatchNormalization` in inference mode (the running statistics), a
    /// block's end as `Add`; returns the head's output.
    fn residual(&mut self, model: &SavedModel, spec: &Residual, mut x: String) -> String {
        let mlp = &model.mlp;
        let params = &model.params;
        let (mut skips, mut blocks) = (Vec::new(), 0);
        for kind in mlp.kinds() {
            x = match *kind {
                LayerKind::Dense(l) => {
                    let layer = mlp.layers()[l];
                    let prefix = residual::dense_name(spec, l);
                    let weight = self.constant(
                        format!("{prefix}.weight"),
                        &[layer.outputs, layer.inputs],
                        &params[mlp.weight_range(l)],
                    );
                    let bias = self.constant(
                        format!("{prefix}.bias"),
                        &[layer.outputs],
                        &params[mlp.bias_range(l)],
                    );
                    let linear = self.node(
                        "Gemm",
                        &[&x, &weight, &bias],
                        format!("{prefix}.linear"),
                        vec![int("transB", 1)],
                    );
                    self.activation(layer.activation, linear, &prefix)
                }
                LayerKind::EnsembleView
                | LayerKind::Embed
                | LayerKind::Scale
                | LayerKind::EnsembleDense(_)
                | LayerKind::EnsembleLinear(_) => {
                    unreachable!("a residual network has no TabM layers")
                }
                LayerKind::Norm(n) => {
                    let norm = mlp.norms()[n];
                    let prefix = residual::norm_name(spec, n);
                    let (gamma, beta) = mlp.norm_ranges(n);
                    let weight =
                        self.constant(format!("{prefix}.weight"), &[norm.width], &params[gamma]);
                    let bias =
                        self.constant(format!("{prefix}.bias"), &[norm.width], &params[beta]);
                    let eps = float("epsilon", norm.eps as f32);
                    let out = format!("{prefix}.output");
                    match mlp.buffer_ranges(n) {
                        None => self.node(
                            "LayerNormalization",
                            &[&x, &weight, &bias],
                            out,
                            vec![int("axis", -1), eps],
                        ),
                        Some((mean, var)) => {
                            let mean = self.constant(
                                format!("{prefix}.running_mean"),
                                &[norm.width],
                                &model.buffers[mean],
                            );
                            let var = self.constant(
                                format!("{prefix}.running_var"),
                                &[norm.width],
                                &model.buffers[var],
                            );
                            self.node(
                                "BatchNormalization",
                                &[&x, &weight, &bias, &mean, &var],
                                out,
                                vec![eps],
                            )
                        }
                    }
                }
                LayerKind::Activation(f) => self.activation(f, x, "head.activation"),
                LayerKind::Skip => {
                    skips.push(x.clone());
                    x
                }
                LayerKind::Add => {
                    let skip = skips.pop().expect("a block's Add follows its Skip");
                    blocks += 1;
                    let block = blocks - 1;
                    self.node(
                        "Add",
                        &[&skip, &x],
                        format!("blocks.{block}.output"),
                        vec![],
                    )
                }
            };
        }
        x
    }

    /// `[1 - p, p]` from one column of probabilities `p`, as `output`.
    fn both_classes(&mut self, positive: &str, output: &str) -> String {
        let one = self.scalar("probability.one", 1.0);
        let negative = self.node(
            "Sub",
            &[&one, positive],
            format!("{positive}.negative"),
            vec![],
        );
        self.node(
            "Concat",
            &[&negative, positive],
            output.into(),
            vec![int("axis", 1)],
        )
    }

    /// The graph of the nodes built, from `input` (`inputs` wide) to
    /// `output` (`width` wide).
    fn graph(self, output: &str, inputs: usize, width: usize) -> GraphProto {
        GraphProto {
            node: self.nodes,
            name: "retroprop_mlp".into(),
            initializer: self.initializers,
            doc_string: String::new(),
            input: vec![batch_tensor(INPUT, inputs)],
            output: vec![batch_tensor(output, width)],
        }
    }
}

/// What to export of a run's members ([`members_onnx_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembersOnnx {
    /// One member (its graph as [`onnx_bytes`] writes it, with
    /// `options`); `None`: the ensemble.
    pub member: Option<usize>,
    /// For one member, as [`onnx_bytes`]; for the ensemble only
    /// `both_classes` is read (it always ends with probabilities).
    pub options: OnnxOptions,
}

/// The members of a run as an ONNX file's bytes: one member's network, or
/// the ensemble's prediction: every member's network on the same
/// (standardised) input, each ending with its probabilities for the
/// classification losses (softmax for cross-entropy, sigmoid for BCE), and
/// their `Mean` (output `probabilities`); for the regression losses the
/// mean of their outputs (`predictions`). What
/// [`Members::predict_ensemble`](crate::train::Members::predict_ensemble)
/// computes.
#[cfg(not(target_arch = "wasm32"))]
pub fn members_onnx_bytes(
    members: &super::members::SavedMembers,
    what: &MembersOnnx,
) -> Result<Vec<u8>> {
    let model_of = |params: &Vec<f32>| SavedModel {
        params: params.clone(),
        ..members.model.clone()
    };
    if let Some(m) = what.member {
        let params = members.params.get(m).ok_or_else(|| {
            Error::Config(format!(
                "member {m} to export: the run has {} members",
                members.params.len()
            ))
        })?;
        return onnx_bytes(&model_of(params), &what.options);
    }
    for params in &members.params {
        // The checks a lone model's export makes.
        onnx_bytes(&model_of(params), &what.options)?;
    }
    let model = &members.model;
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let x = b.standardization(model);
    let probabilities = OnnxOptions {
        probabilities: true,
        ..what.options
    };
    let output = output_name(model.loss, &probabilities);
    let mut each = Vec::new();
    for (m, params) in members.params.iter().enumerate() {
        let prefix = format!("members.{m}");
        let last = b.layers(model, params, x.clone(), &format!("{prefix}.layers"));
        let out = format!("{prefix}.output");
        each.push(match model.loss {
            Loss::CrossEntropy => b.node("Softmax", &[&last], out, vec![int("axis", 1)]),
            Loss::BceWithLogits => b.node("Sigmoid", &[&last], out, vec![]),
            Loss::Mse | Loss::HalfMse => last,
        });
    }
    let inputs: Vec<&str> = each.iter().map(String::as_str).collect();
    let single = SavedModel {
        params: members.params[0].clone(),
        ..model.clone()
    };
    let two_columns = probabilities.two_class_columns(&single);
    let width = if two_columns { 2 } else { model.mlp.outputs() };
    if two_columns {
        let mean = b.node("Mean", &inputs, "members.mean".into(), vec![]);
        b.both_classes(&mean, output);
    } else {
        b.node("Mean", &inputs, output.into(), vec![]);
    }
    let graph = b.graph(output, model.mlp.inputs(), width);
    let mut proto = model_proto(&single, &probabilities);
    proto.graph = Some(graph);
    proto.doc_string = format!(
        "The mean of {} {} multilayer perceptrons trained with {} by retroprop",
        members.params.len(),
        super::join(&model.mlp.sizes()),
        model.loss
    );
    proto.metadata_props.push(StringStringEntryProto {
        key: "retroprop.members".into(),
        value: members.params.len().to_string(),
    });
    Ok(proto.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Standardizer;
    use crate::model::Mlp;

    fn model(activations: &[Activation], loss: Loss, standardize: bool) -> SavedModel {
        let sizes: Vec<usize> = (0..=activations.len()).map(|i| 3 + i).collect();
        let mlp = Mlp::with_activations(&sizes, activations).unwrap();
        let params = mlp.init(crate::model::Init::TorchDefault, 7);
        SavedModel {
            mlp,
            params,
            buffers: Vec::new(),
            num_batches_tracked: 0,
            loss,
            standardizer: standardize
                .then(|| Standardizer::new(vec![0.5, 1.0, -2.0], vec![1.0, 2.0, 4.0]).unwrap()),
        }
    }

    fn decode(model: &SavedModel, options: OnnxOptions) -> ModelProto {
        ModelProto::decode(&onnx_bytes(model, &options).unwrap()[..]).unwrap()
    }

    fn ops(graph: &GraphProto) -> Vec<&str> {
        graph.node.iter().map(|n| n.op_type.as_str()).collect()
    }

    #[test]
    fn layers_become_gemm_with_the_torch_layout_and_their_activations() {
        let m = model(
            &[
                Activation::Relu,
                Activation::LEAKY_RELU,
                Activation::Identity,
            ],
            Loss::CrossEntropy,
            false,
        );
        let decoded = decode(&m, OnnxOptions::default());
        assert_eq!(decoded.ir_version, IR_VERSION);
        assert_eq!(decoded.opset_import[0].version, OPSET);
        let graph = decoded.graph.unwrap();
        assert_eq!(ops(&graph), ["Gemm", "Relu", "Gemm", "LeakyRelu", "Gemm"]);
        assert_eq!(
            graph.node[0].input,
            ["input", "layers.0.weight", "layers.0.bias"]
        );
        assert_eq!(graph.node[0].attribute, [int("transB", 1)]);
        assert_eq!(graph.node[3].attribute[0].f, 0.01);
        assert_eq!(graph.output[0].name, "logits");
        assert_eq!(graph.node.last().unwrap().output, ["logits"]);
        let weight = &graph.initializer[0];
        assert_eq!(
            (weight.name.as_str(), &weight.dims[..]),
            ("layers.0.weight", &[4, 3][..])
        );
        let bytes: Vec<u8> = m.params[m.mlp.weight_range(0)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(weight.raw_data, bytes, "weights differ from the model's");
    }

    #[test]
    fn standardisation_comes_first_and_probabilities_last() {
        let m = model(
            &[Activation::Tanh, Activation::Identity],
            Loss::CrossEntropy,
            true,
        );
        let graph = decode(
            &m,
            OnnxOptions {
                probabilities: true,
                ..OnnxOptions::default()
            },
        )
        .graph
        .unwrap();
        assert_eq!(
            ops(&graph),
            ["Sub", "Div", "Gemm", "Tanh", "Gemm", "Softmax"]
        );
        assert_eq!(graph.node[0].input, ["input", "standardization.mean"]);
        assert_eq!(graph.output[0].name, "probabilities");
        let m = model(
            &[Activation::Sigmoid, Activation::Identity],
            Loss::BceWithLogits,
            false,
        );
        let graph = decode(
            &m,
            OnnxOptions {
                probabilities: true,
                ..OnnxOptions::default()
            },
        )
        .graph
        .unwrap();
        assert_eq!(ops(&graph), ["Gemm", "Sigmoid", "Gemm", "Sigmoid"]);
        let m = model(&[Activation::Identity], Loss::Mse, false);
        let graph = decode(
            &m,
            OnnxOptions {
                probabilities: true,
                ..OnnxOptions::default()
            },
        )
        .graph
        .unwrap();
        assert_eq!(ops(&graph), ["Gemm"], "MSE has no probabilities to add");
        assert_eq!(graph.output[0].name, "predictions");
    }

    #[test]
    fn both_classes_give_one_minus_p_and_p_for_a_single_bce_output() {
        let options = OnnxOptions {
            probabilities: true,
            both_classes: true,
        };
        let mlp = Mlp::with_activations(&[3, 1], &[Activation::Identity]).unwrap();
        let m = SavedModel {
            params: mlp.init(crate::model::Init::TorchDefault, 7),
            mlp,
            buffers: Vec::new(),
            num_batches_tracked: 0,
            loss: Loss::BceWithLogits,
            standardizer: None,
        };
        let graph = decode(&m, options).graph.unwrap();
        assert_eq!(ops(&graph), ["Gemm", "Sigmoid", "Sub", "Concat"]);
        assert_eq!(
            graph.node[2].input,
            ["probability.one", "probability.positive"]
        );
        let width = graph.output[0].r#type.as_ref().unwrap();
        let dims = &width
            .tensor_type
            .as_ref()
            .unwrap()
            .shape
            .as_ref()
            .unwrap()
            .dim;
        assert_eq!(dims[1].dim_value, Some(2), "two columns: [1 - p, p]");
        // Cross-entropy already has a column a class: unchanged.
        let m = model(&[Activation::Identity], Loss::CrossEntropy, false);
        assert_eq!(
            ops(&decode(&m, options).graph.unwrap()),
            ["Gemm", "Softmax"]
        );
    }

    #[test]
    fn gelu_is_decomposed_into_opset_17_operators() {
        let m = model(&[Activation::Gelu, Activation::GeluTanh], Loss::Mse, false);
        let graph = decode(&m, OnnxOptions::default()).graph.unwrap();
        assert_eq!(
            ops(&graph),
            [
                "Gemm", "Div", "Erf", "Add", "Mul", "Mul", "Gemm", "Mul", "Mul", "Mul", "Add",
                "Mul", "Tanh", "Add", "Mul", "Mul"
            ]
        );
        assert_eq!(graph.node.last().unwrap().output, ["predictions"]);
    }

    #[test]
    fn a_diverged_model_is_refused() {
        let mut m = model(&[Activation::Identity], Loss::Mse, false);
        m.params[2] = f32::NAN;
        let e = onnx_bytes(&m, &OnnxOptions::default()).unwrap_err();
        assert!(e.to_string().contains("parameter 2 is NaN"), "{e}");
    }
}
