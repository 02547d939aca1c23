//! `retroprop export --onnx`: the graph it writes, decoded with the
//! library's own ONNX messages. (The numbers, in ONNX Runtime against
//! `retroprop predict`, are checked by the Python package's tests.)

mod support;

use prost::Message;
use retroprop::io::onnx::proto::ModelProto;
use support::{Dir, classes_csv, fails, ok};

fn trained_model(dir: &Dir) -> String {
    let data = classes_csv(dir);
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "2,8,3",
        "--activations",
        "gelu_tanh,identity",
        "--epochs",
        "2",
        "--standardize",
        "--device",
        "cpu",
        "--quiet",
        "--save",
        &dir.arg("model.safetensors"),
    ]);
    dir.arg("model.safetensors")
}

fn ops(model: &ModelProto) -> Vec<String> {
    let graph = model.graph.as_ref().expect("the file has a graph");
    graph.node.iter().map(|n| n.op_type.clone()).collect()
}

#[test]
fn export_writes_standardisation_layers_and_probabilities() {
    let dir = Dir::new("export-graph");
    let model = trained_model(&dir);
    let onnx = dir.arg("model.onnx");
    ok(&["export", "--model", &model, "--onnx", &onnx]);
    let logits = ModelProto::decode(&std::fs::read(&onnx).unwrap()[..]).unwrap();
    let expected = [
        "Sub", "Div", "Gemm", "Mul", "Mul", "Mul", "Add", "Mul", "Tanh", "Add", "Mul", "Mul",
        "Gemm",
    ];
    assert_eq!(ops(&logits), expected);
    let graph = logits.graph.as_ref().unwrap();
    assert_eq!(graph.output[0].name, "logits");
    let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    for name in ["standardization.mean", "layers.0.weight", "layers.1.bias"] {
        assert!(names.contains(&name), "no initializer {name} in {names:?}");
    }
    assert!(
        logits
            .metadata_props
            .iter()
            .any(|p| p.key == "retroprop.loss" && p.value == "cross_entropy"),
        "metadata: {:?}",
        logits.metadata_props
    );

    ok(&[
        "export",
        "--model",
        &model,
        "--onnx",
        &onnx,
        "--probabilities",
    ]);
    let probabilities = ModelProto::decode(&std::fs::read(&onnx).unwrap()[..]).unwrap();
    assert_eq!(ops(&probabilities).last().unwrap(), "Softmax");
    assert_eq!(probabilities.graph.unwrap().output[0].name, "probabilities");
}

#[test]
fn export_refuses_a_missing_model_and_a_bare_state_dict_names_what_is_missing() {
    let dir = Dir::new("export-refusals");
    fails(
        &[
            "export",
            "--model",
            &dir.arg("none.safetensors"),
            "--onnx",
            &dir.arg("x.onnx"),
        ],
        1,
        &["none.safetensors"],
    );
    let model = trained_model(&dir);
    fails(
        &[
            "export",
            "--model",
            &model,
            "--onnx",
            &dir.arg("no/such/folder/x.onnx"),
        ],
        1,
        &["--onnx", "no/such/folder"],
    );
}
