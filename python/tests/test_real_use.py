"""What users do with a trainer besides calling fit: a callback that asks
the trainer things, a process forked after a trainer existed, arrays
that are views of one another, ONNX in place of predict_proba. Each
use that could hang runs in a child process with a timeout, so that a
hang fails the test instead of the suite."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import retroprop
from conftest import DEVICES, need


def run_script(script, *args, timeout=180):
    """Runs ``script`` in a fresh Python; fails on a hang, an error or a
    panic; returns its stdout."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the script hung (no end after {timeout} s); its output so far:\n{e.stdout}\n{e.stderr}")
    assert done.returncode == 0, f"the script failed:\n{done.stdout}\n{done.stderr}"
    assert "panicked" not in done.stderr, done.stderr
    return done.stdout


CALLBACK_CALLS = """
    import sys, numpy as np, retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 3, 300)
    t = retroprop.Trainer([6, 16, 3], "relu", "cross_entropy", epochs=4, batch_size=32,
                          device=sys.argv[1], standardize=True)
    seen = []
    def callback(record):
        steps = t.steps
        model = t.model()
        t.save_checkpoint(sys.argv[2] + f"/epoch{record['epoch']}.safetensors")
        model.save(sys.argv[2] + "/model.safetensors")
        out = t.predict(x[:5])
        loss, accuracy = t.evaluate(x, y)
        try:
            t.fit(x, y)
            nested = "fit ran"
        except RuntimeError as e:
            nested = "refused" if "callback" in str(e) else str(e)
        seen.append((record["epoch"], steps, record["step"], len(model.state_dict()), out.shape,
                     accuracy is not None, nested, t.device, t.loss))
        if record["epoch"] == 3:
            t.stop()
    history = t.fit(x, y, validation=(x[:50], y[:50]), callback=callback)
    for line in seen:
        print(*line)
    print("EPOCHS", len(history["epochs"]), "STEPS", t.steps)
"""


@pytest.mark.parametrize("device", DEVICES)
def test_a_callback_may_call_every_trainer_method(device, tmp_path):
    out = run_script(CALLBACK_CALLS, device, tmp_path).splitlines()
    assert out[-1] == "EPOCHS 3 STEPS 30", out
    for epoch, line in enumerate(out[:-1], start=1):
        words = line.split()
        assert words[0] == str(epoch)
        assert words[1] == words[2] == str(10 * epoch), f"steps inside the callback: {line}"
        assert words[3] == "4" and words[4:6] == ["(5,", "3)"] and words[6] == "True", line
        assert words[7] == "refused", f"a fit from the callback: {line}"
    assert (tmp_path / "epoch3.safetensors").exists() and (tmp_path / "model.safetensors").exists()


def test_a_checkpoint_saved_from_the_callback_resumes_to_the_same_run(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 2, 200)
    settings = dict(sizes=[5, 12, 2], activations="tanh", loss="cross_entropy", batch_size=16,
                    device="cpu", lr_schedule="plateau:0.5:0", early_stopping=3, dropout=0.1)
    whole = retroprop.Trainer(**settings, epochs=6)
    whole.fit(x, y, validation=(x[:40], y[:40]))

    cut = retroprop.Trainer(**settings, epochs=6)

    def save_at_3(record):
        if record["epoch"] == 3:
            cut.save_checkpoint(tmp_path / "at3.safetensors")
            cut.stop()

    cut.fit(x, y, validation=(x[:40], y[:40]), callback=save_at_3)
    resumed = retroprop.Trainer(**settings, epochs=6, resume=tmp_path / "at3.safetensors")
    resumed.fit(x, y, validation=(x[:40], y[:40]))
    for name, value in whole.model().state_dict().items():
        np.testing.assert_array_equal(resumed.model().state_dict()[name], value, err_msg=name)


CTRL_C_IN_CALLBACK = """
    import sys, time, numpy as np, retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = rng.integers(0, 2, 256)
    t = retroprop.Trainer([8, 32, 2], "relu", "cross_entropy", epochs=100000, batch_size=16, device="cpu")
    def callback(record):
        if record["epoch"] == 1:
            print("IN CALLBACK", flush=True)
        while True:
            t.save_checkpoint(sys.argv[1])
            t.steps
            time.sleep(0.01)
    try:
        t.fit(x, y, callback=callback)
    except KeyboardInterrupt:
        print("INTERRUPTED", t.steps, flush=True)
"""


def test_ctrl_c_during_a_callback_that_calls_the_trainer_ends_the_fit(tmp_path):
    checkpoint = tmp_path / "c.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CTRL_C_IN_CALLBACK), str(checkpoint)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "IN CALLBACK"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C during a callback that calls the trainer did not end the fit")
    finally:
        proc.kill()
    assert out.split()[:2] == ["INTERRUPTED", "16"], f"{out!r} {err!r}"
    resumed = retroprop.Trainer([8, 32, 2], "relu", "cross_entropy", epochs=100000, batch_size=16,
                                device="cpu", resume=checkpoint)
    assert resumed.steps == 16


FORKED = """
    import multiprocessing, sys, numpy as np, retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    def trainer():
        # Wide enough that a step shares its products among threads.
        return retroprop.Trainer([64, 256, 256, 10], "relu", "cross_entropy", epochs=1,
                                 batch_size=200, device="cpu")
    parent = trainer()
    parent.fit(x, y)
    def child(queue):
        fresh = trainer()
        fresh.fit(x, y)
        parent.fit(x, y)
        queue.put((fresh.steps, parent.steps, fresh.predict(x[:3]).shape))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=child, args=(queue,))
    process.start()
    print(*queue.get(timeout=120))
    process.join(timeout=120)
    print("EXIT", process.exitcode)
"""


def test_a_forked_child_trains_after_its_parent_trained():
    out = run_script(FORKED).split()
    assert out == ["10", "20", "(3,", "10)", "EXIT", "0"], out


JOBLIB = """
    import numpy as np
    from joblib import parallel_backend
    from sklearn.model_selection import GridSearchCV
    import retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 64)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    # The parent trains first: its pool's threads exist when joblib forks.
    retroprop.MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=2, device="cpu").fit(x, y)
    with parallel_backend("multiprocessing", n_jobs=2):
        search = GridSearchCV(
            retroprop.MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=3, device="cpu"),
            {"alpha": [1e-4, 1e-2]}, cv=2).fit(x, y)
    print("SCORE", round(search.best_score_, 3) > 0.5)
"""


def test_grid_search_under_joblibs_multiprocessing_backend_trains():
    assert run_script(JOBLIB).split()[-2:] == ["SCORE", "True"]


def test_a_gpu_trainer_made_before_a_fork_is_refused_in_the_child_by_name():
    out = run_script("""
        import multiprocessing, numpy as np, retroprop
        x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        y = np.arange(64) % 2
        t = retroprop.Trainer([4, 8, 2], "relu", "cross_entropy", epochs=1, device="gpu")
        t.fit(x, y)
        def child(queue):
            try:
                t.fit(x, y)
                queue.put("TRAINED")
            except RuntimeError as e:
                queue.put("REFUSED" if "fork" in str(e) else str(e))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        process = context.Process(target=child, args=(queue,))
        process.start()
        print(queue.get(timeout=120))
        process.join(timeout=60)
    """)
    assert out.split() == ["REFUSED"], out


def _fit(trainer, x, y, xv, yv, callback=None):
    trainer.fit(x, y, validation=(xv, yv), callback=callback)


def _views(base, order):
    """``(x, x_val)`` cut from ``base`` as ``order`` says."""
    if order == "train-then-val":
        return base[:800], base[800:]
    if order == "val-then-train":
        return base[200:], base[:200]
    if order == "train-is-the-base":
        return base, base[800:]
    if order == "val-is-the-base":
        return base[:800], base
    middle = base[100:900]
    return middle[:600], middle[600:]


@pytest.mark.parametrize(
    "order", ["train-then-val", "val-then-train", "train-is-the-base", "val-is-the-base", "view-of-a-view"]
)
def test_views_of_one_array_are_writeable_after_fit(order):
    base = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    labels = np.arange(1000) % 2
    x, xv = _views(base, order)
    t = retroprop.Trainer([4, 8, 2], "relu", "cross_entropy", epochs=1, device="cpu")
    _fit(t, x, labels[: len(x)], xv, labels[: len(xv)])
    for name, array in [("base", base), ("x", x), ("x_val", xv)]:
        assert array.flags.writeable, f"{name} is still read-only after fit ({order})"
    x[0, 0] = 1.0
    xv[0, 0] = 1.0


def test_views_stay_read_only_while_another_fit_reads_their_base_and_come_back_after():
    base = np.random.default_rng(1).normal(size=(4000, 16)).astype(np.float32)
    labels = np.arange(4000) % 3
    views = [base[:2000], base[2000:], base[1000:3000]]
    trainers = [retroprop.Trainer([16, 64, 3], "relu", "cross_entropy", epochs=5, device="cpu")
                for _ in views]
    inside, release = threading.Event(), threading.Event()

    def hold(record):
        inside.set()
        assert release.wait(60)

    threads = [threading.Thread(target=_fit, args=(t, v, labels[:2000], v[:100], labels[:100],
                                                   hold if i == 0 else None))
               for i, (t, v) in enumerate(zip(trainers, views))]
    for thread in threads:
        thread.start()
    assert inside.wait(60)
    with pytest.raises(ValueError):
        base[0, 0] = 2.0
    for thread in threads[1:]:
        thread.join()
    with pytest.raises(ValueError):
        views[1][0, 0] = 2.0  # its base is still read by the first fit
    release.set()
    threads[0].join()
    for name, array in [("base", base), *((f"view {i}", v) for i, v in enumerate(views))]:
        assert array.flags.writeable, f"{name} is still read-only after the concurrent fits"


def test_a_view_of_a_read_only_array_stays_read_only():
    base = np.random.default_rng(2).normal(size=(100, 4)).astype(np.float32)
    base.flags.writeable = False
    x = base[:80]
    t = retroprop.Trainer([4, 8, 2], "relu", "cross_entropy", epochs=1, device="cpu")
    t.fit(x, np.arange(80) % 2, validation=(base[80:], np.arange(20) % 2))
    assert not base.flags.writeable and not x.flags.writeable


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_a_classifiers_onnx_output_is_its_predict_proba(classes):
    ort = need("onnxruntime")
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=classes,
                               random_state=0)
    clf = retroprop.MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, device="cpu",
                                  random_state=0).fit(x, y)
    session = ort.InferenceSession(clf.to_onnx(), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"input": x.astype(np.float32)})
    proba = clf.predict_proba(x)
    assert onnx_out.shape == proba.shape == (300, classes)
    np.testing.assert_allclose(onnx_out, proba, rtol=1e-5, atol=1e-6)
    logits = ort.InferenceSession(clf.to_onnx(probabilities=False),
                                  providers=["CPUExecutionProvider"]).run(None, {"input": x.astype(np.float32)})[0]
    assert logits.shape == (300, 1 if classes == 2 else classes)
