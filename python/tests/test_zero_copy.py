"""Inputs go into training without a copy: a float32 C-contiguous array is
read where it is, read-only while it is read, and left as it was found
however the call ends."""

import numpy as np
import pytest

import retroprop
from retroprop.sklearn import MLPClassifier
from conftest import need


def address(a):
    return a.__array_interface__["data"][0]


def trainer(**options):
    return retroprop.Trainer([4, 8, 3], "relu", "cross_entropy", epochs=2, device="cpu", **options)


def test_fit_reads_a_float32_c_contiguous_array_where_it_is(blobs):
    x, y = blobs
    t = trainer()
    t.fit(x, y)
    assert t._native.last_fit_rows() == address(x), "fit copied a float32 C-contiguous array"
    # The check can fail: converted inputs are read elsewhere.
    t.fit(x.astype(np.float64), y)
    assert t._native.last_fit_rows() != address(x)
    # A view is read in place too, at its own first row.
    view = x[40:]
    t.fit(view, y[40:])
    assert t._native.last_fit_rows() == address(view) == address(x) + 40 * 4 * 4
    # standardize trains on a scaled copy, never on the caller's values.
    before = x.copy()
    s = trainer(standardize=True)
    s.fit(x, y)
    assert s._native.last_fit_rows() != address(x)
    np.testing.assert_array_equal(x, before)


def test_a_pandas_frame_over_float32_rows_is_not_copied(blobs):
    pandas = need("pandas")
    x, y = blobs
    frame = pandas.DataFrame(x, columns=list("abcd"), copy=False)
    rows = np.asarray(frame)
    assert rows.dtype == np.float32 and rows.flags.c_contiguous, "the frame does not yield float32 C rows"
    t = trainer()
    t.fit(frame, pandas.Series(y))
    assert t._native.last_fit_rows() == address(rows)


def test_the_estimator_does_not_copy_float32_c_contiguous_input(blobs, monkeypatch):
    x, y = blobs
    made = []
    native = MLPClassifier._native_trainer

    def keep(self, *args):
        made.append(native(self, *args))
        return made[-1]

    monkeypatch.setattr(MLPClassifier, "_native_trainer", keep)
    MLPClassifier((8,), max_iter=2, device="cpu", random_state=0).fit(x, y)
    assert made[-1].last_fit_rows() == address(x)


def test_shared_and_copied_inputs_train_alike(blobs):
    x, y = blobs
    a, b = trainer(seed=3), trainer(seed=3)
    a.fit(x, y)
    b.fit(x.astype(np.float64), y)
    assert a._native.last_fit_rows() != b._native.last_fit_rows()
    for name, value in a.model().state_dict().items():
        np.testing.assert_array_equal(value, b.model().state_dict()[name], err_msg=name)


def test_writing_to_the_inputs_during_fit_raises(blobs):
    x, y = blobs
    base = np.concatenate([x, x])
    view = base[: len(x)]
    seen = []

    def write(record):
        for target in (view, base):
            try:
                target[0, 0] = 123.0
                seen.append("written")
            except ValueError as e:
                seen.append(str(e))
        seen.append((view.flags.writeable, base.flags.writeable))

    t = trainer()
    t.fit(view, y, callback=write)
    assert seen[:3] == ["assignment destination is read-only"] * 2 + [(False, False)], seen
    assert view.flags.writeable and base.flags.writeable, "the flags were not restored"
    assert base[0, 0] == x[0, 0]
    view[0, 0] = 1.0  # writeable again


def test_the_writeable_flag_is_restored_after_errors_and_interrupts(blobs):
    x, y = blobs
    t = trainer()

    def fail(record):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        t.fit(x, y, callback=fail)
    assert x.flags.writeable

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        t.fit(x, y, callback=interrupt)
    assert x.flags.writeable

    # Refused by the library (a label past the outputs) after the lock.
    with pytest.raises(ValueError, match="label"):
        t.fit(x, np.full(len(x), 7))
    assert x.flags.writeable

    # Refused while the data set is checked (not finite).
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="row 5"):
        t.fit(bad, y)
    assert bad.flags.writeable

    # Validation inputs are lent and restored as well.
    xv = x[:20].copy()
    t.fit(x, y, validation=(xv, y[:20]))
    assert xv.flags.writeable and x.flags.writeable


def test_a_read_only_array_stays_read_only(blobs):
    x, y = blobs
    x = x.copy()
    x.flags.writeable = False
    t = trainer()
    t.fit(x, y)
    assert t._native.last_fit_rows() == address(x)
    assert not x.flags.writeable


def test_memory_numpy_does_not_own_is_copied(blobs):
    x, y = blobs
    raw = bytearray(x.tobytes())
    foreign = np.frombuffer(raw, dtype=np.float32).reshape(x.shape)
    flags = []
    t = trainer()
    t.fit(foreign, y, callback=lambda r: flags.append(foreign.flags.writeable))
    assert t._native.last_fit_rows() != address(foreign), "a bytearray's memory was trained on in place"
    assert flags == [True, True], "a copied array need not be locked"


def test_an_array_two_fits_read_at_once_stays_read_only_until_both_end(blobs):
    import threading
    import time

    x, y = blobs
    other_done = threading.Event()
    seen = []

    def wait_for_the_other(record):
        if record["epoch"] == 1:
            assert other_done.wait(60), "the other fit did not end"
            seen.append(x.flags.writeable)

    errors = []

    def fit_first():
        try:
            trainer().fit(x, y, callback=wait_for_the_other)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    first = threading.Thread(target=fit_first)
    first.start()
    deadline = time.monotonic() + 60
    while x.flags.writeable and time.monotonic() < deadline:  # until the first fit holds it
        time.sleep(0.001)
    assert not x.flags.writeable, f"the first fit never held the array: {errors}"
    trainer().fit(x, y)
    other_done.set()
    first.join(60)
    assert not errors, errors
    assert seen == [False], "the second fit's end made the array writeable under the first"
    assert x.flags.writeable
