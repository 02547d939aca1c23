"""Residual networks' files in torch and ONNX Runtime: a network trained
by `retroprop train --blocks` and saved loads with `strict=True` into the
torch module README.md defines (its block "Residual networks in torch",
run here as written), and in `eval()` mode predicts what `retroprop
predict`, `retroprop.load(...).predict` and ONNX Runtime on `retroprop
export --onnx` give, for BatchNorm (by its running statistics),
LayerNorm and no norm."""

import os
import re
from pathlib import Path

import numpy as np
import pytest

import retroprop
from conftest import need, read_predictions, run, write_csv

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_module():
    """The README's torch block that defines `ResNet`: its text."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (block,) = [b for b in blocks if "class ResNet" in b]
    return block


def test_the_readme_block_loads_the_program_s_file_strictly(tmp_path):
    need("torch")
    need("safetensors")
    block = readme_module()
    command = re.search(r"# retroprop (train .*)\n", block).group(1).split()
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        run(*command, "--epochs", "1", "--device", "cpu")
        namespace = {}
        exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    model = namespace["model"]
    assert not model.training
    assert model.blocks[0].normalization.num_batches_tracked.item() > 0


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_torch_onnx_runtime_and_retroprop_predict_alike(norm, device, blobs, tmp_path):
    torch = need("torch")
    safetensors_torch = need("safetensors.torch")
    ort = need("onnxruntime")
    onnx = need("onnx")
    x, y = blobs
    data = write_csv(tmp_path / "blobs.csv", x, y)
    saved = tmp_path / "resnet.safetensors"
    run("train", "--data", data, "--arch", "4,8,3", "--blocks", "2", "--norm", norm,
        "--batch-size", "16", "--epochs", "4", "--device", device, "--save", saved)

    namespace = {}
    exec(compile(readme_module().split("\nmodel = ")[0], "README.md", "exec"), namespace)
    module = namespace["ResNet"](4, 8, 16, 2, 3, norm=norm)
    state = safetensors_torch.load_file(str(saved))
    module.load_state_dict(state, strict=True)
    if norm == "batch":
        tracked = state["blocks.0.normalization.num_batches_tracked"]
        assert tracked.dtype == torch.int64 and tracked.item() == 4 * 15, "num_batches_tracked: the steps"
    module.eval()
    with torch.no_grad():
        torch_probabilities = torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()

    header, printed = read_predictions(run("predict", "--model", saved, "--data", data, "--device", device).stdout)
    program = printed[:, [i for i, h in enumerate(header) if h.startswith("p")]]
    python = retroprop.load(saved).predict(x, probabilities=True, device=device)
    onnx_file = tmp_path / "resnet.onnx"
    run("export", "--model", saved, "--onnx", onnx_file, "--probabilities")
    onnx.checker.check_model(str(onnx_file), full_check=True)
    ops = {n.op_type for n in onnx.load(str(onnx_file)).graph.node}
    expected_norm = {"batch": "BatchNormalization", "layer": "LayerNormalization"}.get(norm)
    assert "Add" in ops and (expected_norm in ops if expected_norm else not ops & {"BatchNormalization", "LayerNormalization"})
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (runtime,) = session.run(None, {"input": x})

    for name, got in [("retroprop predict", program), ("retroprop.load().predict", python),
                      ("ONNX Runtime", runtime)]:
        np.testing.assert_allclose(got, torch_probabilities, rtol=1e-5, atol=1e-5,
                                   err_msg=f"--norm {norm} on {device}: {name} against torch's eval()")


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_an_estimator_s_state_dict_loads_into_torch_and_predicts_alike(norm, blobs):
    torch = need("torch")
    from retroprop.sklearn import MLPClassifier

    x, y = blobs
    clf = MLPClassifier(hidden_layer_sizes=(8,), blocks=2, norm=norm, max_iter=5, batch_size=16,
                        random_state=0, device="cpu").fit(x, y)
    state = clf.model_.state_dict()
    assert "blocks.1.linear_second.weight" in state
    if norm == "batch":
        tracked = state["blocks.0.normalization.num_batches_tracked"]
        assert tracked.dtype == np.int64 and tracked.shape == () and int(tracked) == 15 * clf.n_iter_
    namespace = {}
    exec(compile(readme_module().split("\nmodel = ")[0], "README.md", "exec"), namespace)
    module = namespace["ResNet"](x.shape[1], 8, 16, 2, len(np.unique(y)), norm=norm)
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=True)
    module.eval()
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(x)), dim=1).numpy()
    np.testing.assert_allclose(clf.predict_proba(x), expected, rtol=1e-5, atol=1e-5)
