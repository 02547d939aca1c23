//! Training from rows read a part at a time (`retroprop::stream`): a run
//! streamed is the run of the same rows held in memory in the same order
//! (`TrainConfig::shuffle_window`), bit for bit, on every backend: its
//! parameters, its records, its validation and its checkpoints; a
//! streamed run cut or stopped inside an epoch resumes bit for bit; a read
//! that fails ends the run with the reader's error, without a hang; ranks
//! that stream their shares of each batch equal ranks that hold the data,
//! and read fewer rows; evaluation and prediction streamed equal them
//! held.

mod common;

use common::backend_tests;
use retroprop::data::{EpochWindows, ShuffleWindow, epoch_order, windowed_order};
use retroprop::parallel::Threads;
use retroprop::stream::{Chunk, RowSource, Streamed};
use retroprop::{
    Activation, Adam, Checkpoint, Dataset, Device, Error, History, Loss, Mlp, Standardizer,
    StopFlag, Targets, TrainConfig, Trainer,
};
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `rows` rows of 3 features and a class of 3 from them.
fn classes(rows: usize, seed: u64) -> Dataset {
    let x = common::random(rows * 3, -2.0, 3.0, seed);
    let labels = x
        .chunks(3)
        .map(|r| match (r[0] + r[1] > 0.5, r[2] > 0.0) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        })
        .collect();
    Dataset::new(x, 3, Targets::Classes(labels)).unwrap()
}

fn mlp() -> Mlp {
    Mlp::with_activations(&[3, 7, 3], &[Activation::Tanh, Activation::Identity]).unwrap()
}

/// Windows of 4 chunks of 16 rows over 301 rows (19 chunks, the last of
/// 13 rows: 5 windows, the last of 3 chunks), batches of 11 that straddle
/// windows, dropout, and a step in the middle of the second epoch's last
/// window as the bound where one is wanted.
fn config() -> TrainConfig {
    TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .optimizer(Adam::default().lr(0.01))
        .batch_size(11)
        .dropout(0.1)
        .seed(6)
        .epochs(3)
        .shuffle_window("64:16".parse().unwrap())
}

/// What a run leaves: its parameters, each epoch's losses by their bits,
/// and where it ends.
#[derive(Debug, PartialEq)]
struct Run {
    params: Vec<f32>,
    losses: Vec<(u64, Option<u64>)>,
    end: Checkpoint,
}

fn run_of(trainer: &mut Trainer, history: &History) -> Run {
    Run {
        params: trainer.parameters().unwrap(),
        losses: history
            .epochs
            .iter()
            .map(|r| {
                (
                    r.train_loss.to_bits(),
                    r.validation.map(|v| v.loss.to_bits()),
                )
            })
            .collect(),
        end: trainer.checkpoint().unwrap(),
    }
}

/// The same rows scaled as the program scales them: fitted in memory for
/// the held run, by the stream's passes for the streamed one.
fn held_and_streamed(train: &Dataset) -> (Dataset, Streamed) {
    let mut held = train.clone();
    let standardizer = Standardizer::fit(train);
    standardizer.apply(&mut held).unwrap();
    let streamed = Streamed::new(train.clone());
    let fitted = streamed.fit_standardizer().unwrap();
    assert_eq!(
        fitted, standardizer,
        "the streamed fit of the standardisation"
    );
    (held, streamed.with_standardizer(Some(fitted)))
}

#[test]
fn one_window_is_the_whole_shuffle_and_windows_visit_every_row_once() {
    let window = ShuffleWindow::Rows {
        rows: 64,
        chunk_rows: 16,
    };
    for rows in [1, 15, 64] {
        assert_eq!(
            windowed_order(rows, true, 3, 2, window),
            epoch_order(rows, true, 3, 2),
            "{rows} rows: one window"
        );
    }
    assert_eq!(
        windowed_order(301, true, 3, 2, ShuffleWindow::Full),
        epoch_order(301, true, 3, 2)
    );
    assert_eq!(
        windowed_order(301, false, 3, 2, window),
        epoch_order(301, false, 3, 2)
    );
    let order = windowed_order(301, true, 3, 2, window);
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, (0..301).collect::<Vec<u32>>());
    // Each window's rows are its chunks' and nothing else, taken in turn.
    let windows = EpochWindows::new(301, true, 3, 2, window);
    let mut at = 0;
    for w in 0..windows.len() {
        let mut held: Vec<u32> = windows
            .chunks(w)
            .iter()
            .flat_map(|&c| windows.chunk_rows(c))
            .map(|r| r as u32)
            .collect();
        let mut visited = order[at..at + held.len()].to_vec();
        held.sort();
        visited.sort();
        assert_eq!(visited, held, "window {w}");
        at += held.len();
    }
    assert_eq!(at, 301);
    assert_ne!(
        order,
        windowed_order(301, true, 3, 3, window),
        "each epoch its own"
    );
    assert_ne!(
        order,
        epoch_order(301, true, 3, 2),
        "windows keep rows near their chunks"
    );
}

backend_tests! {
    /// A run streamed (the standardisation fitted by the stream's passes,
    /// the validation streamed) is the run of the same rows held in
    /// memory: the same parameters, records and checkpoint, bit for bit.
    fn a_streamed_run_is_the_run_held_in_memory(device: Device) {
        let (train, validation) = (classes(301, 1), classes(40, 2));
        let (held, streamed) = held_and_streamed(&train);
        let standardizer = streamed.standardizer().cloned();
        let mut held_validation = validation.clone();
        standardizer.as_ref().unwrap().apply(&mut held_validation).unwrap();
        let streamed_validation = Streamed::new(validation).with_standardizer(standardizer);
        for config in [config(), config().shuffle(false), config().batch_size(100), config().batch_size(1000)] {
            let mut memory = common::trainer(mlp(), config.clone(), device);
            let history = memory.fit(&held, Some(&held_validation)).unwrap();
            let want = run_of(&mut memory, &history);
            let mut stream = common::trainer(mlp(), config.clone(), device);
            let history = stream
                .fit_streamed(&streamed, Some(&streamed_validation), |_| {}, 0, |_| Ok(()))
                .unwrap();
            let got = run_of(&mut stream, &history);
            assert_eq!(got, want, "{device}: batch {:?}, shuffle {}", config.batch_size, config.shuffle);
        }
    }

    /// A streamed run cut inside an epoch by a step bound (in a window past
    /// the first, with the batch straddling two windows), checkpointed and
    /// resumed streamed, ends as the run never cut; so does one resumed in
    /// memory, and a held run resumed streamed.
    fn a_streamed_run_resumes_mid_epoch_bit_for_bit(device: Device) {
        let (held, streamed) = held_and_streamed(&classes(301, 3));
        let mut whole = common::trainer(mlp(), config(), device);
        let history = whole.fit_streamed(&streamed, None, |_| {}, 0, |_| Ok(())).unwrap();
        let want = run_of(&mut whole, &history);
        // 28 steps a epoch: step 40 is epoch 2's 12th, rows 121..132.
        let mut cut = common::trainer(mlp(), config().max_steps(40), device);
        let history = cut.fit_streamed(&streamed, None, |_| {}, 0, |_| Ok(())).unwrap();
        assert!(history.cut_mid_epoch, "{device}: not cut inside an epoch");
        let saved = cut.checkpoint().unwrap();
        assert_eq!((saved.epoch, saved.rows_done), (1, 132), "{device}: where it was cut");
        for resumed_streamed in [true, false] {
            let mut resumed = common::trainer_with(mlp(), saved.params.clone(), config().epochs(2), device);
            resumed.restore(&saved).unwrap();
            let history = match resumed_streamed {
                true => resumed.fit_streamed(&streamed, None, |_| {}, 0, |_| Ok(())),
                false => resumed.fit(&held, None),
            }
            .unwrap();
            let got = run_of(&mut resumed, &history);
            assert_eq!(got.params, want.params, "{device}: resumed (streamed: {resumed_streamed})");
            assert_eq!(got.end, want.end, "{device}: the end's checkpoint");
        }
        let mut cut_held = common::trainer(mlp(), config().max_steps(40), device);
        cut_held.fit(&held, None).unwrap();
        assert_eq!(cut_held.checkpoint().unwrap(), saved, "{device}: cut held and streamed");
    }
}

/// A source that counts its reads, fails at a row, or requests a stop
/// when it first reads at or past a row.
struct Probe {
    data: Dataset,
    reads: Arc<AtomicUsize>,
    rows_read: Arc<AtomicUsize>,
    fail_at: Option<usize>,
    stop_at: Option<(usize, StopFlag)>,
}

impl Probe {
    fn new(data: Dataset) -> Probe {
        Probe {
            data,
            reads: Arc::default(),
            rows_read: Arc::default(),
            fail_at: None,
            stop_at: None,
        }
    }
}

impl RowSource for Probe {
    fn rows(&self) -> usize {
        self.data.rows()
    }
    fn features(&self) -> usize {
        self.data.features()
    }
    fn target_width(&self) -> usize {
        self.data.target_width()
    }
    fn classes(&self) -> bool {
        RowSource::classes(&self.data)
    }
    fn name(&self) -> String {
        "probe.parquet".into()
    }
    fn read(&self, rows: Range<usize>, out: &mut Chunk) -> retroprop::Result<()> {
        if let Some(row) = self.fail_at.filter(|r| rows.contains(r)) {
            return Err(Error::Parse {
                path: "probe.parquet".into(),
                message: format!("row group 3: cannot decode row {row}"),
            });
        }
        if let Some((row, flag)) = &self.stop_at
            && rows.end > *row
        {
            flag.request();
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.rows_read.fetch_add(rows.len(), Ordering::Relaxed);
        self.data.read(rows, out)
    }
    fn fingerprint(&self) -> u64 {
        self.data.fingerprint()
    }
}

#[test]
fn a_failing_read_ends_the_run_with_its_error_and_keeps_the_steps_that_ran() {
    let data = classes(301, 4);
    let probe = Probe {
        fail_at: Some(200),
        ..Probe::new(data.clone())
    };
    let config = config().shuffle(false).device(Device::Cpu);
    let mut trainer = Trainer::new(mlp(), config.clone()).unwrap();
    let started = std::time::Instant::now();
    let error = trainer
        .fit_streamed(&Streamed::new(probe), None, |_| {}, 0, |_| Ok(()))
        .unwrap_err();
    assert!(started.elapsed().as_secs() < 30, "a hang");
    let message = error.to_string();
    assert!(
        message.contains("probe.parquet") && message.contains("row group 3"),
        "{message}"
    );
    // In file order, windows of 64 rows: rows up to 192 trained (whole
    // batches of 11 in them: 187 rows, 17 steps) before the failing window.
    let at = trainer.checkpoint().unwrap();
    assert_eq!(
        (at.step, at.rows_done),
        (17, 187),
        "where the trainer stands"
    );
    let mut bounded = Trainer::new(mlp(), config.max_steps(17)).unwrap();
    bounded.fit(&data, None).unwrap();
    assert_eq!(bounded.checkpoint().unwrap(), at, "the steps that ran");
}

#[test]
fn a_reader_that_panics_ends_the_run_with_an_error_not_a_hang() {
    struct Panics(Dataset);
    impl RowSource for Panics {
        fn rows(&self) -> usize {
            self.0.rows()
        }
        fn features(&self) -> usize {
            self.0.features()
        }
        fn target_width(&self) -> usize {
            1
        }
        fn classes(&self) -> bool {
            true
        }
        fn name(&self) -> String {
            "panics.npy".into()
        }
        fn read(&self, rows: Range<usize>, out: &mut Chunk) -> retroprop::Result<()> {
            assert!(rows.start < 100, "a decoder's bug");
            self.0.read(rows, out)
        }
        fn fingerprint(&self) -> u64 {
            0
        }
    }
    let mut trainer = Trainer::new(mlp(), config().shuffle(false).device(Device::Cpu)).unwrap();
    let error = trainer
        .fit_streamed(
            &Streamed::new(Panics(classes(301, 5))),
            None,
            |_| {},
            0,
            |_| Ok(()),
        )
        .unwrap_err();
    assert!(error.to_string().contains("panics.npy"), "{error}");
}

#[test]
fn a_stop_while_streaming_lands_on_a_step_boundary_and_resumes_bit_for_bit() {
    let data = classes(301, 7);
    let flag = StopFlag::new();
    // In file order, the reader asks for a stop as it reads the third
    // window (rows 128..192): training is then in the second, or waits.
    let probe = Probe {
        stop_at: Some((130, flag.clone())),
        ..Probe::new(data.clone())
    };
    let config = config().shuffle(false).device(Device::Cpu);
    let mut stopped = Trainer::new(mlp(), config.clone().stop_flag(flag)).unwrap();
    let history = stopped
        .fit_streamed(&Streamed::new(probe), None, |_| {}, 0, |_| Ok(()))
        .unwrap();
    assert!(history.interrupted, "not interrupted");
    let saved = stopped.checkpoint().unwrap();
    assert!(
        saved.epoch == 0 && saved.rows_done > 0 && saved.rows_done < 301,
        "stopped at epoch {} row {}",
        saved.epoch,
        saved.rows_done
    );
    assert_eq!(saved.rows_done % 11, 0, "a step boundary");
    let mut resumed =
        Trainer::with_parameters(mlp(), saved.params.clone(), config.clone()).unwrap();
    resumed.restore(&saved).unwrap();
    resumed
        .fit_streamed(&Streamed::new(data.clone()), None, |_| {}, 0, |_| Ok(()))
        .unwrap();
    let mut whole = Trainer::new(mlp(), config).unwrap();
    whole.fit(&data, None).unwrap();
    assert_eq!(resumed.parameters().unwrap(), whole.parameters().unwrap());
}

#[test]
fn ranks_streaming_their_shares_equal_ranks_holding_the_rows_and_read_less() {
    let data = classes(301, 8);
    for (ranks, shuffle, batch) in [(2, true, 11), (3, true, 64), (2, false, 64)] {
        let config = config()
            .shuffle(shuffle)
            .batch_size(batch)
            .device(Device::Cpu);
        let runs: Vec<(Vec<f32>, Checkpoint, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = Threads::group(ranks)
                .into_iter()
                .zip(Threads::group(ranks))
                .map(|(held_rank, streamed_rank)| {
                    let (config, data) = (&config, &data);
                    s.spawn(move || {
                        let trainer = Trainer::new(mlp(), config.clone()).unwrap();
                        let mut held = trainer.with_collective(Box::new(held_rank)).unwrap();
                        held.fit(data, None).unwrap();
                        let trainer = Trainer::new(mlp(), config.clone()).unwrap();
                        let mut streamed =
                            trainer.with_collective(Box::new(streamed_rank)).unwrap();
                        let probe = Probe::new(data.clone());
                        let rows_read = probe.rows_read.clone();
                        streamed
                            .fit_streamed(&Streamed::new(probe), None, |_| {}, 0, |_| Ok(()))
                            .unwrap();
                        assert_eq!(streamed.parameters().unwrap(), held.parameters().unwrap());
                        (
                            streamed.parameters().unwrap(),
                            streamed.checkpoint().unwrap(),
                            rows_read.load(Ordering::Relaxed),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (rank, run) in runs.iter().enumerate() {
            assert_eq!(run.0, runs[0].0, "{ranks} ranks: rank {rank} ended apart");
            assert_eq!(run.1, runs[0].1, "{ranks} ranks: rank {rank}'s checkpoint");
        }
        let read: Vec<usize> = runs.iter().map(|r| r.2).collect();
        println!("{ranks} ranks, shuffle {shuffle}, batch {batch}: rows read {read:?} of 3 × 301");
        if !shuffle {
            // In file order a rank's shares of batches of 64 are the
            // chunks of 16 rows it reads alone: half the rows, and one
            // chunk more where the epoch's short last batch (45 rows) cuts
            // a chunk between the ranks.
            assert!(
                read.iter().all(|&r| r <= 3 * (301 / 2 + 16)),
                "rows read: {read:?}"
            );
        }
    }
}

backend_tests! {
    /// Evaluation and prediction streamed in the backend's parts give the
    /// numbers of the rows held, bit for bit, past a part's rows.
    fn evaluation_and_prediction_streamed_equal_them_held(device: Device) {
        let data = classes(20_000, 9);
        let mut trainer = common::trainer(mlp(), config(), device);
        let held = trainer.evaluate(&data).unwrap();
        let streamed = trainer.evaluate_streamed(&Streamed::new(data.clone())).unwrap();
        assert_eq!(streamed.loss.to_bits(), held.loss.to_bits(), "{device}: loss");
        assert_eq!(streamed.accuracy, held.accuracy, "{device}: accuracy");
        let want = trainer.predict(data.x()).unwrap();
        let mut got = Vec::new();
        let rows = trainer
            .predict_streamed(&Streamed::new(data.clone()), |part| {
                got.extend_from_slice(part);
                Ok(())
            })
            .unwrap();
        assert_eq!(rows, 20_000);
        assert!(got == want, "{device}: predictions differ");
    }
}

// Files read a range at a time: the same rows as the file read whole.

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use retroprop::io::npy::NpySource;
use retroprop::io::parquet::{ParquetColumns, ParquetSource, TargetColumns};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/formats")
        .join(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("retroprop-streaming-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `source` read in consecutive ranges of `step` rows (and once whole),
/// each time the rows of `whole`.
fn assert_reads_as(source: &Streamed, whole: &Dataset, what: &str) {
    assert_eq!(
        (source.rows(), source.features(), source.target_width()),
        (whole.rows(), whole.features(), whole.target_width()),
        "{what}: shape"
    );
    for step in [1, 5, 13, 64, whole.rows()] {
        let mut chunk = Chunk::default();
        let mut start = 0;
        while start < whole.rows() {
            let end = (start + step).min(whole.rows());
            source.read_into(start..end, &mut chunk).unwrap();
            start = end;
        }
        let read = Streamed::new(whole.clone()).dataset_of(chunk).unwrap();
        assert!(
            read == *whole,
            "{what}: read in ranges of {step} rows differs"
        );
    }
    let targets = source.target_summary().unwrap();
    assert_eq!(
        format!("{:?}", targets.suggested_loss()),
        format!("{:?}", whole.suggested_loss()),
        "{what}: the loss the targets suggest"
    );
}

/// A table of wide integers, float64 and labels in row groups of `group`
/// rows, written by the parquet crate (Snappy-compressed).
fn parquet_table(rows: usize, group: usize, seed: u64) -> PathBuf {
    let values = common::random(rows * 2, -1e6, 1e6, seed);
    let wide: Vec<i64> = values[..rows].iter().map(|&v| (v as i64) << 30).collect();
    let real: Vec<f64> = values[rows..].iter().map(|&v| v as f64 / 7.0).collect();
    let label: Vec<i64> = (0..rows).map(|r| ((r * 7) % 3) as i64).collect();
    let arrays: Vec<(&str, ArrayRef)> = vec![
        ("wide", Arc::new(Int64Array::from(wide))),
        ("real", Arc::new(Float64Array::from(real))),
        ("label", Arc::new(Int64Array::from(label))),
    ];
    let batch = RecordBatch::try_from_iter(arrays).unwrap();
    let properties = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let path = scratch(&format!("table-{rows}-{group}.parquet"));
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(properties),
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    path
}

#[test]
fn parquet_files_read_in_ranges_are_the_files_read_whole() {
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let nulls_filled = ParquetColumns {
        features: Some(names(&["b", "a"])),
        targets: TargetColumns::Named(names(&["t1", "t2"])),
        exclude: Vec::new(),
        fill_null: Some(-1.5),
    };
    let mut cases = vec![
        (fixture("table.parquet"), ParquetColumns::default(), true),
        (fixture("table.parquet"), ParquetColumns::default(), false),
        (fixture("nulls.parquet"), nulls_filled, false),
    ];
    for (rows, group) in [(1, 1), (65, 13), (300, 7), (9000, 8191)] {
        cases.push((
            parquet_table(rows, group, rows as u64),
            ParquetColumns::default(),
            true,
        ));
    }
    for (path, columns, classes) in cases {
        let what = format!("{} (classes {classes})", path.display());
        let whole = Dataset::from_parquet(&path, &columns, classes).unwrap();
        let source = ParquetSource::open(&path, &columns, classes).unwrap();
        assert_reads_as(&Streamed::new(source), &whole, &what);
    }
    // A null without a fill value is named as the whole file's reader names it.
    let columns = ParquetColumns {
        targets: TargetColumns::Named(names(&["t1", "t2"])),
        exclude: names(&["name"]),
        ..ParquetColumns::default()
    };
    let whole = Dataset::from_parquet(fixture("nulls.parquet"), &columns, false).unwrap_err();
    let source = ParquetSource::open(&fixture("nulls.parquet"), &columns, false).unwrap();
    let part = source.read(14..20, &mut Chunk::default()).unwrap_err();
    assert_eq!(part.to_string(), whole.to_string());
}

/// An `.npy` file's bytes: a version 1 header of `descr`, the order and
/// the shape, then `data`.
fn npy(descr: &str, fortran: bool, shape: (usize, usize), data: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {order}, 'shape': ({}, {}), }}",
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

#[test]
fn npy_arrays_of_any_dtype_and_order_read_in_ranges_are_the_arrays_read_whole() {
    let whole = Dataset::from_npy(fixture("table.npy"), 1, true).unwrap();
    let source = NpySource::open(&fixture("table.npy"), 1, true).unwrap();
    assert_reads_as(&Streamed::new(source), &whole, "table.npy");
    // 37 rows of 4 columns, the last a label 0..3.
    let (rows, columns) = (37, 4);
    let value = |r: usize, c: usize| match c {
        3 => (r % 3) as f64,
        _ => ((r * 31 + c * 7) % 23) as f64 - 11.0 + 0.25 * c as f64,
    };
    type Encode = fn(f64) -> Vec<u8>;
    let dtypes: [(&str, Encode); 6] = [
        ("<f8", |v| v.to_le_bytes().to_vec()),
        (">f8", |v| v.to_be_bytes().to_vec()),
        (">f4", |v| (v as f32).to_be_bytes().to_vec()),
        ("<f2", |v| half_bits(v as f32).to_le_bytes().to_vec()),
        (">i2", |v| (v.floor() as i16).to_be_bytes().to_vec()),
        ("<i8", |v| {
            ((v.floor() as i64) << 33 >> 33).to_le_bytes().to_vec()
        }),
    ];
    for (descr, encode) in dtypes {
        for fortran in [false, true] {
            let mut data = Vec::new();
            match fortran {
                false => (0..rows)
                    .for_each(|r| (0..columns).for_each(|c| data.extend(encode(value(r, c))))),
                true => (0..columns)
                    .for_each(|c| (0..rows).for_each(|r| data.extend(encode(value(r, c))))),
            }
            let path = scratch(&format!(
                "array-{}-{fortran}.npy",
                descr.replace(['<', '>'], "")
            ));
            std::fs::write(&path, npy(descr, fortran, (rows, columns), &data)).unwrap();
            for (targets, classes) in [(1, true), (2, false)] {
                let what = format!("{descr}, fortran {fortran}, {targets} targets");
                let whole = Dataset::from_npy(&path, targets, classes).unwrap();
                let source = NpySource::open(&path, targets, classes).unwrap();
                assert_reads_as(&Streamed::new(source), &whole, &what);
            }
        }
    }
}

/// f32 to f16 bits (round to nearest even), for the values above: small
/// quarter-integers, exact in f16.
fn half_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if v == 0.0 {
        return sign;
    }
    let exponent = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mantissa = ((bits >> 13) & 0x3ff) as u16;
    sign | ((exponent as u16) << 10) | mantissa
}

#[test]
fn a_corrupt_row_group_ends_a_streamed_run_naming_the_file_and_group() {
    let path = scratch("corrupt.parquet");
    std::fs::copy(parquet_table(600, 100, 3), &path).unwrap();
    // Row group 4's first page header overwritten.
    let meta = parquet::file::reader::FileReader::metadata(
        &parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(&path).unwrap(),
        )
        .unwrap(),
    )
    .clone();
    let chunk = meta.row_group(4).column(0);
    let at = chunk
        .dictionary_page_offset()
        .unwrap_or(chunk.data_page_offset()) as usize;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at..at + 12].fill(0xff);
    std::fs::write(&path, bytes).unwrap();
    let source = ParquetSource::open(&path, &ParquetColumns::default(), true).unwrap();
    let config = TrainConfig::default()
        .loss(Loss::CrossEntropy)
        .batch_size(16)
        .epochs(2)
        .device(Device::Cpu)
        .shuffle_window("128:32".parse().unwrap());
    let mlp = Mlp::with_activations(&[2, 4, 3], &[Activation::Tanh, Activation::Identity]).unwrap();
    let mut trainer = Trainer::new(mlp, config).unwrap();
    let started = std::time::Instant::now();
    let error = trainer
        .fit_streamed(&Streamed::new(source), None, |_| {}, 0, |_| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(started.elapsed().as_secs() < 30, "a hang");
    assert!(
        error.contains("corrupt.parquet") && error.contains("row group 4"),
        "{error}"
    );
    assert!(trainer.steps() > 0 || error.contains("row group 4"));
}
