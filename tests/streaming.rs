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
            // In file order a rank's shares of batches of 64 lie in the
            // chunks of 16 rows it reads alone.
            assert!(
                read.iter().all(|&r| r < 301 * 3 * 2 / 3),
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
