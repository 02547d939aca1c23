//! `retroprop train`, `predict` and `evaluate`.

use crate::cli::{TrainArgs, parse_activations, parse_arch};
use crate::data::{load_labelled, outputs_for};
use crate::interrupt::Interrupts;
use crate::ranks::Ranks;
use crate::report::{MetricsFile, plot, progress, progress_message};
use crate::resume;
use retroprop::checkpoint::ValidationSplit;
use retroprop::io::{
    RunNotes, SavedModel, load_checkpoint, load_model, save_checkpoint, save_noted_model,
};
use retroprop::{Mlp, Optimizer, Standardizer, TrainConfig, Trainer};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The optimizer `--optimizer` (else `saved`, a resumed run's, else Adam)
/// and the flags describe; a flag whose option that optimizer does not
/// have is an error (the library knows which has which).
fn optimizer(args: &TrainArgs, saved: Option<Optimizer>) -> Result<Optimizer> {
    let mut optimizer = args
        .optimizer
        .or(saved)
        .unwrap_or(retroprop::Adam::default().into());
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
    // A resumed run is the run it continues: the checkpoint's settings
    // stand for every flag left out (checkpoints written before settings
    // were recorded have none: then the flags and defaults stand).
    let resume = args
        .resume
        .as_deref()
        .map(load_checkpoint)
        .transpose()
        .map_err(text)?;
    let saved = resume.as_ref().and_then(|(_, _, c)| c.settings.clone());
    let seed = args.seed.or(saved.as_ref().map(|s| s.seed)).unwrap_or(0);
    let optimizer = optimizer(&args, saved.as_ref().map(|s| s.optimizer))?;
    let loss = args.loss.or(saved.as_ref().map(|s| s.loss));
    // A resumed run reads its data as its start did: as many target
    // columns as the network has outputs (one of labels for cross-entropy).
    let targets = match (args.targets, &saved) {
        (Some(targets), _) => targets,
        (None, Some(saved)) if !saved.loss.takes_classes() => {
            saved.sizes.last().copied().unwrap_or(1)
        }
        _ => 1,
    };
    if targets == 0 {
        return Err("--targets must be at least 1".into());
    }
    let spec = args.columns.spec(targets);
    let labelled = load_labelled(args.data.as_deref(), &spec, loss).map_err(text)?;
    let (mut train_set, loss) = (labelled.data, labelled.loss);
    // The bundled data set holds out 20 % by default, to report an honest
    // accuracy. A resumed run holds out the rows its start held out (the
    // split's seed is the first seed, whatever --seed says now).
    let split_seed = saved
        .as_ref()
        .and_then(|s| s.validation_split)
        .map_or(seed, |v| v.seed);
    let val_split = match (&args.val, args.val_split, &saved) {
        (Some(_), _, _) => None,
        (None, Some(fraction), _) => Some(fraction),
        (None, None, Some(saved)) => saved.validation_split.map(|v| v.fraction),
        (None, None, None) => args.data.is_none().then_some(0.2),
    }
    .map(|fraction| ValidationSplit {
        fraction,
        seed: split_seed,
    });
    let mut val_set = match (&args.val, val_split) {
        (Some(path), _) => Some(
            load_labelled(Some(path), &spec, Some(loss))
                .map_err(text)?
                .data,
        ),
        (None, Some(split)) => {
            let (rest, held) = train_set
                .split(split.fraction, split.seed)
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
    // A resumed run standardises as its start did.
    let saved_standardized = resume
        .as_ref()
        .filter(|_| saved.is_some())
        .map(|(model, _, _)| model.standardizer.is_some());
    if saved_standardized == Some(false) && args.standardize {
        return Err(format!(
            "--resume {}: the checkpoint was written without --standardize (its saved state \
             cannot carry another input scale; leave it out to continue the run)",
            args.resume.as_ref().unwrap().display()
        ));
    }
    let standardize = args.standardize || args.data.is_none() || saved_standardized == Some(true);
    let standardizer = standardize.then(|| Standardizer::fit(&train_set));
    if let Some(s) = &standardizer {
        s.apply(&mut train_set).map_err(text)?;
        if let Some(v) = &mut val_set {
            s.apply(v).map_err(text)?;
        }
    }

    if let Some((_, optimizer_name, _)) = &resume
        && saved.is_none()
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

    // --steps alone decides; an --epochs given with it bounds it.
    let epochs = args
        .epochs
        .unwrap_or(if args.steps.is_some() { usize::MAX } else { 20 });
    let mut config = match &saved {
        Some(saved) => TrainConfig::default().with_settings(saved),
        None => TrainConfig::default(),
    }
    .loss(loss)
    .optimizer(optimizer)
    .epochs(epochs)
    .seed(seed)
    .device(args.device);
    if let Some(rows) = args.batch_size {
        config.batch_size = (rows > 0).then_some(rows);
    }
    if args.no_shuffle {
        config.shuffle = false;
    }
    if let Some(precision) = args.precision {
        config.precision = precision;
    }
    if let Some(schedule) = args.lr_schedule {
        config.lr_schedule = schedule;
    }
    config.norms_every = args.norms_every;
    if let Some(p) = args.dropout {
        config = config.dropout(p);
    }
    if let Some(max_norm) = args.clip_grad_norm {
        config.grad_clip.max_norm = Some(max_norm);
    }
    if let Some(max_value) = args.clip_grad_value {
        config.grad_clip.max_value = Some(max_value);
    }
    let saved_rule = config.early_stopping;
    let patience = args.early_stopping.or(saved_rule.map(|e| e.patience));
    let min_delta = args
        .min_delta
        .or(saved_rule.map(|e| e.min_delta))
        .unwrap_or(0.0);
    config.early_stopping = None;
    if let Some(patience) = patience {
        if val_set.is_none() && args.early_stopping.is_none() {
            return Err(format!(
                "--resume {}: the run stops early on validation data (--early-stopping {patience} \
                 in the checkpoint): give its --val FILE again",
                args.resume
                    .as_ref()
                    .map_or("".into(), |p| p.display().to_string())
            ));
        }
        if val_set.is_none() {
            return Err(
                "--early-stopping needs validation data: add --val FILE or --val-split FRACTION"
                    .into(),
            );
        }
        config = config.early_stopping(patience, min_delta);
    }
    config.validation_split = val_split;
    if let Some(steps) = args.steps {
        config = config.max_steps(steps);
    }
    if let (Some(saved), Some(path)) = (&saved, &args.resume)
        && let Some(refused) = resume::refusal(path, &saved.changes(&config.settings(&mlp)))
    {
        return Err(refused);
    }
    if let (None, Some(path)) = (&saved, &args.resume)
        && ranks.writes()
    {
        eprintln!(
            "note: {} was written before checkpoints recorded their run's settings: the flags \
             given and the defaults stand, unchecked, and early stopping counts again",
            path.display()
        );
    }

    // Before the parameters are drawn: a network too large for the machine
    // is an error, not an aborted allocation.
    let batch_rows = config.batch_size.unwrap_or(train_set.rows());
    mlp.check_training_memory(Some(batch_rows), config.optimizer.state_slots())
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
        None => mlp.init(args.weight_init, seed),
    };
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
        if ranks.writes() {
            for line in resume::change_lines(trainer.resume_changes()) {
                eprintln!("{line}");
            }
        }
    }
    // What this invocation started from: a signal before its first step
    // leaves every file as it was.
    let first_step = trainer.steps();
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
    let resumed_at = resume.as_ref().map(|(_, _, c)| (c.epoch, c.step));
    let mut metrics = args
        .metrics
        .as_deref()
        .map(|path| MetricsFile::open(path, resumed_at))
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
    // The (epoch, step) of the last checkpoint this invocation wrote.
    let last_checkpoint = std::cell::Cell::new(None);
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
        )?;
        last_checkpoint.set(Some((checkpoint.epoch, checkpoint.step)));
        Ok(())
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
            let at = last_checkpoint.get().or(resumed_at);
            return Err(keep_last_good(
                ranks.error(e),
                &mut trainer,
                &args,
                &checkpoint_model,
                at,
            ));
        }
        Err(e) => return Err(ranks.error(e)),
    };
    if let Some(e) = metrics_error {
        return Err(e);
    }
    let signal = interrupts.received();
    if history.interrupted && trainer.steps() == first_step {
        // Stopped during start-up (a cold GPU pipeline compile takes long):
        // there is nothing new to keep, and the files stay as they were.
        if ranks.writes() {
            println!(
                "interrupted by {} before the first step: no file written",
                signal.map_or("a signal", |s| s.name())
            );
        }
        return Ok(signal.map_or(ExitCode::FAILURE, |s| s.exit_code()));
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
        let notes = RunNotes {
            interrupted_at_step: history.interrupted.then(|| trainer.steps()),
            changed_on_resume: trainer.changes().to_vec(),
            precision: Some(trainer.config().precision),
        };
        save_noted_model(path, &checkpoint_model(params), &notes).map_err(text)?;
    }
    // After the files that keep the work; the run's epochs from its start
    // (a resumed run's earlier ones from the metrics file).
    let mut epochs = metrics
        .as_ref()
        .map_or(Vec::new(), |m| m.earlier().to_vec());
    epochs.extend(history.epochs.iter().cloned());
    if let Some(path) = &args.plot
        && !epochs.is_empty()
    {
        plot(path, &epochs)?;
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

/// After a divergence: `--checkpoint` stays the last checkpoint written
/// (at `checkpointed`, (epoch, step), when there is one), which resumes;
/// the last good parameters (from before the step that diverged, which
/// the trainer holds) go into `--save`; `message` then says where they are.
fn keep_last_good(
    mut message: String,
    trainer: &mut Trainer,
    args: &TrainArgs,
    model: &dyn Fn(Vec<f32>) -> SavedModel,
    checkpointed: Option<(u64, u64)>,
) -> String {
    if let Some(path) = &args.save {
        let notes = RunNotes {
            changed_on_resume: trainer.changes().to_vec(),
            precision: Some(trainer.config().precision),
            ..RunNotes::default()
        };
        message += &match trainer
            .parameters()
            .and_then(|params| save_noted_model(path, &model(params), &notes))
        {
            Ok(()) => format!(
                "; the last good parameters (step {}) are in {}",
                trainer.steps(),
                path.display()
            ),
            Err(e) => format!("; {} not written: {e}", path.display()),
        };
    }
    if let (Some(path), Some((epoch, step))) = (&args.checkpoint, checkpointed) {
        message += &format!(
            "; the last checkpoint (epoch {epoch}, step {step}) is in {} (continue with --resume {} and a lower --lr)",
            path.display(),
            path.display()
        );
    }
    message
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Says on stderr why `--device auto` runs on the CPU, when it does.
fn note_fallback(trainer: &Trainer) {
    if let Some(why) = trainer.device_fallback() {
        eprintln!("note: --device auto runs on the CPU: {why}");
    }
}
