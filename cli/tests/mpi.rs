//! `mpirun -np N retroprop train ...` (built with `--features mpi`): N
//! ranks train the model one process trains, for every optimizer and loss,
//! on the CPU and on the GPU; two runs of one command write the same
//! bytes; a checkpoint resumes on another number of ranks; a bad input on
//! one rank, a rank killed mid-run and a SIGINT to mpirun end every rank
//! with one message and no hang, the checkpoint whole.
//!
//! Run with `cargo test --release -p retroprop-cli --features mpi --test
//! mpi`. Needs `mpirun` (Debian: `apt-get install libopenmpi-dev
//! openmpi-bin`); without it every test fails saying so. As root, OpenMPI
//! needs OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1,
//! which these tests set.
#![cfg(feature = "mpi")]

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use retroprop::io::{load_checkpoint, load_model};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::Dir;

/// Longest wait for a run: a hang fails the test instead of blocking.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished command left.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Ended {
    /// The `error:` lines of its standard error.
    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect()
    }
}

/// `mpirun -np ranks retroprop args` (one process without mpirun when
/// `ranks` is 0), started with its output in files under `dir`.
fn start(dir: &Dir, name: &str, ranks: usize, args: &[String]) -> Child {
    let exe = env!("CARGO_BIN_EXE_retroprop");
    let mut command = if ranks == 0 {
        Command::new(exe)
    } else {
        let mut mpirun = Command::new("mpirun");
        mpirun.args(["--oversubscribe", "-np", &ranks.to_string(), exe]);
        mpirun
    };
    command
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Each rank keeps to one thread (rayon and OpenBLAS), as the
        // measurements in docs/scaling.md do.
        .env("RAYON_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path(&format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.path(&format!("{name}.err"))).unwrap());
    command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start mpirun ({e}): install an MPI, e.g. `apt-get install libopenmpi-dev \
             openmpi-bin libclang-dev pkg-config`"
        )
    })
}

/// Waits for `child` (killing it past [`TIMEOUT`], which fails the test).
fn wait(dir: &Dir, name: &str, mut child: Child) -> Ended {
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} did not end within {TIMEOUT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |ext: &str| std::fs::read_to_string(dir.path(&format!("{name}.{ext}"))).unwrap();
    let ended = Ended {
        code: status.code(),
        stdout: read("out"),
        stderr: read("err"),
    };
    assert!(
        !ended.stderr.contains("panicked"),
        "{name} panicked:\n{}",
        ended.stderr
    );
    ended
}

/// A run that must succeed; its stdout.
fn ok(dir: &Dir, name: &str, ranks: usize, args: &[String]) -> String {
    let ended = wait(dir, name, start(dir, name, ranks, args));
    assert_eq!(
        ended.code,
        Some(0),
        "{name} ({ranks} ranks) failed:\nstdout:\n{}\nstderr:\n{}",
        ended.stdout,
        ended.stderr
    );
    ended.stdout
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// 61 rows of 4 features, then `targets` columns: class labels (one
/// column, 3 classes), 0/1 values, or real values. With batches of 8 the
/// last batch has 5 rows: uneven shares on 2 and 3 ranks.
fn csv(dir: &Dir, kind: &str) -> String {
    let x = common::random(61 * 4, -1.0, 1.0, 3);
    let mut text = String::new();
    for r in x.chunks(4) {
        let features = r
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let targets = match kind {
            "classes" => format!("{}", (r[0] + r[1] > 0.0) as u8 + (r[2] > 0.4) as u8),
            "binary" => format!("{},{}", (r[0] > 0.0) as u8, (r[1] * r[3] > 0.0) as u8),
            _ => format!("{},{}", r[0] * r[1], r[2] - r[3]),
        };
        text += &format!("{features},{targets}\n");
    }
    dir.write(&format!("{kind}.csv"), &text)
        .to_str()
        .unwrap()
        .to_string()
}

/// The arguments of a small run on `device` of `data` with `targets`
/// target columns, saving to `save`, then `extra` (which may set
/// --arch, --batch-size and --epochs instead of the defaults).
fn train_args(data: &str, targets: &str, device: &str, save: &str, extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "train",
        "--data",
        data,
        "--targets",
        targets,
        "--activations",
        "tanh",
        "--seed",
        "5",
        "--device",
        device,
        "--weight-init",
        "xavier_uniform",
        "--save",
        save,
        "-q",
    ]);
    for (flag, default) in [
        ("--arch", "4,9,7,3"),
        ("--batch-size", "8"),
        ("--epochs", "3"),
    ] {
        if !extra.contains(&flag) {
            args.extend(strings(&[flag, default]));
        }
    }
    args.extend(strings(extra));
    args
}

/// The saved parameters of `path`.
fn params(path: &Path) -> Vec<f32> {
    load_model(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .params
}

/// max |a − b| ≤ tolerance · max |b| (see tests/parallel.rs for why the
/// scale of the tensor, not each element).
fn assert_scaled(what: &str, got: &[f32], want: &[f32], tolerance: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
    let gap = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    let relative = gap / scale;
    println!("{what}: largest difference {gap:.2e}, {relative:.2e} of the scale {scale:.2e}");
    assert!(
        relative <= tolerance,
        "{what}: parameters differ by {relative:.2e} of their scale"
    );
}

/// Trains `extra` on one process and on 2 and 3 ranks, comparing the saved
/// parameters.
fn matches_one_process(
    dir: &Dir,
    name: &str,
    data: &str,
    targets: &str,
    device: &str,
    extra: &[&str],
    tolerance: f64,
) {
    let run = |ranks: usize| {
        let save = dir.arg(&format!("{name}-{ranks}.safetensors"));
        let args = train_args(data, targets, device, &save, extra);
        ok(dir, &format!("{name}-{ranks}"), ranks, &args);
        params(Path::new(&save))
    };
    let one = run(0);
    for ranks in [2, 3] {
        assert_scaled(
            &format!("{name} on {ranks} ranks"),
            &run(ranks),
            &one,
            tolerance,
        );
    }
}

#[test]
fn every_optimizer_on_2_and_3_ranks_matches_one_process() {
    let dir = Dir::new("optimizers");
    let data = csv(&dir, "classes");
    let optimizers: [&[&str]; 6] = [
        &[
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--momentum",
            "0.9",
            "--nesterov",
            "--weight-decay",
            "0.01",
        ],
        &["--optimizer", "adam", "--lr", "0.01", "--amsgrad"],
        &[
            "--optimizer",
            "adamw",
            "--lr",
            "0.01",
            "--weight-decay",
            "0.1",
        ],
        &[
            "--optimizer",
            "rmsprop",
            "--lr",
            "0.005",
            "--centered",
            "--momentum",
            "0.5",
        ],
        &[
            "--optimizer",
            "adagrad",
            "--lr",
            "0.05",
            "--lr-decay",
            "0.1",
        ],
        &[
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--dropout",
            "0.2",
            "--clip-grad-norm",
            "0.5",
            "--lr-schedule",
            "step:1:0.5",
        ],
    ];
    for (i, extra) in optimizers.iter().enumerate() {
        matches_one_process(
            &dir,
            &format!("optimizer{i}"),
            &data,
            "1",
            "cpu",
            extra,
            1e-6,
        );
    }
}

#[test]
fn every_loss_on_2_and_3_ranks_matches_one_process() {
    let dir = Dir::new("losses");
    let cases = [
        ("cross_entropy", "classes", "1", "4,9,7,3"),
        ("bce_with_logits", "binary", "2", "4,9,7,2"),
        ("mse", "values", "2", "4,9,7,2"),
        ("half_mse", "values", "2", "4,9,7,2"),
    ];
    for (loss, kind, targets, arch) in cases {
        let data = csv(&dir, kind);
        matches_one_process(
            &dir,
            loss,
            &data,
            targets,
            "cpu",
            &[
                "--loss",
                loss,
                "--arch",
                arch,
                "--optimizer",
                "sgd",
                "--lr",
                "0.05",
                "--momentum",
                "0.9",
            ],
            1e-6,
        );
    }
}

#[test]
fn gpu_ranks_match_one_gpu_process() {
    // Within the GPU parity tolerance: one GPU process runs fused steps,
    // the ranks run the step in phases.
    let dir = Dir::new("gpu");
    let data = csv(&dir, "classes");
    matches_one_process(
        &dir,
        "gpu",
        &data,
        "1",
        "gpu",
        &["--optimizer", "adam", "--lr", "0.01"],
        1e-4,
    );
}

#[test]
fn two_runs_of_one_command_write_the_same_bytes() {
    let dir = Dir::new("bytes");
    let data = csv(&dir, "classes");
    let files = |run: &str| {
        let (save, checkpoint, metrics) = (
            dir.arg(&format!("{run}.safetensors")),
            dir.arg(&format!("{run}-checkpoint.safetensors")),
            dir.arg(&format!("{run}.csv")),
        );
        let extra = [
            "--checkpoint",
            &checkpoint,
            "--metrics",
            &metrics,
            "--val-split",
            "0.2",
            "--dropout",
            "0.1",
        ];
        let args = train_args(&data, "1", "cpu", &save, &extra);
        ok(&dir, run, 3, &args);
        // The metrics' last column is the wall-clock time.
        let metrics: String = std::fs::read_to_string(&metrics)
            .unwrap()
            .lines()
            .map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string() + "\n")
            .collect();
        (
            std::fs::read(save).unwrap(),
            std::fs::read(checkpoint).unwrap(),
            metrics,
        )
    };
    let (first, second) = (files("first"), files("second"));
    assert!(first.0 == second.0, "two runs saved different models");
    assert!(first.1 == second.1, "two runs wrote different checkpoints");
    assert_eq!(first.2, second.2, "two runs wrote different metrics");
    assert_eq!(
        first.2.lines().count(),
        4,
        "a header and 3 epochs:\n{}",
        first.2
    );
}

#[test]
fn a_checkpoint_resumes_on_another_number_of_ranks() {
    // 2 ranks train the first epoch and checkpoint; 3 ranks resume to the
    // end; one process trains it all in one go. (A checkpoint inside an
    // epoch, as a stop leaves, is resumed in tests/parallel.rs.)
    let dir = Dir::new("resume");
    let data = csv(&dir, "classes");
    let whole = dir.arg("whole.safetensors");
    ok(
        &dir,
        "whole",
        0,
        &train_args(&data, "1", "cpu", &whole, &[]),
    );
    let (part, checkpoint, resumed) = (
        dir.arg("part.safetensors"),
        dir.arg("checkpoint.safetensors"),
        dir.arg("resumed.safetensors"),
    );
    let first = train_args(
        &data,
        "1",
        "cpu",
        &part,
        &["--epochs", "1", "--checkpoint", &checkpoint],
    );
    ok(&dir, "first", 2, &first);
    let second = train_args(&data, "1", "cpu", &resumed, &["--resume", &checkpoint]);
    ok(&dir, "second", 3, &second);
    assert_scaled(
        "resumed on 3 ranks",
        &params(Path::new(&resumed)),
        &params(Path::new(&whole)),
        1e-6,
    );
}

/// A residual network with batch normalisation (SGD with momentum: see
/// tests/sync_batch_norm.rs for why not Adam).
const BATCH_NORM: [&str; 12] = [
    "--arch",
    "4,8,3",
    "--blocks",
    "2",
    "--norm",
    "batch",
    "--optimizer",
    "sgd",
    "--lr",
    "0.05",
    "--momentum",
    "0.9",
];

#[test]
fn batch_norm_on_ranks_normalises_by_the_whole_batch_as_one_process() {
    // Batches of 8 leave one of 5 rows: shares of 3/2 and 2/2/1 rows, each
    // normalised by the whole batch's statistics (SyncBatchNorm).
    let dir = Dir::new("sync-batch-norm");
    let data = csv(&dir, "classes");
    let run = |name: &str, ranks: usize, extra: &[&str]| {
        let save = dir.arg(&format!("{name}.safetensors"));
        ok(
            &dir,
            name,
            ranks,
            &train_args(&data, "1", "cpu", &save, extra),
        );
        load_model(Path::new(&save)).unwrap()
    };
    let one = run("one", 0, &BATCH_NORM);
    assert!(!one.buffers.is_empty(), "the file holds running statistics");
    for ranks in [2, 3] {
        let model = run(&format!("ranks{ranks}"), ranks, &BATCH_NORM);
        let what = format!("batch norm on {ranks} ranks");
        assert_scaled(
            &format!("{what}: parameters"),
            &model.params,
            &one.params,
            1e-5,
        );
        assert_scaled(
            &format!("{what}: running statistics"),
            &model.buffers,
            &one.buffers,
            1e-5,
        );
    }
    // Cut after an epoch on 2 ranks, resumed on 3: the checkpoint carries
    // the running statistics to every rank.
    let checkpoint = dir.arg("checkpoint.safetensors");
    let first = [
        &BATCH_NORM[..],
        &["--epochs", "1", "--checkpoint", &checkpoint],
    ]
    .concat();
    run("first", 2, &first);
    let resumed = run(
        "resumed",
        3,
        &[&BATCH_NORM[..], &["--resume", &checkpoint]].concat(),
    );
    assert_scaled(
        "resumed on 3 ranks: parameters",
        &resumed.params,
        &one.params,
        1e-5,
    );
    assert_scaled(
        "resumed on 3 ranks: running statistics",
        &resumed.buffers,
        &one.buffers,
        1e-5,
    );
}

#[test]
fn bad_input_on_one_rank_ends_every_rank_with_one_message() {
    // Rank 1 is given a file that does not exist (MPMD: one command a rank).
    let dir = Dir::new("bad-input");
    let data = csv(&dir, "classes");
    let save = dir.arg("model.safetensors");
    let good = train_args(&data, "1", "cpu", &save, &[]);
    let mut bad = good.clone();
    bad[2] = dir.arg("missing.csv");
    let ended = mpmd(&dir, &[good.clone(), bad, good]);
    assert_ne!(ended.code, Some(0), "a missing file on rank 1 succeeded");
    let errors = ended.error_lines();
    assert_eq!(errors.len(), 1, "one message expected:\n{}", ended.stderr);
    assert!(
        errors[0].contains("rank 1") && errors[0].contains("missing.csv"),
        "the message names the rank and the file: {}",
        errors[0]
    );
    assert!(!Path::new(&save).exists(), "a model was saved");
}

/// One mpirun of a rank per command line (MPMD: `-np 1 retroprop ARGS :
/// -np 1 retroprop ARGS ...`), waited for.
fn mpmd(dir: &Dir, commands: &[Vec<String>]) -> Ended {
    let exe = env!("CARGO_BIN_EXE_retroprop");
    let mut args = strings(&["--oversubscribe"]);
    for (i, command) in commands.iter().enumerate() {
        if i > 0 {
            args.push(":".into());
        }
        args.extend(strings(&["-np", "1", exe]));
        args.extend(command.iter().cloned());
    }
    let child = Command::new("mpirun")
        .args(&args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("RAYON_NUM_THREADS", "1")
        .env("OPENBLAS_NUM_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path("mpmd.out")).unwrap())
        .stderr(std::fs::File::create(dir.path("mpmd.err")).unwrap())
        .spawn()
        .expect("mpirun (apt-get install libopenmpi-dev openmpi-bin)");
    wait(dir, "mpmd", child)
}

/// Ranks given files of 1 199 and 999 rows used to wait for each other
/// until killed (their epochs had different numbers of steps); now every
/// rank compares its data with rank 0's before the first step, and the run
/// ends at once with one message naming the rank and its file.
#[test]
fn ranks_given_different_files_end_with_one_message_naming_the_rank_and_file() {
    let dir = Dir::new("different-files");
    let rows = |name: &str, n: usize| {
        let x = common::random(n * 4, -1.0, 1.0, 7);
        let text: String = x
            .chunks(4)
            .map(|r| {
                format!(
                    "{},{},{},{},{}\n",
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    (r[0] > 0.0) as u8
                )
            })
            .collect();
        dir.write(name, &text).to_str().unwrap().to_string()
    };
    let (long, short) = (rows("long.csv", 1199), rows("short.csv", 999));
    // The same rows, one value changed: the same shape, other values.
    let changed = {
        let text = std::fs::read_to_string(&long).unwrap();
        let (first, rest) = text.split_once(',').unwrap();
        let first: f32 = first.parse().unwrap();
        dir.write("changed.csv", &format!("{},{rest}", first + 0.5))
            .to_str()
            .unwrap()
            .to_string()
    };
    let save = dir.arg("model.safetensors");
    let args = |data: &str| train_args(data, "1", "cpu", &save, &["--arch", "4,8,2"]);
    for (other, how) in [(&short, "999 rows"), (&changed, "other values")] {
        let started = Instant::now();
        let ended = mpmd(&dir, &[args(&long), args(other)]);
        let took = started.elapsed();
        assert_ne!(
            ended.code,
            Some(0),
            "different files on two ranks succeeded"
        );
        let errors = ended.error_lines();
        assert_eq!(errors.len(), 1, "one message expected:\n{}", ended.stderr);
        let file = Path::new(other).file_name().unwrap().to_str().unwrap();
        assert!(
            errors[0].contains("rank 1") && errors[0].contains(file) && errors[0].contains(how),
            "the message names the rank, the file and how it differs: {}",
            errors[0]
        );
        assert!(!Path::new(&save).exists(), "a model was saved");
        println!("{file}: ended in {took:.1?}: {}", errors[0]);
    }
}

/// The children of `pid` (the ranks mpirun started on this machine), with
/// their rank.
fn ranks_of(pid: u32) -> Vec<(u32, usize)> {
    let mut ranks = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let environ = std::fs::read(format!("/proc/{child}/environ")).unwrap_or_default();
            let rank = environ
                .split(|&b| b == 0)
                .filter_map(|v| {
                    std::str::from_utf8(v)
                        .ok()?
                        .strip_prefix("OMPI_COMM_WORLD_RANK=")?
                        .parse()
                        .ok()
                })
                .next();
            if let Some(rank) = rank {
                ranks.push((child, rank));
            }
        }
    }
    ranks
}

/// Starts a long 3-rank run with a checkpoint every epoch; returns it once
/// the first checkpoint is written, with the checkpoint's path.
fn long_run(dir: &Dir, name: &str) -> (Child, String) {
    let data = csv(dir, "classes");
    let checkpoint = dir.arg(&format!("{name}-checkpoint.safetensors"));
    let save = dir.arg(&format!("{name}.safetensors"));
    let extra = [
        "--epochs",
        "1000000",
        "--batch-size",
        "2",
        "--checkpoint",
        &checkpoint,
    ];
    let args = train_args(&data, "1", "cpu", &save, &extra);
    let mut child = start(dir, name, 3, &args);
    let deadline = Instant::now() + TIMEOUT;
    while !Path::new(&checkpoint).exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} ended ({status}) before its first checkpoint");
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, checkpoint)
}

#[test]
fn a_rank_killed_mid_run_ends_every_rank_and_leaves_the_checkpoint_whole() {
    let dir = Dir::new("killed");
    let (child, checkpoint) = long_run(&dir, "killed");
    let ranks = ranks_of(child.id());
    let (victim, _) = ranks
        .iter()
        .find(|(_, r)| *r == 1)
        .copied()
        .unwrap_or_else(|| panic!("no rank 1 among {ranks:?}"));
    let status = Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = wait(&dir, "killed", child);
    assert_ne!(ended.code, Some(0), "mpirun succeeded with a rank killed");
    assert!(
        ended.stderr.contains("rank 1") && ended.stderr.contains("signal 9"),
        "mpirun names the rank and the cause:\n{}",
        ended.stderr
    );
    // mpirun has ended; its ranks end with it (within a few seconds).
    for (pid, rank) in ranks {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "rank {rank} (pid {pid}) still runs"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    load_checkpoint(Path::new(&checkpoint)).expect("the checkpoint is whole");
}

#[test]
fn sigint_to_mpirun_stops_every_rank_at_a_step_and_saves() {
    // mpirun turns SIGINT into SIGTERM to every rank (then SIGKILL after
    // odls_base_sigkill_timeout, 1 s by default): each stops at the same
    // step boundary, rank 0 saves, and the checkpoint resumes.
    let dir = Dir::new("sigint");
    let (child, checkpoint) = long_run(&dir, "sigint");
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let ended = wait(&dir, "sigint", child);
    assert_ne!(ended.code, Some(0), "mpirun reported success after SIGINT");
    assert!(
        ended.stdout.contains("interrupted by SIGTERM at step"),
        "rank 0 reports the stop:\nstdout:\n{}\nstderr:\n{}",
        ended.stdout,
        ended.stderr
    );
    assert_eq!(
        ended.stdout.lines().count(),
        1,
        "one report, by rank 0:\n{}",
        ended.stdout
    );
    let (_, _, saved) = load_checkpoint(Path::new(&checkpoint)).expect("the checkpoint is whole");
    let step: u64 = ended
        .stdout
        .split("at step ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("a step in the report");
    assert_eq!(saved.step, step, "the checkpoint is the stop's");
}

#[test]
fn a_divergence_ends_every_rank_with_one_message() {
    let dir = Dir::new("diverged");
    let data = csv(&dir, "values");
    let save = dir.arg("model.safetensors");
    let extra = ["--optimizer", "sgd", "--lr", "1e9", "--arch", "4,9,2"];
    let args = train_args(&data, "2", "cpu", &save, &extra);
    let ended = wait(&dir, "diverged", start(&dir, "diverged", 3, &args));
    assert_ne!(ended.code, Some(0), "a divergence succeeded");
    let errors = ended.error_lines();
    assert_eq!(errors.len(), 1, "one message expected:\n{}", ended.stderr);
    assert!(errors[0].contains("diverged at step"), "{}", errors[0]);
}

/// Members train in one process: under mpirun the run is refused, with
/// one message, before anything trains or is written.
#[test]
fn members_under_mpirun_are_refused_with_one_message() {
    let dir = Dir::new("members");
    let data = csv(&dir, "classes");
    let save = dir.arg("model.safetensors");
    let args = train_args(&data, "1", "cpu", &save, &["--members", "2"]);
    let ended = wait(&dir, "members", start(&dir, "members", 2, &args));
    assert_ne!(ended.code, Some(0), "members under mpirun succeeded");
    let errors = ended.error_lines();
    assert_eq!(errors.len(), 1, "one message expected:\n{}", ended.stderr);
    assert!(
        errors[0].contains("--members") && errors[0].contains("without mpirun"),
        "the message says why and what to do: {}",
        errors[0]
    );
    assert!(!Path::new(&save).exists(), "a model was saved");
}

/// A C-order float64 `.npy` array of `rows` rows of 4 features and a
/// class of 3 last.
fn npy(dir: &Dir, rows: usize) -> String {
    let x = common::random(rows * 4, -1.0, 1.0, 9);
    let mut data = Vec::new();
    for r in x.chunks(4) {
        let class = (r[0] + r[1] > 0.0) as u8 + (r[2] > 0.4) as u8;
        for v in r.iter().map(|&v| v as f64).chain([class as f64]) {
            data.extend(v.to_le_bytes());
        }
    }
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, 5), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.bytes());
    bytes.extend(data);
    let path = dir.path("rows.npy");
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// Ranks that stream the file (each reading only the chunks its shares of
/// the batches lie in: tests/streaming.rs counts the reads) write the
/// bytes ranks that hold it write, and match one process as those do; a
/// streamed run cut on 2 ranks and resumed on 3 writes what the same held
/// runs write.
#[test]
fn ranks_streaming_a_file_write_what_ranks_holding_it_write() {
    let dir = Dir::new("streamed");
    // 997 rows: 32 chunks of 32 rows (the last of 5), 4 windows of 256;
    // batches of 24 straddle the windows, the epoch's last is short.
    let data = npy(&dir, 997);
    let run = |name: &str, ranks: usize, extra: &[&str]| {
        let (save, checkpoint) = (
            dir.arg(&format!("{name}.safetensors")),
            dir.arg(&format!("{name}-checkpoint.safetensors")),
        );
        let mut extra = extra.to_vec();
        extra.extend([
            "--checkpoint",
            &checkpoint,
            "--shuffle-window",
            "256:32",
            "--batch-size",
            "24",
            "--dropout",
            "0.1",
        ]);
        ok(
            &dir,
            name,
            ranks,
            &train_args(&data, "1", "cpu", &save, &extra),
        );
        (
            std::fs::read(&save).unwrap(),
            std::fs::read(&checkpoint).unwrap(),
        )
    };
    let same = |got: &(Vec<u8>, Vec<u8>), want: &(Vec<u8>, Vec<u8>), what: &str| {
        assert!(got.0 == want.0, "{what}: the models differ");
        assert!(got.1 == want.1, "{what}: the checkpoints differ");
    };
    let one = run("one", 0, &[]);
    same(&run("one-streamed", 0, &["--stream"]), &one, "one process");
    let one_params = params(&dir.path("one.safetensors"));
    for ranks in [2, 3] {
        let held = run(&format!("held-{ranks}"), ranks, &[]);
        let streamed = run(&format!("streamed-{ranks}"), ranks, &["--stream"]);
        same(&streamed, &held, &format!("{ranks} ranks"));
        assert_scaled(
            &format!("streamed on {ranks} ranks"),
            &params(&dir.path(&format!("streamed-{ranks}.safetensors"))),
            &one_params,
            1e-6,
        );
    }
    // 42 steps an epoch: step 60 is inside the second epoch's second
    // window. Cut on 2 ranks, resumed on 3, streamed and held.
    let cut_and_resumed = |name: &str, stream: &[&str]| {
        run(
            &format!("{name}-cut"),
            2,
            &[stream, &["--steps", "60"]].concat(),
        );
        let resume = dir.arg(&format!("{name}-resume.safetensors"));
        std::fs::copy(
            dir.path(&format!("{name}-cut-checkpoint.safetensors")),
            &resume,
        )
        .unwrap();
        run(name, 3, &[stream, &["--resume", &resume]].concat())
    };
    let held = cut_and_resumed("held-resumed", &[]);
    let streamed = cut_and_resumed("streamed-resumed", &["--stream"]);
    same(&streamed, &held, "cut on 2 ranks and resumed on 3");
}
