//! `retroprop train` of one network, and the steps a run of members
//! (members.rs) shares with it.

use crate::cli::TrainArgs;
use crate::data::{
    DataSpec, Labelled, StreamedFile, load_labelled, open_streamed, open_validation, outputs_for,
};
use crate::interrupt::{Interrupts, Signal};
use crate::ranks::Ranks;
use crate::report::{MetricsFile, NormWarnings, Series, plot, progress, progress_message};
use crate::resume;
use retroprop::data::{Categories, CsvCategorical};
use retroprop::io::members::{LoadedMembersCheckpoint, is_members, parse_members_checkpoint};
use retroprop::io::{
    LoadedModel, RunNotes, SavedModel, load_model, parse_checkpoint, save_checkpoint,
    save_noted_model,
};
use retroprop::stream::Streamed;
use retroprop::train::{ResolvedRun, Saved};
use retroprop::{Checkpoint, Dataset, EpochRecord, History, Standardizer, TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub(crate) type Result<T> = std::result::Result<T, String>;

pub(crate) use crate::settings::{flag_error, resolve_settings};

pub(crate) fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

pub(crate) fn describe(data: Option<&Path>) -> String {
    data.map_or("the bundled digits data set".into(), |p| {
        p.display().to_string()
    })
}

/// A checkpoint to continue from (`--resume`): a lone run's, or one of
/// members (`members`), whose first member stands for the run in the
/// settings' resolution, at the run's epoch.
pub(crate) struct Resume {
    pub path: PathBuf,
    pub model: LoadedModel,
    /// The optimizer's name in the file.
    pub optimizer: String,
    pub checkpoint: Checkpoint,
    /// Every member, when the file holds members.
    pub members: Option<LoadedMembersCheckpoint>,
}

impl Resume {
    /// The run as the library's resolution reads it.
    pub fn saved(&self) -> Saved<'_> {
        Saved {
            checkpoint: &self.checkpoint,
            standardized: self.model.standardizer.is_some(),
            optimizer_name: &self.optimizer,
        }
    }
}

/// The training file as read: held in memory, or opened to stream.
enum Loaded {
    Held(Labelled),
    Streamed(StreamedFile),
}

impl Loaded {
    /// What the settings' defaults read of the data.
    fn shape(&self) -> DataShape {
        match self {
            Loaded::Held(l) => DataShape::of(l),
            Loaded::Streamed(s) => DataShape {
                features: s.data.features(),
                outputs: s.outputs,
                loss: s.loss,
            },
        }
    }
}

/// What the settings' defaults and checks read of the training data,
/// held or streamed: its features, the outputs its targets need, and the
/// loss they suggest (or a flag or the checkpoint named).
pub(crate) struct DataShape {
    pub(crate) features: usize,
    pub(crate) outputs: usize,
    pub(crate) loss: retroprop::Loss,
}

impl DataShape {
    pub(crate) fn of(labelled: &Labelled) -> DataShape {
        DataShape {
            features: labelled.data.features(),
            outputs: outputs_for(&labelled.data),
            loss: labelled.loss,
        }
    }
}

/// Rows of a lone run: held in memory, or read a part at a time.
enum Rows {
    Held(Dataset),
    Streamed(Streamed),
}

impl Rows {
    fn rows(&self) -> usize {
        match self {
            Rows::Held(d) => d.rows(),
            Rows::Streamed(s) => s.rows(),
        }
    }
}

/// The data of the run, held out and scaled as its settings say: data
/// sets held in memory (members train only on those), or for a lone run
/// [`Rows`], both held or both streamed (a validation file read whole is
/// handed out a part at a time too).
pub(crate) struct Sets<R = Dataset> {
    pub train: R,
    /// The validation data: `--val`'s, the rows held out, or with
    /// `--folds` the training data itself (each member validates on its
    /// fold's rows of it).
    pub validation: Option<R>,
    pub standardizer: Option<Standardizer>,
    /// Why the loss was chosen, when no flag or checkpoint named it.
    pub chosen_because: Option<String>,
    /// The categorical columns of a CSV file, one-hot encoded (the
    /// validation file's with the training file's categories).
    pub categories: Option<Categories>,
}

/// A trainer set up to run, and what the files it writes need.
struct Session {
    trainer: Trainer,
    interrupts: Interrupts,
    /// The step this invocation started from: a signal before its first
    /// step leaves every file as it was.
    first_step: u64,
    /// The model a file gets, around its parameters.
    model: SavedModel,
    /// The categories its inputs one-hot encode, which its file keeps.
    categories: Option<Categories>,
    setup_seconds: f64,
}

/// How the fit ended.
struct Outcome {
    history: History,
    /// The run's epochs from its start (a resumed run's earlier ones
    /// from the metrics file).
    epochs: Vec<EpochRecord>,
    signal: Option<Signal>,
}

/// Trains as `args` say. Returns the exit status: success, or after
/// SIGINT or SIGTERM, which stop training at a step boundary and still
/// save, 130 or 143.
pub fn train(mut args: TrainArgs, ranks: &Ranks) -> Result<ExitCode> {
    let start = Instant::now();
    let resume = load_resume(&args)?;
    if args.asks_for_members() || resume.as_ref().is_some_and(|r| r.members.is_some()) {
        return crate::members::train(args, resume, ranks, start);
    }
    ranks.only_rank_0_writes(&mut args);
    let loaded = open_data(&args, resume.as_ref())?;
    let run = resolve_settings(&args, &loaded.shape(), resume.as_ref(), ranks)?;
    let sets = sets_of_run(&args, loaded, &run, resume.is_some())?;
    let mut session = start_trainer(&args, run, &sets, resume.as_ref(), ranks, start)?;
    let Some(outcome) = fit(&args, &mut session, &sets, resume.as_ref(), ranks)? else {
        return Ok(stopped_before_the_first_step(&session.interrupts, ranks));
    };
    keep_files(&args, &mut session, &outcome)?;
    // Every rank takes part: the training accuracy is evaluated in
    // shards (rank 0 alone waited for the others forever).
    let summary = summary(&args, &mut session, &sets, &outcome, ranks, start)?;
    if ranks.writes() {
        println!("{summary}");
    }
    Ok(outcome.signal.map_or(ExitCode::SUCCESS, |s| s.exit_code()))
}

/// The checkpoint `--resume` names, read: a lone run's or one of members.
fn load_resume(args: &TrainArgs) -> Result<Option<Resume>> {
    let Some(path) = &args.resume else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !is_members(&bytes, path).map_err(text)? {
        let (model, optimizer, checkpoint) = parse_checkpoint(&bytes, path).map_err(text)?;
        return Ok(Some(Resume {
            path: path.clone(),
            model,
            optimizer,
            checkpoint,
            members: None,
        }));
    }
    let members = parse_members_checkpoint(&bytes, path).map_err(text)?;
    // Members that stopped early stand at earlier epochs: the run's epoch,
    // which its --epochs count from, is the furthest.
    let epoch = members.checkpoints.iter().map(|c| c.epoch).max();
    Ok(Some(Resume {
        path: path.clone(),
        model: members.members.members[0].clone(),
        optimizer: members.optimizer.clone(),
        checkpoint: Checkpoint {
            epoch: epoch.unwrap_or(0),
            ..members.checkpoints[0].clone()
        },
        members: Some(members),
    }))
}

/// The training data, read as the run reads it: a resumed run as its
/// start did (as many target columns as the network has outputs, one of
/// labels for a classification loss), held in memory.
pub(crate) fn load_data(args: &TrainArgs, resume: Option<&Resume>) -> Result<Labelled> {
    let (spec, loss) = data_spec(args, resume)?;
    load_labelled(args.data.as_deref(), &spec, loss).map_err(text)
}

/// [`load_data`] for a lone run: with `--stream`, the file opened (its
/// targets read, the file not held).
fn open_data(args: &TrainArgs, resume: Option<&Resume>) -> Result<Loaded> {
    if !args.stream {
        return load_data(args, resume).map(Loaded::Held);
    }
    let (spec, loss) = data_spec(args, resume)?;
    open_streamed(args.data.as_deref(), &spec, loss)
        .map(Loaded::Streamed)
        .map_err(text)
}

/// The columns the training data is read as, and the loss a flag or the
/// checkpoint names: a resumed run's as its start read them.
fn data_spec(
    args: &TrainArgs,
    resume: Option<&Resume>,
) -> Result<(DataSpec, Option<retroprop::Loss>)> {
    let saved = resume.and_then(|r| r.checkpoint.settings.as_ref());
    let targets = match (args.targets, saved) {
        (Some(targets), _) => targets,
        (None, Some(saved)) if !saved.loss.takes_classes() => {
            saved.sizes.last().copied().unwrap_or(1)
        }
        _ => 1,
    };
    if targets == 0 {
        return Err("--targets must be at least 1".into());
    }
    let loss = args.loss.or(saved.map(|s| s.loss));
    let mut spec = args.columns.spec(targets);
    spec.categorical = CsvCategorical::Detect(args.categorical.clone());
    Ok((spec, loss))
}

/// A lone run's validation rows and scaling: [`hold_out_and_scale`] of
/// data held in memory, or [`open_and_scale_streamed`] of a file to
/// stream.
fn sets_of_run(
    args: &TrainArgs,
    loaded: Loaded,
    run: &ResolvedRun,
    resumed: bool,
) -> Result<Sets<Rows>> {
    match loaded {
        Loaded::Held(labelled) => {
            let sets = hold_out_and_scale(args, labelled, run, resumed)?;
            Ok(Sets {
                train: Rows::Held(sets.train),
                validation: sets.validation.map(Rows::Held),
                standardizer: sets.standardizer,
                chosen_because: sets.chosen_because,
                categories: sets.categories,
            })
        }
        Loaded::Streamed(file) => {
            let sets = open_and_scale_streamed(args, file, run)?;
            check_early_stopping(args, run, sets.validation.is_some(), resumed)?;
            Ok(sets)
        }
    }
}

/// Early stopping needs validation data (`validated`): an error naming
/// what to give, the checkpoint's rule on a resume.
fn check_early_stopping(
    args: &TrainArgs,
    run: &ResolvedRun,
    validated: bool,
    resumed: bool,
) -> Result<()> {
    let Some(rule) = run.config.early_stopping.filter(|_| !validated) else {
        return Ok(());
    };
    Err(match (args.early_stopping, resumed) {
        (None, true) => format!(
            "--resume {}: the run stops early on validation data (--early-stopping {} \
             in the checkpoint): give its --val FILE again",
            args.resume
                .as_ref()
                .map_or("".into(), |p| p.display().to_string()),
            rule.patience
        ),
        _ => "--early-stopping needs validation data: add --val FILE, --val-split FRACTION \
              or --folds N"
            .into(),
    })
}

/// The validation rows (`--val`, or held out as the settings say, the
/// run's first split on resume, or with `--folds` the training rows
/// themselves) and the inputs' scaling, fitted on the training rows (with
/// `--folds`, all of them).
pub(crate) fn hold_out_and_scale(
    args: &TrainArgs,
    labelled: Labelled,
    run: &ResolvedRun,
    resumed: bool,
) -> Result<Sets> {
    let Labelled {
        data: mut train,
        loss,
        chosen_because,
        categories,
    } = labelled;
    let mut validation = match (&args.val, run.config.validation_split) {
        (Some(path), _) => {
            let spec = args
                .columns
                .spec(train.target_width())
                .with_categories(categories.as_ref());
            Some(
                load_labelled(Some(path), &spec, Some(loss))
                    .map_err(text)?
                    .data,
            )
        }
        (None, Some(split)) => {
            let (rest, held) = train
                .split(split.fraction, split.seed)
                .map_err(|e| format!("--val-split: {e}"))?;
            train = rest;
            Some(held)
        }
        (None, None) => None,
    };
    if let Some(v) = &validation
        && v.features() != train.features()
    {
        return Err(format!(
            "--val: the validation data has {} features, the training data {}",
            v.features(),
            train.features()
        ));
    }
    let folds = args.folds.is_some();
    check_early_stopping(args, run, validation.is_some() || folds, resumed)?;
    let standardizer = run.standardize.then(|| Standardizer::fit(&train));
    if let Some(s) = &standardizer {
        s.apply(&mut train).map_err(text)?;
        if let Some(v) = &mut validation {
            s.apply(v).map_err(text)?;
        }
    }
    if folds {
        validation = Some(train.clone());
    }
    Ok(Sets {
        train,
        validation,
        standardizer,
        chosen_because,
        categories,
    })
}

/// [`hold_out_and_scale`] for a file streamed: `--val` opened to stream
/// (or read whole, a CSV file), no split (the held-out rows of a split
/// are scattered through the file), and the standardisation fitted by two
/// passes over the training file, applied to each part as it is read.
fn open_and_scale_streamed(
    args: &TrainArgs,
    file: StreamedFile,
    run: &ResolvedRun,
) -> Result<Sets<Rows>> {
    let StreamedFile {
        data: train,
        loss,
        chosen_because,
        ..
    } = file;
    if run.config.validation_split.is_some() {
        return Err(match args.val_split {
            Some(_) => "--val-split holds rows out of data held in memory; with --stream, give \
                 the validation rows as a file of their own: --val FILE"
                .into(),
            None => "the checkpoint's run held validation rows out of its data (--val-split), \
                 which --stream cannot: resume it without --stream"
                .into(),
        });
    }
    let validation = match &args.val {
        Some(path) => {
            let spec = args.columns.spec(train.target_width());
            Some(open_validation(path, &spec, loss).map_err(text)?)
        }
        None => None,
    };
    if let Some(v) = &validation
        && v.features() != train.features()
    {
        return Err(format!(
            "--val: the validation data has {} features, the training data {}",
            v.features(),
            train.features()
        ));
    }
    let standardizer = match run.standardize {
        true => Some(train.fit_standardizer().map_err(text)?),
        false => None,
    };
    Ok(Sets {
        train: Rows::Streamed(train.with_standardizer(standardizer.clone())),
        validation: validation.map(|v| Rows::Streamed(v.with_standardizer(standardizer.clone()))),
        standardizer,
        chosen_because,
        categories: None,
    })
}

/// The parameters the run starts from: the checkpoint's, `--init`'s
/// (which must fit the network), or drawn with the seed.
fn starting_parameters(
    args: &TrainArgs,
    run: &ResolvedRun,
    resume: Option<&Resume>,
) -> Result<Vec<f32>> {
    if let Some(resume) = resume {
        fits_network("--resume", &resume.path, &resume.model, run)?;
        return Ok(resume.model.params.clone());
    }
    Ok(init_parameters(args, run)?
        .unwrap_or_else(|| run.mlp.init(run.config.init, run.config.seed)))
}

/// The parameters `--init` names, which must fit the network.
pub(crate) fn init_parameters(args: &TrainArgs, run: &ResolvedRun) -> Result<Option<Vec<f32>>> {
    let Some(path) = &args.init else {
        return Ok(None);
    };
    let model = load_model(path).map_err(text)?;
    fits_network("--init", path, &model, run)?;
    Ok(Some(model.params))
}

/// Whether a file's network (`flag`'s) has the run's layer sizes.
pub(crate) fn fits_network(
    flag: &str,
    path: &Path,
    model: &LoadedModel,
    run: &ResolvedRun,
) -> Result<()> {
    let residual = run.mlp.residual_spec();
    if model.residual != residual {
        let describe = |r: Option<retroprop::Residual>| {
            r.map_or("a plain network".to_string(), |r| {
                format!("a residual network of {r}")
            })
        };
        return Err(format!(
            "{flag} {}: the file holds {}, the run is {}",
            path.display(),
            describe(model.residual),
            describe(residual)
        ));
    }
    let sizes = run.mlp.sizes();
    if model.sizes != sizes {
        return Err(format!(
            "{flag} {}: the file's layer sizes {} do not match the architecture {}",
            path.display(),
            join(&model.sizes),
            join(&sizes)
        ));
    }
    Ok(())
}

/// The trainer of the run on every rank, at the checkpoint's state on a
/// resume (its steering changes printed), with Ctrl-C and SIGTERM wired
/// to its stop flag, and every rank's data found the same.
fn start_trainer(
    args: &TrainArgs,
    run: ResolvedRun,
    sets: &Sets<Rows>,
    resume: Option<&Resume>,
    ranks: &Ranks,
    start: Instant,
) -> Result<Session> {
    check_memory(&run, sets.train.rows())?;
    let params = starting_parameters(args, &run, resume)?;
    // From here on there is work to keep.
    let interrupts = Interrupts::install()?;
    let config = run.config.stop_flag(interrupts.stop_flag());
    let model = SavedModel {
        mlp: run.mlp.clone(),
        params: Vec::new(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: config.loss,
        standardizer: sets.standardizer.clone(),
    };
    let mut trainer = ranks.join(Trainer::with_parameters(run.mlp, params, config))?;
    if ranks.writes() {
        note_fallback(&trainer);
    }
    if let Some(resume) = resume {
        ranks.shared(trainer.restore(&resume.checkpoint))?;
        if ranks.writes() {
            for line in resume::change_lines(trainer.resume_changes()) {
                eprintln!("{line}");
            }
        }
    }
    let first_step = trainer.steps();
    check_same_data(args, &mut trainer, sets, ranks)?;
    Ok(Session {
        trainer,
        interrupts,
        first_step,
        model,
        categories: sets.categories.clone(),
        setup_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Before the parameters are drawn: a network too large for the machine
/// is an error, not an aborted allocation.
pub(crate) fn check_memory(run: &ResolvedRun, train_rows: usize) -> Result<()> {
    let batch_rows = run.config.batch_size.unwrap_or(train_rows);
    run.mlp
        .check_training_memory(Some(batch_rows), run.config.optimizer.state_slots())
        .map_err(text)
}

/// Every rank must read the same data, or the ranks would wait for each
/// other's sums forever: compared before the first step, the files named.
fn check_same_data(
    args: &TrainArgs,
    trainer: &mut Trainer,
    sets: &Sets<Rows>,
    ranks: &Ranks,
) -> Result<()> {
    let data_name = args
        .data
        .as_deref()
        .map_or("the bundled digits".into(), |p| p.display().to_string());
    let what = format!("the training data ({data_name})");
    let mut check = |rows: &Rows, what: &str| match rows {
        Rows::Held(data) => ranks.shared(trainer.check_same_data(data, what)),
        Rows::Streamed(data) => ranks.shared(trainer.check_same_stream(data, what)),
    };
    check(&sets.train, &what)?;
    if let Some(v) = &sets.validation {
        let what = match &args.val {
            Some(path) => format!("the validation data ({})", path.display()),
            None => format!("the validation data (held out of {data_name})"),
        };
        check(v, &what)?;
    }
    Ok(())
}

/// The epochs the progress bar counts to.
pub(crate) fn epochs_shown(args: &TrainArgs, config: &TrainConfig, rows: usize) -> usize {
    match args.steps {
        Some(steps) => {
            let per_epoch = rows.div_ceil(config.batch_size.unwrap_or(rows)) as u64;
            (steps.div_ceil(per_epoch.max(1)) as usize).min(config.epochs)
        }
        None => config.epochs,
    }
}

/// Trains, showing progress, writing metrics and checkpoints and
/// warning of vanishing or exploding gradients as it goes. `None` when a
/// signal came before the first step. After a divergence, the error
/// says where the last good parameters are.
fn fit(
    args: &TrainArgs,
    session: &mut Session,
    sets: &Sets<Rows>,
    resume: Option<&Resume>,
    ranks: &Ranks,
) -> Result<Option<Outcome>> {
    let config = session.trainer.config().clone();
    let bar = progress(epochs_shown(args, &config, sets.train.rows()), args.quiet);
    let resumed_at = resume.map(|r| (r.checkpoint.epoch, r.checkpoint.step));
    let mut metrics = args
        .metrics
        .as_deref()
        .map(|path| MetricsFile::open(path, resumed_at))
        .transpose()?;
    let mut metrics_error = None;
    let mut warnings = NormWarnings::new(session.trainer.mlp());
    let rows = sets.train.rows() as f64;
    let every = if args.checkpoint.is_some() {
        args.checkpoint_every.max(1)
    } else {
        0
    };
    // The (epoch, step) of the last checkpoint this invocation wrote.
    let last_checkpoint = std::cell::Cell::new(None);
    let model = &session.model;
    let on_checkpoint = |checkpoint: Checkpoint| {
        let path = args
            .checkpoint
            .as_ref()
            .expect("every > 0 only with a path");
        let model = SavedModel {
            params: checkpoint.params.clone(),
            ..model.clone()
        };
        save_checkpoint(path, &model, &config.optimizer, &checkpoint)?;
        last_checkpoint.set(Some((checkpoint.epoch, checkpoint.step)));
        Ok(())
    };
    let on_epoch = |record: &EpochRecord| {
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
    };
    let history = match (&sets.train, &sets.validation) {
        (Rows::Streamed(train), validation) => {
            let validation = match validation {
                Some(Rows::Streamed(v)) => Some(v),
                _ => None,
            };
            session
                .trainer
                .fit_streamed(train, validation, on_epoch, every, on_checkpoint)
        }
        (Rows::Held(train), validation) => {
            let validation = match validation {
                Some(Rows::Held(v)) => Some(v),
                _ => None,
            };
            session
                .trainer
                .fit_checkpointed(train, validation, on_epoch, every, on_checkpoint)
        }
    };
    bar.finish_and_clear();
    let history = match history {
        Ok(history) => history,
        Err(e @ retroprop::Error::Diverged { .. }) => {
            let at = last_checkpoint.get().or(resumed_at);
            let model = session.model.clone();
            let kept = (&model, session.categories.clone());
            return Err(keep_last_good(
                ranks.error(e),
                &mut session.trainer,
                args,
                kept,
                at,
            ));
        }
        Err(e) => return Err(ranks.error(e)),
    };
    if let Some(e) = metrics_error {
        return Err(e);
    }
    let signal = session.interrupts.received();
    if history.interrupted && session.trainer.steps() == session.first_step {
        return Ok(None);
    }
    let mut epochs = metrics.as_ref().map_or(Vec::new(), MetricsFile::earlier);
    epochs.extend(history.epochs.iter().cloned());
    Ok(Some(Outcome {
        history,
        epochs,
        signal,
    }))
}

/// Stopped during start-up (a cold GPU pipeline compile takes long):
/// there is nothing new to keep, and the files stay as they were.
pub(crate) fn stopped_before_the_first_step(interrupts: &Interrupts, ranks: &Ranks) -> ExitCode {
    let signal = interrupts.received();
    if ranks.writes() {
        println!(
            "interrupted by {} before the first step: no file written",
            signal.map_or("a signal", |s| s.name())
        );
    }
    signal.map_or(ExitCode::FAILURE, |s| s.exit_code())
}

/// The files that keep the work: the checkpoint where an interrupt or
/// `--steps` ended an epoch midway (the epoch-end callback did not run),
/// `--save`, then `--plot` of the run's epochs from its start.
fn keep_files(args: &TrainArgs, session: &mut Session, outcome: &Outcome) -> Result<()> {
    let trainer = &mut session.trainer;
    let history = &outcome.history;
    if (history.interrupted || history.cut_mid_epoch)
        && let Some(path) = &args.checkpoint
    {
        let checkpoint = trainer.checkpoint().map_err(text)?;
        let model = SavedModel {
            params: checkpoint.params.clone(),
            ..session.model.clone()
        };
        save_checkpoint(path, &model, &trainer.config().optimizer, &checkpoint).map_err(text)?;
    }
    if let Some(path) = &args.save {
        let model = trained_model(trainer, &session.model).map_err(text)?;
        let notes = RunNotes {
            interrupted_at_step: history.interrupted.then(|| trainer.steps()),
            changed_on_resume: trainer.changes().to_vec(),
            precision: Some(trainer.config().precision),
            categories: session.categories.clone(),
        };
        save_noted_model(path, &model, &notes).map_err(text)?;
    }
    if let Some(path) = &args.plot
        && !outcome.epochs.is_empty()
    {
        plot(path, "loss per epoch", &Series::of_run(&outcome.epochs))?;
    }
    Ok(())
}

/// The line the program ends with: what was trained where, how long it
/// took, the loss and accuracy, the epoch kept, the files, the signal.
fn summary(
    args: &TrainArgs,
    session: &mut Session,
    sets: &Sets<Rows>,
    outcome: &Outcome,
    ranks: &Ranks,
    start: Instant,
) -> Result<String> {
    let trainer = &mut session.trainer;
    let history = &outcome.history;
    let loss = trainer.config().loss;
    let last = history.epochs.last();
    let mut summary = format!(
        "trained {} on {} ({} rows): {} epochs, {} steps in {:.1} s (setup {:.1} s)",
        trainer.mlp().describe(),
        ranks.describe(trainer.device_name()),
        sets.train.rows(),
        history.epochs.len(),
        trainer.steps(),
        start.elapsed().as_secs_f64(),
        session.setup_seconds
    );
    let chosen = sets
        .chosen_because
        .as_ref()
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
            let evaluation = match &sets.train {
                Rows::Held(data) => trainer.evaluate(data),
                Rows::Streamed(data) => trainer.evaluate_streamed(data),
            };
            if let Some(a) = evaluation.map_err(text)?.accuracy {
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
    if let Some(signal) = outcome.signal {
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
    Ok(summary)
}

/// After a divergence: `--checkpoint` stays the last checkpoint written
/// (at `checkpointed`, (epoch, step), when there is one), which resumes;
/// the last good parameters (from before the step that diverged, which
/// the trainer holds) go into `--save`; `message` then says where they are.
fn keep_last_good(
    mut message: String,
    trainer: &mut Trainer,
    args: &TrainArgs,
    (model, categories): (&SavedModel, Option<Categories>),
    checkpointed: Option<(u64, u64)>,
) -> String {
    if let Some(path) = &args.save {
        let notes = RunNotes {
            changed_on_resume: trainer.changes().to_vec(),
            precision: Some(trainer.config().precision),
            categories,
            ..RunNotes::default()
        };
        message += &match trained_model(trainer, model)
            .and_then(|model| save_noted_model(path, &model, &notes))
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

/// `template` (network, loss, standardisation) with what `trainer` holds
/// now: its parameters, running statistics and their batch count.
pub(crate) fn trained_model(
    trainer: &mut Trainer,
    template: &SavedModel,
) -> retroprop::Result<SavedModel> {
    Ok(SavedModel {
        params: trainer.parameters()?,
        buffers: trainer.buffers()?,
        num_batches_tracked: trainer.steps(),
        ..template.clone()
    })
}

pub(crate) fn join<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Says on stderr why `--device auto` runs on the CPU, when it does.
pub(crate) fn note_fallback(trainer: &Trainer) {
    if let Some(why) = trainer.device_fallback() {
        eprintln!("note: --device auto runs on the CPU: {why}");
    }
}
