//! A TabM network ([`Mlp::tabm`](crate::Mlp::tabm)) as ONNX: each member
//! a branch of 2-D operators on the batch (its scalings `Mul`, its
//! products `Gemm` with the shared weight or its own, its bias `Add`),
//! its probabilities (`Softmax`, `Sigmoid`) or outputs, and their `Mean`:
//! the ensemble's prediction, as `predict` gives it. The shared weights
//! are one constant each, by the `tabm` package's names.

use super::{Builder, OnnxOptions, int, output_name};
use crate::io::SavedModel;
use crate::loss::Loss;
use crate::model::LayerForm;
use prost::Message;

/// The ONNX model of `model`, a TabM network: always probabilities (or
/// values), as the members' export.
pub(super) fn tabm_onnx(model: &SavedModel, options: &OnnxOptions) -> Vec<u8> {
    let mlp = &model.mlp;
    let spec = mlp.tabm_spec().expect("a TabM network");
    let mut b = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let x = b.standardization(model);
    let probabilities = OnnxOptions {
        probabilities: true,
        ..*options
    };
    let output = output_name(model.loss, &probabilities);
    let each: Vec<String> = (0..spec.k)
        .map(|m| {
            let last = b.member(model, m, x.clone());
            let out = format!("member.{m}.output");
            match model.loss {
                Loss::CrossEntropy => b.node("Softmax", &[&last], out, vec![int("axis", 1)]),
                Loss::BceWithLogits => b.node("Sigmoid", &[&last], out, vec![]),
                Loss::Mse | Loss::HalfMse => last,
            }
        })
        .collect();
    let inputs: Vec<&str> = each.iter().map(String::as_str).collect();
    let two_columns = probabilities.two_class_columns(model);
    if two_columns {
        let mean = b.node("Mean", &inputs, "members.mean".into(), vec![]);
        b.both_classes(&mean, output);
    } else {
        b.node("Mean", &inputs, output.into(), vec![]);
    }
    let width = if two_columns { 2 } else { mlp.outputs() };
    let graph = b.graph(output, mlp.inputs(), width);
    let mut proto = super::model_proto(model, &probabilities);
    proto.graph = Some(graph);
    proto.doc_string = format!(
        "TabM ({}): the mean of {} {} members trained with {} by retroprop",
        spec.arch,
        spec.k,
        super::super::join(&mlp.sizes()),
        model.loss
    );
    proto.encode_to_vec()
}

impl Builder {
    /// Member `m`'s forward pass on `x`; returns its output layer's.
    fn member(&mut self, model: &SavedModel, m: usize, mut x: String) -> String {
        let (mlp, params) = (&model.mlp, &model.params);
        let k = mlp.members();
        let names = Names::of(mlp);
        let own = |range: std::ops::Range<usize>| {
            let width = range.len() / k;
            params[range.start + m * width..range.start + (m + 1) * width].to_vec()
        };
        if let Some(affine) = mlp.affine_range() {
            let scale = self.constant(
                format!("{}.{m}", names.affine),
                &[mlp.inputs()],
                &own(affine),
            );
            x = self.node("Mul", &[&x, &scale], format!("member.{m}.affine"), vec![]);
        }
        for (l, layer) in mlp.layers().iter().enumerate() {
            let prefix = &names.layers[l];
            let at = format!("member.{m}.{prefix}");
            let (inputs, outputs) = (layer.inputs, layer.outputs);
            let z = match mlp.layer_form(l) {
                LayerForm::Shared => {
                    let weight = self.shared(
                        format!("{prefix}.weight"),
                        &[outputs, inputs],
                        &params[mlp.weight_range(l)],
                    );
                    let bias = self.shared(
                        format!("{prefix}.bias"),
                        &[outputs],
                        &params[mlp.bias_range(l)],
                    );
                    self.node(
                        "Gemm",
                        &[&x, &weight, &bias],
                        format!("{at}.linear"),
                        vec![int("transB", 1)],
                    )
                }
                LayerForm::BatchEnsemble => {
                    let (r, s) = mlp.scaling_ranges(l);
                    let weight = self.shared(
                        format!("{prefix}.weight"),
                        &[outputs, inputs],
                        &params[mlp.weight_range(l)],
                    );
                    let r = self.constant(format!("{prefix}.r.{m}"), &[inputs], &own(r));
                    let s = self.constant(format!("{prefix}.s.{m}"), &[outputs], &own(s));
                    let bias = self.constant(
                        format!("{prefix}.bias.{m}"),
                        &[outputs],
                        &own(mlp.bias_range(l)),
                    );
                    let scaled = self.node("Mul", &[&x, &r], format!("{at}.scaled"), vec![]);
                    let product = self.node(
                        "Gemm",
                        &[&scaled, &weight],
                        format!("{at}.product"),
                        vec![int("transB", 1)],
                    );
                    let rescaled =
                        self.node("Mul", &[&product, &s], format!("{at}.rescaled"), vec![]);
                    self.node("Add", &[&rescaled, &bias], format!("{at}.linear"), vec![])
                }
                LayerForm::PerMember => {
                    let weight = self.constant(
                        format!("{prefix}.weight.{m}"),
                        &[inputs, outputs],
                        &own(mlp.weight_range(l)),
                    );
                    let bias = self.constant(
                        format!("{prefix}.bias.{m}"),
                        &[outputs],
                        &own(mlp.bias_range(l)),
                    );
                    self.node(
                        "Gemm",
                        &[&x, &weight, &bias],
                        format!("{at}.linear"),
                        vec![],
                    )
                }
            };
            x = self.activation(layer.activation, z, &at);
        }
        x
    }

    /// A constant every member reads, added once.
    fn shared(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        if self.initializers.iter().any(|t| t.name == name) {
            return name;
        }
        self.constant(name, dims, values)
    }
}

/// The package's module names: each layer's and the scaling's.
struct Names {
    layers: Vec<String>,
    affine: &'static str,
}

impl Names {
    fn of(mlp: &crate::model::Mlp) -> Names {
        let last = mlp.layers().len() - 1;
        Names {
            layers: (0..=last)
                .map(|l| {
                    if l == last {
                        "output".to_string()
                    } else {
                        format!("backbone.blocks.{l}.0")
                    }
                })
                .collect(),
            affine: "backbone.affine.weight",
        }
    }
}
