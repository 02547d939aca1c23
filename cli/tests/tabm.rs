//! `retroprop train --model tabm`: TabM of the bundled digits learns,
//! its file predicts with `retroprop predict` and `evaluate` as the run
//! measured it, a resume continues the ensemble, it trains on the GPU as
//! on the CPU, and what it cannot do is refused by name.

mod support;

use support::{Dir, accuracy, fails, ok};

#[test]
fn tabm_on_digits_learns_saves_and_predicts() {
    let dir = Dir::new("tabm-digits");
    let model = dir.arg("tabm.safetensors");
    let stdout = ok(&[
        "train",
        "--arch",
        "64,64,64,10",
        "--model",
        "tabm:k=8,arch=tabm-mini",
        "--device",
        "cpu",
        "--epochs",
        "10",
        "--save",
        &model,
    ]);
    assert!(
        stdout.contains("TabM k=8 (tabm-mini) 64,64,64,10"),
        "{stdout}"
    );
    assert!(accuracy(&stdout) >= 93.0, "{stdout}");

    let data = dir.write(
        "rows.csv",
        &(0..5)
            .map(|r| {
                (0..64)
                    .map(|c| ((r * 7 + c) % 17).to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let out = dir.arg("predictions.csv");
    ok(&[
        "predict",
        "--model",
        &model,
        "--data",
        data.to_str().unwrap(),
        "--out",
        &out,
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{text}");
    for row in rows {
        // class, then ten probabilities: the members' mean, summing to 1.
        let p: f64 = row
            .split(',')
            .skip(1)
            .map(|v| v.parse::<f64>().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-4, "{row}");
    }
}

#[test]
fn a_bad_model_and_tabm_in_mixed_precision_on_the_gpu_are_refused_by_name() {
    fails(
        &["train", "--model", "tabm:k=0", "--device", "cpu"],
        1,
        &["--model", "k `0`"],
    );
    fails(
        &["train", "--model", "forest", "--device", "cpu"],
        1,
        &["--model", "unknown model `forest`"],
    );
    fails(
        &[
            "train",
            "--model",
            "tabm:k=2",
            "--device",
            "gpu",
            "--precision",
            "mixed",
        ],
        1,
        &["TabM (2 members, tabm) trains in f32 on the GPU"],
    );
}

#[test]
fn tabm_on_the_gpu_learns_as_on_the_cpu() {
    let run = |device: &str| {
        ok(&[
            "train",
            "--arch",
            "64,32,10",
            "--model",
            "tabm:k=4,arch=tabm",
            "--device",
            device,
            "--epochs",
            "2",
        ])
    };
    let (gpu, cpu) = (run("gpu"), run("cpu"));
    // The same run within the GPU's parity tolerance: the same accuracy
    // to the summary's 0.01 %.
    assert_eq!(accuracy(&gpu), accuracy(&cpu), "gpu: {gpu}\ncpu: {cpu}");
    assert!(accuracy(&gpu) > 80.0, "{gpu}");
}
