//! `retroprop train`, `predict` and `evaluate`.

use crate::cli::{EvaluateArgs, PredictArgs, TrainArgs, parse_activations, parse_arch};
use crate::data::{load_inputs, load_labelled, outputs_for};
use crate::interrupt::Interrupts;
use crate::ranks::Ranks;
use crate::report::{MetricsFile, plot, progress, progress_message};
use retroprop::io::{
    SavedModel, Standardization, load_checkpoint, load_model, save_checkpoint,
    save_interrupted_model, save_model,
};
use retroprop::loss::argmax;
use retroprop::{
    Adagrad, Adam, AdamW, Device, Loss, Mlp, Optimizer, RmsProp, Sgd, TrainConfig, Trainer,
};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The optimizer the flags describe; flags that do not apply are errors.
fn optimizer(args: &TrainArgs) -> Result<Optimizer> {
    let betas = args
        .betas
        .as_deref()
        .map(|b| {
            let parts: Vec<&str> = b.split(',').collect();
            let [b1, b2] = parts[..] else {
                return Err(format!(
                    "--betas: expected two numbers like 0.9,0.999, got `{b}`"
                ));
            };
            let num = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("--betas: `{s}` is not a number"))
            };
            Ok((num(b1)?, num(b2)?))
        })
        .transpose()?;
    let name = args.optimizer.as_str();
    let unused = |flag: &str, given: bool, allowed: &[&str]| {
        if given && !allowed.contains(&name) {
            Err(format!(
                "{flag} does not apply to --optimizer {name} (only to {})",
                allowed.join(", ")
            ))
        } else {
            Ok(())
        }
    };
    unused("--momentum", args.momentum.is_some(), &["sgd", "rmsprop"])?;
    unused("--dampening", args.dampening.is_some(), &["sgd"])?;
    unused("--nesterov", args.nesterov, &["sgd"])?;
    unused("--betas", betas.is_some(), &["adam", "adamw"])?;
    unused("--amsgrad", args.amsgrad, &["adam", "adamw"])?;
    unused("--alpha", args.alpha.is_some(), &["rmsprop"])?;
    unused("--centered", args.centered, &["rmsprop"])?;
    unused("--lr-decay", args.lr_decay.is_some(), &["adagrad"])?;
    unused(
        "--initial-accumulator",
        args.initial_accumulator.is_some(),
        &["adagrad"],
    )?;
    let optimizer: Optimizer = match name {
        "sgd" => {
            let d = Sgd::default();
            Sgd {
                lr: args.lr.unwrap_or(d.lr),
                momentum: args.momentum.unwrap_or(d.momentum),
                dampening: args.dampening.unwrap_or(d.dampening),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                nesterov: args.nesterov,
            }
            .into()
        }
        "adam" => {
            let d = Adam::default();
            Adam {
                lr: args.lr.unwrap_or(d.lr),
                betas: betas.unwrap_or(d.betas),
                eps: args.eps.unwrap_or(d.eps),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                amsgrad: args.amsgrad,
            }
            .into()
        }
        "adamw" => {
            let d = AdamW::default();
            AdamW {
                lr: args.lr.unwrap_or(d.lr),
                betas: betas.unwrap_or(d.betas),
                eps: args.eps.unwrap_or(d.eps),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                amsgrad: args.amsgrad,
            }
            .into()
        }
        "rmsprop" => {
            let d = RmsProp::default();
            RmsProp {
                lr: args.lr.unwrap_or(d.lr),
                alpha: args.alpha.unwrap_or(d.alpha),
                eps: args.eps.unwrap_or(d.eps),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                momentum: args.momentum.unwrap_or(d.momentum),
                centered: args.centered,
            }
            .into()
        }
        _ => {
            let d = Adagrad::default();
            Adagrad {
                lr: args.lr.unwrap_or(d.lr),
                lr_decay: args.lr_decay.unwrap_or(d.lr_decay),
                weight_decay: args.weight_decay.unwrap_or(d.weight_decay),
                initial_accumulator_value: args
                    .initial_accumulator
                    .unwrap_or(d.initial_accumulator_value),
                eps: args.eps.unwrap_or(d.eps),
            }
            .into()
        }
    };
    optimizer
        .validate()
        .map_err(|e| format!("--optimizer {name}: {e}"))?;
    Ok(optimizer)
}

fn describe(data: Option<&Path>) -> String {
    data.map_or("the bundled digits data set".into(), |p| {
        p.display().to_string()
    })
}

/// Trains as `args` say. Returns the exit status: success, or after
/// SIGINT or SIGTERM, which stop training at a step boundary and still
/// save, 130 or 143.
pub fn train(mut args: TrainArgs, ranks: &Ranks) -> Result<ExitCode> {
    let start = Instant::now();
    ranks.only_rank_0_writes(&mut args);
    let optimizer = optimizer(&args)?;
    if args.targets == 0 {
        return Err("--targets must be at least 1".into());
    }
    let (mut train_set, loss) =
        load_labelled(args.data.as_deref(), args.targets, args.loss).map_err(text)?;
    // The bundled data set holds out 20 % by default, to report an honest
    // accuracy.
    let val_split = args.val_split.or(args.data.is_none().then_some(0.2));
    let mut val_set = match (&args.val, val_split) {
        (Some(path), _) => Some(
            load_labelled(Some(path), args.targets, Some(loss))
                .map_err(text)?
                .0,
        ),
        (None, Some(fraction)) => {
            let (rest, held) = train_set
                .split(fraction, args.seed)
                .map_err(|e| format!("--val-split: {e}"))?;
            train_set = rest;
            Some(held)
        }
        (None, None) => None,
    };
    if let Some(v) = &val_set
        && v.features() != train_set.features()
    {
        return Err(format!(
            "--val: the validation data has {} features, the training data {}",
            v.features(),
            train_set.features()
        ));
    }
    // The bundled digits are pixel counts 0..16: standardise them always.
    let standardize = args.standardize || args.data.is_none();
    let standardization = standardize.then(|| {
        let (mean, std) = train_set.feature_stats();
        Standardization { mean, std }
    });
    if let Some(s) = &standardization {
        train_set.standardize(&s.mean, &s.std).map_err(text)?;
        if let Some(v) = &mut val_set {
            v.standardize(&s.mean, &s.std).map_err(text)?;
        }
    }

    let resume = args
        .resume
        .as_deref()
        .map(load_checkpoint)
        .transpose()
        .map_err(text)?;
    if let Some((_, optimizer_name, _)) = &resume
        && *optimizer_name != args.optimizer
    {
        return Err(format!(
            "--resume {}: the checkpoint was written with --optimizer {optimizer_name}, not {}",
            args.resume.as_ref().unwrap().display(),
            args.optimizer
        ));
    }
    let init = match &resume {
        Some((model, _, _)) => Some(model.clone()),
        None => args
            .init
            .as_deref()
            .map(load_model)
            .transpose()
            .map_err(text)?,
    };
    let features = train_set.features();
    let sizes = match (&args.arch, &init) {
        (Some(arch), _) => parse_arch(arch)?,
        (None, Some(model)) => model.sizes.clone(),
        (None, None) => vec![features, 64, outputs_for(&train_set)],
    };
    if sizes[0] != features {
        return Err(format!(
            "--arch starts with {} inputs, but {} has {features} feature columns",
            sizes[0],
            describe(args.data.as_deref())
        ));
    }
    let layers = sizes.len() - 1;
    let activations = match (
        &args.activations,
        init.as_ref().and_then(|m| m.activations.clone()),
    ) {
        (Some(list), _) => parse_activations(list, layers)?,
        (None, Some(saved)) if saved.len() == layers => saved,
        _ => parse_activations("relu", layers)?,
    };
    let mlp = Mlp::with_activations(&sizes, &activations).map_err(|e| format!("--arch: {e}"))?;
    // Before the parameters are drawn: a network too large for the machine
    // is an error, not an aborted allocation.
    let batch_rows = if args.batch_size > 0 {
        args.batch_size
    } else {
        train_set.rows()
    };
    mlp.check_training_memory(Some(batch_rows), optimizer.state_slots())
        .map_err(text)?;
    let params = match &init {
        Some(model) => {
            if model.sizes != sizes {
                return Err(format!(
                    "{} {}: the file's layer sizes {} do not match the architecture {}",
                    if resume.is_some() {
                        "--resume"
                    } else {
                        "--init"
                    },
                    args.resume
                        .as_ref()
                        .or(args.init.as_ref())
                        .unwrap()
                        .display(),
                    join(&model.sizes),
                    join(&sizes)
                ));
            }
            model.params.clone()
        }
        None => mlp.init(args.weight_init, args.seed),
    };

    let mut config = TrainConfig::default()
        .loss(loss)
        .optimizer(optimizer)
        .epochs(args.epochs)
        .shuffle(!args.no_shuffle)
        .seed(args.seed)
        .device(args.device);
    config.batch_size = (args.batch_size > 0).then_some(args.batch_size);
    config.lr_schedule = args.lr_schedule;
    config.norms_every = args.norms_every;
    if let Some(p) = args.dropout {
        config = config.dropout(p);
    }
    config.grad_clip = retroprop::GradClip {
        max_norm: args.clip_grad_norm,
        max_value: args.clip_grad_value,
    };
    if let Some(patience) = args.early_stopping {
        if val_set.is_none() {
            return Err(
                "--early-stopping needs validation data: add --val FILE or --val-split FRACTION"
                    .into(),
            );
        }
        config = config.early_stopping(patience, args.min_delta);
    }
    if let Some(steps) = args.steps {
        config = config.max_steps(steps);
        if args.epochs == 20 {
            // --steps decides; epochs only bound it.
            config.epochs = usize::MAX;
        }
    }
    if let Some((_, _, checkpoint)) = &resume {
        // --epochs counts from the start of the original run.
        config.epochs = config.epochs.saturating_sub(checkpoint.epoch as usize);
    }
    // From here on there is work to keep.
    let interrupts = Interrupts::install()?;
    config = config.stop_flag(interrupts.stop_flag());
    let mut trainer = ranks.join(Trainer::with_parameters(
        mlp.clone(),
        params,
        config.clone(),
    ))?;
    if let Some((_, _, checkpoint)) = &resume {
        ranks.shared(trainer.restore(checkpoint))?;
    }
    let setup = start.elapsed().as_secs_f64();
    let epochs_shown = if args.steps.is_some() {
        let per_epoch = train_set
            .rows()
            .div_ceil(config.batch_size.unwrap_or(train_set.rows())) as u64;
        args.steps.unwrap_or(0).div_ceil(per_epoch.max(1)) as usize
    } else {
        args.epochs
    };
    let bar = progress(epochs_shown, args.quiet);
    let mut metrics = args
        .metrics
        .as_deref()
        .map(MetricsFile::create)
        .transpose()?;
    let mut metrics_error = None;
    let mut warnings = crate::report::NormWarnings::default();
    let rows = train_set.rows() as f64;
    let checkpoint_model = |params: Vec<f32>| SavedModel {
        mlp: mlp.clone(),
        params,
        loss,
        standardization: standardization.clone(),
    };
    let every = if args.checkpoint.is_some() {
        args.checkpoint_every.max(1)
    } else {
        0
    };
    let optimizer = config.optimizer;
    let on_checkpoint = |checkpoint: retroprop::Checkpoint| {
        let path = args
            .checkpoint
            .as_ref()
            .expect("every > 0 only with a path");
        save_checkpoint(
            path,
            &checkpoint_model(checkpoint.params.clone()),
            &optimizer,
            &checkpoint,
        )
    };
    let history = trainer.fit_checkpointed(
        &train_set,
        val_set.as_ref(),
        |record| {
            bar.set_position(record.epoch as u64);
            bar.set_message(progress_message(record, rows * record.epoch as f64));
            if let Some(m) = &mut metrics
                && let Err(e) = m.record(record)
                && metrics_error.is_none()
            {
                metrics_error = Some(e);
            }
            for warning in warnings
                .check(&record.layer_norms)
                .into_iter()
                .filter(|_| ranks.writes())
            {
                bar.suspend(|| eprintln!("warning: {warning}"));
            }
        },
        every,
        on_checkpoint,
    );
    bar.finish_and_clear();
    let history = match history {
        Ok(history) => history,
        Err(e @ retroprop::Error::Diverged { .. }) => {
            // Keep the last good parameters where the user asked for them.
            let mut message = ranks.error(e);
            if let Some(path) = args.checkpoint.as_ref().or(args.save.as_ref()) {
                let params = trainer.parameters().map_err(text)?;
                match save_model(path, &checkpoint_model(params)) {
                    Ok(()) => {
                        message += &format!("; the last good parameters are in {}", path.display())
                    }
                    Err(save) => message += &format!("; nothing saved: {save}"),
                }
            }
            return Err(message);
        }
        Err(e) => return Err(ranks.error(e)),
    };
    if let Some(e) = metrics_error {
        return Err(e);
    }
    // An interrupt or --steps ended an epoch midway: the checkpoint records
    // the position inside it (the epoch-end callback did not run).
    if (history.interrupted || history.cut_mid_epoch)
        && let Some(path) = &args.checkpoint
    {
        let checkpoint = trainer.checkpoint().map_err(text)?;
        save_checkpoint(
            path,
            &checkpoint_model(checkpoint.params.clone()),
            &optimizer,
            &checkpoint,
        )
        .map_err(text)?;
    }
    if let Some(path) = &args.save {
        let params = trainer.parameters().map_err(text)?;
        let model = SavedModel {
            mlp: mlp.clone(),
            params,
            loss,
            standardization,
        };
        if history.interrupted {
            save_interrupted_model(path, &model, trainer.steps())
        } else {
            save_model(path, &model)
        }
        .map_err(text)?;
    }
    // After the files that keep the work; an interrupted first epoch has
    // nothing to plot.
    if let Some(path) = &args.plot
        && !(history.interrupted && history.epochs.is_empty())
    {
        plot(path, &history.epochs)?;
    }

    let last = history.epochs.last();
    let mut summary = format!(
        "trained {} on {} ({} rows): {} epochs, {} steps in {:.1} s (setup {:.1} s)",
        join(&sizes),
        ranks.describe(trainer.device_name()),
        train_set.rows(),
        history.epochs.len(),
        trainer.steps(),
        start.elapsed().as_secs_f64(),
        setup
    );
    summary += &format!(
        "; loss {loss}, train {}",
        last.map_or("-".into(), |r| format!("{:.4}", r.train_loss))
    );
    match last.and_then(|r| r.validation) {
        Some(v) => {
            summary += &format!(", validation {:.4}", v.loss);
            if let Some(a) = v.accuracy {
                summary += &format!(", validation accuracy {:.2}%", 100.0 * a);
            }
        }
        None => {
            if let Some(a) = trainer.evaluate(&train_set).map_err(text)?.accuracy {
                summary += &format!(", training accuracy {:.2}%", 100.0 * a);
            }
        }
    }
    if let Some(best) = history.best_epoch {
        summary += &format!(
            "; kept epoch {best}{}",
            if history.stopped_early {
                " (stopped early)"
            } else {
                ""
            }
        );
    }
    if let Some(path) = &args.save {
        summary += &format!("; saved {}", path.display());
    }
    let signal = interrupts.received();
    if let Some(signal) = signal {
        summary += &match (history.interrupted, &args.checkpoint) {
            (true, Some(path)) => format!(
                "; interrupted by {} at step {} (continue with --resume {})",
                signal.name(),
                trainer.steps(),
                path.display()
            ),
            (true, None) => format!(
                "; interrupted by {} at step {}",
                signal.name(),
                trainer.steps()
            ),
            (false, _) => format!("; {} came after the last step", signal.name()),
        };
    }
    if ranks.writes() {
        println!("{summary}");
    }
    Ok(signal.map_or(ExitCode::SUCCESS, |s| s.exit_code()))
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn open_model(path: &Path, device: Device) -> Result<(SavedModel, Trainer)> {
    let model = load_model(path)
        .and_then(|m| m.complete(path))
        .map_err(text)?;
    let config = TrainConfig::default().loss(model.loss).device(device);
    let trainer =
        Trainer::with_parameters(model.mlp.clone(), model.params.clone(), config).map_err(text)?;
    Ok((model, trainer))
}

fn standardize_rows(x: &mut [f32], model: &SavedModel) {
    if let Some(s) = &model.standardization {
        for row in x.chunks_exact_mut(s.mean.len()) {
            for ((v, m), sd) in row.iter_mut().zip(&s.mean).zip(&s.std) {
                *v = (*v - m) / sd;
            }
        }
    }
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (model, mut trainer) = open_model(&args.model, args.device)?;
    let inputs = model.mlp.inputs();
    let mut x = load_inputs(&args.data, inputs).map_err(text)?;
    standardize_rows(&mut x, &model);
    let outputs = trainer.predict(&x).map_err(text)?;
    let width = model.mlp.outputs();
    let mut out = String::new();
    match model.loss {
        Loss::CrossEntropy => {
            out += "class";
            (0..width).for_each(|j| out += &format!(",p{j}"));
            out += "\n";
            let probabilities = model.loss.probabilities(&outputs, width);
            for (row, p) in outputs
                .chunks_exact(width)
                .zip(probabilities.chunks_exact(width))
            {
                out += &argmax(row).to_string();
                p.iter().for_each(|p| out += &format!(",{p}"));
                out += "\n";
            }
        }
        Loss::BceWithLogits => {
            let names: Vec<String> = (0..width)
                .map(|j| format!("label{j}"))
                .chain((0..width).map(|j| format!("p{j}")))
                .collect();
            out += &(names.join(",") + "\n");
            let probabilities = model.loss.probabilities(&outputs, width);
            for (row, p) in outputs
                .chunks_exact(width)
                .zip(probabilities.chunks_exact(width))
            {
                let labels = row.iter().map(|&z| ((z > 0.0) as u8).to_string());
                let probs = p.iter().map(f32::to_string);
                out += &(labels.chain(probs).collect::<Vec<_>>().join(",") + "\n");
            }
        }
        Loss::Mse | Loss::HalfMse => {
            out += &((0..width)
                .map(|j| format!("y{j}"))
                .collect::<Vec<_>>()
                .join(",")
                + "\n");
            for row in outputs.chunks_exact(width) {
                out += &(row.iter().map(f32::to_string).collect::<Vec<_>>().join(",") + "\n");
            }
        }
    }
    match &args.out {
        Some(path) => retroprop::io::write_atomic(path, out.as_bytes()).map_err(text)?,
        None => {
            use std::io::Write;
            // A closed pipe (`| head`) is the reader's choice, not an error.
            match std::io::stdout().lock().write_all(out.as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(format!("standard output: {e}"));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let (model, mut trainer) = open_model(&args.model, args.device)?;
    let (mut data, _) =
        load_labelled(Some(&args.data), args.targets, Some(model.loss)).map_err(text)?;
    if data.features() != model.mlp.inputs() {
        return Err(format!(
            "{}: {} feature columns, but the model takes {} inputs",
            args.data.display(),
            data.features(),
            model.mlp.inputs()
        ));
    }
    if let Some(s) = &model.standardization {
        data.standardize(&s.mean, &s.std).map_err(text)?;
    }
    let eval = trainer.evaluate(&data).map_err(text)?;
    let mut line = format!(
        "{} rows: loss ({}) {:.6}",
        data.rows(),
        model.loss,
        eval.loss
    );
    if let Some(a) = eval.accuracy {
        line += &format!(", accuracy {:.2}%", 100.0 * a);
    }
    println!("{line}");
    Ok(())
}
