//! End-to-end tests of the `retroprop` program on files the tests write.
//! GPU cases need a wgpu adapter (without a GPU: `apt-get install
//! mesa-vulkan-drivers`).

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use safetensors::SafeTensors;
use std::path::Path;
use support::{Dir, classes_csv, fails, ok, run, run_with};

type TensorList = Vec<(String, Vec<usize>)>;
type Metadata = std::collections::HashMap<String, String>;

fn tensor_shapes(path: &Path) -> (TensorList, Metadata) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<(String, Vec<usize>)> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    names.sort();
    (names, header.metadata().clone().unwrap_or_default())
}

fn train_save_predict_evaluate(device: &str) {
    let dir = Dir::new(&format!("roundtrip-{device}"));
    let data = classes_csv(&dir);
    let model = dir.path("model.safetensors");
    let out = ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "2,8,3",
        "--activations",
        "tanh",
        "--epochs",
        "30",
        "--lr",
        "0.02",
        "--standardize",
        "--device",
        device,
        "--quiet",
        "--save",
        model.to_str().unwrap(),
    ]);
    assert!(out.contains("training accuracy"), "summary: {out}");
    let (names, meta) = tensor_shapes(&model);
    assert_eq!(
        names,
        vec![
            ("layers.0.bias".to_string(), vec![8]),
            ("layers.0.weight".to_string(), vec![8, 2]),
            ("layers.1.bias".to_string(), vec![3]),
            ("layers.1.weight".to_string(), vec![3, 8]),
        ]
    );
    assert_eq!(meta["retroprop.arch"], "2,8,3");
    assert_eq!(meta["retroprop.activations"], "tanh,identity");
    assert_eq!(meta["retroprop.loss"], "cross_entropy");
    assert_eq!(meta["retroprop.mean"].split(',').count(), 2);

    let predictions = dir.path("predictions.csv");
    ok(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        predictions.to_str().unwrap(),
        "--device",
        device,
    ]);
    let text = std::fs::read_to_string(&predictions).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("class,p0,p1,p2"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 60, "one prediction per row");
    for row in &rows {
        let fields: Vec<f64> = row.split(',').map(|f| f.parse().unwrap()).collect();
        assert!(fields[0] < 3.0);
        let total: f64 = fields[1..].iter().sum();
        assert!((total - 1.0).abs() < 1e-5, "probabilities sum to {total}");
    }
    let eval = ok(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--device",
        device,
    ]);
    let accuracy: f64 = eval
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(accuracy > 80.0, "evaluate: {eval}");
}

#[test]
fn cpu_train_save_predict_evaluate() {
    train_save_predict_evaluate("cpu");
}

#[test]
fn gpu_train_save_predict_evaluate() {
    train_save_predict_evaluate("gpu");
}

fn params(path: &Path) -> Vec<f32> {
    retroprop::io::load_model(path).unwrap().params
}

#[test]
fn init_then_save_with_zero_steps_reproduces_parameters() {
    let dir = Dir::new("init");
    let data = classes_csv(&dir);
    let first = dir.path("first.safetensors");
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        "2,5,3",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "-q",
        "--save",
        first.to_str().unwrap(),
    ]);
    let second = dir.path("second.safetensors");
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--init",
        first.to_str().unwrap(),
        "--steps",
        "0",
        "--device",
        "cpu",
        "-q",
        "--save",
        second.to_str().unwrap(),
    ]);
    let (a, b) = (params(&first), params(&second));
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // A bare state_dict (no metadata) with --arch and --activations.
    let mlp = retroprop::Mlp::new(
        &[2, 5, 3],
        retroprop::Activation::Relu,
        retroprop::Activation::Identity,
    )
    .unwrap();
    let bare = dir.path("bare.safetensors");
    write_bare_state_dict(&bare, &mlp, &a);
    let third = dir.path("third.safetensors");
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--init",
        bare.to_str().unwrap(),
        "--arch",
        "2,5,3",
        "--activations",
        "relu",
        "--steps",
        "0",
        "--device",
        "cpu",
        "-q",
        "--save",
        third.to_str().unwrap(),
    ]);
    assert_eq!(params(&third), a);
}

fn write_bare_state_dict(path: &Path, mlp: &retroprop::Mlp, params: &[f32]) {
    use safetensors::tensor::{Dtype, TensorView};
    let mut tensors = Vec::new();
    for (l, layer) in mlp.layers().iter().enumerate() {
        let w: Vec<u8> = params[mlp.weight_range(l)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b: Vec<u8> = params[mlp.bias_range(l)]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        tensors.push((
            format!("layers.{l}.weight"),
            w,
            vec![layer.outputs, layer.inputs],
        ));
        tensors.push((format!("layers.{l}.bias"), b, vec![layer.outputs]));
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// Trains with `args` (and `env`) on the CPU and on the GPU, and asserts
/// the two models' parameters agree within 1e-4 relative (floor 1e-2).
fn assert_devices_agree(dir: &Dir, env: &[(&str, &str)], args: &[&str]) {
    let data = classes_csv(dir);
    let run_on = |device: &str| {
        let model = dir.path(&format!("{device}.safetensors"));
        let common = [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--device",
            device,
            "-q",
            "--save",
            model.to_str().unwrap(),
        ];
        let (code, _, stderr) = run_with(env, &[&common[..], args].concat());
        assert_eq!(code, 0, "{device}: {stderr}");
        params(&model)
    };
    let (cpu, gpu) = (run_on("cpu"), run_on("gpu"));
    let (err, at) = common::max_rel_error(&common::widen(&gpu), &common::widen(&cpu), 1e-2);
    assert!(
        err < 1e-4,
        "parameter {at}: gpu {} vs cpu {} ({err:.1e})",
        gpu[at],
        cpu[at]
    );
}

#[test]
fn cpu_and_gpu_agree_without_shuffling() {
    let args = [
        "--arch",
        "2,16,3",
        "--no-shuffle",
        "--steps",
        "40",
        "--batch-size",
        "8",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
    ];
    assert_devices_agree(&Dir::new("parity"), &[], &args);
}

/// Trains the 2-200-3 net with Adam in batches of `batch` on the CPU and
/// on the GPU with `RETROPROP_MATMUL=choice`, and asserts they agree.
fn assert_choice_trains_like_the_cpu(choice: &str, batch: &str) {
    let args = [
        "--arch",
        "2,200,3",
        "--no-shuffle",
        "--steps",
        "20",
        "--batch-size",
        batch,
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
    ];
    let env = [("RETROPROP_MATMUL", choice)];
    assert_devices_agree(&Dir::new(&format!("{choice}-{batch}")), &env, &args);
}

#[test]
fn products_tiled_by_shape_train_like_the_cpu() {
    // RETROPROP_MATMUL=shared-by-shape:2 gives 128 × 128 tiles to products
    // of at least two such workgroups (here every one with a side of 200)
    // and 64 × 64 to the rest (the 3-wide output layer's forward pass):
    // both tilings in one step, as on a hardware GPU's standard work.
    assert_choice_trains_like_the_cpu("shared-by-shape:2", "8");
}

#[test]
fn split_k_and_the_vec4_kernel_from_the_environment_train_like_the_cpu() {
    // `+split:64:16`: products of fewer than 64 tiles split K (the batch of
    // the weight gradients, 200 or 3 of the forward products) in slices
    // of at least 16, through the program's RETROPROP_MATMUL.
    assert_choice_trains_like_the_cpu("shared-vec4+split:64:16", "40");
    assert_choice_trains_like_the_cpu("texture-by-shape+split:64:16", "40");
}

#[test]
fn texture_blocks_chosen_by_shape_train_like_the_cpu() {
    // What lavapipe runs from Mesa 23 on (16 × 16 blocks) and before it
    // (8 × 8), each with one row of threads for products of at most 8 rows:
    // in batches of 5 and 12, the forward and input-gradient products take
    // the one-row tiling at 5 rows and the block at 12; the weight gradients
    // (200 or 3 rows) take the block, or the one-row tiling for the 3-wide
    // output layer.
    for choice in ["texture-large-by-shape", "texture-by-shape"] {
        for batch in ["5", "12"] {
            assert_choice_trains_like_the_cpu(choice, batch);
        }
    }
}

#[test]
fn metrics_and_plot_are_written_and_well_formed() {
    let dir = Dir::new("metrics");
    let data = classes_csv(&dir);
    let csv = dir.path("metrics.csv");
    let jsonl = dir.path("metrics.jsonl");
    let png = dir.path("loss.png");
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "4",
        "--val-split",
        "0.25",
        "--device",
        "cpu",
        "-q",
        "--metrics",
        csv.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,step,train_loss,val_loss,val_accuracy,lr,seconds"
    );
    assert_eq!(lines.len(), 5, "{text}");
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<f64> = line.split(',').map(|f| f.parse().unwrap()).collect();
        assert_eq!(fields.len(), 7);
        assert_eq!(fields[0], (i + 1) as f64);
        assert!(fields[4] >= 0.0 && fields[4] <= 1.0);
    }
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "3",
        "--device",
        "cpu",
        "-q",
        "--metrics",
        jsonl.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[2]["epoch"], 3);
    assert!(records[2]["train_loss"].as_f64().unwrap() > 0.0);
    assert!(records[2]["val_loss"].is_null());
}

#[test]
fn schedule_and_early_stopping_from_the_command_line() {
    let dir = Dir::new("schedule");
    let data = classes_csv(&dir);
    let metrics = dir.path("m.csv");
    let out = ok(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "6",
        "--lr",
        "0.01",
        "--lr-schedule",
        "step:2:0.5",
        "--val-split",
        "0.3",
        "--early-stopping",
        "50",
        "--clip-grad-norm",
        "1.0",
        "--dropout",
        "0.1",
        "--device",
        "cpu",
        "-q",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    assert!(out.contains("kept epoch"), "{out}");
    let lrs: Vec<f64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
        .collect();
    assert_eq!(lrs, [0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]);
}

#[test]
fn checkpoint_then_resume_ends_like_an_uninterrupted_run() {
    for device in ["cpu", "gpu"] {
        let dir = Dir::new(&format!("resume-{device}"));
        let data = classes_csv(&dir);
        let data = data.to_str().unwrap();
        let common = [
            "--data",
            data,
            "--arch",
            "2,8,3",
            "--optimizer",
            "adam",
            "--lr",
            "0.01",
            "--lr-schedule",
            "step:2:0.5",
            "--device",
            device,
            "-q",
        ];
        let whole = dir.path("whole.safetensors");
        ok(&[
            &["train"][..],
            &common,
            &["--epochs", "5", "--save", whole.to_str().unwrap()],
        ]
        .concat());
        let checkpoint = dir.path("checkpoint.safetensors");
        ok(&[
            &["train"][..],
            &common,
            &[
                "--epochs",
                "3",
                "--checkpoint",
                checkpoint.to_str().unwrap(),
                "--checkpoint-every",
                "1",
            ],
        ]
        .concat());
        let (names, meta) = tensor_shapes(&checkpoint);
        // Adam's two slots, each a tensor named as torch names it, over
        // the network's 51 parameters.
        for slot in ["optimizer.exp_avg", "optimizer.exp_avg_sq"] {
            assert!(
                names.iter().any(|(n, s)| n == slot && s[..] == [51]),
                "{slot} missing or misshapen: {names:?}"
            );
        }
        assert_eq!(meta["retroprop.optimizer_state"], "exp_avg,exp_avg_sq");
        assert_eq!(meta["retroprop.epoch"], "3");
        let resumed = dir.path("resumed.safetensors");
        ok(&[
            &["train"][..],
            &common,
            &[
                "--epochs",
                "5",
                "--resume",
                checkpoint.to_str().unwrap(),
                "--save",
                resumed.to_str().unwrap(),
            ],
        ]
        .concat());
        assert_eq!(
            params(&resumed),
            params(&whole),
            "{device}: resumed run differs from the uninterrupted one"
        );
        fails(
            &[
                "train",
                "--data",
                data,
                "--arch",
                "2,8,3",
                "--optimizer",
                "sgd",
                "--resume",
                checkpoint.to_str().unwrap(),
            ],
            1,
            &["written with --optimizer adam, not sgd"],
        );
    }
}

#[test]
fn divergence_stops_with_the_step_and_keeps_the_last_good_parameters() {
    let dir = Dir::new("diverge");
    let mut text = String::from("x,y\n");
    for i in 0..40 {
        text += &format!("{},{}\n", 50.0 + i as f32, i % 3);
    }
    let data = dir.write("big.csv", &text);
    let saved = dir.path("last-good.safetensors");
    fails(
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--loss",
            "mse",
            "--optimizer",
            "sgd",
            "--lr",
            "5",
            "--device",
            "cpu",
            "-q",
            "--save",
            saved.to_str().unwrap(),
        ],
        1,
        &["diverged at step", "the last good parameters (step"],
    );
    assert!(params(&saved).iter().all(|p| p.is_finite()));
}

#[test]
fn vanishing_gradients_are_named_by_layer() {
    let dir = Dir::new("norms");
    let data = classes_csv(&dir);
    let metrics = dir.path("m.jsonl");
    // 14 sigmoid layers: the gradient reaching layer 0 is far below its weights.
    let arch = format!("2,{}3", "3,".repeat(13));
    let (code, _, stderr) = run(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--arch",
        &arch,
        "--activations",
        "sigmoid",
        "--weight-init",
        "xavier_uniform",
        "--epochs",
        "1",
        "--norms-every",
        "1",
        "--device",
        "gpu",
        "-q",
        "--metrics",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: step 1: layer 0's gradient norm"),
        "{stderr}"
    );
    assert!(stderr.contains("has vanished"), "{stderr}");
    let text = std::fs::read_to_string(&metrics).unwrap();
    let norms: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "layer_norms")
        .collect();
    assert_eq!(
        norms.len(),
        2 * 14,
        "60 rows in batches of 32: 2 steps × 14 layers:\n{text}"
    );
    assert!(norms.iter().all(
        |n| n["grad_norm"].as_f64().unwrap() >= 0.0 && n["weight_norm"].as_f64().unwrap() > 0.0
    ));
}

#[test]
fn main_job_trains_on_the_bundled_digits() {
    let out = ok(&["train", "--device", "cpu", "--epochs", "5", "-q"]);
    assert!(out.contains("64,64,10"), "{out}");
    let accuracy: f64 = out
        .split("validation accuracy ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(accuracy > 90.0, "{out}");
}

#[test]
fn help_lists_the_subcommands() {
    let out = ok(&["--help"]);
    for sub in ["train", "predict", "evaluate", "devices", "bench"] {
        assert!(out.contains(sub), "help lacks {sub}:\n{out}");
    }
    let out = ok(&["train", "--help"]);
    assert!(
        out.contains("--batch-size") && out.contains("Examples:"),
        "{out}"
    );
}

#[test]
fn bench_json_runs_on_a_tiny_configuration() {
    let out = ok(&[
        "bench",
        "--devices",
        "cpu,gpu",
        "--batch",
        "4,8",
        "--steps",
        "3",
        "--arch",
        "8,16,3",
        "--samples",
        "64",
        "--json",
    ]);
    let runs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 4, "two devices × two batch sizes:\n{out}");
    for run in &runs {
        for field in ["system", "device", "arch", "optimizer"] {
            assert!(run[field].is_string(), "{field} in {run}");
        }
        for field in [
            "samples_per_s",
            "gflops",
            "step_ms_median",
            "step_ms_min",
            "step_ms_max",
            "first_step_s",
        ] {
            let v = run[field].as_f64().unwrap_or(-1.0);
            assert!(v > 0.0 && v.is_finite(), "{field} = {v} in {run}");
        }
        assert!(run["step_ms_min"].as_f64() <= run["step_ms_median"].as_f64());
        assert!(run["device_bytes"].as_u64().unwrap() > 0);
        assert_eq!(run["arch"], "8-16-3");
    }
    assert!(
        runs.iter()
            .any(|r| r["device"].as_str().unwrap().starts_with("gpu")),
        "a GPU run:\n{out}"
    );
    fails(
        &["bench", "--batch", "0"],
        1,
        &["--batch", "`0` is not a batch size"],
    );
}

/// With no --loss, a target column of whole numbers that are not classes
/// (scikit-learn's diabetes data: 25 to 346) is regressed, and the summary
/// says which loss was chosen, why, and the flag that changes it; class
/// labels are classified, saying so too.
#[test]
fn the_summary_names_the_loss_chosen_for_the_targets_and_why() {
    let dir = Dir::new("chosen-loss");
    let rows = |target: &dyn Fn(usize) -> usize| -> String {
        (0..442)
            .map(|i| {
                format!(
                    "{},{},{}\n",
                    (i % 13) as f32 / 13.0,
                    (i % 7) as f32 / 7.0,
                    target(i)
                )
            })
            .collect()
    };
    let diabetes = dir.write("diabetes.csv", &rows(&|i| 25 + (i * 37) % 322));
    let classes = dir.write("classes.csv", &rows(&|i| i % 3));
    for (file, loss, why) in [
        (
            &diabetes,
            "loss mse (chosen:",
            "from 25 to 346, not classes from 0; --loss cross_entropy",
        ),
        (
            &classes,
            "loss cross_entropy (chosen:",
            "class labels 0 to 2, 147 rows a class; --loss mse",
        ),
    ] {
        let (code, out, err) = run(&[
            "train",
            "--data",
            file.to_str().unwrap(),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "-q",
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(loss) && out.contains(why),
            "{}: {out}",
            file.display()
        );
    }
}

/// An --epochs given with --steps bounds it (it was taken as "not given"
/// when it equalled the default, 20, and `--epochs 20 --steps 100000`
/// trained 2 223 epochs); --steps alone is bounded by nothing else.
#[test]
fn epochs_given_with_steps_bound_them() {
    let dir = Dir::new("epochs-bound-steps");
    let text: String = (0..40)
        .map(|i| {
            format!(
                "{},{},{}\n",
                (i % 5) as f32 / 5.0,
                (i % 3) as f32 / 3.0,
                i % 2
            )
        })
        .collect();
    let data = dir.write("data.csv", &text);
    let data = data.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            data,
            "--device",
            "cpu",
            "--batch-size",
            "8",
        ];
        args.extend(extra);
        let (code, out, err) = run(&args);
        assert_eq!(code, 0, "{err}");
        out
    };
    for (extra, expected) in [
        (
            &["--epochs", "20", "--steps", "100000"][..],
            "20 epochs, 100 steps",
        ),
        (
            &["--epochs", "2", "--steps", "100000"][..],
            "2 epochs, 10 steps",
        ),
        (&["--steps", "12"][..], "12 steps"),
        (&["--epochs", "3"][..], "3 epochs, 15 steps"),
    ] {
        let out = train(extra);
        assert!(out.contains(expected), "{extra:?}: {out}");
    }
}

/// `--device auto` says on stderr when and why it runs on the CPU: on a
/// machine without a hardware GPU (lavapipe does not count), that there is
/// none; on one with a GPU, nothing.
#[test]
fn device_auto_says_why_it_falls_back_to_the_cpu() {
    let hardware = retroprop::gpu::adapters().iter().any(|a| a.is_hardware);
    let (code, out, err) = run(&["train", "--epochs", "1", "--device", "auto", "-q"]);
    assert_eq!(code, 0, "{err}");
    let note = "note: --device auto runs on the CPU: there is no hardware GPU";
    if hardware {
        assert!(!err.contains("--device auto runs on the CPU"), "{err}");
        assert!(!out.contains(" on cpu"), "{out}");
    } else {
        assert!(err.contains(note), "no note on stderr: {err}");
        assert!(out.contains(" on cpu"), "{out}");
    }
}

/// `retroprop devices` says which GEMM the CPU uses under each
/// `RETROPROP_BLAS`: `off` the built-in one, a library named that library
/// alone, `auto` (or unset) both, the faster at each product shape.
#[test]
fn devices_says_which_gemm_each_setting_gives_the_cpu() {
    let cpu_line = |setting: Option<&str>| {
        let env: Vec<(&str, &str)> = setting.map(|s| ("RETROPROP_BLAS", s)).into_iter().collect();
        let (code, stdout, stderr) = if setting.is_some() {
            run_with(&env, &["devices"])
        } else {
            run(&["devices"])
        };
        assert_eq!(code, 0, "RETROPROP_BLAS={setting:?}: {stderr}");
        stdout
            .lines()
            .find(|l| l.starts_with("cpu: "))
            .unwrap_or_else(|| panic!("no cpu line in:\n{stdout}"))
            .to_string()
    };
    assert_eq!(cpu_line(Some("off")), "cpu: built-in GEMM");
    let named = cpu_line(Some("libopenblas.so.0"));
    assert!(
        named.starts_with("cpu: OpenBLAS") && !named.contains("built-in"),
        "{named}"
    );
    let library = named.trim_start_matches("cpu: ");
    let both = format!("cpu: {library} or built-in GEMM, the faster at each product shape");
    assert_eq!(cpu_line(Some("auto")), both);
    if std::env::var_os("RETROPROP_BLAS").is_none() {
        assert_eq!(cpu_line(None), both);
    }
}
