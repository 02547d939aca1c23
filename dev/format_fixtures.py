"""Writes tests/formats/: the same small tables as CSV (Python's own digits),
as Parquet (pyarrow) and as NumPy files (numpy), so that tests/formats.rs
and cli/tests/formats.rs check retroprop's Parquet and NumPy readers
against its CSV reader, each file written by another implementation.

    /work/venv/bin/python dev/format_fixtures.py

The values are chosen to be awkward: integers of every width, some beyond
2^24 and 2^53 (rounded on the way to f32), float16, float32 and float64
values with many digits, booleans, decimals; Parquet row groups of 7 rows
(23 rows: the last group short), nulls, a text column. Seeded: the same
files every run (pyarrow's writer version aside).
"""

import csv
import decimal
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "formats")
ROWS = 23


def digits(value):
    """A value as CSV digits that read back to it exactly in f64."""
    if isinstance(value, (bool, np.bool_)):
        return "1" if value else "0"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, decimal.Decimal):
        return str(value)
    # repr of a Python float is the shortest text that reads back to the
    # same f64; float16/32 values widen to f64 exactly first.
    return repr(float(value))


def write_csv(path, names, columns):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        for row in zip(*columns):
            writer.writerow([digits(v) for v in row])


def table_columns(rng):
    """Every numeric type Parquet and NumPy have, and class labels last."""
    big = np.int64(2**53 + 1)
    return {
        "i8": rng.integers(-128, 128, ROWS).astype(np.int8),
        "i16": rng.integers(-30000, 30000, ROWS).astype(np.int16),
        "i32": rng.integers(-(2**31), 2**31 - 1, ROWS).astype(np.int32),
        # Beyond 2^24 and 2^53: rounded to f32 through f64.
        "i64": np.concatenate(
            [[big, -big, 2**24 + 1, 2**62 + 12345], rng.integers(-(2**40), 2**40, ROWS - 4)]
        ).astype(np.int64),
        "u8": rng.integers(0, 256, ROWS).astype(np.uint8),
        "u16": rng.integers(0, 65536, ROWS).astype(np.uint16),
        "u32": rng.integers(0, 2**32, ROWS, dtype=np.uint64).astype(np.uint32),
        "u64": (rng.integers(0, 2**63, ROWS, dtype=np.uint64) * np.uint64(2)).astype(np.uint64),
        "f16": rng.normal(0, 100, ROWS).astype(np.float16),
        "f32": rng.normal(0, 1e6, ROWS).astype(np.float32),
        "f64": rng.normal(0, 1, ROWS) * 10.0 ** rng.integers(-30, 30, ROWS),
        "flag": rng.integers(0, 2, ROWS).astype(bool),
        "label": np.arange(ROWS) % 3,
    }


def write_table(rng):
    columns = table_columns(rng)
    names = list(columns)
    write_csv(os.path.join(OUT, "table.csv"), names, list(columns.values()))
    arrays = [pa.array(v) for v in columns.values()]
    # A decimal column only Parquet has: read from its digits, as CSV reads them.
    prices = [decimal.Decimal(int(v)).scaleb(-3) for v in rng.integers(-10**9, 10**9, ROWS)]
    table = pa.table(arrays + [pa.array(prices, pa.decimal128(12, 3))], names=names + ["price"])
    # The label last, as CSV has it.
    table = table.select(names[:-1] + ["price", "label"])
    pq.write_table(table, os.path.join(OUT, "table.parquet"), row_group_size=7)
    with_price = {k: columns[k] for k in names[:-1]}
    with_price["price"] = prices
    with_price["label"] = columns["label"]
    write_csv(os.path.join(OUT, "table_price.csv"), list(with_price), list(with_price.values()))
    return columns


def write_nulls(rng):
    """Nulls in column b at rows 17 (row group 2, row 3 of it) and 20;
    text in column name; two targets."""
    a = rng.normal(0, 1, ROWS)
    b = rng.normal(0, 1, ROWS)
    b_null = [None if i in (17, 20) else float(v) for i, v in enumerate(b)]
    names = [f"row{i}" for i in range(ROWS)]
    t1 = rng.normal(0, 1, ROWS)
    t2 = rng.normal(0, 1, ROWS).astype(np.float32)
    table = pa.table(
        {
            "a": pa.array(a),
            "name": pa.array(names),
            "b": pa.array(b_null, pa.float64()),
            "t1": pa.array(t1),
            "t2": pa.array(t2),
        }
    )
    pq.write_table(table, os.path.join(OUT, "nulls.parquet"), row_group_size=7)
    filled = [-1.5 if v is None else v for v in b_null]
    # The same rows with the nulls filled by -1.5, features (b, a) in that order.
    write_csv(os.path.join(OUT, "nulls_filled.csv"), ["b", "a", "t1", "t2"], [filled, a, t1, t2])
    # A null in a target: column t1 at row 9 (row group 1, row 2 of it).
    t1_null = [None if i == 9 else float(v) for i, v in enumerate(t1)]
    pq.write_table(
        pa.table({"a": pa.array(a), "t1": pa.array(t1_null, pa.float64())}),
        os.path.join(OUT, "null_target.parquet"),
        row_group_size=7,
    )


def write_numpy(columns):
    """The table's numbers as NumPy files: x in several dtypes and orders."""
    names = [k for k in columns if k != "label"]
    x64 = np.stack([columns[k].astype(np.float64) for k in names], axis=1)
    label = columns["label"]
    # One dtype for x: the f64 widening of every column is exact except the
    # wide integers, which round as CSV's digits do.
    np.savez(os.path.join(OUT, "table.npz"), x=x64, y=label.astype(np.int64))
    # Fortran order, big-endian, compressed.
    np.savez_compressed(
        os.path.join(OUT, "table_fortran.npz"),
        x=np.asfortranarray(x64).astype(">f8", order="F"),
        y=label.astype(">u2"),
    )
    # Per-dtype arrays of the same shape: x as int16 (Fortran), y as float16 labels.
    np.savez(
        os.path.join(OUT, "int16.npz"),
        x=np.asfortranarray(np.stack([columns["i16"], columns["i8"].astype(np.int16)], axis=1)),
        y=label.astype(np.float16),
    )
    write_csv(
        os.path.join(OUT, "int16.csv"),
        ["i16", "i8", "label"],
        [columns["i16"], columns["i8"], label],
    )
    # One .npy array with the target last, as a CSV file.
    np.save(os.path.join(OUT, "table.npy"), np.concatenate([x64, label[:, None]], axis=1))
    # float16 inputs with two float32 targets.
    np.savez(
        os.path.join(OUT, "mixed.npz"),
        x=np.stack([columns["f16"], columns["f16"]], axis=1),
        y=np.stack([columns["f32"], columns["f32"] * np.float32(2)], axis=1),
    )
    write_csv(
        os.path.join(OUT, "mixed.csv"),
        ["a", "b", "t1", "t2"],
        [columns["f16"], columns["f16"], columns["f32"], columns["f32"] * np.float32(2)],
    )
    np.save(os.path.join(OUT, "flags.npy"), np.stack([columns["flag"], columns["flag"]], axis=1))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(34)
    columns = write_table(rng)
    write_nulls(rng)
    write_numpy(columns)


if __name__ == "__main__":
    main()
