//! Parquet and NumPy files read as the same data sets as their CSV twins.
//! The files in tests/formats/ were written by pyarrow and NumPy, the CSV
//! twins by Python's own digits (dev/format_fixtures.py); the tables
//! written here are written by the parquet crate's writer and the CSV by
//! Rust's shortest round-trip digits. CSV is the reference each time: a
//! different reader, through text.

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, UInt64Array};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use retroprop::io::parquet::{ParquetColumns, TargetColumns};
use retroprop::{Dataset, Error};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/formats")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retroprop-formats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn message(err: Error) -> String {
    err.to_string()
}

/// Both data sets, equal value for value (f32 bits), or which differs.
fn assert_same(got: &Dataset, expected: &Dataset, what: &str) {
    assert_eq!(
        (got.rows(), got.features()),
        (expected.rows(), expected.features()),
        "{what}: rows, features"
    );
    for (i, (a, b)) in got.x().iter().zip(expected.x()).enumerate() {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: input row {}, column {}: {a} against CSV's {b}",
            i / got.features(),
            i % got.features()
        );
    }
    assert_eq!(got.targets(), expected.targets(), "{what}: targets");
    assert_eq!(got, expected, "{what}");
}

#[test]
fn a_pyarrow_table_of_every_numeric_type_reads_as_its_csv() {
    // Integers of every width (some beyond 2^53), float16/32/64, booleans,
    // decimals; row groups of 7 rows over 23.
    let parquet = fixture("table.parquet");
    for classes in [true, false] {
        let from_csv = Dataset::from_csv(fixture("table_price.csv"), 1, classes).unwrap();
        let from_parquet =
            Dataset::from_parquet(&parquet, &ParquetColumns::default(), classes).unwrap();
        assert_same(&from_parquet, &from_csv, "table.parquet, every column");
        // The decimal column left out: the CSV without it.
        let without_price = ParquetColumns {
            exclude: names(&["price"]),
            ..ParquetColumns::default()
        };
        let from_csv = Dataset::from_csv(fixture("table.csv"), 1, classes).unwrap();
        let from_parquet = Dataset::from_parquet(&parquet, &without_price, classes).unwrap();
        assert_same(&from_parquet, &from_csv, "table.parquet less price");
    }
}

#[test]
fn features_and_targets_by_name_with_nulls_filled() {
    // Column b has nulls at rows 17 and 20; name is text; two targets.
    let columns = ParquetColumns {
        features: Some(names(&["b", "a"])),
        targets: TargetColumns::Named(names(&["t1", "t2"])),
        exclude: Vec::new(),
        fill_null: Some(-1.5),
    };
    let from_parquet = Dataset::from_parquet(fixture("nulls.parquet"), &columns, false).unwrap();
    let from_csv = Dataset::from_csv(fixture("nulls_filled.csv"), 2, false).unwrap();
    assert_same(&from_parquet, &from_csv, "nulls.parquet filled with -1.5");
}

#[test]
fn a_null_is_an_error_naming_file_row_group_row_and_column() {
    let columns = ParquetColumns {
        targets: TargetColumns::Named(names(&["t1", "t2"])),
        exclude: names(&["name"]),
        ..ParquetColumns::default()
    };
    let err =
        message(Dataset::from_parquet(fixture("nulls.parquet"), &columns, false).unwrap_err());
    for part in [
        "nulls.parquet",
        "column `b`",
        "row group 2",
        "row 3 of the group",
        "row 17 of the file",
        "null",
        "--fill-null",
    ] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }
    // A null target is never filled in.
    let columns = ParquetColumns {
        fill_null: Some(0.0),
        ..ParquetColumns::default()
    };
    let err = message(
        Dataset::from_parquet(fixture("null_target.parquet"), &columns, false).unwrap_err(),
    );
    for part in [
        "null_target.parquet",
        "column `t1`",
        "row group 1",
        "row 2 of the group",
        "row 9 of the file",
        "target",
    ] {
        assert!(err.contains(part), "`{part}` not in: {err}");
    }
}

#[test]
fn a_text_column_is_an_error_naming_it_unless_left_out() {
    let path = fixture("nulls.parquet");
    let two = |columns: ParquetColumns| ParquetColumns {
        targets: TargetColumns::Last(2),
        fill_null: Some(0.0),
        ..columns
    };
    let err =
        message(Dataset::from_parquet(&path, &two(ParquetColumns::default()), false).unwrap_err());
    assert!(
        err.contains("column `name`") && err.contains("Utf8") && err.contains("--exclude"),
        "{err}"
    );
    let excluded = two(ParquetColumns {
        exclude: names(&["name"]),
        ..ParquetColumns::default()
    });
    let data = Dataset::from_parquet(&path, &excluded, false).unwrap();
    assert_eq!(
        (data.rows(), data.features(), data.target_width()),
        (23, 2, 2)
    );
    // As a target it is refused too.
    let columns = ParquetColumns {
        targets: TargetColumns::Named(names(&["name"])),
        features: Some(names(&["a"])),
        ..ParquetColumns::default()
    };
    let err = message(Dataset::from_parquet(&path, &columns, false).unwrap_err());
    assert!(err.contains("column `name`"), "{err}");
}

#[test]
fn column_choices_that_cannot_work_are_named() {
    let path = fixture("nulls.parquet");
    let cases: [(ParquetColumns, &[&str]); 6] = [
        (
            ParquetColumns {
                features: Some(names(&["a", "nope"])),
                ..ParquetColumns::default()
            },
            &["no column `nope`", "a, name, b, t1, t2"],
        ),
        (
            ParquetColumns {
                targets: TargetColumns::Named(names(&["missing"])),
                ..ParquetColumns::default()
            },
            &["no column `missing`"],
        ),
        (
            ParquetColumns {
                features: Some(names(&["a", "t2"])),
                ..ParquetColumns::default()
            },
            &["column `t2` is both a feature and a target"],
        ),
        (
            ParquetColumns {
                features: Some(names(&["a", "a"])),
                ..ParquetColumns::default()
            },
            &["column `a` twice"],
        ),
        (
            ParquetColumns {
                targets: TargetColumns::Last(5),
                ..ParquetColumns::default()
            },
            &["5 columns", "last 5"],
        ),
        (
            ParquetColumns {
                features: Some(names(&["a"])),
                exclude: names(&["name"]),
                ..ParquetColumns::default()
            },
            &["excluded only from the default features"],
        ),
    ];
    for (columns, parts) in cases {
        let err = message(Dataset::from_parquet(&path, &columns, false).unwrap_err());
        for part in parts {
            assert!(err.contains(part), "{columns:?}: `{part}` not in: {err}");
        }
    }
    // Class labels come from one column.
    let columns = ParquetColumns {
        targets: TargetColumns::Named(names(&["t1", "t2"])),
        features: Some(names(&["a"])),
        ..ParquetColumns::default()
    };
    let err = message(Dataset::from_parquet(&path, &columns, true).unwrap_err());
    assert!(err.contains("one column"), "{err}");
    // Labels must be whole: t1 holds normal draws.
    let columns = ParquetColumns {
        targets: TargetColumns::Named(names(&["t1"])),
        features: Some(names(&["a"])),
        ..ParquetColumns::default()
    };
    let err = message(Dataset::from_parquet(&path, &columns, true).unwrap_err());
    assert!(
        err.contains("column `t1`") && err.contains("row group 0") && err.contains("class label"),
        "{err}"
    );
}

/// A table of wide integers and float64s with `rows` rows, written by the
/// parquet crate in row groups of `group` rows, and the same as CSV text.
fn written_table(rows: usize, group: usize, seed: u64) -> (Vec<u8>, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let wide: Vec<i64> = (0..rows)
        .map(|_| rng.random::<i64>() >> rng.random_range(0..40))
        .collect();
    let unsigned: Vec<u64> = (0..rows).map(|_| rng.random::<u64>()).collect();
    let real: Vec<f64> = (0..rows)
        .map(|_| rng.random_range(-1.0..1.0) * 10f64.powi(rng.random_range(-35..35)))
        .collect();
    let label: Vec<i64> = (0..rows).map(|r| (r % 4) as i64).collect();
    let arrays: Vec<(&str, ArrayRef)> = vec![
        ("wide", Arc::new(Int64Array::from(wide.clone()))),
        ("unsigned", Arc::new(UInt64Array::from(unsigned.clone()))),
        ("real", Arc::new(Float64Array::from(real.clone()))),
        ("label", Arc::new(Int64Array::from(label.clone()))),
    ];
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let mut csv = String::from("wide,unsigned,real,label\n");
    for r in 0..rows {
        // `{:?}` of an f64 is the shortest text that reads back to it.
        csv += &format!("{},{},{:?},{}\n", wide[r], unsigned[r], real[r], label[r]);
    }
    (bytes, csv)
}

#[test]
fn tables_written_in_odd_row_groups_read_as_their_csv() {
    for (rows, group) in [
        (1, 1),
        (3, 2),
        (17, 7),
        (63, 7),
        (65, 64),
        (257, 13),
        (9000, 8191),
    ] {
        let (bytes, csv) = written_table(rows, group, rows as u64);
        let what = format!("{rows} rows in groups of {group}");
        let from_csv =
            Dataset::from_csv_reader(csv.as_bytes(), Path::new("t.csv"), 1, true).unwrap();
        let from_parquet = Dataset::from_parquet_bytes(
            bytes.clone(),
            Path::new("t.parquet"),
            &ParquetColumns::default(),
            true,
        )
        .unwrap();
        assert_same(&from_parquet, &from_csv, &what);
        // From a file too, features by name in another order.
        let path = scratch(&format!("odd-{rows}.parquet"));
        std::fs::write(&path, &bytes).unwrap();
        let columns = ParquetColumns {
            features: Some(names(&["real", "wide"])),
            targets: TargetColumns::Named(names(&["unsigned"])),
            ..ParquetColumns::default()
        };
        let data = Dataset::from_parquet(&path, &columns, false).unwrap();
        let (f, w) = (from_csv.features(), data.features());
        for r in 0..rows {
            assert_eq!(
                [data.x()[r * w], data.x()[r * w + 1]],
                [from_csv.x()[r * f + 2], from_csv.x()[r * f]],
                "{what}: row {r}"
            );
        }
    }
}

#[test]
fn a_null_in_odd_row_groups_is_placed_by_the_group_sizes() {
    for (rows, group, null_at) in [(17, 7, 16), (65, 13, 39), (300, 7, 0), (9000, 8191, 8191)] {
        let values: Vec<Option<f64>> = (0..rows)
            .map(|r| (r != null_at).then_some(r as f64))
            .collect();
        let batch = RecordBatch::try_from_iter(vec![
            ("x", Arc::new(Float64Array::from(values)) as ArrayRef),
            (
                "y",
                Arc::new(Float64Array::from(vec![1.0; rows])) as ArrayRef,
            ),
        ])
        .unwrap();
        let properties = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let err = message(
            Dataset::from_parquet_bytes(
                bytes,
                Path::new("n.parquet"),
                &ParquetColumns::default(),
                false,
            )
            .unwrap_err(),
        );
        let expected = format!(
            "column `x`, row group {}, row {} of the group (row {null_at} of the file",
            null_at / group,
            null_at % group
        );
        assert!(
            err.contains(&expected),
            "{rows} rows in groups of {group}: `{expected}` not in: {err}"
        );
    }
}

#[test]
fn npz_arrays_of_any_dtype_and_order_read_as_their_csv() {
    let table = Dataset::from_csv(fixture("table.csv"), 1, true).unwrap();
    // float64 x, int64 y; big-endian Fortran-order x and uint16 y, compressed.
    for name in ["table.npz", "table_fortran.npz"] {
        let data = Dataset::from_npz(fixture(name), true).unwrap();
        assert_same(&data, &table, name);
    }
    // The same array as one .npy with the label last.
    let data = Dataset::from_npy(fixture("table.npy"), 1, true).unwrap();
    assert_same(&data, &table, "table.npy");
    // int16 x in Fortran order, float16 labels.
    let data = Dataset::from_npz(fixture("int16.npz"), true).unwrap();
    let csv = Dataset::from_csv(fixture("int16.csv"), 1, true).unwrap();
    assert_same(&data, &csv, "int16.npz");
    // float16 x, two float32 targets.
    let data = Dataset::from_npz(fixture("mixed.npz"), false).unwrap();
    let csv = Dataset::from_csv(fixture("mixed.csv"), 2, false).unwrap();
    assert_same(&data, &csv, "mixed.npz");
}

#[test]
fn numpy_files_that_cannot_work_are_named() {
    let err = message(Dataset::from_npz(fixture("mixed.npz"), true).unwrap_err());
    assert!(
        err.contains("mixed.npz") && err.contains("one column"),
        "{err}"
    );
    let err = message(Dataset::from_npy(fixture("table.npy"), 14, false).unwrap_err());
    assert!(
        err.contains("14 columns") || err.contains("14 are targets"),
        "{err}"
    );
    // An .npy file is not an archive; an archive without y lists its arrays.
    let err = message(Dataset::from_npz(fixture("table.npy"), false).unwrap_err());
    assert!(err.contains("not an .npz archive"), "{err}");
    let path = scratch("only_x.npz");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        let x = std::fs::read(fixture("flags.npy")).unwrap();
        zip.start_file("x.npy", options).unwrap();
        std::io::Write::write_all(&mut zip, &x).unwrap();
        zip.start_file("w.npy", options).unwrap();
        std::io::Write::write_all(&mut zip, &x).unwrap();
        zip.finish().unwrap();
    }
    let err = message(Dataset::from_npz(&path, false).unwrap_err());
    assert!(err.contains("no array y") && err.contains("x, w"), "{err}");
    // A header nested deeper than a plain array's is refused before it is
    // parsed (the parser took 28 s on one the fuzzer wrote).
    let mut nested = b"\x93NUMPY\x01\x00".to_vec();
    let header = format!(
        "{{'descr': '|b1', 'fortran_order': False, {}'shape': (2, 2), }}\n",
        "{".repeat(40)
    );
    nested.extend_from_slice(&(header.len() as u16).to_le_bytes());
    nested.extend_from_slice(header.as_bytes());
    nested.extend_from_slice(&[1, 0, 0, 1]);
    let err = message(Dataset::from_npy_bytes(&nested, Path::new("n.npy"), 1, false).unwrap_err());
    assert!(err.contains("n.npy") && err.contains("nested"), "{err}");
    // A truncated array: the header claims more bytes than there are.
    let mut labels = std::fs::read(fixture("flags.npy")).unwrap();
    labels.truncate(labels.len() - 1);
    let err =
        message(Dataset::from_npy_bytes(&labels, Path::new("cut.npy"), 1, false).unwrap_err());
    assert!(err.contains("cut.npy") && err.contains("bytes"), "{err}");
}

#[test]
fn inputs_to_predict_on_read_as_the_training_columns() {
    use retroprop::io::{npy, parquet};
    // Booleans as 0 and 1.
    let (x, columns) = npy::read_inputs(&fixture("flags.npy")).unwrap();
    assert_eq!(columns, 2);
    let table = Dataset::from_csv(fixture("table.csv"), 1, false).unwrap();
    let flag = table.features() - 1;
    for (r, row) in x.chunks_exact(2).enumerate() {
        assert_eq!(row, [table.x()[r * table.features() + flag]; 2], "row {r}");
    }
    // x of an archive; y is not read.
    let (x, columns) = npy::read_inputs(&fixture("table_fortran.npz")).unwrap();
    assert_eq!((x.as_slice(), columns), (table.x(), table.features()));
    // Parquet: the first columns as the model's inputs, or those named.
    let x =
        parquet::read_inputs(&fixture("table.parquet"), &ParquetColumns::default(), 12).unwrap();
    assert_eq!(x, table.x());
    let named = ParquetColumns {
        features: Some(names(&["i16", "i8"])),
        ..ParquetColumns::default()
    };
    let x = parquet::read_inputs(&fixture("table.parquet"), &named, 2).unwrap();
    let int16 = Dataset::from_csv(fixture("int16.csv"), 1, false).unwrap();
    assert_eq!(x, int16.x());
    let err = message(parquet::read_inputs(&fixture("table.parquet"), &named, 3).unwrap_err());
    assert!(
        err.contains("2 feature columns") && err.contains("3 inputs"),
        "{err}"
    );
}

#[test]
fn written_parquet_columns_read_back_with_the_parquet_crate() {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use retroprop::io::parquet::{Column, write_parquet};
    let classes = vec![2i64, 0, 1];
    let p0 = vec![0.25f32, f32::MIN_POSITIVE, 1.0 / 3.0];
    let path = scratch("written.parquet");
    write_parquet(
        &path,
        &[
            ("class".into(), Column::Int64(classes.clone())),
            ("p0".into(), Column::Float32(p0.clone())),
        ],
    )
    .unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    let batch = &batches[0];
    assert_eq!(batch.schema().field(0).name(), "class");
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    assert_eq!(
        batch.column(0).as_primitive::<Int64Type>().values(),
        &classes[..]
    );
    assert_eq!(
        batch.column(1).as_primitive::<Float32Type>().values(),
        &p0[..]
    );
}
