//! The program's reliability: reproducible output files, no false error
//! lines, bad input refused with one clear line. GPU cases need a wgpu
//! adapter (without a GPU: `apt-get install mesa-vulkan-drivers`).

mod support;

use assert_cmd::Command;
use std::path::Path;
use support::{Dir, refused};

const GPU_HINT: &str =
    "GPU cases need a Vulkan adapter; without a GPU: apt-get install mesa-vulkan-drivers";

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `retroprop args` with `remove` taken out of the environment,
/// asserting it did not panic.
fn run_without(remove: &[&str], args: &[&str]) -> Output {
    let mut command = Command::cargo_bin("retroprop").unwrap();
    for name in remove {
        command.env_remove(name);
    }
    let out = command.args(args).output().unwrap();
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    };
    assert!(
        !output.stderr.contains("panicked"),
        "retroprop {args:?} panicked:\n{}",
        output.stderr
    );
    output
}

fn run(args: &[&str]) -> Output {
    run_without(&[], args)
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    let hint = if args.contains(&"gpu") { GPU_HINT } else { "" };
    assert_eq!(
        out.code, 0,
        "retroprop {args:?} failed:\n{}\n{hint}",
        out.stderr
    );
    out
}

/// Three classes from two features: 60 rows, a fixed pattern (no RNG).
fn classes_csv(dir: &Dir) -> String {
    let mut text = String::from("a,b,label\n");
    for i in 0..60 {
        let x = ((i * 37) % 60) as f32 / 30.0 - 1.0;
        let y = ((i * 11) % 60) as f32 / 30.0 - 1.0;
        let label = if x + y > 0.5 {
            2
        } else if x > y {
            1
        } else {
            0
        };
        text += &format!("{x},{y},{label}\n");
    }
    let path = dir.path("classes.csv");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A metrics file with its timing column removed: CSV by header name,
/// JSON lines by key.
fn metrics_without_timing(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    if path.extension().is_some_and(|e| e == "jsonl") {
        return text
            .lines()
            .map(|line| {
                let mut value: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: `{line}` is not JSON: {e}", path.display()));
                value.as_object_mut().unwrap().remove("seconds");
                value.to_string()
            })
            .collect();
    }
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let seconds = header
        .iter()
        .position(|c| *c == "seconds")
        .unwrap_or_else(|| panic!("{}: no seconds column in {header:?}", path.display()));
    std::iter::once(header.join(","))
        .chain(lines.map(|line| {
            let mut cells: Vec<&str> = line.split(',').collect();
            cells.remove(seconds);
            cells.join(",")
        }))
        .collect()
}

/// Two runs with the same inputs and seed write the same bytes to --save
/// and --checkpoint, and the same metrics apart from the timing column.
fn identical_runs_write_identical_files(device: &str, metrics: &str) {
    let dir = Dir::new(&format!("identical-{device}-{metrics}"));
    let data = classes_csv(&dir);
    let run_once = |name: &str| {
        ok(&[
            "train",
            "--data",
            &data,
            "--arch",
            "2,8,3",
            "--activations",
            "tanh",
            "--standardize",
            "--val-split",
            "0.25",
            "--dropout",
            "0.1",
            "--norms-every",
            "2",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--seed",
            "7",
            "--device",
            device,
            "--quiet",
            "--save",
            &dir.arg(&format!("{name}-model.safetensors")),
            "--checkpoint",
            &dir.arg(&format!("{name}-checkpoint.safetensors")),
            "--metrics",
            &dir.arg(&format!("{name}.{metrics}")),
        ]);
    };
    run_once("first");
    run_once("second");
    for file in ["model", "checkpoint"] {
        let first = std::fs::read(dir.path(&format!("first-{file}.safetensors"))).unwrap();
        let second = std::fs::read(dir.path(&format!("second-{file}.safetensors"))).unwrap();
        let differ = first.iter().zip(&second).position(|(a, b)| a != b);
        assert!(
            first == second,
            "{device}: two identical runs wrote different {file} files ({} and {} bytes, first difference at byte {differ:?}):\n{}\n{}",
            first.len(),
            second.len(),
            String::from_utf8_lossy(&first[..first.len().min(600)]),
            String::from_utf8_lossy(&second[..second.len().min(600)]),
        );
    }
    let first = metrics_without_timing(&dir.path(&format!("first.{metrics}")));
    let second = metrics_without_timing(&dir.path(&format!("second.{metrics}")));
    assert!(
        first.len() > 3,
        "{device}: too few metrics lines: {first:?}"
    );
    assert_eq!(
        first, second,
        "{device}: two identical runs wrote different {metrics} metrics"
    );
}

#[test]
fn identical_cpu_runs_write_identical_files() {
    identical_runs_write_identical_files("cpu", "csv");
    identical_runs_write_identical_files("cpu", "jsonl");
}

#[test]
fn identical_gpu_runs_write_identical_files() {
    identical_runs_write_identical_files("gpu", "csv");
    identical_runs_write_identical_files("gpu", "jsonl");
}

/// With XDG_RUNTIME_DIR unset, as on a headless server, no command passes
/// on the Vulkan driver's complaint about it: we open Vulkan without the
/// window-system extensions that make Mesa look for a display.
#[test]
fn headless_commands_print_no_display_errors() {
    let dir = Dir::new("headless");
    let data = classes_csv(&dir);
    let train = |device: &'static str| {
        vec![
            "train", "--data", &data, "--epochs", "1", "--quiet", "--device", device,
        ]
    };
    let devices = run_without(&["XDG_RUNTIME_DIR"], &["devices"]);
    assert!(
        devices.code == 0 && devices.stdout.contains("[0] "),
        "retroprop devices lists no adapter (status {}):\n{}{}\n{GPU_HINT}",
        devices.code,
        devices.stdout,
        devices.stderr
    );
    let mut outputs = vec![("devices".to_string(), devices)];
    for device in ["cpu", "auto", "gpu"] {
        let args = train(device);
        let out = run_without(&["XDG_RUNTIME_DIR"], &args);
        assert_eq!(
            out.code, 0,
            "retroprop {args:?} failed:\n{}\n{GPU_HINT}",
            out.stderr
        );
        outputs.push((format!("train --device {device}"), out));
    }
    for (command, out) in outputs {
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert!(
            lines.is_empty(),
            "retroprop {command} without XDG_RUNTIME_DIR printed {lines:?}"
        );
    }
}

#[test]
fn bce_target_outside_zero_one_is_refused() {
    let dir = Dir::new("bce");
    let data = dir.path("bce.csv");
    std::fs::write(&data, "a,b,y\n0,0,0\n0,1,1\n1,0,2\n1,1,0\n").unwrap();
    let data = data.to_str().unwrap();
    for device in ["cpu", "gpu"] {
        refused(
            &[],
            &[
                "train",
                "--data",
                data,
                "--loss",
                "bce_with_logits",
                "--epochs",
                "1",
                "--device",
                device,
                "--quiet",
            ],
            &[data, "target 2 at row 2, target column 0", "outside [0, 1]"],
        );
    }
}

#[test]
fn network_larger_than_memory_is_refused_not_aborted() {
    let dir = Dir::new("too-large");
    let data = dir.path("wide.csv");
    let row = |label: usize| format!("{}{label}\n", "0.5,".repeat(784));
    std::fs::write(&data, row(0) + &row(1) + &row(2)).unwrap();
    let data = data.to_str().unwrap();
    for device in ["cpu", "gpu", "auto"] {
        refused(
            &[],
            &[
                "train",
                "--data",
                data,
                "--arch",
                "784,16777216,16777216,10",
                "--device",
                device,
                "--quiet",
            ],
            &["too large", "GiB", "layer 1 (16777216 → 16777216)"],
        );
    }
}

#[test]
fn matmul_tiling_that_overflows_is_refused() {
    for tiling in ["shared:2147483649x2x4x4x4", "direct:8x4x16x128x16"] {
        refused(
            &[("RETROPROP_MATMUL", tiling)],
            &["devices"],
            &["RETROPROP_MATMUL", tiling, "at most 1024 threads"],
        );
    }
}

#[test]
fn bench_refuses_zero_steps() {
    refused(
        &[],
        &[
            "bench",
            "--steps",
            "0",
            "--devices",
            "cpu",
            "--arch",
            "4,4,2",
        ],
        &["--steps must be at least 1"],
    );
}

/// `bench --full` measures step time against width on nets with --arch's
/// classes (it used 10 outputs, which labels past 9 do not fit), and gives
/// the whole step as a share of the GEMM peak it measured.
#[test]
fn bench_full_runs_with_more_than_ten_classes() {
    let out = ok(&[
        "bench",
        "--full",
        "--devices",
        "cpu",
        "--arch",
        "4,8,12",
        "--batch",
        "4",
        "--samples",
        "64",
        "--steps",
        "1",
        "--json",
    ]);
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    // The GEMM peak is the best product of the CPU GEMM table, and the
    // whole step of the main table is reported as its share of it.
    let of = |kind: &'static str| lines.iter().filter(move |v| v["kind"] == kind);
    let best = of("cpu_gemm")
        .flat_map(|v| ["nn", "nt", "tn"].map(|k| v[k].as_f64().unwrap()))
        .fold(0.0, f64::max);
    let peak = of("gemm_peak").next().expect("no gemm_peak line");
    assert_eq!(peak["gflops"].as_f64().unwrap(), best);
    let step = lines
        .iter()
        .find(|v| v["batch"] == 4 && v["kind"].is_null());
    let step_gflops = step.expect("no main-table run")["gflops"].as_f64().unwrap();
    let share = of("step_share").next().expect("no step_share line");
    assert_eq!(share["batch"], 4);
    assert_eq!(share["peak_gflops"].as_f64().unwrap(), best);
    let expected = step_gflops / best;
    assert!((share["share"].as_f64().unwrap() - expected).abs() <= 1e-12 * expected);
    gemm_choices_follow_the_trials(&lines);
    let widths: Vec<&serde_json::Value> = of("width_scaling").collect();
    assert!(!widths.is_empty(), "no width_scaling runs:\n{}", out.stdout);
    for run in widths {
        let arch = run["arch"].as_str().unwrap();
        assert!(
            arch.starts_with("4-") && arch.ends_with("-12"),
            "width net {arch} does not keep 4 inputs and 12 classes"
        );
    }
}

/// `bench --full`'s choice of GEMM beside the two GEMMs' figures: a
/// `gemm_choice` line for each shape of the `cpu_gemm` table, each layout
/// on the built-in GEMM or the library and why; under `auto` (this
/// process's setting unless `RETROPROP_BLAS` is set) a shape large enough
/// for the library runs on the GEMM whose best call in its trial was the
/// faster, the built-in one on a tie.
fn gemm_choices_follow_the_trials(lines: &[serde_json::Value]) {
    let of = |kind: &'static str| lines.iter().filter(move |v| v["kind"] == kind);
    let shape = |v: &serde_json::Value| format!("{}x{}x{}", v["m"], v["k"], v["n"]);
    let choices: Vec<&serde_json::Value> = of("gemm_choice").collect();
    let measured: std::collections::BTreeSet<_> = of("cpu_gemm").map(shape).collect();
    let chosen: std::collections::BTreeSet<_> = choices.iter().map(|v| shape(v)).collect();
    assert_eq!(
        chosen, measured,
        "the choices' shapes are not the measured ones"
    );
    let auto = std::env::var("RETROPROP_BLAS").map_or(true, |s| matches!(s.trim(), "" | "auto"));
    let mut trials = 0;
    for choice in &choices {
        for key in ["nn", "nt", "tn"] {
            let (engine, why) = (&choice[key], &choice[format!("{key}_why")]);
            let at = format!("{} {key}: {choice}", shape(choice));
            match why.as_str() {
                Some("small" | "no-library") => assert_eq!(engine, "built-in", "{at}"),
                Some("named") => assert_eq!(engine, "library", "{at}"),
                Some("trial") => {
                    trials += 1;
                    let seconds = |gemm: &str| {
                        let s = choice[format!("{key}_{gemm}_s")].as_f64();
                        s.filter(|s| s.is_finite() && *s > 0.0)
                            .unwrap_or_else(|| panic!("{at}: no {gemm} time"))
                    };
                    let faster = if seconds("library") < seconds("builtin") {
                        "library"
                    } else {
                        "built-in"
                    };
                    assert_eq!(engine, faster, "{at}");
                }
                _ => panic!("{at}: no reason given"),
            }
        }
    }
    let library = of("cpu_gemm").any(|v| v["gemm"] != "built-in");
    if auto && library {
        // 512³, 1024³, 2048³, the standard work's four large products and
        // 1024 × 128 × 1024, 1024 × 256 × 1024, in three layouts each.
        assert_eq!(trials, 3 * 9, "trials under auto");
    }
}

/// `bench --profile` gives each kernel of a GPU step its dispatches and
/// milliseconds, by layer, at every batch size, the step's dispatches by
/// kind, and the fixed cost of a tiny net's step.
#[test]
fn bench_profile_times_each_kernel_of_a_gpu_step() {
    let out = ok(&[
        "bench",
        "--profile",
        "--devices",
        "gpu",
        "--arch",
        "4,8,3",
        "--batch",
        "2,5",
        "--samples",
        "64",
        "--steps",
        "3",
        "--json",
    ]);
    let all: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect();
    let lines: Vec<&serde_json::Value> = all.iter().filter(|v| v["kind"] == "profile").collect();
    for batch in [2, 5] {
        let of_batch: Vec<_> = lines.iter().filter(|v| v["batch"] == batch).collect();
        let has = |kernel: &str, layer: serde_json::Value| {
            of_batch
                .iter()
                .any(|v| v["kernel"] == kernel && v["layer"] == layer)
        };
        assert!(has("forward", 0.into()), "batch {batch}:\n{}", out.stdout);
        assert!(
            has("weight grad", 1.into()),
            "batch {batch}:\n{}",
            out.stdout
        );
        assert!(has("optimizer", serde_json::Value::Null), "batch {batch}");
        for v in &of_batch {
            assert_eq!(v["steps"], 3, "{v}");
            assert!(v["ms_per_step"].as_f64().unwrap() >= 0.0, "{v}");
            assert!(v["dispatches"].as_f64().unwrap() >= 1.0, "{v}");
        }
        // The step's dispatches: the sum of its kernels', by kind; at
        // these batches the loss and its sum in one dispatch.
        let step = all
            .iter()
            .find(|v| v["kind"] == "dispatches" && v["batch"] == batch)
            .unwrap_or_else(|| panic!("no dispatches line for batch {batch}:\n{}", out.stdout));
        let summed: f64 = of_batch
            .iter()
            .map(|v| v["dispatches"].as_f64().unwrap())
            .sum();
        assert_eq!(step["dispatches"].as_f64(), Some(summed), "{step}");
        let by_kernel = &step["by_kernel"];
        assert_eq!(by_kernel["optimizer"], 1.0, "{step}");
        assert_eq!(by_kernel["loss"], 1.0, "{step}");
        assert!(by_kernel["loss sum"].is_null(), "{step}");
        assert_eq!(by_kernel["forward"], 2.0, "{step}");
    }
    let fixed = all
        .iter()
        .find(|v| v["kind"] == "fixed_cost")
        .unwrap_or_else(|| panic!("no fixed_cost line:\n{}", out.stdout));
    assert_eq!(fixed["arch"], "4-4-2", "{fixed}");
    assert!(fixed["step_ms_median"].as_f64().unwrap() > 0.0, "{fixed}");
    assert!(fixed["dispatches"].as_f64().unwrap() >= 1.0, "{fixed}");
}

/// Two `retroprop train` processes with different seeds save the model and
/// checkpoints to the same paths at once, ten times, while the files are
/// read: the model file is always byte for byte one run's, as that run
/// writes it alone, and the checkpoint always whole.
#[test]
fn two_processes_saving_to_one_path_leave_one_whole_file() {
    let dir = Dir::new("two-writers");
    let data = classes_csv(&dir);
    let train = |seed: &str, save: &str, checkpoint: &str| {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("retroprop"));
        command.args([
            "train",
            "--data",
            &data,
            "--arch",
            "2,64,3",
            "--epochs",
            "8",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--quiet",
            "--seed",
            seed,
            "--save",
            save,
            "--checkpoint",
            checkpoint,
        ]);
        command
    };
    let reference = |seed: &str| {
        let (save, checkpoint) = (
            dir.arg(&format!("{seed}.st")),
            dir.arg(&format!("{seed}-c.st")),
        );
        assert!(train(seed, &save, &checkpoint).status().unwrap().success());
        (
            std::fs::read(save).unwrap(),
            std::fs::read(checkpoint).unwrap(),
        )
    };
    let (one, two) = (reference("1"), reference("2"));
    assert_ne!(one.0, two.0, "the two seeds gave the same model");
    let (save, checkpoint) = (dir.arg("shared.st"), dir.arg("shared-c.st"));
    std::fs::write(&save, &one.0).unwrap();
    std::fs::write(&checkpoint, &one.1).unwrap();
    // While the runs write, a reader checks every state it sees: the model
    // file is always one run's whole file, the checkpoint always a whole
    // safetensors file (its epochs differ, so only its form is known).
    let done = std::sync::atomic::AtomicBool::new(false);
    let reads = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let model = std::fs::read(&save).unwrap();
                assert!(
                    model == one.0 || model == two.0,
                    "read {reads}: the model file is neither run's ({} bytes)",
                    model.len()
                );
                let last = std::fs::read(&checkpoint).unwrap();
                if let Err(e) = safetensors::SafeTensors::deserialize(&last) {
                    panic!(
                        "read {reads}: the checkpoint is not whole ({} bytes): {e}",
                        last.len()
                    );
                }
                reads += 1;
            }
            reads
        });
        for round in 0..10 {
            let mut children: Vec<_> = ["1", "2"]
                .iter()
                .map(|seed| train(seed, &save, &checkpoint).spawn().unwrap())
                .collect();
            for child in &mut children {
                assert!(
                    child.wait().unwrap().success(),
                    "round {round}: a run failed"
                );
            }
            let last = std::fs::read(&checkpoint).unwrap();
            assert!(
                last == one.1 || last == two.1,
                "round {round}: the last checkpoint is neither run's ({} bytes)",
                last.len()
            );
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap()
    });
    assert!(reads > 10, "the reader read the files only {reads} times");
    let mut left: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "1-c.st",
            "1.st",
            "2-c.st",
            "2.st",
            "classes.csv",
            "shared-c.st",
            "shared.st"
        ],
        "temporary files were left behind"
    );
}

/// `--steps` that ends inside an epoch leaves a checkpoint at that row, so
/// resuming with more steps writes the model one longer run writes, byte
/// for byte (it used to count the cut epoch as done and start the next).
#[test]
fn steps_that_end_inside_an_epoch_resume_where_they_stopped() {
    let dir = Dir::new("steps-resume");
    let data = classes_csv(&dir);
    // 60 rows, no validation: 6 steps an epoch; 4 steps end inside the
    // first epoch, 9 inside the second.
    let train = |steps: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            &data,
            "--arch",
            "2,8,3",
            "--batch-size",
            "10",
            "--device",
            "cpu",
            "--steps",
            steps,
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    let (whole, part, checkpoint, resumed) = (
        dir.arg("whole.safetensors"),
        dir.arg("part.safetensors"),
        dir.arg("checkpoint.safetensors"),
        dir.arg("resumed.safetensors"),
    );
    train("9", &["--save", &whole]);
    train("4", &["--save", &part, "--checkpoint", &checkpoint]);
    train("9", &["--resume", &checkpoint, "--save", &resumed]);
    let read = |p: &str| std::fs::read(p).unwrap();
    assert!(
        read(&part) != read(&whole),
        "4 and 9 steps wrote the same model"
    );
    assert!(
        read(&resumed) == read(&whole),
        "4 steps resumed to 9 differ from 9 steps in one run"
    );
}
