//! Every bad input is an error that names what is wrong and where; what a
//! trainer refuses, it refuses on every backend (`<test>::cpu`,
//! `<test>::gpu`).

mod common;

use common::backend_tests;
use retroprop::{
    Activation, Adagrad, Adam, AdamW, Dataset, Device, Error, Layer, Loss, Mlp, Optimizer, RmsProp,
    Sgd, Targets, TrainConfig, Trainer,
};
use std::io::Write;

fn message<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    result.expect_err("expected an error").to_string()
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            msg.contains(part),
            "message `{msg}` does not mention `{part}`"
        );
    }
}

fn config(loss: Loss) -> TrainConfig {
    TrainConfig::default().loss(loss).epochs(1)
}

#[test]
fn shape_mismatches_name_what_differs() {
    let msg = message(Dataset::new(vec![1.0; 7], 2, Targets::Classes(vec![0; 3])));
    assert_mentions(
        &msg,
        &["inputs", "rows of 2 features", "expected 8", "got 7"],
    );
    let msg = message(Dataset::new(vec![1.0; 6], 2, Targets::Classes(vec![0; 2])));
    assert_mentions(&msg, &["class labels", "expected 3", "got 2"]);
    let msg = message(Dataset::new(
        vec![1.0; 6],
        2,
        Targets::Values {
            values: vec![0.0; 5],
            width: 2,
        },
    ));
    assert_mentions(&msg, &["targets (2 per row)", "expected 6", "got 5"]);

    let msg = message(Mlp::from_layers(vec![
        Layer {
            inputs: 2,
            outputs: 3,
            activation: Activation::Relu,
        },
        Layer {
            inputs: 4,
            outputs: 1,
            activation: Activation::Identity,
        },
    ]));
    assert_mentions(&msg, &["inputs of layer 1", "expected 3", "got 4"]);
    let msg = message(Mlp::with_activations(&[2, 3, 1], &[Activation::Relu]));
    assert_mentions(&msg, &["activations", "expected 2", "got 1"]);
}

backend_tests! {
    fn trainer_shape_mismatches_name_what_differs(device: Device) {
        let mlp = Mlp::new(&[3, 4, 2], Activation::Relu, Activation::Identity).unwrap();
        let data = Dataset::new(vec![1.0; 4], 2, Targets::Classes(vec![0, 1])).unwrap();
        let mut trainer = common::trainer(mlp.clone(), config(Loss::CrossEntropy), device);
        let msg = message(trainer.fit(&data, None));
        assert_mentions(
            &msg,
            &["features of the training data", "expected 3", "got 2"],
        );
        let msg = message(trainer.predict(&[1.0; 4]));
        assert_mentions(&msg, &["inputs to predict", "rows of 3"]);
        let msg = message(Trainer::with_parameters(
            mlp.clone(),
            vec![0.0; 5],
            config(Loss::Mse).device(device),
        ));
        assert_mentions(
            &msg,
            &[
                "parameters",
                &format!("expected {}", mlp.parameter_count()),
                "got 5",
            ],
        );

        let values = Dataset::new(
            vec![1.0; 6],
            3,
            Targets::Values {
                values: vec![0.0; 6],
                width: 3,
            },
        )
        .unwrap();
        let mut trainer = common::trainer(mlp.clone(), config(Loss::Mse), device);
        let msg = message(trainer.fit(&values, None));
        assert_mentions(&msg, &["target columns", "expected 2", "got 3"]);
    }
}

#[test]
fn empty_data_is_an_error() {
    let msg = message(Dataset::new(vec![], 2, Targets::Classes(vec![])));
    assert_mentions(&msg, &["data set is empty"]);
    let msg = message(Dataset::new(vec![1.0], 0, Targets::Classes(vec![])));
    assert_mentions(&msg, &["feature list is empty"]);
    assert_mentions(
        &message(Mlp::new(&[3], Activation::Relu, Activation::Identity)),
        &["at least an input and an output"],
    );
}

backend_tests! {
    fn predicting_nothing_is_an_error(device: Device) {
        let mlp = Mlp::new(&[3, 2], Activation::Relu, Activation::Identity).unwrap();
        let mut trainer = common::trainer(mlp, config(Loss::Mse), device);
        assert_mentions(
            &message(trainer.predict(&[])),
            &["inputs to predict is empty"],
        );
    }
}

#[test]
fn non_finite_values_name_the_row_and_column() {
    let mut x = vec![0.5; 12];
    x[7] = f32::NAN;
    let msg = message(Dataset::new(x, 3, Targets::Classes(vec![0; 4])));
    assert_mentions(&msg, &["inputs row 2, column 1", "NaN"]);
    let msg = message(Dataset::new(
        vec![0.5; 4],
        2,
        Targets::Values {
            values: vec![0.0, 1.0, f32::INFINITY, 0.0],
            width: 2,
        },
    ));
    assert_mentions(&msg, &["targets row 1, column 0", "inf"]);
}

backend_tests! {
    fn non_finite_inputs_to_predict_name_the_row_and_column(device: Device) {
        let mlp = Mlp::new(&[2, 2], Activation::Relu, Activation::Identity).unwrap();
        let mut trainer = common::trainer(mlp, config(Loss::Mse), device);
        assert_mentions(
            &message(trainer.predict(&[0.0, 1.0, f32::NEG_INFINITY, 0.0])),
            &["row 1, column 0"],
        );
    }
}

backend_tests! {
    fn class_labels_out_of_range_name_the_row(device: Device) {
        let mlp = Mlp::new(&[2, 3], Activation::Relu, Activation::Identity).unwrap();
        let data = Dataset::new(vec![0.0; 8], 2, Targets::Classes(vec![0, 2, 3, 1])).unwrap();
        let mut trainer = common::trainer(mlp, config(Loss::CrossEntropy), device);
        let msg = message(trainer.fit(&data, None));
        assert_mentions(&msg, &["class label 3 at row 2", "3 classes"]);
        let msg = message(trainer.evaluate(&data));
        assert_mentions(&msg, &["class label 3 at row 2"]);
    }
}

#[test]
fn zero_sized_layers_are_named() {
    let msg = message(Mlp::new(&[4, 0, 2], Activation::Relu, Activation::Identity));
    assert_mentions(&msg, &["layer 0 has zero outputs"]);
    let msg = message(Mlp::new(&[0, 3], Activation::Relu, Activation::Identity));
    assert_mentions(&msg, &["layer 0 has zero inputs"]);
}

backend_tests! {
    fn bad_hyperparameters_are_named(device: Device) {
        let cases: Vec<(Optimizer, &str)> = vec![
            (Sgd::default().lr(0.0).into(), "lr = 0"),
            (Sgd::default().lr(-1.0).into(), "lr = -1"),
            (Adam::default().lr(f64::NAN).into(), "lr = NaN"),
            (Sgd::default().momentum(-0.5).into(), "momentum = -0.5"),
            (Sgd::default().dampening(2.0).into(), "dampening = 2"),
            (
                Sgd::default().nesterov(true).into(),
                "nesterov momentum requires momentum > 0",
            ),
            (Adam::default().betas((1.0, 0.999)).into(), "betas.0 = 1"),
            (
                AdamW::default().betas((0.9, f64::NAN)).into(),
                "betas.1 = NaN",
            ),
            (Adam::default().eps(0.0).into(), "eps = 0"),
            (
                AdamW::default().weight_decay(-0.1).into(),
                "weight_decay = -0.1",
            ),
            (RmsProp::default().alpha(1.5).into(), "alpha = 1.5"),
            (
                RmsProp::default().momentum(f64::INFINITY).into(),
                "momentum = inf",
            ),
            (Adagrad::default().lr_decay(-1.0).into(), "lr_decay = -1"),
            (
                Adagrad::default().initial_accumulator_value(-1.0).into(),
                "initial_accumulator_value = -1",
            ),
        ];
        let mlp = Mlp::new(&[2, 1], Activation::Identity, Activation::Identity).unwrap();
        for (optimizer, expected) in cases {
            let msg = message(Trainer::new(
                mlp.clone(),
                config(Loss::Mse).optimizer(optimizer).device(device),
            ));
            assert_mentions(&msg, &[expected]);
        }
        let msg = message(Trainer::new(
            mlp.clone(),
            config(Loss::Mse).batch_size(0).device(device),
        ));
        assert_mentions(&msg, &["batch_size = 0"]);
        let msg = message(Trainer::new(
            mlp.clone(),
            config(Loss::CrossEntropy).device(device),
        ));
        assert_mentions(&msg, &["cross_entropy needs at least 2 outputs"]);
    }
}

#[test]
fn non_finite_leaky_relu_slopes_are_named_wherever_the_layer_is() {
    use Activation::{Identity, Relu};
    // Each network puts the leaky ReLU in a layer it has: the hidden one,
    // the output one, and the second of three given per layer.
    let networks = |leaky: Activation| {
        [
            ("hidden", Mlp::new(&[2, 2, 1], leaky, Identity)),
            ("output", Mlp::new(&[2, 1], Identity, leaky)),
            (
                "per layer",
                Mlp::with_activations(&[2, 3, 2, 1], &[Relu, leaky, Identity]),
            ),
        ]
    };
    let finite = Activation::LeakyRelu { slope: 0.2 };
    for ((what, mlp), layer) in networks(finite).into_iter().zip([0, 0, 1]) {
        let mlp = mlp.unwrap_or_else(|e| panic!("{what}: slope 0.2 is refused: {e}"));
        assert_eq!(
            mlp.layers()[layer].activation,
            finite,
            "{what}: layer {layer} is not the leaky ReLU under test"
        );
    }
    for (slope, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        for (what, mlp) in networks(Activation::LeakyRelu { slope }) {
            let msg = message(mlp);
            assert!(
                msg.contains(&format!("leaky_relu slope = {shown}")),
                "{what}: message `{msg}` does not name the slope {shown}"
            );
        }
    }
}

#[test]
fn bad_split_fraction_is_named() {
    let data = common::xor_values();
    assert_mentions(&message(data.split(1.5, 0)), &["validation fraction = 1.5"]);
}

backend_tests! {
    fn target_kind_must_fit_the_loss(device: Device) {
        let mlp = Mlp::new(&[2, 2], Activation::Relu, Activation::Identity).unwrap();
        let classes = Dataset::new(vec![0.0; 4], 2, Targets::Classes(vec![0, 1])).unwrap();
        let mut trainer = common::trainer(mlp.clone(), config(Loss::Mse), device);
        assert_mentions(
            &message(trainer.fit(&classes, None)),
            &["class labels", "mse needs target values"],
        );
        let values = Dataset::new(
            vec![0.0; 4],
            2,
            Targets::Values {
                values: vec![0.0; 4],
                width: 2,
            },
        )
        .unwrap();
        let mut trainer = common::trainer(mlp, config(Loss::CrossEntropy), device);
        assert_mentions(
            &message(trainer.fit(&values, None)),
            &["cross_entropy needs class labels"],
        );
    }

    fn divergence_names_the_step(device: Device) {
        let mlp = Mlp::new(&[1, 1], Activation::Identity, Activation::Identity).unwrap();
        let data = Dataset::new(
            vec![1e3; 4],
            1,
            Targets::Values {
                values: vec![0.0; 4],
                width: 1,
            },
        )
        .unwrap();
        let config = config(Loss::Mse)
            .optimizer(Sgd::default().lr(10.0))
            .stochastic()
            .epochs(50);
        let mut trainer = common::trainer(mlp, config, device);
        let err = trainer
            .fit(&data, None)
            .expect_err("a learning rate of 10 on inputs of 1000 diverges");
        assert!(
            matches!(err, Error::Diverged { step, .. } if step > 1),
            "{err}"
        );
        assert_mentions(&err.to_string(), &["diverged at step"]);
    }
}

#[test]
fn csv_errors_name_file_row_and_column() {
    let dir = std::env::temp_dir().join(format!("retroprop-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    };
    let ragged = write("ragged.csv", "a,b,y\n1,2,0\n3,4\n");
    assert_mentions(
        &message(Dataset::from_csv(&ragged, 1, true)),
        &["ragged.csv", "row 3 has 2 columns, expected 3"],
    );
    let text = write("text.csv", "1,2,0\n3,x,1\n");
    assert_mentions(
        &message(Dataset::from_csv(&text, 1, true)),
        &["text.csv", "row 2, column 2", "`x` is not a number"],
    );
    let nan = write("nan.csv", "1,2,0\n3,NaN,1\n");
    assert_mentions(
        &message(Dataset::from_csv(&nan, 1, true)),
        &["nan.csv", "row 2, column 2", "not a finite number"],
    );
    // Finite in f64 but not in the f32 that trains: caught where it is.
    let huge = write("huge.csv", "a,b,y\n1,2,0\n1e300,2,1\n");
    assert_mentions(
        &message(Dataset::from_csv(&huge, 1, true)),
        &[
            "huge.csv",
            "row 3, column 1",
            "`1e300` is beyond the range of 32-bit floats",
        ],
    );
    let huge_target = write("huge_target.csv", "1,2,0.5\n3,4,-4e38\n");
    assert_mentions(
        &message(Dataset::from_csv(&huge_target, 1, false)),
        &["row 2, column 3", "`-4e38` is beyond the range"],
    );
    let label = write("label.csv", "1,2,0\n3,4,1.5\n");
    assert_mentions(
        &message(Dataset::from_csv(&label, 1, true)),
        &["row 2, column 3", "class label `1.5`"],
    );
    let empty = write("empty.csv", "a,b,y\n");
    assert_mentions(
        &message(Dataset::from_csv(&empty, 1, true)),
        &["empty.csv", "no data rows"],
    );
    let missing = dir.join("missing.csv");
    assert_mentions(
        &message(Dataset::from_csv(&missing, 1, true)),
        &["missing.csv", "No such file"],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
