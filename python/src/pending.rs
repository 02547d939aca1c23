//! TEMPORARY, until branch `one-way` (the library's `Optimizer::with_name`,
//! `set_option`, `options`, `option`) reaches main: the same calls, so that
//! settings.rs switches by deleting this file. Not to be merged as is.

use retroprop::{Adagrad, Adam, AdamW, Error, Optimizer, RmsProp, Sgd};

pub fn with_name(name: &str) -> retroprop::Result<Optimizer> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "sgd" => Sgd::default().into(),
        "adam" => Adam::default().into(),
        "adamw" => AdamW::default().into(),
        "rmsprop" => RmsProp::default().into(),
        "adagrad" => Adagrad::default().into(),
        other => {
            return Err(Error::Config(format!(
                "unknown optimizer `{other}` (expected sgd, adam, adamw, rmsprop or adagrad)"
            )));
        }
    })
}

pub fn options(o: &Optimizer) -> Vec<&'static str> {
    match o {
        Optimizer::Sgd(_) => vec!["lr", "momentum", "dampening", "weight_decay", "nesterov"],
        Optimizer::Adam(_) | Optimizer::AdamW(_) => {
            vec!["lr", "betas", "eps", "weight_decay", "amsgrad"]
        }
        Optimizer::RmsProp(_) => vec!["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
        Optimizer::Adagrad(_) => vec![
            "lr",
            "lr_decay",
            "weight_decay",
            "initial_accumulator_value",
            "eps",
        ],
    }
}

pub fn set_option(o: &mut Optimizer, name: &str, value: &str) -> retroprop::Result<()> {
    let bad = || Error::Config(format!("optimizer option {name}: `{value}` is not valid"));
    let num = |v: &str| v.trim().parse::<f64>().map_err(|_| bad());
    let flag = |v: &str| match v.trim() {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        _ => Err(bad()),
    };
    let pair = |v: &str| {
        let parts: Vec<&str> = v.split(['/', ',']).collect();
        match parts[..] {
            [a, b] => Ok((num(a)?, num(b)?)),
            _ => Err(bad()),
        }
    };
    let key = name.trim().replace('-', "_");
    let unknown = Error::Config(format!(
        "optimizer {} has no option {key} (it has {})",
        o.name(),
        options(o).join(", ")
    ));
    match (&mut *o, key.as_str()) {
        (Optimizer::Sgd(s), "lr") => s.lr = num(value)?,
        (Optimizer::Sgd(s), "momentum") => s.momentum = num(value)?,
        (Optimizer::Sgd(s), "dampening") => s.dampening = num(value)?,
        (Optimizer::Sgd(s), "weight_decay") => s.weight_decay = num(value)?,
        (Optimizer::Sgd(s), "nesterov") => s.nesterov = flag(value)?,
        (Optimizer::Adam(a), "lr") => a.lr = num(value)?,
        (Optimizer::Adam(a), "betas") => a.betas = pair(value)?,
        (Optimizer::Adam(a), "eps") => a.eps = num(value)?,
        (Optimizer::Adam(a), "weight_decay") => a.weight_decay = num(value)?,
        (Optimizer::Adam(a), "amsgrad") => a.amsgrad = flag(value)?,
        (Optimizer::AdamW(a), "lr") => a.lr = num(value)?,
        (Optimizer::AdamW(a), "betas") => a.betas = pair(value)?,
        (Optimizer::AdamW(a), "eps") => a.eps = num(value)?,
        (Optimizer::AdamW(a), "weight_decay") => a.weight_decay = num(value)?,
        (Optimizer::AdamW(a), "amsgrad") => a.amsgrad = flag(value)?,
        (Optimizer::RmsProp(r), "lr") => r.lr = num(value)?,
        (Optimizer::RmsProp(r), "alpha") => r.alpha = num(value)?,
        (Optimizer::RmsProp(r), "eps") => r.eps = num(value)?,
        (Optimizer::RmsProp(r), "weight_decay") => r.weight_decay = num(value)?,
        (Optimizer::RmsProp(r), "momentum") => r.momentum = num(value)?,
        (Optimizer::RmsProp(r), "centered") => r.centered = flag(value)?,
        (Optimizer::Adagrad(a), "lr") => a.lr = num(value)?,
        (Optimizer::Adagrad(a), "lr_decay") => a.lr_decay = num(value)?,
        (Optimizer::Adagrad(a), "weight_decay") => a.weight_decay = num(value)?,
        (Optimizer::Adagrad(a), "initial_accumulator_value") => {
            a.initial_accumulator_value = num(value)?
        }
        (Optimizer::Adagrad(a), "eps") => a.eps = num(value)?,
        _ => return Err(unknown),
    }
    Ok(())
}

pub fn option(o: &Optimizer, name: &str) -> Option<String> {
    let text = |v: f64| v.to_string();
    Some(match (o, name) {
        (Optimizer::Sgd(s), "lr") => text(s.lr),
        (Optimizer::Sgd(s), "momentum") => text(s.momentum),
        (Optimizer::Sgd(s), "dampening") => text(s.dampening),
        (Optimizer::Sgd(s), "weight_decay") => text(s.weight_decay),
        (Optimizer::Sgd(s), "nesterov") => s.nesterov.to_string(),
        (
            Optimizer::Adam(Adam {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            }),
            n,
        )
        | (
            Optimizer::AdamW(AdamW {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            }),
            n,
        ) => match n {
            "lr" => text(*lr),
            "betas" => format!("{}/{}", betas.0, betas.1),
            "eps" => text(*eps),
            "weight_decay" => text(*weight_decay),
            "amsgrad" => amsgrad.to_string(),
            _ => return None,
        },
        (Optimizer::RmsProp(r), "lr") => text(r.lr),
        (Optimizer::RmsProp(r), "alpha") => text(r.alpha),
        (Optimizer::RmsProp(r), "eps") => text(r.eps),
        (Optimizer::RmsProp(r), "weight_decay") => text(r.weight_decay),
        (Optimizer::RmsProp(r), "momentum") => text(r.momentum),
        (Optimizer::RmsProp(r), "centered") => r.centered.to_string(),
        (Optimizer::Adagrad(a), "lr") => text(a.lr),
        (Optimizer::Adagrad(a), "lr_decay") => text(a.lr_decay),
        (Optimizer::Adagrad(a), "weight_decay") => text(a.weight_decay),
        (Optimizer::Adagrad(a), "initial_accumulator_value") => text(a.initial_accumulator_value),
        (Optimizer::Adagrad(a), "eps") => text(a.eps),
        _ => return None,
    })
}
