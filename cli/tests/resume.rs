//! `retroprop train --resume`: the same run. A run cut short by --steps
//! and resumed with nothing but `--resume` writes the unbroken run's model
//! and checkpoint byte for byte and continues its metrics file, on the CPU
//! and the GPU; a changed setting its state cannot carry is refused, one
//! that steers is printed and noted; a divergence keeps the last
//! checkpoint and the last good parameters; a signal during start-up
//! writes nothing.

mod support;

use safetensors::SafeTensors;
use std::path::Path;
use support::{Dir, fails, ok, refused, run, run_with};

/// 80 rows, three classes from two features.
fn classes(dir: &Dir) -> String {
    let mut text = String::from("a,b,label\n");
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    for _ in 0..80 {
        let (x, y) = (next(), next());
        let label = if x + y > 0.5 {
            2
        } else if x > y {
            1
        } else {
            0
        };
        text += &format!("{x:.4},{y:.4},{label}\n");
    }
    dir.write("classes.csv", &text)
        .to_str()
        .unwrap()
        .to_string()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = read(path);
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().clone().unwrap_or_default()
}

/// A metrics file without its times (the last field of a CSV line, the
/// `seconds` of a JSON line), which no two runs share.
fn untimed(path: &Path) -> Vec<String> {
    String::from_utf8(read(path))
        .unwrap()
        .lines()
        .map(|line| match line.find("\"seconds\"") {
            Some(at) => line[..at].to_string(),
            None => line
                .rsplit_once(',')
                .map_or(line, |(rest, _)| rest)
                .to_string(),
        })
        .collect()
}

/// Runs of the settings `settings` on `device`: unbroken to `epochs`, and
/// cut at `--steps cut` then resumed with no setting given; the model,
/// the checkpoint at the end and the metrics must be the same.
fn resumed_is_unbroken(device: &str, name: &str, settings: &[&str], cut: &str, metrics: &str) {
    let dir = Dir::new(&format!("{device}-{name}"));
    let data = classes(&dir);
    let bounds = ["--epochs", "7"];
    let files = |tag: &str| {
        (
            dir.path(&format!("{tag}.safetensors")),
            dir.path(&format!("{tag}-c.safetensors")),
            dir.path(&format!("{tag}.{metrics}")),
        )
    };
    let (whole, whole_checkpoint, whole_metrics) = files("whole");
    let (resumed, checkpoint, resumed_metrics) = files("resumed");
    let common = ["train", "--data", &data, "--device", device, "-q"];
    let with_files = |model: &Path, checkpoint: &Path, metrics: &Path| {
        [
            "--save",
            model.to_str().unwrap(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
            "--metrics",
            metrics.to_str().unwrap(),
        ]
        .map(String::from)
    };
    let whole_files = with_files(&whole, &whole_checkpoint, &whole_metrics);
    let resumed_files = with_files(&resumed, &checkpoint, &resumed_metrics);
    ok(&[&common[..], settings, &bounds, &strs(&whole_files)].concat());
    ok(&[
        &common[..],
        settings,
        &["--steps", cut],
        &strs(&resumed_files),
    ]
    .concat());
    let plot = dir.path("whole-run.png");
    // What records, but changes nothing, belongs to each invocation.
    let again: &[&str] = match settings.iter().position(|&a| a == "--norms-every") {
        Some(at) => &settings[at..at + 2],
        None => &[],
    };
    ok(&[
        &common[..],
        &bounds,
        again,
        &["--resume", checkpoint.to_str().unwrap()],
        &strs(&resumed_files),
        &["--plot", plot.to_str().unwrap()],
    ]
    .concat());
    assert!(
        read(&resumed) == read(&whole),
        "{device} {name}: cut at step {cut} and resumed, the model differs from the unbroken run's"
    );
    assert!(
        read(&checkpoint) == read(&whole_checkpoint),
        "{device} {name}: the last checkpoints differ"
    );
    assert_eq!(
        untimed(&resumed_metrics),
        untimed(&whole_metrics),
        "{device} {name}: the metrics file does not hold the whole run"
    );
    assert!(
        read(&plot).starts_with(b"\x89PNG"),
        "{device} {name}: no plot"
    );
}

/// The settings each run uses: between them, every setting a checkpoint
/// records.
const RUNS: [(&str, &[&str], &str, &str); 3] = [
    (
        "sgd-plateau-early-stopping",
        &[
            "--arch",
            "2,8,3",
            "--activations",
            "tanh",
            "--optimizer",
            "sgd",
            "--lr",
            "0.2",
            "--momentum",
            "0.9",
            "--nesterov",
            "--weight-decay",
            "0.001",
            "--lr-schedule",
            "plateau:0.5:0",
            "--val-split",
            "0.25",
            "--early-stopping",
            "1",
            "--min-delta",
            "0.001",
            "--batch-size",
            "7",
            "--seed",
            "3",
            "--dropout",
            "0.1",
            "--clip-grad-norm",
            "2",
        ],
        "20",
        "csv",
    ),
    (
        "adam-amsgrad-steps-no-shuffle",
        &[
            "--arch",
            "2,6,6,3",
            "--activations",
            "relu,gelu,identity",
            "--optimizer",
            "adam:betas=0.8/0.99,eps=1e-6",
            "--amsgrad",
            "--lr",
            "0.01",
            "--lr-schedule",
            "step:2:0.5",
            "--batch-size",
            "1",
            "--no-shuffle",
            "--clip-grad-value",
            "0.5",
            "--standardize",
        ],
        "130",
        "jsonl",
    ),
    (
        "rmsprop-full-batch-mse",
        &[
            "--optimizer",
            "rmsprop",
            "--centered",
            "--momentum",
            "0.5",
            "--lr",
            "0.01",
            "--loss",
            "mse",
            "--batch-size",
            "0",
            "--lr-schedule",
            "cosine:5",
            "--norms-every",
            "1",
        ],
        "3",
        "jsonl",
    ),
];

#[test]
fn a_bare_resume_on_the_cpu_is_the_unbroken_run_byte_for_byte() {
    for (name, settings, cut, metrics) in RUNS {
        resumed_is_unbroken("cpu", name, settings, cut, metrics);
    }
}

#[test]
fn a_bare_resume_on_the_gpu_is_the_unbroken_run_byte_for_byte() {
    for (name, settings, cut, metrics) in RUNS {
        resumed_is_unbroken("gpu", name, settings, cut, metrics);
    }
}

#[test]
fn a_bare_resume_of_a_mixed_precision_run_is_the_unbroken_run_byte_for_byte() {
    // The first run's settings in f16 products: the precision comes back
    // from the checkpoint like every other setting.
    let (name, settings, cut, metrics) = RUNS[0];
    let mixed = [settings, &["--precision", "mixed"]].concat();
    resumed_is_unbroken("gpu", &format!("{name}-mixed"), &mixed, cut, metrics);
}

#[test]
fn a_bare_resume_of_a_batch_norm_residual_run_is_the_unbroken_run_byte_for_byte() {
    // The running statistics go through the checkpoint, and early
    // stopping's best epoch keeps its own.
    let settings = [
        "--arch",
        "2,8,3",
        "--blocks",
        "2",
        "--norm",
        "batch",
        "--val-split",
        "0.25",
        "--early-stopping",
        "2",
        "--batch-size",
        "7",
        "--seed",
        "3",
    ];
    resumed_is_unbroken("cpu", "residual-batch-norm", &settings, "20", "csv");
}

/// A checkpoint of a small SGD run with momentum, early stopping and a
/// validation split, for the refusals and changes below.
fn checkpointed(dir: &Dir) -> (String, String) {
    let data = classes(dir);
    let checkpoint = dir.arg("c.safetensors");
    ok(&[
        "train",
        "--data",
        &data,
        "--arch",
        "2,8,3",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--lr",
        "0.1",
        "--val-split",
        "0.25",
        "--early-stopping",
        "3",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "-q",
        "--checkpoint",
        &checkpoint,
    ]);
    (data, checkpoint)
}

#[test]
fn a_resume_refuses_each_setting_its_state_cannot_carry() {
    let dir = Dir::new("refused");
    let (data, checkpoint) = checkpointed(&dir);
    let cases: [(&[&str], &[&str]); 8] = [
        (&["--arch", "2,9,3"], &["--arch 2,8,3, not 2,9,3"]),
        (
            &["--activations", "sigmoid"],
            &["--activations relu,identity, not sigmoid,identity"],
        ),
        (&["--loss", "mse"], &["--loss cross_entropy, not mse"]),
        (&["--optimizer", "adam"], &["--optimizer sgd, not adam"]),
        (&["--momentum", "0"], &["--momentum 0.9, not 0"]),
        (
            &["--val-split", "0.5"],
            &["--val-split fraction=0.25,seed=0, not fraction=0.5,seed=0"],
        ),
        (&["--standardize"], &["without --standardize"]),
        (
            &["--activations", "tanh", "--optimizer", "rmsprop"],
            &[
                "--activations relu,identity, not tanh,identity",
                "--optimizer sgd, not rmsprop",
            ],
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec!["train", "--data", &data, "--device", "cpu", "-q"];
        args.extend(["--resume", &checkpoint]);
        args.extend(flags);
        refused(&[], &args, named);
    }
}

#[test]
fn a_resume_that_steers_says_so_and_notes_it_in_the_model() {
    let dir = Dir::new("steered");
    let (data, checkpoint) = checkpointed(&dir);
    let model = dir.arg("m.safetensors");
    let next = dir.arg("next.safetensors");
    let args = [
        "train",
        "--data",
        &data,
        "--device",
        "cpu",
        "-q",
        "--epochs",
        "3",
        "--resume",
        &checkpoint,
        "--lr",
        "0.05",
        "--seed",
        "7",
        "--batch-size",
        "10",
        "--early-stopping",
        "5",
        "--save",
        &model,
        "--checkpoint",
        &next,
    ];
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    for line in [
        "resumed with --lr changed: 0.1 -> 0.05",
        "resumed with --batch-size changed: 32 -> 10",
        "resumed with --seed changed: 0 -> 7",
        "resumed with --early-stopping/--min-delta changed: patience=3,min_delta=0 -> patience=5,min_delta=0",
    ] {
        assert!(
            stderr.lines().any(|l| l == line),
            "`{line}` not in:\n{stderr}"
        );
    }
    let step = retroprop::io::load_checkpoint(Path::new(&checkpoint))
        .unwrap()
        .2
        .step;
    let noted = format!(
        "at step {step}: lr 0.1 -> 0.05, batch_size 32 -> 10, seed 0 -> 7, \
         early_stopping patience=3,min_delta=0 -> patience=5,min_delta=0"
    );
    for file in [&model, &next] {
        assert_eq!(
            metadata(Path::new(file)).get("retroprop.changed_on_resume"),
            Some(&noted),
            "{file}"
        );
    }
}

/// Diverging at step k with every file flag: --save holds what a run of
/// k - 1 steps saves, --checkpoint stays the last checkpoint (what a run
/// of its epochs writes) and resumes; the metrics keep the epochs done.
fn divergence_keeps_the_work(device: &str) {
    let dir = Dir::new(&format!("diverge-{device}"));
    let mut text = String::from("x,y\n");
    for i in 0..40 {
        text += &format!("{},{}\n", 50.0 + i as f32, i % 3);
    }
    let data = dir.write("big.csv", &text);
    let data = data.to_str().unwrap();
    let common = [
        "train",
        "--data",
        data,
        "--loss",
        "mse",
        "--optimizer",
        "sgd",
        "--lr",
        "5",
        "--batch-size",
        "4",
        "--device",
        device,
        "-q",
    ];
    let (model, checkpoint, metrics) = (
        dir.arg("m.safetensors"),
        dir.arg("c.safetensors"),
        dir.arg("m.csv"),
    );
    let files = [
        "--save",
        &model,
        "--checkpoint",
        &checkpoint,
        "--metrics",
        &metrics,
    ];
    let (code, _, stderr) = run(&[&common[..], &files].concat());
    assert_eq!(code, 1, "{device}: {stderr}");
    let step: u64 = stderr
        .split("diverged at step ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{device}: no step in: {stderr}"));
    assert!(
        stderr.contains(&format!(
            "the last good parameters (step {}) are in {model}",
            step - 1
        )) && stderr.contains(&format!("is in {checkpoint} (continue with --resume")),
        "{device}: {stderr}"
    );
    let (saved, _, written) = retroprop::io::load_checkpoint(Path::new(&checkpoint))
        .unwrap_or_else(|e| panic!("{device}: the checkpoint does not load: {e}"));
    let _ = saved;
    let (bounded, bounded_checkpoint) = (dir.arg("b.safetensors"), dir.arg("bc.safetensors"));
    ok(&[
        &common[..],
        &["--steps", &(step - 1).to_string(), "--save", &bounded],
    ]
    .concat());
    ok(&[
        &common[..],
        &[
            "--epochs",
            &written.epoch.to_string(),
            "--checkpoint",
            &bounded_checkpoint,
        ],
    ]
    .concat());
    assert!(
        read(Path::new(&model)) == read(Path::new(&bounded)),
        "{device}: --save after divergence at step {step} differs from {} steps' model",
        step - 1
    );
    assert!(
        read(Path::new(&checkpoint)) == read(Path::new(&bounded_checkpoint)),
        "{device}: --checkpoint is not the last checkpoint written"
    );
    assert_eq!(
        untimed(Path::new(&metrics)).len(),
        1 + written.epoch as usize,
        "{device}: the metrics of the epochs done"
    );
    // It resumes: with the epochs it holds, nothing is left to train.
    ok(&[
        "train",
        "--data",
        data,
        "--device",
        device,
        "-q",
        "--epochs",
        &written.epoch.to_string(),
        "--resume",
        &checkpoint,
    ]);
}

#[test]
fn divergence_on_the_cpu_keeps_the_last_checkpoint_and_the_last_good_parameters() {
    divergence_keeps_the_work("cpu");
}

#[test]
fn divergence_on_the_gpu_keeps_the_last_checkpoint_and_the_last_good_parameters() {
    divergence_keeps_the_work("gpu");
}

/// Whether process `pid` catches SIGINT yet (its handler is installed).
fn catches_sigint(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (2 - 1)) != 0)
}

/// SIGINT once the handlers are in, while the GPU trainer starts (the
/// adapter and its pipelines take that long on lavapipe): no file that
/// was there is written over, and the program says so.
#[test]
fn a_signal_during_start_up_writes_nothing() {
    let dir = Dir::new("start-up");
    let data = classes(&dir);
    let (checkpoint, model, metrics) = (
        dir.write("c.safetensors", "an earlier checkpoint"),
        dir.write("m.safetensors", "an earlier model"),
        dir.write("m.csv", "earlier metrics\n"),
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_retroprop"))
        .args(["train", "--data", &data, "--device", "gpu", "-q"])
        .args(["--epochs", "100000", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--save")
        .arg(&model)
        .arg("--metrics")
        .arg(&metrics)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !catches_sigint(child.id()) && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("before the first step: no file written"),
        "{stdout}"
    );
    assert_eq!(read(&checkpoint), b"an earlier checkpoint");
    assert_eq!(read(&model), b"an earlier model");
    assert_eq!(read(&metrics), b"earlier metrics\n");
    let _ = fails;
}

/// Two target columns (mse): a resume given neither --targets nor --loss
/// reads the data as its start did, and ends as the unbroken run.
#[test]
fn a_resume_reads_the_targets_as_its_start_did() {
    let dir = Dir::new("targets");
    let mut text = String::from("a,b,c,y0,y1\n");
    for i in 0..30 {
        let (a, b, c) = (i as f32 / 30.0, (i % 7) as f32 / 7.0, (i % 5) as f32 / 5.0);
        text += &format!("{a},{b},{c},{},{}\n", a * b + c, a - c);
    }
    let data = dir.write("two.csv", &text);
    let data = data.to_str().unwrap();
    let settings = [
        "train",
        "--data",
        data,
        "--targets",
        "2",
        "--loss",
        "mse",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "-q",
    ];
    let (whole, checkpoint, resumed) = (
        dir.arg("w.safetensors"),
        dir.arg("c.safetensors"),
        dir.arg("r.safetensors"),
    );
    ok(&[&settings[..], &["--epochs", "4", "--save", &whole]].concat());
    ok(&[
        &settings[..],
        &["--steps", "10", "--checkpoint", &checkpoint],
    ]
    .concat());
    ok(&[
        "train",
        "--data",
        data,
        "--device",
        "cpu",
        "-q",
        "--epochs",
        "4",
        "--resume",
        &checkpoint,
        "--save",
        &resumed,
    ]);
    assert!(read(Path::new(&resumed)) == read(Path::new(&whole)));
}

#[test]
fn a_mixed_run_names_its_precision_and_refuses_a_resume_in_f32() {
    let dir = Dir::new("mixed");
    let data = classes(&dir);
    let (checkpoint, model) = (dir.arg("c.safetensors"), dir.arg("m.safetensors"));
    let run = [
        "train", "--data", &data, "--arch", "2,8,3", "--epochs", "2", "-q",
    ];
    let mut args = run.to_vec();
    args.extend([
        "--device",
        "gpu",
        "--precision",
        "mixed",
        "--checkpoint",
        &checkpoint,
        "--save",
        &model,
    ]);
    ok(&args);
    for (file, key) in [
        (&model, "retroprop.precision"),
        (&checkpoint, "retroprop.precision"),
        (&checkpoint, "retroprop.settings.precision"),
    ] {
        let meta = metadata(Path::new(file));
        assert_eq!(
            meta.get(key).map(String::as_str),
            Some("mixed"),
            "{key} of {file}"
        );
    }
    let mut args = run.to_vec();
    args.extend([
        "--device",
        "gpu",
        "--resume",
        &checkpoint,
        "--precision",
        "f32",
    ]);
    refused(&[], &args, &["--precision mixed, not f32"]);
    // An f32 run names its precision too.
    let mut args = run.to_vec();
    args.extend(["--device", "cpu", "--save", &model]);
    ok(&args);
    let meta = metadata(Path::new(&model));
    assert_eq!(
        meta.get("retroprop.precision").map(String::as_str),
        Some("f32")
    );
    // The CPU refuses mixed, naming the flag; an unknown precision is refused by clap.
    let mut args = run.to_vec();
    args.extend(["--device", "cpu", "--precision", "mixed"]);
    refused(
        &[],
        &args,
        &["--precision mixed needs a GPU with shader-f16"],
    );
    let mut args = run.to_vec();
    args.extend(["--device", "gpu", "--precision", "f16"]);
    fails(
        &args,
        2,
        &["unknown precision `f16` (expected f32 or mixed)"],
    );
}

/// A checkpoint holds nothing of which GEMM ran the products
/// (`RETROPROP_BLAS`, or under `auto` the trials of the process): a run
/// begun on the built-in GEMM resumes on the BLAS library, and the other
/// way round, with nothing refused or noted. What docs/DESIGN.md says of
/// the bits: with the GEMM pinned (`off`, or the library's name) a run cut
/// and resumed in another process writes the unbroken run's model byte
/// for byte; the two GEMMs round differently, so the GEMM that runs the
/// products decides the bits (a run resumed on the other is a run of its
/// own, not the unbroken one).
#[test]
fn a_checkpoint_resumes_whichever_gemm_runs_the_products() {
    let dir = Dir::new("cpu-gemm-choice");
    let data = classes(&dir);
    // 80 rows through 1024-wide layers: 80 × 1024 × 1024 multiply-adds, a
    // product large enough for the library.
    let common = [
        "train",
        "--data",
        &data,
        "--device",
        "cpu",
        "--arch",
        "2,1024,1024,3",
        "--batch-size",
        "80",
        "-q",
    ];
    let train = |setting: &str, args: &[&str]| {
        let (code, stdout, stderr) = run_with(
            &[("RETROPROP_BLAS", setting)],
            &[&common[..], args].concat(),
        );
        assert_eq!(code, 0, "RETROPROP_BLAS={setting} {args:?}: {stderr}");
        assert!(
            !stdout.contains("resumed with") && stderr.is_empty(),
            "RETROPROP_BLAS={setting} {args:?} said:\n{stdout}{stderr}"
        );
        stdout
    };
    let model = |name: &str| dir.path(&format!("{name}.safetensors"));
    let path = |name: &str| model(name).to_str().unwrap().to_string();
    // Unbroken runs of 4 steps on each pinned GEMM.
    for pinned in ["off", "libopenblas.so.0"] {
        train(pinned, &["--steps", "4", "--save", &path(pinned)]);
    }
    assert!(
        read(&model("off")) != read(&model("libopenblas.so.0")),
        "the two GEMMs gave the same model, so this test cannot tell them apart"
    );
    for (first, then) in [
        ("off", "off"),
        ("libopenblas.so.0", "libopenblas.so.0"),
        ("off", "libopenblas.so.0"),
        ("libopenblas.so.0", "off"),
        ("off", "auto"),
    ] {
        let name = format!("{first}-{then}");
        let checkpoint = path(&format!("{name}-c"));
        train(first, &["--steps", "2", "--checkpoint", &checkpoint]);
        let stdout = train(
            then,
            &[
                "--steps",
                "4",
                "--resume",
                &checkpoint,
                "--save",
                &path(&name),
            ],
        );
        assert!(stdout.contains(", 4 steps"), "{stdout}");
        if first == then {
            assert!(
                read(&model(&name)) == read(&model(first)),
                "RETROPROP_BLAS={first}: cut at step 2 and resumed, the model differs \
                 from the unbroken run's"
            );
        }
    }
    // Resumed on the other GEMM, the last two steps rounded otherwise.
    assert!(read(&model("off-libopenblas.so.0")) != read(&model("off")));
    assert!(read(&model("libopenblas.so.0-off")) != read(&model("libopenblas.so.0")));
}
