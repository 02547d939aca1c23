"""fit, evaluate and predict from rows read a part at a time: a Parquet,
.npy or .npz path, a pyarrow Table, a NumPy memory map. Each gives the
parameters the same rows held as a float32 array give, bit for bit (the
library's streamed fit is the held fit's loop), and bad input is an
exception naming the file, the column and the row."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, need

import retroprop

pa = need("pyarrow")
pq = need("pyarrow.parquet")

FEATURES = 5


def rows(n=613, seed=0):
    """Inputs of awkward dtypes and their float32 twin, labels, values."""
    rng = np.random.default_rng(seed)
    x64 = rng.normal(size=(n, FEATURES)) * 3
    labels = (x64[:, 0] + x64[:, 1] > 0).astype(np.int64) + (x64[:, 2] > 2)
    values = np.stack([x64[:, 0] - x64[:, 3], x64[:, 4] * 0.5], axis=1)
    return x64, labels, values


def table_of(x, y_columns):
    """A pyarrow table: feature columns f0.., then the target columns."""
    columns = {f"f{i}": x[:, i] for i in range(x.shape[1])}
    columns.update(y_columns)
    return pa.table(columns)


def trainer(loss="cross_entropy", outputs=3, **settings):
    base = dict(batch_size=17, epochs=3, device="cpu", seed=5, lr=0.01)
    base.update(settings)
    return retroprop.Trainer([FEATURES, 9, outputs], "tanh", loss, **base)


def same_parameters(a, b):
    sa, sb = a.model().state_dict(), b.model().state_dict()
    for name in sa:
        differ = np.flatnonzero(sa[name].ravel() != sb[name].ravel())
        assert differ.size == 0, (
            f"{name}: {differ.size} of {sa[name].size} values differ, the largest by "
            f"{np.abs(sa[name] - sb[name]).max()}"
        )


def held_fit(x, y, loss="cross_entropy", outputs=3, validation=None, **settings):
    t = trainer(loss, outputs, **settings)
    t.fit(np.asarray(x, dtype=np.float32), y, validation=validation)
    return t


@pytest.mark.parametrize("row_group_size", [1000, 64, 7])
def test_parquet_path_fits_as_the_rows_held(tmp_path, row_group_size):
    x, labels, _ = rows()
    path = tmp_path / "train.parquet"
    pq.write_table(table_of(x, {"label": labels}), path, row_group_size=row_group_size)
    streamed = trainer()
    history = streamed.fit(path, target="label")
    held = held_fit(x, labels)
    same_parameters(streamed, held)
    assert len(history["epochs"]) == 3
    # Evaluation and prediction from the file are those of the held rows.
    assert streamed.evaluate(path, target="label") == held.evaluate(x.astype(np.float32), labels)
    assert (streamed.predict(path, target="label") == held.predict(x.astype(np.float32))).all()


def test_parquet_columns_by_name_and_fill_null(tmp_path):
    x, _, values = rows()
    columns = {"id": np.arange(len(x)), "y0": values[:, 0], "y1": values[:, 1]}
    with_nulls = pa.array([None if i % 50 == 3 else v for i, v in enumerate(x[:, 2])], pa.float64())
    table = table_of(x, columns).set_column(2, "f2", with_nulls)
    path = tmp_path / "train.pq"
    pq.write_table(table, path, row_group_size=100)
    streamed = trainer("mse", 2, standardize=True)
    streamed.fit(path, target=["y0", "y1"], exclude=["id"], fill_null=-1.5)
    filled = x.copy()
    filled[np.arange(len(x)) % 50 == 3, 2] = -1.5
    same_parameters(streamed, held_fit(filled, values.astype(np.float32), "mse", 2, standardize=True))
    # The features named, in their order.
    named = trainer("mse", 2)
    order = ["f4", "f0", "f1", "f3", "f2"]
    named.fit(path, target=["y0", "y1"], features=order, fill_null=-1.5)
    same_parameters(named, held_fit(filled[:, [4, 0, 1, 3, 2]], values.astype(np.float32), "mse", 2))


def test_parquet_features_with_y_given(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "x.parquet"
    pq.write_table(table_of(x, {}), path, row_group_size=50)
    streamed = trainer()
    streamed.fit(path, labels)
    same_parameters(streamed, held_fit(x, labels))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, ">f8"])
def test_npy_path_fits_as_the_rows_held(tmp_path, dtype):
    x, labels, _ = rows()
    x = np.round(x * 100) if np.dtype(dtype).kind == "i" else x
    table = np.concatenate([x, labels[:, None]], axis=1).astype(dtype)
    path = tmp_path / "train.npy"
    np.save(path, table)
    streamed = trainer()
    streamed.fit(path)
    same_parameters(streamed, held_fit(table[:, :FEATURES].astype(np.float32), labels))


def test_npz_path_fits_as_the_rows_held(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "train.npz"
    np.savez_compressed(path, x=x, y=labels)
    streamed = trainer()
    streamed.fit(str(path))
    same_parameters(streamed, held_fit(x, labels))


def test_arrow_table_fits_as_the_rows_held():
    x, labels, values = rows()
    # Chunked columns of several dtypes: float64, float32, int32, uint8.
    table = pa.concat_tables([
        table_of(x[:200], {"label": labels[:200]}),
        table_of(x[200:], {"label": labels[200:]}),
    ])
    streamed = trainer()
    streamed.fit(table, target="label", validation=table.slice(0, 100))
    held = held_fit(x, labels, validation=(x[:100].astype(np.float32), labels[:100]))
    same_parameters(streamed, held)
    ints = pa.table({"a": pa.array(np.round(x[:, 0] * 10), pa.int32()),
                     "b": pa.array(x[:, 1], pa.float32()),
                     "c": pa.array((x[:, 2] > 0).astype(np.uint8)),
                     "d": x[:, 3], "e": pa.array(x[:, 4] > 1),
                     "y": values[:, 0]})
    as_table = trainer("mse", 1)
    as_table.fit(ints, target="y")
    expected = np.stack([np.round(x[:, 0] * 10), x[:, 1].astype(np.float32), x[:, 2] > 0, x[:, 3],
                         x[:, 4] > 1], axis=1)
    same_parameters(as_table, held_fit(expected, values[:, 0], "mse", 1))
    # A record batch, and the table's columns with y given apart.
    batch = trainer()
    batch.fit(table.to_batches()[0], target="label")
    same_parameters(batch, held_fit(x[:200], labels[:200]))
    apart = trainer()
    apart.fit(table.drop_columns(["label"]), labels)
    same_parameters(apart, held)


def test_a_table_is_not_copied_whole_as_floats():
    # The source lends the table's buffers; a fit reads them in parts.
    x, labels, _ = rows(n=50_000)
    table = table_of(x, {"label": labels})
    before = pa.total_allocated_bytes()
    t = trainer(epochs=1, batch_size=1000)
    t.fit(table, target="label")
    assert pa.total_allocated_bytes() == before, "pyarrow allocated while the table was read"


def test_float32_memory_map_is_borrowed_as_it_is(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float32))
    mapped = np.load(path, mmap_mode="r")
    assert not mapped.flags.writeable
    t = trainer()
    t.fit(mapped, labels)
    same_parameters(t, held_fit(x, labels))
    assert t._native.last_fit_rows() == mapped.__array_interface__["data"][0], "the map was copied"
    # A writeable map is read-only while fit reads it, writeable after.
    rw = np.memmap(tmp_path / "rw.bin", dtype=np.float32, mode="w+", shape=x.shape)
    rw[:] = x
    t2 = trainer()
    t2.fit(rw, labels, callback=lambda record: check_read_only(rw))
    assert rw.flags.writeable
    assert t2._native.last_fit_rows() == rw.__array_interface__["data"][0]
    same_parameters(t2, held_fit(x, labels))


def check_read_only(array):
    with pytest.raises(ValueError):
        array[0, 0] = 1.0


@pytest.mark.parametrize("layout", ["float64", "int16", "big-endian", "fortran", "strided"])
def test_other_memory_maps_are_read_a_part_at_a_time(tmp_path, layout):
    x, labels, values = rows()
    arrays = {
        "float64": lambda: x,
        "int16": lambda: np.round(x * 1000).astype(np.int16),
        "big-endian": lambda: x.astype(">f4"),
        "fortran": lambda: np.asfortranarray(x.astype(np.float32)),
        "strided": lambda: np.concatenate([x, x], axis=1).astype(np.float32),
    }
    stored = arrays[layout]()
    path = tmp_path / "x.npy"
    np.save(path, stored)
    mapped = np.load(path, mmap_mode="r")
    if layout == "strided":
        mapped = mapped[:, ::2]
    t = trainer("mse", 2)
    t.fit(mapped, values)
    same_parameters(t, held_fit(np.asarray(mapped, dtype=np.float32), values.astype(np.float32), "mse", 2))
    assert (t.predict(mapped) == t.predict(np.asarray(mapped, dtype=np.float32))).all()


def test_fit_from_a_path_with_members_or_weights_reads_it_whole(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "train.parquet"
    pq.write_table(table_of(x, {"label": labels}), path)
    members = retroprop.Trainer([FEATURES, 9, 3], "tanh", "cross_entropy", batch_size=17, epochs=2,
                                device="cpu", members=2, lr=[0.01, 0.1])
    members.fit(path, target="label")
    held = retroprop.Trainer([FEATURES, 9, 3], "tanh", "cross_entropy", batch_size=17, epochs=2,
                             device="cpu", members=2, lr=[0.01, 0.1])
    held.fit(x.astype(np.float32), labels)
    assert (members.predict(path, target="label") == held.predict(x.astype(np.float32))).all()
    weights = np.linspace(0.5, 2, len(x))
    weighted = trainer()
    weighted.fit(path, target="label", sample_weight=weights)
    held_weighted = trainer()
    held_weighted.fit(x.astype(np.float32), labels, sample_weight=weights)
    same_parameters(weighted, held_weighted)


def test_a_streamed_fit_checkpoints_and_resumes_as_held(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "train.parquet"
    pq.write_table(table_of(x, {"label": labels}), path, row_group_size=100)
    first = trainer(epochs=2)
    first.fit(path, target="label", checkpoint=tmp_path / "run.safetensors")
    resumed = trainer(epochs=3, resume=tmp_path / "run.safetensors")
    resumed.fit(path, target="label")
    same_parameters(resumed, held_fit(x, labels))


def test_the_callback_of_a_streamed_fit_gets_records_and_calls_are_refused(tmp_path):
    x, labels, _ = rows()
    path = tmp_path / "train.parquet"
    pq.write_table(table_of(x, {"label": labels}), path)
    t = trainer(epochs=5)
    seen, refused = [], []

    def callback(record):
        seen.append(record["epoch"])
        try:
            t.steps
        except ValueError as e:
            refused.append(str(e))
        if record["epoch"] == 2:
            t.stop()

    t.fit(path, target="label", callback=callback)
    assert seen == [1, 2]
    assert refused and "training on rows read from a file or table" in refused[0]
    assert t.steps == 2 * -(-len(x) // 17)


def write(path, table, **options):
    pq.write_table(table, path, **options)
    return path


def test_bad_input_names_the_file_the_column_and_the_row(tmp_path):
    x, labels, _ = rows(n=300)
    good = write(tmp_path / "good.parquet", table_of(x, {"label": labels}))
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        trainer().fit(tmp_path / "missing.parquet")
    with pytest.raises(FileNotFoundError):
        trainer().fit(tmp_path / "missing.npy", labels)
    with pytest.raises(ValueError, match=r"good.parquet: no column `lable` \(the file's columns: f0, f1, f2, f3, f4, label\)"):
        trainer().fit(good, target="lable")
    text = table_of(x, {"label": labels}).append_column("name", pa.array([f"r{i}" for i in range(300)]))
    named = write(tmp_path / "text.parquet", text)
    with pytest.raises(ValueError, match="column `name` holds Utf8 values, not numbers"):
        trainer().fit(named, target="label")
    trainer().fit(named, target="label", exclude=["name"])
    with_null = table_of(x, {"label": labels}).set_column(
        1, "f1", pa.array([None if i == 250 else v for i, v in enumerate(x[:, 1])]))
    nulls = write(tmp_path / "nulls.parquet", with_null, row_group_size=100)
    with pytest.raises(ValueError, match=r"nulls.parquet: column `f1`, row group 2, row 50 of the group \(row 250 of the file"):
        trainer().fit(nulls, target="label")
    with pytest.raises(ValueError, match=r"a pyarrow.Table\): column `f1`, record batch 0, row 250 of the batch \(row 250 of the table"):
        trainer().fit(with_null, target="label")
    bad_label = table_of(x, {"label": labels.astype(np.float64) + 0.5})
    with pytest.raises(ValueError, match=r"column `label`, record batch 0, row 0 .*class label 0.5 is not a non-negative integer"):
        trainer().fit(bad_label, target="label")
    with pytest.raises(ValueError, match="retroprop reads Parquet"):
        trainer().fit(tmp_path / "train.csv")
    with pytest.raises(ValueError, match="name columns of a file or a table"):
        trainer().fit(x.astype(np.float32), labels, target="label")
    with pytest.raises(TypeError, match="y is needed"):
        trainer().fit(x.astype(np.float32))
    nan = x.copy()
    nan[123, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(ValueError, match=r"nan.npy\).*row 123, column 4: NaN is not a finite number"):
        trainer().fit(np.load(tmp_path / "nan.npy", mmap_mode="r"), labels)
    with pytest.raises(ValueError, match=r"features of the training data \(.*good.parquet\).*expected 5, got 4"):
        trainer().fit(good, target="label", exclude=["f0"])


def test_a_memory_map_larger_than_a_window_streams_in_bounded_memory(tmp_path):
    # A subprocess trains on a float64 memory map of 2^23 rows × 4 (256 MiB
    # of file) and reports how much its anonymous memory grew at most (the
    # map's pages are the file's, counted apart as RssFile). Streamed, the
    # process holds two windows of 2^20 rows (2 × 20 MiB with their
    # targets) and a copy of y (32 MiB): 116 MiB measured. Held, it holds
    # the inputs as float32 (128 MiB) besides: 200 MiB measured
    # (dev/python_stream_memory.py --how memmap / --how held).
    out = subprocess.run(
        [sys.executable, str(REPO / "dev" / "python_stream_memory.py"), "--rows", str(1 << 23),
         "--dir", str(tmp_path), "--how", "memmap"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    grown = float(out.stdout.split()[-2])
    assert grown < 160, f"anonymous memory grew by {grown:.0f} MiB: the map was held, not streamed"


README_BLOCK = re.compile(r"<!-- checked: python/tests/test_sources.py -->\s*```python\n(.*?)```", re.S)


def test_the_readme_example_runs(tmp_path):
    readme = (REPO / "README.md").read_text()
    blocks = README_BLOCK.findall(readme)
    assert blocks, "README's Python section has no example marked as checked by this test"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
