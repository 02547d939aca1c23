//! What the `retroprop` program refuses, and how: bad files, flags,
//! environment variables, each with a one-line error naming where.

#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

use support::{Dir, classes_csv, fails, fails_with, ok, run_with};

#[test]
fn bad_input_gets_a_one_line_error_naming_where() {
    let dir = Dir::new("bad");
    let good = classes_csv(&dir);
    let good = good.to_str().unwrap();
    let missing = dir.path("missing.csv");
    fails(
        &["train", "--data", missing.to_str().unwrap()],
        1,
        &["missing.csv", "No such file"],
    );
    let ragged = dir.write("ragged.csv", "a,b,y\n1,2,0\n3,4\n");
    fails(
        &["train", "--data", ragged.to_str().unwrap()],
        1,
        &["ragged.csv", "row 3 has 2 columns, expected 3"],
    );
    let text = dir.write("text.csv", "1,2,0\n3,abc,1\n");
    fails(
        &["train", "--data", text.to_str().unwrap()],
        1,
        &["text.csv", "row 2, column 2", "`abc` is not a number"],
    );
    let nan = dir.write("nan.csv", "1,2,0\nnan,4,1\n");
    fails(
        &["train", "--data", nan.to_str().unwrap()],
        1,
        &["nan.csv", "row 2, column 1", "not a finite number"],
    );
    fails(
        &[
            "train", "--data", good, "--arch", "2,4,2", "--device", "cpu",
        ],
        1,
        &["class label 2 at row", "2 classes"],
    );
    fails(
        &["train", "--data", good, "--arch", "3,4,3"],
        1,
        &["--arch starts with 3 inputs", "2 feature columns"],
    );
    fails(
        &["train", "--data", good, "--arch", "2,x,3"],
        1,
        &["--arch", "`x` is not a layer size"],
    );
    fails(
        &["train", "--data", good, "--arch", "2,0,3"],
        1,
        &["--arch", "at least 1"],
    );
    fails(
        &[
            "train",
            "--data",
            good,
            "--activations",
            "relu,tanh,relu,relu",
        ],
        1,
        &["--activations lists 4", "2 layers"],
    );
    fails(
        &["train", "--data", good, "--activations", "swish"],
        1,
        &["unknown activation `swish`"],
    );
    fails(&["train", "--data", good, "--lr", "-1"], 1, &["lr = -1"]);
    fails(
        &[
            "train",
            "--data",
            good,
            "--optimizer",
            "adam",
            "--momentum",
            "0.9",
        ],
        1,
        &["--momentum does not apply to --optimizer adam"],
    );
    fails(
        &["train", "--data", good, "--loss", "hinge"],
        2,
        &["unknown loss `hinge`"],
    );
    fails(
        &["train", "--data", good, "--lr-schedule", "cosine:0"],
        2,
        &["T_max = 0"],
    );
    fails(
        &["train", "--data", good, "--early-stopping", "3"],
        1,
        &["--early-stopping needs validation data"],
    );
    fails(
        &["train", "--data", good, "--clip-grad-norm", "0"],
        1,
        &["clip_grad_norm = 0"],
    );
    fails(
        &["train", "--data", good, "--dropout", "1.5"],
        1,
        &["dropout = 1.5"],
    );
    fails(
        &["train", "--data", good, "--norms-every", "0"],
        1,
        &["norms_every = 0"],
    );
    fails(
        &["train", "--data", good, "--device", "tpu"],
        2,
        &["unknown device `tpu`"],
    );
    fails(
        &["train", "--data", good, "--optimizer", "lbfgs"],
        2,
        &["lbfgs"],
    );

    let model = dir.path("model.safetensors");
    ok(&[
        "train",
        "--data",
        good,
        "--arch",
        "2,4,3",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-q",
        "--save",
        model.to_str().unwrap(),
    ]);
    fails(
        &[
            "train",
            "--data",
            good,
            "--init",
            model.to_str().unwrap(),
            "--arch",
            "2,5,3",
        ],
        1,
        &["--init", "2,4,3 do not match the architecture 2,5,3"],
    );
    let bytes = std::fs::read(&model).unwrap();
    let truncated = dir.path("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    fails(
        &[
            "predict",
            "--model",
            truncated.to_str().unwrap(),
            "--data",
            good,
        ],
        1,
        &["truncated.safetensors", "not a valid safetensors file"],
    );
    let corrupt = dir.write("corrupt.safetensors", "this is not a model");
    fails(
        &["train", "--data", good, "--init", corrupt.to_str().unwrap()],
        1,
        &["corrupt.safetensors", "not a valid safetensors file"],
    );
    let narrow = dir.write("narrow.csv", "1\n2\n");
    fails(
        &[
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--data",
            narrow.to_str().unwrap(),
        ],
        1,
        &["narrow.csv", "1 columns", "2 inputs"],
    );
    // A failed save leaves no half-written file behind.
    let nowhere = dir.path("no/such/dir/model.safetensors");
    fails(
        &[
            "train",
            "--data",
            good,
            "--epochs",
            "1",
            "--device",
            "cpu",
            "-q",
            "--save",
            nowhere.to_str().unwrap(),
        ],
        1,
        &["no/such/dir"],
    );
    assert!(!nowhere.exists());
}

#[test]
fn environment_asking_for_what_cannot_run_is_an_error_not_a_silent_default() {
    fails_with(
        &[("RETROPROP_BLAS", "/nonexistent/libopenblas.so")],
        &["train", "--device", "cpu", "--epochs", "1", "-q"],
        1,
        &[
            "/nonexistent/libopenblas.so",
            "RETROPROP_BLAS=off",
            "apt-get install libopenblas0",
        ],
    );
    // The same for a matmul kernel that does not exist.
    fails_with(
        &[("RETROPROP_MATMUL", "texture:8x4x6x6x4")],
        &["devices"],
        1,
        &["RETROPROP_MATMUL=`texture:8x4x6x6x4` is not a matmul kernel"],
    );
    // `off` is the built-in GEMM, and the bench says which GEMM ran.
    let (code, stdout, stderr) = run_with(
        &[("RETROPROP_BLAS", "off")],
        &[
            "bench",
            "--devices",
            "cpu",
            "--batch",
            "4",
            "--steps",
            "2",
            "--arch",
            "8,16,3",
            "--samples",
            "64",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let run: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(run["device"], "cpu: built-in GEMM", "{stdout}");
}
