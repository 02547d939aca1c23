"""Ctrl-C during fit stops at the next step boundary, keeps the steps
taken, writes the checkpoint, and raises KeyboardInterrupt; the GIL is
free while training."""

import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import retroprop
from conftest import DEVICES

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 32)).astype(np.float32)
    y = rng.integers(0, 4, 512)
    t = retroprop.Trainer([32, 256, 256, 4], "relu", "cross_entropy", epochs=100000,
                          batch_size=8, device=sys.argv[1])
    def started(record):
        if record["epoch"] == 1:
            print("EPOCH1", flush=True)
    try:
        t.fit(x, y, callback=started, checkpoint=sys.argv[2])
        print("NOT INTERRUPTED", flush=True)
    except KeyboardInterrupt:
        steps = t.steps
        model = t.model()
        print("INTERRUPTED", steps, len(model.state_dict()), flush=True)
    """
)


def interrupt(args, first_line, wait, timeout):
    """Runs ``python -c *args``, waits for its ``first_line``, then ``wait``
    seconds, sends SIGINT and returns its stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == first_line, f"{line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        time.sleep(wait)
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=timeout)
    finally:
        proc.kill()


@pytest.mark.parametrize("device", DEVICES)
def test_ctrl_c_stops_keeps_the_steps_and_raises_keyboard_interrupt(device, tmp_path):
    checkpoint = tmp_path / "run.safetensors"
    out, err = interrupt([SCRIPT, device, str(checkpoint)], "EPOCH1", 0.5, 120)
    assert "panicked" not in err, err
    words = out.split()
    assert words[:1] == ["INTERRUPTED"], f"stdout {out!r}, stderr {err!r}"
    steps = int(words[1])
    assert steps > 64, f"stopped after {steps} steps, before the first epoch's end"
    assert words[2] == "6", "the model kept its three layers"
    resumed = retroprop.Trainer([32, 256, 256, 4], "relu", "cross_entropy", epochs=100000, batch_size=8,
                                device="cpu", resume=checkpoint)
    assert resumed.steps == steps, f"the checkpoint holds step {resumed.steps}, the run stopped at {steps}"


def test_training_releases_the_gil():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 64)).astype(np.float32)
    y = rng.integers(0, 4, 2048)
    t = retroprop.Trainer([64, 256, 4], "relu", "cross_entropy", epochs=4, device="cpu")
    thread = threading.Thread(target=t.fit, args=(x, y))
    thread.start()
    counted = 0
    while thread.is_alive():
        counted += 1
    thread.join()
    assert counted > 10000, f"the main thread ran only {counted} loops while fit trained"


FAST_EPOCHS = textwrap.dedent(
    """
    import numpy as np
    import retroprop
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    # Epochs of one small step, far shorter than the 50 ms between the
    # waiting thread's timeouts, and no callback: Python code never runs.
    t = retroprop.Trainer([4, 8, 2], "relu", "cross_entropy", epochs=10_000_000, batch_size=16, device="cpu")
    print("START", flush=True)
    try:
        t.fit(x, y)
        print("NOT INTERRUPTED", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", t.steps, flush=True)
    """
)


def test_ctrl_c_stops_a_run_of_short_epochs_without_a_callback():
    # Ten million epochs take minutes; the interrupted run ends at once.
    out, err = interrupt([FAST_EPOCHS], "START", 1.0, 60)
    words = out.split()
    assert words[:1] == ["INTERRUPTED"], f"stdout {out!r}, stderr {err!r}"
    assert 0 < int(words[1]) < 10_000_000
