//! The program on the same data as CSV, Parquet, .npz and .npy: the same
//! run saves the same model bytes, predicts and evaluates the same, and
//! predictions written to Parquet are the CSV's. The data files are
//! tests/formats/ (pyarrow, NumPy and Python's digits wrote them:
//! dev/format_fixtures.py).

mod support;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;
use support::{Dir, fails, ok, run};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/formats")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

/// Trains on `data` with `extra` flags, the same settings every time
/// (standardised, 20 % held out unless `--val` names a file, dropout, on
/// the CPU); the model's bytes.
fn trained(dir: &Dir, name: &str, data: &str, extra: &[&str]) -> Vec<u8> {
    let model = dir.path(&format!("{name}.safetensors"));
    let mut args = vec![
        "train",
        "--data",
        data,
        "--epochs",
        "4",
        "--batch-size",
        "5",
        "--standardize",
        "--seed",
        "7",
        "--dropout",
        "0.1",
        "--device",
        "cpu",
        "--quiet",
        "--save",
        model.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    if !extra.contains(&"--val") {
        args.extend(["--val-split", "0.2"]);
    }
    ok(&args);
    std::fs::read(&model).unwrap()
}

#[test]
fn the_same_run_from_csv_parquet_and_numpy_saves_the_same_bytes() {
    let dir = Dir::new("formats-same-run");
    // Classes: every numeric type, decimals, row groups of 7.
    let reference = trained(&dir, "price-csv", &fixture("table_price.csv"), &[]);
    let parquet = trained(&dir, "price-parquet", &fixture("table.parquet"), &[]);
    assert!(
        reference == parquet,
        "table.parquet trains otherwise than its CSV"
    );
    let reference = trained(&dir, "csv", &fixture("table.csv"), &[]);
    for (name, data, extra) in [
        ("parquet", "table.parquet", &["--exclude", "price"][..]),
        ("npz", "table.npz", &[]),
        ("fortran-npz", "table_fortran.npz", &[]),
        ("npy", "table.npy", &[]),
    ] {
        let bytes = trained(&dir, name, &fixture(data), extra);
        assert!(reference == bytes, "{data} trains otherwise than table.csv");
    }
    // Regression on two targets: named columns, nulls filled, and --val
    // read the same way.
    let csv = fixture("nulls_filled.csv");
    let reference = trained(&dir, "nulls-csv", &csv, &["--targets", "2", "--val", &csv]);
    let parquet = fixture("nulls.parquet");
    let named = [
        "--features",
        "b,a",
        "--target",
        "t1,t2",
        "--fill-null",
        "-1.5",
        "--val",
        &parquet,
    ];
    let bytes = trained(&dir, "nulls-parquet", &parquet, &named);
    assert!(
        reference == bytes,
        "nulls.parquet trains otherwise than its CSV"
    );
    let reference = trained(
        &dir,
        "mixed-csv",
        &fixture("mixed.csv"),
        &["--targets", "2"],
    );
    let bytes = trained(&dir, "mixed-npz", &fixture("mixed.npz"), &[]);
    assert!(
        reference == bytes,
        "mixed.npz trains otherwise than its CSV"
    );
}

/// The columns of a Parquet file of int64 and float32 columns, as text.
fn parquet_as_csv(path: &Path) -> String {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut text = String::new();
    for batch in reader {
        let batch = batch.unwrap();
        if text.is_empty() {
            let names: Vec<String> = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            text = names.join(",") + "\n";
        }
        for row in 0..batch.num_rows() {
            let fields: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| match c.as_primitive_opt::<Int64Type>() {
                    Some(ints) => ints.value(row).to_string(),
                    None => c.as_primitive::<Float32Type>().value(row).to_string(),
                })
                .collect();
            text += &(fields.join(",") + "\n");
        }
    }
    text
}

#[test]
fn predictions_and_evaluations_are_the_same_from_every_format() {
    let dir = Dir::new("formats-predict");
    for (loss, data, targets) in [
        ("cross_entropy", "table.csv", "1"),
        ("mse", "mixed.csv", "2"),
    ] {
        let model = dir.path(&format!("{loss}.safetensors"));
        let model = model.to_str().unwrap();
        ok(&[
            "train",
            "--data",
            &fixture(data),
            "--targets",
            targets,
            "--loss",
            loss,
            "--epochs",
            "3",
            "--standardize",
            "--device",
            "cpu",
            "--quiet",
            "--save",
            model,
        ]);
        let predict = |data: &str, extra: &[&str]| {
            let mut args = vec![
                "predict", "--model", model, "--data", data, "--device", "cpu",
            ];
            args.extend_from_slice(extra);
            ok(&args)
        };
        let from_csv = predict(&fixture(data), &[]);
        assert!(from_csv.lines().count() == 24, "{from_csv}");
        let twins: &[(&str, &[&str])] = match loss {
            "cross_entropy" => &[
                ("table.parquet", &[]),
                ("table.parquet", &["--exclude", "price"]),
                ("table.npz", &[]),
                ("table_fortran.npz", &[]),
                ("table.npy", &[]),
            ],
            _ => &[("mixed.npz", &[])],
        };
        for (twin, extra) in twins {
            assert_eq!(predict(&fixture(twin), extra), from_csv, "{twin} {extra:?}");
        }
        // To Parquet: the same columns and values as the CSV.
        let out = dir.path(&format!("{loss}.parquet"));
        predict(&fixture(data), &["--out", out.to_str().unwrap()]);
        assert_eq!(
            parquet_as_csv(&out),
            from_csv,
            "{loss}: predictions.parquet"
        );
        let evaluate = |data: &str| {
            ok(&[
                "evaluate",
                "--model",
                model,
                "--data",
                data,
                "--targets",
                targets,
                "--device",
                "cpu",
            ])
        };
        let reference = evaluate(&fixture(data));
        let twin = if loss == "mse" {
            "mixed.npz"
        } else {
            "table.npy"
        };
        assert_eq!(evaluate(&fixture(twin)), reference, "evaluate {twin}");
    }
    // Evaluate by named Parquet columns.
    let model = dir.path("cross_entropy.safetensors");
    let model = model.to_str().unwrap();
    let args = |data: String, extra: &[&str]| {
        let mut args = vec![
            "evaluate".to_string(),
            "--model".into(),
            model.into(),
            "--data".into(),
            data,
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--device".into(), "cpu".into()]);
        args
    };
    let reference = ok(&args(fixture("table.csv"), &[])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let named = args(
        fixture("table.parquet"),
        &["--target", "label", "--exclude", "price"],
    );
    assert_eq!(
        ok(&named.iter().map(String::as_str).collect::<Vec<_>>()),
        reference
    );
}

#[test]
fn column_flags_and_nulls_are_refused_with_their_place() {
    let null = fixture("nulls.parquet");
    fails(
        &["train", "--data", &null, "--exclude", "name", "--quiet"],
        1,
        &[
            "nulls.parquet",
            "column `b`",
            "row group 2",
            "row 3 of the group",
            "row 17 of the file",
            "--fill-null",
        ],
    );
    fails(
        &["train", "--data", &null, "--fill-null", "0", "--quiet"],
        1,
        &["column `name`", "Utf8", "--exclude"],
    );
    fails(
        &[
            "train",
            "--data",
            &fixture("table.csv"),
            "--features",
            "a,b",
            "--quiet",
        ],
        1,
        &["table.csv", "--features", "Parquet", "CSV"],
    );
    fails(
        &[
            "train",
            "--data",
            &fixture("table.npz"),
            "--fill-null",
            "0",
            "--quiet",
        ],
        1,
        &["--fill-null", ".npz"],
    );
    let (code, _, stderr) = run(&[
        "train",
        "--data",
        &null,
        "--target",
        "t1",
        "--targets",
        "2",
        "--quiet",
    ]);
    assert_eq!(code, 2, "--target with --targets: {stderr}");
    fails(
        &["train", "--data", &null, "--target", "nope", "--quiet"],
        1,
        &["no column `nope`", "a, name, b, t1, t2"],
    );
}
