"""ONNX export: `Model.to_onnx` and `retroprop export --onnx` write the
same standard graph, which passes onnx.checker and which ONNX Runtime runs
to the outputs of `retroprop predict` on both devices."""

import numpy as np
import pytest

import retroprop
from conftest import DEVICES, need, read_predictions, run, write_csv

CASES = [
    ("relu", "cross_entropy", True),
    ("tanh,sigmoid,identity", "cross_entropy", False),
    ("leaky_relu:0.2", "bce_with_logits", True),
    ("gelu", "mse", False),
    ("gelu_tanh", "mse", True),
]


def _trained(activations, loss, standardize, x, y):
    # A list names every layer's activation (three layers); one name, the hidden layer's.
    sizes = [4, 12, 8, 3] if "," in activations else [4, 12, 3]
    targets = y
    if loss == "bce_with_logits":
        targets = np.eye(3, dtype=np.float32)[y]
    elif loss == "mse":
        targets = np.stack([x[:, 0] - x[:, 1], x[:, 2], x[:, 3] * 0.5], axis=1)
    t = retroprop.Trainer(sizes, activations, loss, lr=0.01, epochs=3, device="cpu", standardize=standardize)
    t.fit(x, targets)
    return t.model()


@pytest.mark.parametrize("activations,loss,standardize", CASES)
def test_onnx_runtime_matches_retroprop_predict_on_both_devices(activations, loss, standardize, blobs, tmp_path):
    onnx = need("onnx")
    ort = need("onnxruntime")
    x, y = blobs
    model = _trained(activations, loss, standardize, x, y)
    saved = tmp_path / "model.safetensors"
    model.save(saved)
    program_file = tmp_path / "program.onnx"
    run("export", "--model", saved, "--onnx", program_file, "--probabilities")
    python_file = tmp_path / "python.onnx"
    model.to_onnx(python_file, probabilities=True)
    assert program_file.read_bytes() == python_file.read_bytes(), "the program and Python wrote different graphs"
    onnx.checker.check_model(str(python_file), full_check=True)
    graph = onnx.load(str(python_file)).graph
    ops = [n.op_type for n in graph.node]
    assert (ops[:2] == ["Sub", "Div"]) == standardize and ops.count("Gemm") == len(model.sizes) - 1
    session = ort.InferenceSession(str(python_file), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    data = write_csv(tmp_path / "x.csv", x, y)
    for device in DEVICES:
        header, printed = read_predictions(run("predict", "--model", saved, "--data", data, "--device", device).stdout)
        expected = printed[:, [i for i, h in enumerate(header) if h.startswith(("p", "y"))]]
        tolerance = 1e-5 if device == "cpu" else 2e-4
        np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance,
                                   err_msg=f"ONNX Runtime against retroprop predict on {device}")


def test_logits_without_the_option_and_the_graphs_names(blobs):
    ort = need("onnxruntime")
    x, y = blobs
    model = _trained("relu", "cross_entropy", False, x, y)
    data = model.to_onnx()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (logits,) = session.run(None, {"input": x[:7]})
    np.testing.assert_allclose(logits, model.predict(x[:7]), rtol=1e-5, atol=1e-5)
