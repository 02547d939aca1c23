//! One way to say each thing: every front (the program, the page,
//! Python) parses settings with the library's `FromStr`, and `Display`
//! writes the text that reads back to the same value; one standardisation
//! travels with the model; one softmax shows predictions.

use retroprop::io::{SavedModel, load_model, save_model};
use retroprop::loss::softmax;
use retroprop::{
    Activation, Adagrad, Adam, AdamW, Dataset, Device, Error, Init, Loss, LrSchedule, Mlp,
    Optimizer, RmsProp, Sgd, Standardizer, Targets,
};

/// A value of each kind for every option, none of them torch's default.
fn other_value(option: &str) -> &'static str {
    match option {
        "lr" => "0.05",
        "momentum" => "0.8",
        "dampening" => "0.25",
        "weight_decay" => "0.0003",
        "nesterov" | "amsgrad" | "centered" => "true",
        "betas" => "0.8/0.95",
        "eps" => "1e-6",
        "alpha" => "0.9",
        "lr_decay" => "0.001",
        "initial_accumulator_value" => "0.1",
        other => panic!("no test value for option {other}"),
    }
}

#[test]
fn optimizer_names_are_the_names_the_optimizers_give() {
    let names: Vec<&str> = Optimizer::defaults().iter().map(Optimizer::name).collect();
    assert_eq!(names, Optimizer::NAMES);
    for (name, default) in Optimizer::NAMES.iter().zip(Optimizer::defaults()) {
        assert_eq!(name.parse::<Optimizer>().unwrap(), default, "{name}");
        assert_eq!(
            default.to_string(),
            *name,
            "torch's defaults print as the bare name"
        );
    }
    assert_eq!("sgd".parse::<Optimizer>().unwrap(), Sgd::default().into());
    assert_eq!(
        " AdamW ".parse::<Optimizer>().unwrap(),
        AdamW::default().into()
    );
    assert_eq!(
        "RMSprop".parse::<Optimizer>().unwrap(),
        RmsProp::default().into()
    );
    assert_eq!(
        "Adagrad".parse::<Optimizer>().unwrap(),
        Adagrad::default().into()
    );
}

#[test]
fn every_option_of_every_optimizer_round_trips_alone_and_together() {
    for default in Optimizer::defaults() {
        let name = default.name();
        let mut all = default;
        for option in default.options() {
            let mut one = default;
            one.set_option(option, other_value(option)).unwrap();
            all.set_option(option, other_value(option)).unwrap();
            assert_ne!(one, default, "{name}: setting {option} changed nothing");
            let text = one.to_string();
            assert_eq!(text, format!("{name}:{option}={}", other_value(option)));
            // Validation aside (nesterov alone needs momentum), the text reads back.
            let mut back = Optimizer::with_name(name).unwrap();
            back.set_option(option, other_value(option)).unwrap();
            assert_eq!(back, one, "{text}");
            assert_eq!(one.option(option).as_deref(), Some(other_value(option)));
        }
        if name == "sgd" {
            // Nesterov momentum takes no dampening.
            all.set_option("dampening", "0").unwrap();
        }
        all.validate()
            .unwrap_or_else(|e| panic!("{name} with every option: {e}"));
        for text in [all.to_string(), format!("{all:#}")] {
            assert_eq!(text.parse::<Optimizer>().unwrap(), all, "{text}");
        }
        // Every option is written by the alternate form, also defaults.
        let full = format!("{default:#}");
        assert_eq!(full.parse::<Optimizer>().unwrap(), default, "{full}");
        assert_eq!(full.matches('=').count(), default.options().len(), "{full}");
    }
}

#[test]
fn the_canonical_form_reads_like_torch() {
    let adam: Optimizer = "adam:lr=0.001,betas=0.9/0.999,amsgrad=true"
        .parse()
        .unwrap();
    assert_eq!(adam, Adam::default().lr(1e-3).amsgrad(true).into());
    assert_eq!(adam.to_string(), "adam:amsgrad=true");
    assert_eq!(
        format!("{adam:#}"),
        "adam:lr=0.001,betas=0.9/0.999,eps=1e-8,weight_decay=0,amsgrad=true"
    );
    // Betas may keep the comma torch writes, and Python's tuple text.
    let comma: Optimizer = "adamw:betas=0.8,0.99,lr=0.01".parse().unwrap();
    assert_eq!(comma, AdamW::default().betas((0.8, 0.99)).lr(0.01).into());
    let mut tuple = Optimizer::with_name("adam").unwrap();
    tuple.set_option("betas", "(0.8, 0.99)").unwrap();
    tuple.set_option("amsgrad", "True").unwrap();
    assert_eq!(
        tuple,
        Adam::default().betas((0.8, 0.99)).amsgrad(true).into()
    );
    // A command-line spelling of an option name reads too.
    let mut adagrad = Optimizer::with_name("adagrad").unwrap();
    adagrad
        .set_option("initial-accumulator-value", "0.5")
        .unwrap();
    assert_eq!(
        adagrad,
        Adagrad::default().initial_accumulator_value(0.5).into()
    );
    let sgd: Optimizer = "sgd:lr=0.1,momentum=0.9,nesterov=true".parse().unwrap();
    assert_eq!(
        sgd,
        Sgd::default().lr(0.1).momentum(0.9).nesterov(true).into()
    );
}

#[test]
fn optimizer_options_belong_to_the_optimizers_torch_gives_them() {
    let owners = |option| Optimizer::having(option);
    assert_eq!(owners("lr"), Optimizer::NAMES);
    assert_eq!(owners("weight_decay"), Optimizer::NAMES);
    assert_eq!(owners("momentum"), ["sgd", "rmsprop"]);
    assert_eq!(owners("dampening"), ["sgd"]);
    assert_eq!(owners("nesterov"), ["sgd"]);
    assert_eq!(owners("betas"), ["adam", "adamw"]);
    assert_eq!(owners("amsgrad"), ["adam", "adamw"]);
    assert_eq!(owners("eps"), ["adam", "adamw", "rmsprop", "adagrad"]);
    assert_eq!(owners("alpha"), ["rmsprop"]);
    assert_eq!(owners("centered"), ["rmsprop"]);
    assert_eq!(owners("lr_decay"), ["adagrad"]);
    assert_eq!(owners("initial_accumulator_value"), ["adagrad"]);
    assert!(owners("lookahead").is_empty());
}

/// The error's text, which must name each of `parts`.
fn says(result: Result<impl std::fmt::Debug, Error>, parts: &[&str]) -> Error {
    let error = result.expect_err("an error");
    let text = error.to_string();
    for part in parts {
        assert!(text.contains(part), "`{text}` does not say `{part}`");
    }
    error
}

#[test]
fn bad_optimizer_text_is_refused_naming_what_is_wrong() {
    says(
        "lbfgs".parse::<Optimizer>(),
        &["unknown optimizer `lbfgs`", "sgd, adam"],
    );
    says("lbfgs:lr=1".parse::<Optimizer>(), &["`lbfgs`"]);
    let error = says(
        "adam:momentum=0.9".parse::<Optimizer>(),
        &["adam has no option `momentum`", "only sgd, rmsprop have it"],
    );
    match error {
        Error::UnknownOption {
            optimizer,
            option,
            owners,
            known,
        } => {
            assert_eq!((optimizer, option.as_str()), ("adam", "momentum"));
            assert_eq!(owners, ["sgd", "rmsprop"]);
            assert_eq!(known, ["lr", "betas", "eps", "weight_decay", "amsgrad"]);
        }
        other => panic!("{other:?}"),
    }
    says(
        "sgd:eps=1e-8".parse::<Optimizer>(),
        &[
            "sgd has no option `eps`",
            "only adam, adamw, rmsprop, adagrad have it",
        ],
    );
    says(
        "rmsprop:lookahead=5".parse::<Optimizer>(),
        &[
            "rmsprop has no option `lookahead`",
            "its options: lr, alpha, eps",
        ],
    );
    says(
        "sgd:lr=fast".parse::<Optimizer>(),
        &["sgd option lr", "`fast` is not a number"],
    );
    says(
        "adam:betas=0.9".parse::<Optimizer>(),
        &["adam option betas", "`0.9`", "two numbers"],
    );
    says(
        "adam:betas=0.9/0.99/0.999".parse::<Optimizer>(),
        &["adam option betas", "two numbers"],
    );
    says(
        "adam:amsgrad=yes".parse::<Optimizer>(),
        &["adam option amsgrad", "`yes` is not true or false"],
    );
    says(
        "adam:lr".parse::<Optimizer>(),
        &["`lr` is not OPTION=VALUE"],
    );
    says(
        "adam:lr=0.1,lr=0.2".parse::<Optimizer>(),
        &["lr is given twice"],
    );
    // Parsed, then validated: ranges and combinations.
    says("sgd:lr=-1".parse::<Optimizer>(), &["lr = -1"]);
    says("adam:betas=0.9/1".parse::<Optimizer>(), &["betas.1 = 1"]);
    says("rmsprop:eps=inf".parse::<Optimizer>(), &["eps = inf"]);
    says(
        "sgd:nesterov=true".parse::<Optimizer>(),
        &["nesterov momentum requires momentum > 0"],
    );
    let mut sgd = Optimizer::with_name("sgd").unwrap();
    says(
        sgd.set_option("betas", "0.9/0.999"),
        &["sgd has no option `betas`"],
    );
    assert_eq!(
        sgd,
        Sgd::default().into(),
        "a refused option changes nothing"
    );
}

#[test]
fn lr_schedules_round_trip_through_their_text() {
    let schedules = [
        LrSchedule::Constant,
        LrSchedule::Step {
            step_size: 10,
            gamma: 0.5,
        },
        LrSchedule::Step {
            step_size: 3,
            gamma: 0.1,
        },
        LrSchedule::Exponential { gamma: 0.95 },
        LrSchedule::Cosine {
            t_max: 50,
            eta_min: 0.0,
        },
        LrSchedule::Cosine {
            t_max: 50,
            eta_min: 1e-5,
        },
        LrSchedule::Warmup {
            start_factor: 1.0 / 3.0,
            total_iters: 5,
        },
        LrSchedule::Warmup {
            start_factor: 0.1,
            total_iters: 5,
        },
        LrSchedule::PLATEAU,
        LrSchedule::Plateau {
            factor: 0.5,
            patience: 10,
            threshold: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
        },
        LrSchedule::Plateau {
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 2,
            min_lr: 1e-6,
        },
    ];
    for schedule in schedules {
        let text = schedule.to_string();
        assert_eq!(text.parse::<LrSchedule>(), Ok(schedule), "{text}");
    }
    assert_eq!(LrSchedule::PLATEAU.to_string(), "plateau");
    assert_eq!(
        LrSchedule::Cosine {
            t_max: 50,
            eta_min: 0.0
        }
        .to_string(),
        "cosine:50"
    );
    assert_eq!(
        "plateau:0.1:10:0.0001:2".parse::<LrSchedule>(),
        Ok(LrSchedule::Plateau {
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            cooldown: 2,
            min_lr: 0.0,
        })
    );
    let err = "plateau:0.5:3:0.01:x".parse::<LrSchedule>().unwrap_err();
    assert!(err.contains("cooldown `x` is not a whole number"), "{err}");
}

#[test]
fn activations_losses_initialisations_and_devices_round_trip() {
    for activation in Activation::ALL
        .into_iter()
        .chain([Activation::LeakyRelu { slope: 0.2 }])
    {
        let text = activation.to_string();
        assert_eq!(text.parse::<Activation>(), Ok(activation), "{text}");
    }
    for loss in Loss::ALL {
        assert_eq!(loss.to_string().parse::<Loss>(), Ok(loss));
    }
    for init in Init::ALL {
        assert_eq!(init.to_string().parse::<Init>(), Ok(init));
    }
    for device in [Device::Cpu, Device::Gpu, Device::Auto] {
        assert_eq!(device.to_string().parse::<Device>(), Ok(device));
    }
}

#[test]
fn the_standardizer_saved_with_a_model_is_the_one_its_user_applies() {
    // Feature 0 varies, feature 1 is constant (its deviation stays 1).
    let data = Dataset::new(
        vec![1.0, 5.0, 2.0, 5.0, 4.0, 5.0, 9.0, 5.0],
        2,
        Targets::Classes(vec![0, 1, 0, 1]),
    )
    .unwrap();
    let standardizer = Standardizer::fit(&data);
    assert_eq!(standardizer.mean, [4.0, 5.0]);
    assert_eq!(standardizer.std[1], 1.0);
    assert!(
        (standardizer.std[0] - 3.082_207).abs() < 1e-6,
        "{:?}",
        standardizer.std
    );
    let mut scaled = data.clone();
    standardizer.apply(&mut scaled).unwrap();
    assert_ne!(
        scaled.version(),
        data.version(),
        "changed rows get a new version"
    );
    let mut rows = data.x().to_vec();
    standardizer.apply_rows(&mut rows).unwrap();
    assert_eq!(rows, scaled.x(), "rows and data sets are scaled alike");
    let mean: f32 = scaled.x().iter().step_by(2).sum::<f32>() / 4.0;
    assert!(mean.abs() < 1e-6, "standardised mean {mean}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mlp = Mlp::new(&[2, 3, 2], Activation::Relu, Activation::Identity).unwrap();
    let params = mlp.init(Init::TorchDefault, 0);
    let model = SavedModel {
        mlp,
        params,
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: Loss::CrossEntropy,
        standardizer: Some(standardizer.clone()),
    };
    save_model(&path, &model).unwrap();
    let loaded = load_model(&path).unwrap().complete(&path).unwrap();
    assert_eq!(loaded.standardizer, Some(standardizer));
}

#[test]
fn standardizers_refuse_statistics_and_rows_that_do_not_fit() {
    let bad = |mean: Vec<f32>, std: Vec<f32>, says: &str| {
        let e = Standardizer::new(mean, std).unwrap_err().to_string();
        assert!(e.contains(says), "`{e}` does not say `{says}`");
    };
    bad(vec![0.0, 1.0], vec![1.0], "standardisation deviations");
    bad(vec![], vec![], "empty");
    bad(vec![0.0, 1.0], vec![1.0, 0.0], "deviation of feature 1");
    bad(vec![f32::NAN], vec![1.0], "mean of feature 0");
    let standardizer = Standardizer::new(vec![1.0, 2.0], vec![2.0, 4.0]).unwrap();
    let mut row = vec![3.0, 6.0];
    standardizer.apply_rows(&mut row).unwrap();
    assert_eq!(row, [1.0, 1.0]);
    let e = standardizer.apply_rows(&mut [1.0, 2.0, 3.0]).unwrap_err();
    assert!(e.to_string().contains("as rows of 2"), "{e}");
    let mut three = Dataset::new(vec![1.0; 3], 3, Targets::Classes(vec![0])).unwrap();
    let e = standardizer.apply(&mut three).unwrap_err();
    assert!(e.to_string().contains("expected 2, got 3"), "{e}");
}

#[test]
fn softmax_shows_probabilities_without_overflow() {
    let p = softmax(&[0.0, 1.0, 2.0]);
    let sum: f32 = p.iter().sum();
    assert!((sum - 1.0).abs() < 1e-6, "{p:?}");
    assert!(p[0] < p[1] && p[1] < p[2], "{p:?}");
    let e = std::f64::consts::E;
    assert!(
        (p[2] as f64 - e * e / (1.0 + e + e * e)).abs() < 1e-7,
        "{p:?}"
    );
    assert_eq!(softmax(&[1e4, 1e4]), [0.5, 0.5]);
    assert_eq!(softmax(&[-1e4, 0.0]), [0.0, 1.0]);
}
