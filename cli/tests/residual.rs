//! `retroprop train --blocks`: a residual network of the bundled digits
//! trains past the plain network of its depth (issue 33's goal: 50
//! blocks with layer normalisation at 96 % or more in the default epochs,
//! with no vanishing-gradient warning; 20 sigmoid blocks past 90 %; batch
//! norm, the default, past 96 % too), and what it cannot do yet is
//! refused before anything trains.

mod support;

use support::{Dir, accuracy, fails, ok};

#[test]
fn fifty_blocks_with_layer_norm_reach_96_percent_on_digits_without_a_warning() {
    let (code, stdout, stderr) = support::run(&[
        "train",
        "--arch",
        "64,32,10",
        "--blocks",
        "50",
        "--norm",
        "layer",
        "--device",
        "cpu",
        "--norms-every",
        "10",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("64,32,10 with 50 residual blocks (hidden 64, layer norm)"),
        "{stdout}"
    );
    assert!(accuracy(&stdout) >= 96.0, "{stdout}");
    assert!(
        !stderr.contains("vanish") && !stderr.contains("explod"),
        "{stderr}"
    );
}

#[test]
fn fifty_blocks_with_batch_norm_the_default_reach_96_percent_on_digits() {
    let stdout = ok(&[
        "train", "--arch", "64,32,10", "--blocks", "50", "--device", "cpu",
    ]);
    assert!(stdout.contains("(hidden 64, batch norm)"), "{stdout}");
    assert!(accuracy(&stdout) >= 96.0, "{stdout}");
}

#[test]
fn twenty_sigmoid_blocks_with_layer_norm_train_past_90_percent() {
    let stdout = ok(&[
        "train",
        "--arch",
        "64,32,10",
        "--blocks",
        "20",
        "--activations",
        "sigmoid",
        "--norm",
        "layer",
        "--device",
        "cpu",
    ]);
    assert!(accuracy(&stdout) > 90.0, "{stdout}");
}

#[test]
fn what_residual_networks_cannot_do_yet_is_refused_before_training() {
    let dir = Dir::new("residual");
    let save = dir.path("net.safetensors");
    let base = [
        "train", "--arch", "64,32,10", "--blocks", "2", "--epochs", "1",
    ];
    fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(more).copied().collect()
    }
    fails(
        &with(&base, &["--seed", "1,2", "--save", save.to_str().unwrap()]),
        1,
        &["--save of a run of members", "residual networks"],
    );
    fails(
        &with(&base, &["--norm", "group"]),
        1,
        &["--norm group", "batch, layer or none"],
    );
    // Batch norm (the default): no batch of one row.
    fails(
        &with(
            &base,
            &["--batch-size", "479", "--save", save.to_str().unwrap()],
        ),
        1,
        &["at least 2 rows", "1438 rows in batches of 479"],
    );
    assert!(!save.exists(), "nothing written");
    fails(
        &["train", "--arch", "64,10", "--blocks", "2"],
        1,
        &["one hidden size", "64,10"],
    );
    fails(
        &with(&base, &["--block-multiplier", "0"]),
        1,
        &["--block-multiplier 0"],
    );
}

#[test]
fn the_health_warnings_name_the_blocks_and_point_a_deep_plain_network_to_them() {
    let chain = std::iter::once("64")
        .chain(std::iter::repeat_n("32", 20))
        .chain(std::iter::once("10"))
        .collect::<Vec<_>>()
        .join(",");
    let common = [
        "--activations",
        "sigmoid",
        "--device",
        "cpu",
        "--norms-every",
        "20",
        "--epochs",
        "2",
    ];
    let plain: Vec<&str> = ["train", "--arch", chain.as_str()]
        .iter()
        .chain(&common)
        .copied()
        .collect();
    let (code, _, stderr) = support::run(&plain);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("layer 0's gradient norm") && stderr.contains("residual blocks (--blocks)"),
        "{stderr}"
    );
    let residual: Vec<&str> = [
        "train", "--arch", "64,32,10", "--blocks", "20", "--norm", "none", "--lr", "1",
    ]
    .iter()
    .chain(&common)
    .copied()
    .collect();
    let (code, _, stderr) = support::run(&residual);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("(block 0's first linear)'s gradient norm")
            && stderr.contains("--norm batch or layer"),
        "{stderr}"
    );
}

#[test]
fn a_saved_residual_network_evaluates_and_exports_as_it_trained() {
    let dir = Dir::new("residual-files");
    let data = support::classes_csv(&dir);
    let data = data.to_str().unwrap();
    for norm in ["batch", "layer", "none"] {
        let model = dir.path(&format!("{norm}.safetensors"));
        let onnx = dir.path(&format!("{norm}.onnx"));
        let stdout = ok(&[
            "train",
            "--data",
            data,
            "--val",
            data,
            "--arch",
            "2,8,3",
            "--blocks",
            "2",
            "--norm",
            norm,
            "--batch-size",
            "8",
            "--epochs",
            "5",
            "--save",
            model.to_str().unwrap(),
        ]);
        // The run's last validation, in evaluation mode (BatchNorm by its
        // running statistics), is the file's evaluation of the same rows.
        let at = stdout.find(", validation ").expect("a validation loss") + 13;
        let trained: f64 = stdout[at..].split(',').next().unwrap().parse().unwrap();
        let evaluated = ok(&[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data,
        ]);
        let at = evaluated.find(") ").expect("a loss") + 2;
        let loss: f64 = evaluated[at..].split(',').next().unwrap().parse().unwrap();
        assert_eq!(
            format!("{trained:.4}"),
            format!("{loss:.4}"),
            "--norm {norm}: {stdout} against {evaluated}"
        );
        ok(&[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--onnx",
            onnx.to_str().unwrap(),
        ]);
        assert!(
            std::fs::metadata(&onnx).unwrap().len() > 0,
            "--norm {norm}: no ONNX file"
        );
    }
}
