"""Trainer(members=k): every member ends where its lone Trainer ends, bit
for bit, with a list for any per-member option; its files load into
torch and ONNX Runtime as the members' networks and their ensemble; a
run checkpointed and resumed is the run never cut; a callback may call
the run (stop_member among it); Ctrl-C stops every member."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import retroprop
from conftest import DEVICES, need


def rows_of(count, seed):
    return np.sort(np.random.default_rng(seed).choice(240, size=count, replace=False))


def bits(v):
    return np.asarray(v, np.float32).view(np.uint32)


PER_MEMBER = dict(
    lr=[0.01, 0.003, 0.03],
    betas=[(0.9, 0.999), (0.8, 0.99), (0.9, 0.9)],
    eps=[1e-8, 1e-6, 1e-7],
    weight_decay=[0.0, 1e-3, 1e-2],
    seed=[1, 2, 3],
    dropout=[None, 0.2, 0.1],
    lr_schedule=["constant", "step:2:0.5", "cosine:6"],
)


def lone(m, x, y, validation, rows, validation_rows, **shared):
    own = {k: v[m] for k, v in PER_MEMBER.items() if v[m] is not None}
    t = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", **shared, **own)
    r = slice(None) if rows[m] is None else rows[m]
    v = None
    if validation is not None:
        vr = slice(None) if validation_rows[m] is None else validation_rows[m]
        v = (validation[0][vr], validation[1][vr])
    t.fit(x[r], y[r], validation=v)
    return t


@pytest.mark.parametrize("device", DEVICES)
def test_each_member_is_its_lone_trainer_with_every_per_member_option(device, blobs):
    x, y = blobs
    rows = [None, rows_of(150, 1), rows_of(77, 2)]
    shared = dict(batch_size=16, epochs=6, device=device)
    t = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", members=3, rows=rows, **PER_MEMBER, **shared)
    history = t.fit(x, y)
    assert history.states == ["training"] * 3 and len(history) == 3
    assert [len(h["epochs"]) for h in history] == [6, 6, 6]
    together = t.model().state_dict()
    tolerance = 0 if device == "cpu" else 1e-5
    for m in range(3):
        alone = lone(m, x, y, None, rows, None, **shared)
        assert t.steps[m] == alone.steps, f"member {m}'s steps"
        for name, value in alone.model().state_dict().items():
            mine = together[f"members.{m}.{name}"]
            if tolerance == 0:
                np.testing.assert_array_equal(bits(mine), bits(value), err_msg=f"{device}: member {m} {name}")
            else:
                np.testing.assert_allclose(mine, value, rtol=tolerance, atol=tolerance, err_msg=f"member {m} {name}")


def test_members_stop_early_on_their_own_validation_rows(blobs):
    x, y = blobs
    # Half the validation labels wrong: a member evaluated on the other
    # half stops at another epoch than one evaluated on all of them.
    xv, yv = x[:90], y[:90].copy()
    yv[:45] = (yv[:45] + 1) % 3
    rows = [None, rows_of(200, 3), None]
    validation_rows = [None, np.arange(45, 90), np.arange(0, 90, 2)]
    shared = dict(batch_size=16, epochs=40, early_stopping=2, lr_schedule="plateau:0.5:0", device="cpu")
    per = dict(lr=[0.3, 0.01, 0.05], seed=[1, 2, 3])
    t = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", members=3, rows=rows,
                          validation_rows=validation_rows, **per, **shared)
    history = t.fit(x, y, validation=(xv, yv))
    epochs = [len(h["epochs"]) for h in history]
    assert any(h["stopped_early"] for h in history) and len(set(epochs)) > 1, f"members stop apart: {epochs}"
    together = t.model().state_dict()
    for m in range(3):
        alone = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", lr=per["lr"][m], seed=per["seed"][m], **shared)
        r = slice(None) if rows[m] is None else rows[m]
        vr = slice(None) if validation_rows[m] is None else validation_rows[m]
        lone_history = alone.fit(x[r], y[r], validation=(xv[vr], yv[vr]))
        assert len(lone_history["epochs"]) == epochs[m], f"member {m}'s epochs"
        assert lone_history["best_epoch"] == history[m]["best_epoch"], f"member {m}'s best epoch"
        assert lone_history["stopped_early"] == history[m]["stopped_early"], f"member {m} stopped early"
        for name, value in alone.model().state_dict().items():
            np.testing.assert_array_equal(bits(together[f"members.{m}.{name}"]), bits(value), err_msg=f"{m} {name}")
    on_all = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", lr=0.01, seed=2, **shared)
    assert len(on_all.fit(x[rows[1]], y[rows[1]], validation=(xv, yv))["epochs"]) != epochs[1], (
        "the test wants validation rows that change where member 1 stops"
    )


def test_torch_loads_the_members_file_as_a_module_list(blobs, tmp_path):
    torch = need("torch")
    x, y = blobs
    t = retroprop.Trainer([4, 16, 3], "tanh", "cross_entropy", epochs=2, device="cpu", members=3, seed=[0, 1, 2])
    t.fit(x, y)
    model = t.model()
    path = tmp_path / "members.safetensors"
    model.save(path)
    loaded = retroprop.load(path)
    assert isinstance(loaded, retroprop.MembersModel) and len(loaded) == 3
    assert loaded.settings == ["seed=0", "seed=1", "seed=2"]

    class Mlp(torch.nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

        def forward(self, v):
            for i, layer in enumerate(self.layers):
                v = layer(v)
                if i < len(self.layers) - 1:
                    v = torch.tanh(v)
            return v

    class Members(torch.nn.Module):
        def __init__(self, sizes, k):
            super().__init__()
            self.members = torch.nn.ModuleList(Mlp(sizes) for _ in range(k))

    from safetensors.torch import load_file

    net = Members(model.sizes, 3)
    net.load_state_dict(load_file(str(path)), strict=True)
    state = loaded.state_dict()
    assert sorted(state) == sorted(net.state_dict()), "the names of a ModuleList of the members' networks"
    with torch.no_grad():
        for m in range(3):
            out = net.members[m](torch.from_numpy(x[:10])).numpy()
            np.testing.assert_allclose(out, t.predict(x[:10], member=m), rtol=1e-4, atol=1e-5, err_msg=f"member {m}")
            np.testing.assert_array_equal(loaded.member(m).predict(x[:10]), t.predict(x[:10], member=m))


@pytest.mark.parametrize("loss", ["cross_entropy", "bce_with_logits", "mse"])
def test_onnx_runtime_runs_the_ensemble_to_predict(loss, blobs, tmp_path):
    onnx = need("onnx")
    ort = need("onnxruntime")
    x, y = blobs
    targets = {"cross_entropy": y, "bce_with_logits": (y == 1).astype(np.float32), "mse": x[:, :2] * 0.5}[loss]
    outputs = {"cross_entropy": 3, "bce_with_logits": 1, "mse": 2}[loss]
    t = retroprop.Trainer([4, 12, outputs], "relu", loss, epochs=3, device="cpu", members=4, lr=[0.01, 0.003, 0.02, 0.005],
                          standardize=True)
    t.fit(x, targets)
    model = t.model()
    path = tmp_path / "ensemble.onnx"
    model.to_onnx(path, both_classes=(loss == "bce_with_logits"))
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": x})
    expected = model.predict(x)
    if loss == "bce_with_logits":
        expected = np.hstack([1 - expected, expected])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(expected if loss != "bce_with_logits" else expected[:, 1:], t.predict(x))
    (one,) = ort.InferenceSession(model.to_onnx(member=2), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(one, t.predict(x, member=2), rtol=1e-5, atol=1e-5)


def test_a_members_checkpoint_resumes_to_the_run_never_cut(blobs, tmp_path):
    x, y = blobs
    settings = dict(members=3, lr=[0.01, 0.003, 0.03], seed=[4, 5, 6], rows=[None, rows_of(100, 4), None],
                    batch_size=16, device="cpu")
    whole = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=6, **settings)
    whole.fit(x, y)
    path = tmp_path / "run.safetensors"
    cut = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=6, **settings)

    def stop_at_3(m, record):
        if m == 2 and record["epoch"] == 3:
            cut.stop()

    history = cut.fit(x, y, callback=stop_at_3, checkpoint=path)
    assert history.interrupted
    # The member settings left out are each member's checkpoint's.
    resumed = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=6, members=3,
                                rows=settings["rows"], resume=path)
    assert resumed.resume_changes == []
    resumed.fit(x, y)
    for name, value in whole.model().state_dict().items():
        np.testing.assert_array_equal(bits(resumed.model().state_dict()[name]), bits(value), err_msg=name)
    with pytest.raises(ValueError, match="member 1's rows"):
        retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=6, members=3, resume=path)


def test_a_callback_may_call_the_run_and_stop_one_member(blobs, tmp_path):
    x, y = blobs
    t = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=5, batch_size=32, device="cpu", members=3,
                          seed=[0, 1, 2])
    seen = []

    def callback(m, record):
        steps = t.steps
        predicted = t.predict(x[:2], member=m)
        model = t.model()
        t.save_checkpoint(tmp_path / f"{m}.safetensors")
        try:
            t.fit(x, y)
            nested = "ran"
        except RuntimeError as e:
            nested = "refused" if "callback" in str(e) else str(e)
        seen.append((m, record["epoch"], steps[m], predicted.shape, len(model), nested))
        if m == 1 and record["epoch"] == 2:
            t.stop_member(1)

    history = t.fit(x, y, callback=callback)
    assert history.states == ["training", "stopped", "training"]
    assert [len(h["epochs"]) for h in history] == [5, 2, 5]
    assert all(s[2] == 8 * s[1] and s[3] == (2, 3) and s[4] == 3 and s[5] == "refused" for s in seen), seen
    two = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", epochs=2, batch_size=32, device="cpu", seed=1)
    two.fit(x, y)
    for name, value in two.model().state_dict().items():
        np.testing.assert_array_equal(bits(t.model().state_dict()[f"members.1.{name}"]), bits(value), err_msg=name)
    with pytest.raises(ValueError, match="member 5"):
        t.stop_member(5)


def test_member_lists_are_checked_by_name():
    with pytest.raises(ValueError, match="lr: give a list of 3 values"):
        retroprop.Trainer([4, 8, 3], lr=[0.1, 0.2], members=3)
    with pytest.raises(ValueError, match="seed: a value a member needs members=k"):
        retroprop.Trainer([4, 8, 3], seed=[1, 2])
    with pytest.raises(ValueError, match="member 1.*amsgrad|amsgrad"):
        retroprop.Trainer([4, 8, 3], members=2, momentum=[0.0, 0.9], optimizer="sgd")
    with pytest.raises(ValueError, match="rows"):
        retroprop.Trainer([4, 8, 3], members=2, rows=[[0, 1], [-1, 2]])


def test_a_members_refused_setting_or_data_names_the_member(blobs):
    """What one member cannot take is refused naming that member; the
    others' settings are not blamed."""
    x, y = blobs
    shape = ([4, 8, 3], "tanh", "cross_entropy")
    for given, said in [
        (dict(lr=[0.1, -1.0]), "member 1: invalid hyperparameter lr = -1"),
        (dict(eps=[1e-8, 1e-8, -1.0]), "member 2: invalid hyperparameter eps"),
        (dict(dropout=[1.5, 0.1]), "member 0: invalid hyperparameter dropout = 1.5"),
        (dict(lr_schedule=["constant", "bogus"]), "member 1: unknown lr schedule `bogus`"),
    ]:
        count = len(next(iter(given.values())))
        with pytest.raises(ValueError, match=said):
            retroprop.Trainer(*shape, members=count, device="cpu", **given)
    for given, said in [
        (dict(rows=[None, np.array([0, 1, 999])]), "member 1: .*row 999, but the training data has 240 rows"),
        (dict(weights=[None, np.ones(10)]), "member 1: "),
        (dict(validation_rows=[None, np.arange(5)]), "member 1: validation rows are given, but the fit has no "
                                                     "validation data"),
    ]:
        t = retroprop.Trainer(*shape, members=2, device="cpu", **given)
        with pytest.raises(ValueError, match=said):
            t.fit(x, y)
        assert t.steps == [0, 0], "refused before a step"
    with pytest.raises(ValueError, match="weights\\[1\\]: member 1's weights"):
        retroprop.Trainer(*shape, members=2, weights=[None, np.ones((2, 3))])


def test_each_member_with_weights_is_its_lone_weighted_fit(blobs):
    """``weights``: each member's own sample_weight (its rows' weights when
    it has rows), bit for bit its lone weighted fit on the CPU."""
    x, y = blobs
    rng = np.random.default_rng(5)
    weights = [rng.integers(0, 4, 240).astype(np.float32), None, rng.uniform(0.1, 2.0, 240)]
    rows = [None, None, rows_of(160, 4)]
    shared = dict(batch_size=16, epochs=4, device="cpu")
    t = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", members=3, rows=rows, weights=weights,
                          seed=[1, 2, 3], **shared)
    t.fit(x, y)
    together = t.model().state_dict()
    for m in range(3):
        r = slice(None) if rows[m] is None else rows[m]
        w = None if weights[m] is None else np.asarray(weights[m], np.float32)[r]
        alone = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", seed=m + 1, **shared)
        alone.fit(x[r], y[r], sample_weight=w)
        for name, value in alone.model().state_dict().items():
            np.testing.assert_array_equal(bits(together[f"members.{m}.{name}"]), bits(value), err_msg=f"{m} {name}")
    unweighted = retroprop.Trainer([4, 12, 3], "tanh", "cross_entropy", seed=1, **shared)
    unweighted.fit(x, y)
    assert not np.array_equal(unweighted.model().state_dict()["layers.0.weight"], together["members.0.layers.0.weight"]), (
        "the test wants weights that change member 0"
    )


SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 32)).astype(np.float32)
    y = rng.integers(0, 4, 512)
    t = retroprop.Trainer([32, 128, 4], "relu", "cross_entropy", epochs=100000, batch_size=8, device=sys.argv[1],
                          members=3, lr=[0.001, 0.002, 0.003])
    def started(m, record):
        if record["epoch"] == 1 and m == 2:
            print("EPOCH1", flush=True)
    try:
        t.fit(x, y, callback=started, checkpoint=sys.argv[2])
        print("NOT INTERRUPTED", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", *t.steps, len(t.model()), flush=True)
    """
)


@pytest.mark.parametrize("device", DEVICES)
def test_ctrl_c_stops_every_member_and_writes_the_checkpoint(device, tmp_path):
    checkpoint = tmp_path / "run.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, device, str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "EPOCH1", f"{line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    words = out.split()
    assert words[0] == "INTERRUPTED", f"{out}\n{err}"
    steps = [int(w) for w in words[1:4]]
    assert all(s >= 64 for s in steps) and words[4] == "3", out
    resumed = retroprop.Trainer([32, 128, 4], "relu", "cross_entropy", epochs=100000, batch_size=8, device=device,
                                members=3, resume=checkpoint)
    assert resumed.steps == steps, "the checkpoint holds the steps taken"
