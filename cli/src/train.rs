//! `retroprop train`, `predict` and `evaluate`.

use crate::cli::{EvaluateArgs, PredictArgs, TrainArgs, parse_activations, parse_arch};
use crate::data::{load_inputs, load_labelled, outputs_for};
use crate::interrupt::Interrupts;
use crate::ranks::Ranks;
use crate::report::{MetricsFile, plot, progress, progress_message};
use retroprop::io::{
    SavedModel, load_checkpoint, load_model, save_checkpoint, save_interrupted_model, save_model,
};
use retroprop::loss::argmax;
use retroprop::{Device, Loss, Mlp, Optimizer, Standardizer, TrainConfig, Trainer};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The optimizer `--optimizer` and the flags describe; a flag whose
/// option that optimizer does not have is an error (the library knows which
/// has which).
fn optimizer(args: &TrainArgs) -> Result<Optimizer> {
    let mut optimizer = args.optimizer;
    let name = optimizer.name();
    for (option, value) in args.optimizer_options() {
        let flag = format!("--{}", option.replace('_', "-"));
        optimizer.set_option(option, &value).map_err(|e| match e {
            retroprop::Error::UnknownOption { owners, .. } => format!(
                "{flag} does not apply to --optimizer {name} (only to {})",
                owners.join(", ")
            ),
            e => format!("{flag}: {e}"),
        })?;
    }
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
    let labelled = load_labelled(args.data.as_deref(), args.targets, args.loss).map_err(text)?;
    let (mut train_set, loss) = (labelled.data, labelled.loss);
    // The bundled data set holds out 20 % by default, to report an honest
    // accuracy.
    let val_split = args.val_split.or(args.data.is_none().then_some(0.2));
    let mut val_set = match (&args.val, val_split) {
        (Some(path), _) => Some(
            load_labelled(Some(path), args.targets, Some(loss))
                .map_err(text)?
                .data,
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
    let standardizer = standardize.then(|| Standardizer::fit(&train_set));
    if let Some(s) = &standardizer {
        s.apply(&mut train_set).map_err(text)?;
        if let Some(v) = &mut val_set {
            s.apply(v).map_err(text)?;
        }
    }

    let resume = args
        .resume
        .as_deref()
        .map(load_checkpoint)
        .transpose()
        .map_err(text)?;
    if let Some((_, optimizer_name, _)) = &resume
        && *optimizer_name != optimizer.name()
    {
        return Err(format!(
            "--resume {}: the checkpoint was written with --optimizer {optimizer_name}, not {}",
            args.resume.as_ref().unwrap().display(),
            optimizer.name()
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

    // --steps alone decides; an --epochs given with it bounds it.
    let epochs = args
        .epochs
        .unwrap_or(if args.steps.is_some() { usize::MAX } else { 20 });
    let mut config = TrainConfig::default()
        .loss(loss)
        .optimizer(optimizer)
        .epochs(epochs)
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
    if ranks.writes() {
        note_fallback(&trainer);
    }
    if let Some((_, _, checkpoint)) = &resume {
        ranks.shared(trainer.restore(checkpoint))?;
    }
    // Every rank must read the same data, or the ranks would wait for each
    // other's sums forever: compared here, before the first step, with
    // the files named.
    let data_name = args
        .data
        .as_deref()
        .map_or("the bundled digits".into(), |p| p.display().to_string());
    let what = format!("the training data ({data_name})");
    ranks.shared(trainer.check_same_data(&train_set, &what))?;
    if let Some(v) = &val_set {
        let what = match &args.val {
            Some(path) => format!("the validation data ({})", path.display()),
            None => format!("the validation data (held out of {data_name})"),
        };
        ranks.shared(trainer.check_same_data(v, &what))?;
    }
    let setup = start.elapsed().as_secs_f64();
    let epochs_shown = match args.steps {
        Some(steps) => {
            let per_epoch = train_set
                .rows()
                .div_ceil(config.batch_size.unwrap_or(train_set.rows()))
                as u64;
            (steps.div_ceil(per_epoch.max(1)) as usize).min(epochs)
        }
        None => epochs,
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
        standardizer: standardizer.clone(),
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
            standardizer,
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
    let chosen = labelled
        .chosen_because
        .map_or(String::new(), |why| format!(" (chosen: {why})"));
    summary += &format!(
        "; loss {loss}{chosen}, train {}",
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
    note_fallback(&trainer);
    Ok((model, trainer))
}

/// Says on stderr why `--device auto` runs on the CPU, when it does.
fn note_fallback(trainer: &Trainer) {
    if let Some(why) = trainer.device_fallback() {
        eprintln!("note: --device auto runs on the CPU: {why}");
    }
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let (model, mut trainer) = open_model(&args.model, args.device)?;
    let inputs = model.mlp.inputs();
    let mut x = load_inputs(&args.data, inputs).map_err(text)?;
    if let Some(s) = &model.standardizer {
        s.apply_rows(&mut x).map_err(text)?;
    }
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
    // Without --targets, as many target columns as the model has outputs
    // (one of class labels for cross-entropy).
    let targets = args.targets.unwrap_or(if model.loss.takes_classes() {
        1
    } else {
        model.mlp.outputs()
    });
    let mut data = load_labelled(Some(&args.data), targets, Some(model.loss))
        .map_err(text)?
        .data;
    if data.features() != model.mlp.inputs() {
        return Err(format!(
            "{}: {} feature columns, but the model takes {} inputs",
            args.data.display(),
            data.features(),
            model.mlp.inputs()
        ));
    }
    if let Some(s) = &model.standardizer {
        s.apply(&mut data).map_err(text)?;
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
