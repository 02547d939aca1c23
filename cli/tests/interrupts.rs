//! SIGINT and SIGTERM during `retroprop train`: the run stops at a step
//! boundary, writes `--checkpoint` and `--save` (marked interrupted),
//! prints its summary and exits 130 or 143; `--resume` from that
//! checkpoint ends like a run never interrupted; a second signal ends the
//! process at once, leaving earlier files whole. Every wait is bounded.
//! GPU cases need a wgpu adapter (without a GPU: `apt-get install
//! mesa-vulkan-drivers`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use retroprop::io::{load_checkpoint, load_model};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::Dir;

/// Longest wait for anything: a hang fails the test instead of blocking.
const TIMEOUT: Duration = Duration::from_secs(180);

/// `rows` rows of two features and three classes, with a header.
fn classes_csv(dir: &Dir, rows: usize) -> String {
    let mut text = String::from("a,b,label\n");
    for p in common::random(2 * rows, -1.0, 1.0, 11).chunks(2) {
        let label = match (p[0] + p[1] > 0.5, p[0] > p[1]) {
            (true, _) => 2,
            (false, true) => 1,
            (false, false) => 0,
        };
        text += &format!("{},{},{label}\n", p[0], p[1]);
    }
    let path = dir.path(&format!("classes-{rows}.csv"));
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A `retroprop` process, its output going to files (a pipe nobody reads
/// could fill and stall it).
struct Run {
    child: Child,
    args: Vec<String>,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// What a finished run left: exit code (`None` if a signal killed it),
/// stdout and stderr.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn start(dir: &Dir, name: &str, args: &[String]) -> Run {
    let (stdout, stderr) = (
        dir.path(&format!("{name}.out")),
        dir.path(&format!("{name}.err")),
    );
    let child = Command::new(env!("CARGO_BIN_EXE_retroprop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Run {
        child,
        args: args.to_vec(),
        stdout,
        stderr,
    }
}

impl Run {
    /// Waits for the process to end (killing it past [`TIMEOUT`]).
    fn wait(mut self) -> Ended {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "retroprop {:?} did not end within {TIMEOUT:?}; stderr:\n{}",
                    self.args,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let ended = Ended {
            code: status.code(),
            stdout: std::fs::read_to_string(&self.stdout).unwrap(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap(),
        };
        assert!(
            !ended.stderr.contains("panicked"),
            "retroprop {:?} panicked:\n{}",
            self.args,
            ended.stderr
        );
        ended
    }

    /// Sends `signal` (`INT`, `TERM`) with the `kill` command.
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {signal} failed");
    }

    /// Polls every 2 ms until `path` exists; fails if the process ends
    /// first or [`TIMEOUT`] passes.
    fn wait_for_file(&mut self, path: &Path) {
        let deadline = Instant::now() + TIMEOUT;
        while !path.exists() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "retroprop {:?} ended ({status}) before writing {}; stderr:\n{}",
                    self.args,
                    path.display(),
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} was not written within {TIMEOUT:?}", path.display());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// A finished `retroprop` run that must succeed; its stdout.
fn ok(dir: &Dir, name: &str, args: &[String]) -> String {
    let ended = start(dir, name, args).wait();
    assert_eq!(
        ended.code,
        Some(0),
        "retroprop {args:?} failed:\n{}",
        ended.stderr
    );
    ended.stdout
}

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .unwrap_or_else(|e| panic!("{} is not whole: {e}", path.display()));
    header.metadata().clone().unwrap_or_default()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The arguments every run of a device's case shares: a small network,
/// four rows a step, 100 steps an epoch.
fn common_args(data: &str, device: &str) -> Vec<String> {
    strings(&[
        "train",
        "--data",
        data,
        "--arch",
        "2,8,3",
        "--activations",
        "tanh",
        "--lr",
        "0.01",
        "--batch-size",
        "4",
        "--device",
        device,
        "-q",
    ])
}

/// Starts a long run, signals it once its first checkpoint is written,
/// and checks what it leaves: exit status 128 + the signal's number, the
/// summary saying so, and --checkpoint and --save whole, at the step where
/// it stopped. Returns that step, with the directory and the data.
fn interrupt(device: &str, signal: &str) -> (Dir, String, u64) {
    let dir = Dir::new(&format!("{device}-{signal}"));
    let data = classes_csv(&dir, 400);
    let (model, checkpoint) = (dir.path("m.safetensors"), dir.path("c.safetensors"));
    let mut args = common_args(&data, device);
    args.extend(strings(&[
        "--epochs",
        "100000",
        "--save",
        model.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--checkpoint-every",
        "3",
    ]));
    let mut run = start(&dir, "interrupted", &args);
    run.wait_for_file(&checkpoint);
    let sent = Instant::now();
    run.signal(signal);
    let ended = run.wait();
    println!(
        "{device}: ended {:.3} s after SIG{signal}",
        sent.elapsed().as_secs_f64()
    );
    let (expected, name) = match signal {
        "INT" => (130, "SIGINT"),
        _ => (143, "SIGTERM"),
    };
    assert_eq!(
        ended.code,
        Some(expected),
        "{device}: exit status after SIG{signal}; stderr:\n{}",
        ended.stderr
    );
    let (_, _, saved) = load_checkpoint(&checkpoint)
        .unwrap_or_else(|e| panic!("{device}: the checkpoint does not load: {e}"));
    let step = saved.step;
    let summary = ended
        .stdout
        .lines()
        .find(|l| l.starts_with("trained 2,8,3"));
    let summary = summary.unwrap_or_else(|| {
        panic!(
            "{device}: no summary line after SIG{signal}; stdout:\n{}\nstderr:\n{}",
            ended.stdout, ended.stderr
        )
    });
    assert!(
        summary.contains(&format!("interrupted by {name} at step {step}"))
            && summary.contains(&format!("--resume {}", checkpoint.display())),
        "{device}: the summary does not say it was interrupted at step {step}, nor how to resume:\n{summary}"
    );
    assert!(
        summary.contains(&format!("saved {}", model.display())),
        "{device}: {summary}"
    );
    assert!(
        step > 0 && step < 100000 * 100,
        "{device}: stopped at step {step}"
    );
    assert_eq!(
        saved.epoch * 100 + saved.rows_done as u64 / 4,
        step,
        "{device}: the checkpoint's epoch {} and row {} are not step {step}",
        saved.epoch,
        saved.rows_done
    );
    let meta = metadata(&model);
    assert_eq!(
        meta.get("retroprop.interrupted_at_step"),
        Some(&step.to_string()),
        "{device}: the model's metadata does not say where it was interrupted: {meta:?}"
    );
    let params = load_model(&model)
        .unwrap_or_else(|e| panic!("{device}: the model does not load: {e}"))
        .params;
    assert!(
        params == saved.params,
        "{device}: the model and the checkpoint hold different parameters"
    );
    println!(
        "{device}: stopped at step {step} (epoch {}, row {})",
        saved.epoch, saved.rows_done
    );
    (dir, data, step)
}

/// `--resume` from the interrupted run's checkpoint to 150 steps past it,
/// against a run of that many steps never interrupted: the same model
/// file, byte for byte, on every device.
fn resume_matches_uninterrupted(device: &str, dir: &Dir, data: &str, step: u64) {
    let total = (step + 150).to_string();
    let mut resumed = common_args(data, device);
    resumed.extend(strings(&["--steps", &total, "--resume"]));
    resumed.extend([
        dir.arg("c.safetensors"),
        "--save".into(),
        dir.arg("r.safetensors"),
    ]);
    ok(dir, "resumed", &resumed);
    let mut whole = common_args(data, device);
    whole.extend(strings(&["--steps", &total, "--save"]));
    whole.push(dir.arg("w.safetensors"));
    ok(dir, "whole", &whole);
    let resumed = load_model(&dir.path("r.safetensors")).unwrap().params;
    let whole = load_model(&dir.path("w.safetensors")).unwrap().params;
    for (i, (r, w)) in resumed.iter().zip(&whole).enumerate() {
        assert!(
            r.to_bits() == w.to_bits(),
            "{device}: interrupted at step {step}, resumed to {total}: parameter {i} is {r}, uninterrupted {w}"
        );
    }
    assert!(
        std::fs::read(dir.path("r.safetensors")).unwrap()
            == std::fs::read(dir.path("w.safetensors")).unwrap(),
        "{device}: the resumed model file differs from the uninterrupted one"
    );
}

#[test]
fn sigint_on_the_cpu_saves_exits_130_and_resumes_exactly() {
    let (dir, data, step) = interrupt("cpu", "INT");
    resume_matches_uninterrupted("cpu", &dir, &data, step);
}

#[test]
fn sigterm_on_the_cpu_saves_and_exits_143() {
    interrupt("cpu", "TERM");
}

#[test]
fn sigint_on_the_gpu_saves_exits_130_and_resumes_exactly() {
    let (dir, data, step) = interrupt("gpu", "INT");
    resume_matches_uninterrupted("gpu", &dir, &data, step);
}

/// A second SIGINT while the first waits for a long step to end ends the
/// process at once: no summary, no new files, and the checkpoint and
/// model written before stay whole.
#[test]
fn a_second_sigint_ends_at_once_leaving_earlier_files_whole() {
    let dir = Dir::new("twice");
    let data = classes_csv(&dir, 4000);
    let (model, checkpoint) = (dir.path("m.safetensors"), dir.path("c.safetensors"));
    // An earlier model at the --save path, which must survive.
    let mut earlier = common_args(&classes_csv(&dir, 40), "cpu");
    earlier.extend(strings(&["--steps", "1", "--save"]));
    earlier.push(dir.arg("m.safetensors"));
    ok(&dir, "earlier", &earlier);
    let earlier = std::fs::read(&model).unwrap();
    // Full-batch steps of a wide network: each takes a large fraction of
    // a second, so both signals land inside the second step.
    let args = strings(&[
        "train",
        "--data",
        &data,
        "--arch",
        "2,768,768,3",
        "--batch-size",
        "0",
        "--epochs",
        "100000",
        "--device",
        "cpu",
        "-q",
        "--save",
        model.to_str().unwrap(),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
    ]);
    let mut run = start(&dir, "twice", &args);
    run.wait_for_file(&checkpoint);
    let written = std::fs::read(&checkpoint).unwrap();
    run.signal("INT");
    // Apart, so that the two are not merged into one pending signal.
    std::thread::sleep(Duration::from_millis(20));
    run.signal("INT");
    let ended = run.wait();
    assert_eq!(
        ended.code,
        Some(130),
        "exit status after two SIGINTs; stderr:\n{}",
        ended.stderr
    );
    assert!(
        ended.stdout.is_empty(),
        "the second SIGINT did not end the process at once: it went on to print\n{}",
        ended.stdout
    );
    assert!(
        std::fs::read(&checkpoint).unwrap() == written,
        "the checkpoint changed after the second SIGINT"
    );
    let (_, _, saved) = load_checkpoint(&checkpoint).unwrap();
    assert_eq!(saved.step, 1, "the checkpoint of the first epoch");
    assert!(
        std::fs::read(&model).unwrap() == earlier,
        "the earlier model at the --save path changed"
    );
}

/// SIGINT during a run of members stops every member at a step boundary:
/// status 130, the summary says so, the checkpoint holds every member
/// where it stopped (the members may stand in different epochs, those
/// that ended theirs before the signal), and `--save-all` holds the same
/// parameters; resumed to two epochs past the furthest, every member ends
/// as in the run never interrupted, byte for byte.
#[test]
fn sigint_stops_every_member_and_resumes_exactly() {
    use retroprop::io::members::{load_members, load_members_checkpoint};
    let dir = Dir::new("members");
    let data = classes_csv(&dir, 400);
    let (all, checkpoint) = (dir.path("all.safetensors"), dir.path("c.safetensors"));
    let args = |epochs: &str, files: &[&str]| {
        let mut args = strings(&[
            "train",
            "--data",
            &data,
            "--arch",
            "2,8,3",
            "--lr",
            "0.01,0.02",
            "--members",
            "2",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "-q",
            "--epochs",
            epochs,
        ]);
        args.extend(strings(files));
        args
    };
    let mut run = start(
        &dir,
        "interrupted",
        &args(
            "100000",
            &[
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "--checkpoint-every",
                "3",
                "--save-all",
                all.to_str().unwrap(),
            ],
        ),
    );
    run.wait_for_file(&checkpoint);
    run.signal("INT");
    let ended = run.wait();
    assert_eq!(ended.code, Some(130), "stderr:\n{}", ended.stderr);
    assert!(
        ended.stdout.contains(&format!(
            "interrupted by SIGINT (continue with --resume {})",
            checkpoint.display()
        )),
        "{}",
        ended.stdout
    );
    let saved = load_members_checkpoint(&checkpoint).unwrap();
    assert_eq!(saved.checkpoints.len(), 4);
    let kept = load_members(&all).unwrap();
    for (m, c) in saved.checkpoints.iter().enumerate() {
        assert!(
            kept.members[m].params == c.params,
            "member {m}: --save-all and the checkpoint differ"
        );
        assert!(c.step > 0, "member {m} took no step");
    }
    let furthest = saved.checkpoints.iter().map(|c| c.epoch).max().unwrap();
    println!(
        "stopped at (epoch, step) {:?}",
        saved
            .checkpoints
            .iter()
            .map(|c| (c.epoch, c.step))
            .collect::<Vec<_>>()
    );
    let total = (furthest + 2).to_string();
    let resumed = dir.arg("resumed.safetensors");
    let whole = dir.arg("whole.safetensors");
    ok(
        &dir,
        "resumed",
        &args(
            &total,
            &[
                "--resume",
                checkpoint.to_str().unwrap(),
                "--save-all",
                &resumed,
            ],
        ),
    );
    ok(&dir, "whole", &args(&total, &["--save-all", &whole]));
    assert!(
        std::fs::read(&resumed).unwrap() == std::fs::read(&whole).unwrap(),
        "the resumed members differ from those never interrupted"
    );
}
