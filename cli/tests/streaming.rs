//! `retroprop train --stream`: the run read from the file a window at a
//! time is the run held in memory, byte for byte (model, checkpoint,
//! metrics), from Parquet (odd row groups, nulls filled, wide integers,
//! float64) and .npy, and the same rows as CSV; cut, resumed or stopped
//! by Ctrl-C it resumes byte for byte; a corrupt row group ends it naming
//! the file and the group; `predict --stream` and `evaluate --stream`
//! write and print what they do without it; what cannot stream is refused
//! by name.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use arrow_array::{ArrayRef, Float64Array, Int16Array, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Dir, fails, ok};

/// The value a null reads as (`--fill-null`).
const FILL: f64 = -1.5;

/// The same table of `rows` rows as Parquet (row groups of `group` rows,
/// a float64 column with nulls, a wide int64, an int16, float64s and a
/// label of 3 classes last), as CSV (the nulls written as [`FILL`]) and as
/// a float64 .npy array (the same): their paths.
fn table(dir: &Dir, name: &str, rows: usize, group: usize, seed: u64) -> [String; 3] {
    let x = common::random(rows * 4, -3.0, 3.0, seed);
    let real: Vec<f64> = x[..rows].iter().map(|&v| v as f64 * 1.000_000_1).collect();
    let gappy: Vec<Option<f64>> = (0..rows)
        .map(|r| (r % 17 != 5).then_some(x[rows + r] as f64 / 3.0))
        .collect();
    let wide: Vec<i64> = x[2 * rows..3 * rows]
        .iter()
        .map(|&v| ((v as f64) * 1e12) as i64)
        .collect();
    let small: Vec<i16> = x[3 * rows..].iter().map(|&v| (v * 1000.0) as i16).collect();
    let label: Vec<i64> = (0..rows)
        .map(
            |r| match (real[r] + gappy[r].unwrap_or(FILL) > 0.5, small[r] > 0) {
                (true, _) => 2,
                (false, true) => 1,
                (false, false) => 0,
            },
        )
        .collect();
    let arrays: Vec<(&str, ArrayRef)> = vec![
        ("real", Arc::new(Float64Array::from(real.clone()))),
        ("gappy", Arc::new(Float64Array::from(gappy.clone()))),
        ("wide", Arc::new(Int64Array::from(wide.clone()))),
        ("small", Arc::new(Int16Array::from(small.clone()))),
        ("label", Arc::new(Int64Array::from(label.clone()))),
    ];
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let parquet = dir.path(&format!("{name}.parquet"));
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        batch.schema(),
        Some(properties),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let mut csv = String::from("real,gappy,wide,small,label\n");
    let mut npy = Vec::new();
    for r in 0..rows {
        let gappy = gappy[r].unwrap_or(FILL);
        // `{:?}` of an f64 is the shortest text that reads back to it.
        csv += &format!(
            "{:?},{:?},{},{},{}\n",
            real[r], gappy, wide[r], small[r], label[r]
        );
        for v in [
            real[r],
            gappy,
            wide[r] as f64,
            small[r] as f64,
            label[r] as f64,
        ] {
            npy.extend(v.to_le_bytes());
        }
    }
    let csv_path = dir.write(&format!("{name}.csv"), &csv);
    let npy_path = dir.path(&format!("{name}.npy"));
    std::fs::write(&npy_path, npy_bytes("<f8", (rows, 5), &npy)).unwrap();
    [parquet, csv_path, npy_path].map(|p| p.to_str().unwrap().to_string())
}

/// A C-order `.npy` file's bytes (format 1.0).
fn npy_bytes(descr: &str, shape: (usize, usize), data: &[u8]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
        shape.0, shape.1
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.bytes());
    out.extend(data);
    out
}

/// What a run writes: the model, the checkpoint and the metrics without
/// their wall-clock column.
#[derive(PartialEq)]
struct Files {
    model: Vec<u8>,
    checkpoint: Vec<u8>,
    metrics: String,
}

/// Trains `data` (validating on `val`) with the settings every run here
/// shares and `extra`; the files it writes.
fn trained(dir: &Dir, name: &str, data: &str, val: &str, extra: &[&str]) -> Files {
    let (model, checkpoint, metrics) = (
        dir.arg(&format!("{name}.safetensors")),
        dir.arg(&format!("{name}-checkpoint.safetensors")),
        dir.arg(&format!("{name}.csv")),
    );
    let mut args = vec![
        "train",
        "--data",
        data,
        "--val",
        val,
        "--arch",
        "4,9,3",
        "--epochs",
        "3",
        "--batch-size",
        "23",
        "--standardize",
        "--dropout",
        "0.1",
        "--seed",
        "5",
        "--shuffle-window",
        "256:32",
        "--quiet",
        "--save",
        &model,
        "--checkpoint",
        &checkpoint,
        "--metrics",
        &metrics,
    ];
    args.extend_from_slice(extra);
    ok(&args);
    let metrics: String = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string() + "\n")
        .collect();
    Files {
        model: std::fs::read(model).unwrap(),
        checkpoint: std::fs::read(checkpoint).unwrap(),
        metrics,
    }
}

fn assert_same(got: &Files, want: &Files, what: &str) {
    assert_eq!(got.metrics, want.metrics, "{what}: the metrics differ");
    assert!(got.model == want.model, "{what}: the model files differ");
    assert!(
        got.checkpoint == want.checkpoint,
        "{what}: the checkpoints differ"
    );
}

#[test]
fn the_same_run_from_csv_parquet_npy_and_streamed_writes_the_same_bytes() {
    let dir = Dir::new("same-bytes");
    // 1 013 rows in row groups of 97: 32 chunks of 32 rows, 4 windows of
    // 256; batches of 23 straddle the windows.
    let [parquet, csv, npy] = table(&dir, "train", 1013, 97, 1);
    let [val_parquet, val_csv, val_npy] = table(&dir, "val", 301, 41, 2);
    let fill = ["--fill-null", "-1.5", "--device", "cpu"];
    let cpu = ["--device", "cpu"];
    let reference = trained(&dir, "csv", &csv, &val_csv, &cpu);
    let streamed = [&fill[..], &["--stream"]].concat();
    let npy_streamed = ["--device", "cpu", "--stream"];
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        ("parquet held", &parquet, &val_parquet, &fill),
        ("parquet streamed", &parquet, &val_parquet, &streamed),
        ("npy held", &npy, &val_npy, &cpu),
        ("npy streamed", &npy, &val_npy, &npy_streamed),
        ("npy streamed, CSV val", &npy, &val_csv, &npy_streamed),
    ];
    for (what, data, val, extra) in cases {
        let files = trained(&dir, &what.replace([' ', ','], "-"), data, val, extra);
        assert_same(&files, &reference, what);
    }
    // In file order: one read a window.
    let held = trained(
        &dir,
        "in-order-held",
        &csv,
        &val_csv,
        &["--device", "cpu", "--no-shuffle"],
    );
    let in_order = [&streamed[..], &["--no-shuffle"]].concat();
    let files = trained(&dir, "in-order-streamed", &parquet, &val_parquet, &in_order);
    assert_same(&files, &held, "in file order");
    // On the GPU: streamed as held.
    let gpu = ["--fill-null", "-1.5", "--device", "gpu"];
    let held = trained(&dir, "gpu-held", &parquet, &val_parquet, &gpu);
    let streamed = trained(
        &dir,
        "gpu-streamed",
        &parquet,
        &val_parquet,
        &[&gpu[..], &["--stream"]].concat(),
    );
    assert_same(&streamed, &held, "gpu");
}

#[test]
fn a_streamed_run_cut_and_resumed_writes_the_bytes_of_the_run_never_cut() {
    let dir = Dir::new("resume");
    let [parquet, _, _] = table(&dir, "train", 1013, 97, 3);
    let [val, _, _] = table(&dir, "val", 101, 41, 4);
    let stream = ["--fill-null", "-1.5", "--device", "cpu", "--stream"];
    let whole = trained(&dir, "whole", &parquet, &val, &stream);
    // 45 steps an epoch: step 70 is inside the second epoch's third window.
    let cut = trained(
        &dir,
        "cut",
        &parquet,
        &val,
        &[&stream[..], &["--steps", "70"]].concat(),
    );
    assert!(cut.model != whole.model);
    let checkpoint = dir.arg("cut-checkpoint.safetensors");
    for (name, extra) in [
        ("resumed-streamed", &stream[..]),
        (
            "resumed-held",
            &["--fill-null", "-1.5", "--device", "cpu"][..],
        ),
    ] {
        std::fs::copy(dir.path("cut.csv"), dir.path(&format!("{name}.csv"))).unwrap();
        std::fs::copy(&checkpoint, dir.path(&format!("{name}-resume.safetensors"))).unwrap();
        let resume = dir.arg(&format!("{name}-resume.safetensors"));
        let resumed = trained(
            &dir,
            name,
            &parquet,
            &val,
            &[extra, &["--resume", &resume]].concat(),
        );
        assert_same(&resumed, &whole, name);
    }
}

#[test]
fn ctrl_c_during_a_streamed_run_saves_at_a_step_and_resumes_exactly() {
    let dir = Dir::new("ctrl-c");
    let [parquet, _, _] = table(&dir, "train", 20_000, 999, 5);
    let (model, checkpoint) = (dir.arg("m.safetensors"), dir.arg("c.safetensors"));
    let common = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            &parquet,
            "--fill-null",
            "-1.5",
            "--arch",
            "4,16,3",
            "--batch-size",
            "8",
            "--shuffle-window",
            "4096:512",
            "--device",
            "cpu",
            "--stream",
            "-q",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let args = common(&[
        "--epochs",
        "1000",
        "--save",
        &model,
        "--checkpoint",
        &checkpoint,
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_retroprop"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !Path::new(&checkpoint).exists() {
        assert!(Instant::now() < deadline, "no checkpoint within 180 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Inside the second epoch, while windows are read.
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-s", "INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr:\n{stderr}");
    let (_, _, saved) = retroprop::io::load_checkpoint(Path::new(&checkpoint)).unwrap();
    assert!(
        saved.step > 2500,
        "stopped at step {} (2 500 an epoch)",
        saved.step
    );
    assert_eq!(saved.rows_done % 8, 0, "not at a step");
    let total = (saved.step + 3000).to_string();
    let resumed = dir.arg("r.safetensors");
    ok(&common(&[
        "--steps",
        &total,
        "--resume",
        &checkpoint,
        "--save",
        &resumed,
    ])
    .iter()
    .map(String::as_str)
    .collect::<Vec<_>>());
    let whole = dir.arg("w.safetensors");
    ok(&common(&["--steps", &total, "--save", &whole])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(
        std::fs::read(resumed).unwrap() == std::fs::read(whole).unwrap(),
        "interrupted at step {}, resumed to {total}: not the run never interrupted",
        saved.step
    );
}

#[test]
fn a_corrupt_row_group_ends_a_streamed_run_naming_the_file_and_the_group() {
    let dir = Dir::new("corrupt");
    let [parquet, _, _] = table(&dir, "train", 3000, 500, 6);
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(&parquet).unwrap(),
        )
        .unwrap(),
    )
    .clone();
    let chunk = meta.row_group(4).column(2);
    let at = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset()) as usize;
    let mut bytes = std::fs::read(&parquet).unwrap();
    bytes[at..at + 16].fill(0xff);
    std::fs::write(&parquet, bytes).unwrap();
    let model = dir.arg("m.safetensors");
    // No loss named: the targets pass reads only the label, and the run
    // meets the corrupt features in the third window.
    fails(
        &[
            "train",
            "--data",
            &parquet,
            "--fill-null",
            "-1.5",
            "--stream",
            "--device",
            "cpu",
            "--shuffle-window",
            "1024:512",
            "--no-shuffle",
            "--save",
            &model,
            "-q",
        ],
        1,
        &["train.parquet", "row group 4"],
    );
    assert!(!Path::new(&model).exists(), "a model was saved");
}

#[test]
fn predictions_and_evaluations_streamed_are_those_held() {
    let dir = Dir::new("predict");
    let [parquet, _, npy] = table(&dir, "train", 20_000, 3001, 7);
    // One network, and an ensemble of three (a file of members).
    let (one, ensemble) = (dir.arg("m.safetensors"), dir.arg("e.safetensors"));
    for (model, members) in [(&one, "1"), (&ensemble, "3")] {
        let mut args = vec![
            "train",
            "--data",
            &parquet,
            "--fill-null",
            "-1.5",
            "--epochs",
            "1",
            "--standardize",
            "--device",
            "cpu",
            "--save",
            model,
            "-q",
        ];
        if members != "1" {
            args.extend(["--members", members]);
        }
        ok(&args);
    }
    for (model, data) in [(&one, &parquet), (&one, &npy), (&ensemble, &parquet)] {
        for out in ["p.csv", "p.parquet"] {
            let (held, streamed) = (
                dir.arg(&format!("held-{out}")),
                dir.arg(&format!("streamed-{out}")),
            );
            let predict = |out: &str, extra: &[&str]| {
                let mut args = vec![
                    "predict", "--model", model, "--data", data, "--out", out, "--device", "cpu",
                ];
                if data.ends_with(".parquet") {
                    args.extend(["--fill-null", "-1.5", "--exclude", "label"]);
                }
                args.extend_from_slice(extra);
                ok(&args);
            };
            predict(&held, &[]);
            predict(&streamed, &["--stream"]);
            if out.ends_with(".csv") {
                assert_eq!(
                    std::fs::read_to_string(&streamed).unwrap(),
                    std::fs::read_to_string(&held).unwrap(),
                    "{model}, {data}: predictions to {out}"
                );
            } else {
                assert_eq!(
                    parquet_rows(&streamed),
                    parquet_rows(&held),
                    "{model}, {data}: {out}"
                );
            }
        }
        let evaluate = |extra: &[&str]| {
            let mut args = vec![
                "evaluate", "--model", model, "--data", data, "--device", "cpu",
            ];
            if data.ends_with(".parquet") {
                args.extend(["--fill-null", "-1.5"]);
            }
            args.extend_from_slice(extra);
            ok(&args)
        };
        let streamed = evaluate(&["--stream"]);
        assert_eq!(streamed, evaluate(&[]), "{model}, {data}: evaluate");
        assert_eq!(
            streamed.contains("the ensemble of 3 members"),
            model == &ensemble,
            "{streamed}"
        );
    }
}

/// Every column of a Parquet file, as text, row by row.
fn parquet_rows(path: &str) -> Vec<String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(path).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let formatted = batch
            .columns()
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join("|");
        rows.push(formatted);
    }
    rows
}

#[test]
fn what_cannot_stream_is_refused_by_name() {
    let dir = Dir::new("refused");
    let [parquet, csv, _] = table(&dir, "train", 100, 41, 8);
    fails(
        &["train", "--data", &csv, "--stream"],
        1,
        &["--stream", "CSV", "train.csv"],
    );
    fails(
        &[
            "train",
            "--data",
            &parquet,
            "--fill-null",
            "0",
            "--stream",
            "--val-split",
            "0.2",
        ],
        1,
        &["--val-split", "--val FILE"],
    );
    fails(&["train", "--stream"], 1, &["--stream", "--data"]);
    fails(
        &[
            "train",
            "--data",
            &parquet,
            "--fill-null",
            "0",
            "--stream",
            "--members",
            "2",
        ],
        1,
        &["--stream", "--members", "drop --stream"],
    );
    fails(
        &[
            "predict",
            "--model",
            "x.safetensors",
            "--data",
            &csv,
            "--stream",
        ],
        1,
        &["x.safetensors"],
    );
}
