//! `retroprop train` of many networks at once (`--members`, `--folds`,
//! comma lists of settings): the members of one run
//! (`retroprop::train::Members`), each the lone run of its settings on
//! its rows, trained together. The run's settings are resolved as a lone
//! run's (train.rs, whose steps this shares); the grid (grid.rs) gives
//! each member what it has of its own; the summary (summary.rs) scores
//! every candidate and marks the best.

mod folds;
mod grid;
mod summary;

use crate::cli::TrainArgs;
use crate::interrupt::{Interrupts, Signal};
use crate::ranks::Ranks;
use crate::report::{MetricsFile, NormWarnings, Series, palette, plot, progress, progress_message};
use crate::resume;
use crate::train::{self, DataShape, Result, Resume, Sets, text};
use grid::Grid;
use retroprop::io::members::{
    SavedMembers, is_members, parse_members, save_members, save_members_checkpoint,
};
use retroprop::io::{RunNotes, SavedModel, save_noted_model};
use retroprop::train::{MemberState, Members, MembersHistory, ResolvedRun};
use retroprop::{Checkpoint, EpochRecord, Optimizer};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use summary::Scores;

/// The members set up to run, and what the files they write need.
struct Session {
    members: Members,
    interrupts: Interrupts,
    /// The steps of every member this invocation started from: a signal
    /// before any step leaves every file as it was.
    first_steps: u64,
    /// The model every member's file gets, around its parameters.
    model: SavedModel,
    /// The categories its inputs one-hot encode, which its files keep.
    categories: Option<retroprop::data::Categories>,
    /// Each member's own settings in words, as the files record them.
    settings: Vec<String>,
    setup_seconds: f64,
}

/// How the fit ended.
struct Outcome {
    history: MembersHistory,
    /// Each member's epochs from the run's start, with the member (a
    /// resumed run's earlier ones from the metrics file).
    epochs: Vec<(usize, EpochRecord)>,
    signal: Option<Signal>,
}

/// Before anything trains: a file of members holds plain networks only
/// so far (`retroprop::io::members`).
fn refuse_residual_files(args: &TrainArgs, mlp: &retroprop::Mlp) -> Result<()> {
    if mlp.is_plain() {
        return Ok(());
    }
    for (given, flag) in [
        (args.save.is_some(), "--save"),
        (args.save_all.is_some(), "--save-all"),
        (args.checkpoint.is_some(), "--checkpoint"),
    ] {
        if given {
            return Err(format!(
                "--blocks: {flag} of a run of members is not available for residual networks \
                 yet (a file of members holds plain networks only); train one network to save it"
            ));
        }
    }
    Ok(())
}

/// Trains the members the flags ask for (`resume`: the checkpoint
/// `--resume` names, read). Returns the exit status, as a lone run's.
pub fn train(
    args: TrainArgs,
    resume: Option<Resume>,
    ranks: &Ranks,
    start: Instant,
) -> Result<ExitCode> {
    refuse_ranks(ranks)?;
    refuse_streaming(&args)?;
    refuse_a_lone_checkpoint(resume.as_ref())?;
    let labelled = train::load_data(&args, resume.as_ref())?;
    let run = train::resolve_settings(&args, &DataShape::of(&labelled), resume.as_ref(), ranks)?;
    refuse_residual_files(&args, &run.mlp)?;
    let sets = train::hold_out_and_scale(&args, labelled, &run, resume.is_some())?;
    let grid = Grid::new(&args, &run, &sets)?;
    check_same_members(&grid, resume.as_ref())?;
    let mut session = start_members(&args, run, &sets, &grid, resume.as_ref(), start)?;
    let Some(outcome) = fit(&args, &mut session, &sets, &grid, resume.as_ref())? else {
        return Ok(train::stopped_before_the_first_step(
            &session.interrupts,
            ranks,
        ));
    };
    let scores = Scores::of(&mut session.members, &sets, &grid)?;
    let mut last = keep_files(&args, &mut session, &grid, &scores, &outcome)?;
    last.extend(signal_line(&args, &outcome));
    let tables = summary(&session, &sets, &grid, &scores, &outcome, start);
    println!("{}", (tables + &last.join("; ")).trim_end());
    if let Some(signal) = outcome.signal {
        return Ok(signal.exit_code());
    }
    match (scores.best, &args.save) {
        (None, Some(path)) => Err(format!(
            "--save {}: not written, every candidate has a member that diverged",
            path.display()
        )),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Members train in one process: under mpirun each rank would train all
/// of them and write the same files.
fn refuse_ranks(ranks: &Ranks) -> Result<()> {
    if ranks.count() > 1 {
        return Err(format!(
            "--members, --folds, --save-all and lists of settings train in one process, not \
             across {} MPI ranks: run them without mpirun",
            ranks.count()
        ));
    }
    Ok(())
}

/// Members train on rows held in memory (each member's rows, its folds,
/// are any of the file's): `--stream` trains one network.
fn refuse_streaming(args: &TrainArgs) -> Result<()> {
    if args.stream {
        return Err(
            "--stream trains one network from a file it does not hold; --members, \
                    --folds, --save-all, lists of settings and a checkpoint of members train \
                    on rows held in memory: drop --stream"
                .into(),
        );
    }
    Ok(())
}

/// A lone run's checkpoint resumes as a lone run, without the flags that
/// make members.
fn refuse_a_lone_checkpoint(resume: Option<&Resume>) -> Result<()> {
    match resume {
        Some(resume) if resume.members.is_none() => Err(format!(
            "--resume {}: the checkpoint holds one network's run, not members: resume it \
             without --members, --folds, --save-all and lists of settings",
            resume.path.display(),
        )),
        _ => Ok(()),
    }
}

/// A resume must give the members the checkpoint holds: as many, each
/// with the same settings of its own (`Member::text`: its seed, options,
/// schedule, dropout and rows), which the same flags give again.
fn check_same_members(grid: &Grid, resume: Option<&Resume>) -> Result<()> {
    let Some((path, saved)) = resume.and_then(|r| Some((&r.path, r.members.as_ref()?))) else {
        return Ok(());
    };
    let again = "give the run's --members, --folds and lists of settings again";
    let settings = &saved.members.settings;
    if settings.len() != grid.members.len() {
        return Err(format!(
            "--resume {}: the checkpoint holds {} members, the flags make {} ({again})",
            path.display(),
            settings.len(),
            grid.members.len()
        ));
    }
    for (m, (was, member)) in settings.iter().zip(&grid.members).enumerate() {
        let now = member.text();
        if *was != now {
            return Err(format!(
                "--resume {}: member {m} was `{was}`, the flags make it `{now}` ({again})",
                path.display()
            ));
        }
    }
    Ok(())
}

/// The members of the run, at the checkpoint's state on a resume (its
/// steering changes printed), with Ctrl-C and SIGTERM wired to their stop
/// flag.
fn start_members(
    args: &TrainArgs,
    run: ResolvedRun,
    sets: &Sets,
    grid: &Grid,
    resume: Option<&Resume>,
    start: Instant,
) -> Result<Session> {
    train::check_memory(&run, sets.train.rows())?;
    let params = starting_parameters(args, &run, grid, resume)?;
    // From here on there is work to keep.
    let interrupts = Interrupts::install()?;
    let config = run.config.clone().stop_flag(interrupts.stop_flag());
    let model = SavedModel {
        mlp: run.mlp.clone(),
        params: Vec::new(),
        buffers: Vec::new(),
        num_batches_tracked: 0,
        loss: config.loss,
        standardizer: sets.standardizer.clone(),
    };
    let own = grid.members.clone();
    let mut members = match params {
        Some(params) => Members::with_parameters(run.mlp, config, own, params),
        None => Members::new(run.mlp, config, own),
    }
    .map_err(text)?;
    train::note_fallback(members.member(0));
    if let Some(saved) = resume.and_then(|r| r.members.as_ref()) {
        members
            .restore(&saved.checkpoints, &saved.states)
            .map_err(text)?;
        // Each change of the run's settings once, though every member
        // takes it.
        let changes: BTreeSet<String> = (0..members.len())
            .flat_map(|m| resume::change_lines(members.member(m).resume_changes()))
            .collect();
        changes.iter().for_each(|line| eprintln!("{line}"));
    }
    Ok(Session {
        first_steps: total_steps(&members),
        settings: grid.members.iter().map(|m| m.text()).collect(),
        members,
        interrupts,
        model,
        categories: sets.categories.clone(),
        setup_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Each member's parameters to start from: the checkpoint's, or
/// `--init`'s (one network's for every member, or a file of as many
/// members, member by member); `None`: each drawn with its seed.
fn starting_parameters(
    args: &TrainArgs,
    run: &ResolvedRun,
    grid: &Grid,
    resume: Option<&Resume>,
) -> Result<Option<Vec<Vec<f32>>>> {
    if let Some(resume) = resume
        && let Some(saved) = &resume.members
    {
        for member in &saved.members.members {
            train::fits_network("--resume", &resume.path, member, run)?;
        }
        return Ok(Some(
            saved.checkpoints.iter().map(|c| c.params.clone()).collect(),
        ));
    }
    let Some(path) = &args.init else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|e| format!("--init {}: {e}", path.display()))?;
    if !is_members(&bytes, path).map_err(text)? {
        let init = train::init_parameters(args, run)?;
        return Ok(init.map(|params| vec![params; grid.members.len()]));
    }
    // A file of members: member m from its member m.
    let loaded = parse_members(&bytes, path).map_err(text)?;
    if loaded.members.len() != grid.members.len() {
        return Err(format!(
            "--init {}: the file holds {} members, the flags make {}",
            path.display(),
            loaded.members.len(),
            grid.members.len()
        ));
    }
    for member in &loaded.members {
        train::fits_network("--init", path, member, run)?;
    }
    Ok(Some(loaded.members.into_iter().map(|m| m.params).collect()))
}

fn total_steps(members: &Members) -> u64 {
    (0..members.len()).map(|m| members.member(m).steps()).sum()
}

/// Writes a checkpoint of every member, each with where it stands.
fn write_checkpoint(
    path: &Path,
    session_model: &SavedModel,
    settings: &[String],
    optimizer: &Optimizer,
    checkpoints: &[Checkpoint],
    states: &[MemberState],
) -> retroprop::Result<()> {
    let members = SavedMembers {
        model: session_model.clone(),
        params: checkpoints.iter().map(|c| c.params.clone()).collect(),
        settings: settings.to_vec(),
    };
    save_members_checkpoint(path, &members, optimizer, checkpoints, states)
}

/// Trains every member, showing progress and writing each one's metrics
/// and every member's checkpoints as it goes. `None` when a signal came
/// before the first step. A member that diverges stops alone.
fn fit(
    args: &TrainArgs,
    session: &mut Session,
    sets: &Sets,
    grid: &Grid,
    resume: Option<&Resume>,
) -> Result<Option<Outcome>> {
    let config = session.members.member(0).config().clone();
    let bar = progress(
        train::epochs_shown(args, &config, sets.train.rows()),
        args.quiet,
    );
    let resumed_at = resume.and_then(|r| r.members.as_ref()).map(|saved| {
        let at = saved.checkpoints.iter().map(|c| (c.epoch, c.step));
        at.collect::<Vec<_>>()
    });
    let mut metrics = args
        .metrics
        .as_deref()
        .map(|path| MetricsFile::open_members(path, grid.candidate_of_each(), resumed_at))
        .transpose()?;
    let mut metrics_error = None;
    let mlp = session.members.member(0).mlp().clone();
    let mut warnings: Vec<NormWarnings> = grid
        .members
        .iter()
        .map(|_| NormWarnings::new(&mlp))
        .collect();
    let rows: Vec<f64> = grid
        .members
        .iter()
        .map(|m| m.rows.as_ref().map_or(sets.train.rows(), Vec::len) as f64)
        .collect();
    let every = match args.checkpoint {
        Some(_) => args.checkpoint_every.max(1),
        None => 0,
    };
    let (model, settings) = (&session.model, &session.settings);
    let on_checkpoint = |checkpoints: Vec<Checkpoint>, states: &[MemberState]| {
        let path = args
            .checkpoint
            .as_ref()
            .expect("every > 0 only with a path");
        write_checkpoint(
            path,
            model,
            settings,
            &config.optimizer,
            &checkpoints,
            states,
        )
    };
    let history = session.members.fit_checkpointed(
        &sets.train,
        sets.validation.as_ref(),
        |_, m, record| {
            if record.epoch as u64 > bar.position() {
                bar.set_position(record.epoch as u64);
            }
            let done = rows[m] * record.epoch as f64;
            bar.set_message(format!("member {m}: {}", progress_message(record, done)));
            if let Some(file) = &mut metrics
                && let Err(e) = file.record_member(m, record)
                && metrics_error.is_none()
            {
                metrics_error = Some(e);
            }
            for warning in warnings[m].check(&record.layer_norms) {
                bar.suspend(|| eprintln!("warning: member {m}: {warning}"));
            }
        },
        every,
        on_checkpoint,
    );
    bar.finish_and_clear();
    let history = history.map_err(text)?;
    if let Some(e) = metrics_error {
        return Err(e);
    }
    let signal = session.interrupts.received();
    if history.interrupted && total_steps(&session.members) == session.first_steps {
        return Ok(None);
    }
    let mut epochs = metrics
        .as_ref()
        .map_or(Vec::new(), |m| m.earlier_members().to_vec());
    for (m, member) in history.members.iter().enumerate() {
        epochs.extend(member.epochs.iter().map(|r| (m, r.clone())));
    }
    Ok(Some(Outcome {
        history,
        epochs,
        signal,
    }))
}

/// The files that keep the work: the checkpoint where an interrupt or
/// `--steps` stopped members midway, `--save` (the best candidate: its
/// one network's model file, or its members' file, an ensemble),
/// `--save-all` (every member), `--plot`. Returns what each saved file
/// holds, in words.
fn keep_files(
    args: &TrainArgs,
    session: &mut Session,
    grid: &Grid,
    scores: &Scores,
    outcome: &Outcome,
) -> Result<Vec<String>> {
    let history = &outcome.history;
    let run = &mut session.members;
    let cut = history.members.iter().any(|h| h.cut_mid_epoch);
    if (history.interrupted || cut)
        && let Some(path) = &args.checkpoint
    {
        let optimizer = run.member(0).config().optimizer;
        let checkpoints = run.checkpoint().map_err(text)?;
        write_checkpoint(
            path,
            &session.model,
            &session.settings,
            &optimizer,
            &checkpoints,
            run.states(),
        )
        .map_err(text)?;
    }
    let mut saved = Vec::new();
    if let (Some(path), Some(best)) = (&args.save, scores.best) {
        let members = grid.members_of(best);
        let what = match members.as_slice() {
            [m] => {
                save_one(path, session, *m, history.interrupted)?;
                format!("candidate {best}: its one network")
            }
            _ => {
                save_some(path, session, &members)?;
                match grid.folds {
                    Some(folds) if members.len() == folds => {
                        format!("candidate {best}: the ensemble of its {folds} folds")
                    }
                    _ => format!(
                        "candidate {best}: the ensemble of its {} members",
                        members.len()
                    ),
                }
            }
        };
        saved.push(format!("saved {} ({what})", path.display()));
    }
    if let Some(path) = &args.save_all {
        let all: Vec<usize> = (0..grid.members.len()).collect();
        save_some(path, session, &all)?;
        saved.push(format!("saved {} (every member)", path.display()));
    }
    if let Some(path) = &args.plot
        && !outcome.epochs.is_empty()
    {
        let caption = match outcome.epochs.iter().any(|(_, r)| r.validation.is_some()) {
            true => "validation loss per epoch: members thin, candidates' means thick",
            false => "training loss per epoch: members thin, candidates' means thick",
        };
        plot(path, caption, &curves(grid, &outcome.epochs))?;
    }
    Ok(saved)
}

/// Member `m` as a lone run's model file, as its lone run writes it.
fn save_one(path: &Path, session: &mut Session, m: usize, interrupted: bool) -> Result<()> {
    let trainer = session.members.member_mut(m);
    let model = crate::train::trained_model(trainer, &session.model).map_err(text)?;
    let notes = RunNotes {
        interrupted_at_step: interrupted.then(|| trainer.steps()),
        changed_on_resume: trainer.changes().to_vec(),
        precision: Some(trainer.config().precision),
        categories: session.categories.clone(),
    };
    save_noted_model(path, &model, &notes).map_err(text)
}

/// Members `members` as a file of members.
fn save_some(path: &Path, session: &mut Session, members: &[usize]) -> Result<()> {
    let run = &mut session.members;
    let params = members
        .iter()
        .map(|&m| run.member_mut(m).parameters())
        .collect::<retroprop::Result<Vec<_>>>()
        .map_err(text)?;
    let saved = SavedMembers {
        model: session.model.clone(),
        params,
        settings: members
            .iter()
            .map(|&m| session.settings[m].clone())
            .collect(),
    };
    let first = run.member(members[0]);
    let notes = RunNotes {
        interrupted_at_step: None,
        changed_on_resume: first.changes().to_vec(),
        precision: Some(first.config().precision),
        categories: session.categories.clone(),
    };
    save_members(path, &saved, &notes).map_err(text)
}

/// The plot's lines: each member's loss per epoch (validation, else
/// training), thin and faint in its candidate's colour, and each
/// candidate's mean over its members at each epoch, thick, in the legend
/// (the first twelve).
fn curves(grid: &Grid, epochs: &[(usize, EpochRecord)]) -> Vec<Series> {
    let loss = |r: &EpochRecord| r.validation.map_or(r.train_loss, |v| v.loss);
    let mut series = Vec::new();
    for (m, place) in grid.places.iter().enumerate() {
        let points = epochs
            .iter()
            .filter(|(member, _)| *member == m)
            .map(|(_, r)| (r.epoch as f64, loss(r)))
            .collect();
        series.push(Series {
            label: None,
            points,
            color: palette(place.candidate),
            opacity: 0.3,
            width: 1,
        });
    }
    for c in 0..grid.candidates.len() {
        let mut sums = std::collections::BTreeMap::<usize, (f64, usize)>::new();
        for (m, r) in epochs {
            if grid.places[*m].candidate == c {
                let (sum, count) = sums.entry(r.epoch).or_default();
                *sum += loss(r);
                *count += 1;
            }
        }
        let points = sums
            .into_iter()
            .map(|(epoch, (sum, count))| (epoch as f64, sum / count as f64))
            .collect();
        series.push(Series {
            label: (c < 12).then(|| format!("{c}: {}", summary::settings_text(grid, c))),
            points,
            color: palette(c),
            opacity: 1.0,
            width: 2,
        });
    }
    series
}

/// What the program prints at the end, before the files and the signal:
/// the run in a line, the table of candidates with the best, the table of
/// members.
fn summary(
    session: &Session,
    sets: &Sets,
    grid: &Grid,
    scores: &Scores,
    outcome: &Outcome,
    start: Instant,
) -> String {
    let run = &session.members;
    let history = &outcome.history;
    let trainer = run.member(0);
    let epochs = history.members.iter().map(|h| h.epochs.len()).max();
    let mut shape = vec![counted(grid.candidates.len(), "candidate")];
    if let Some(seeds) = &grid.seeds {
        shape.push(counted(seeds.len(), "seed"));
    }
    if let Some(folds) = grid.folds {
        shape.push(counted(folds, "fold"));
    }
    let chosen = sets
        .chosen_because
        .as_ref()
        .map_or(String::new(), |why| format!(" (chosen: {why})"));
    let mut out = format!(
        "trained {} on {} ({} rows): {} members ({}), {} epochs, {} steps in {:.1} s \
         (setup {:.1} s); loss {}{chosen}\n",
        trainer.mlp().describe(),
        run.device_name(),
        sets.train.rows(),
        run.len(),
        shape.join(" × "),
        epochs.unwrap_or(0),
        total_steps(run) - session.first_steps,
        start.elapsed().as_secs_f64(),
        session.setup_seconds,
        trainer.config().loss,
    );
    out += &summary::candidates_table(grid, scores);
    out += "\n";
    out += &summary::members_table(run, grid, scores, history);
    out
}

/// What the signal did, when one came: where to continue from.
fn signal_line(args: &TrainArgs, outcome: &Outcome) -> Option<String> {
    let signal = outcome.signal?;
    Some(match (outcome.history.interrupted, &args.checkpoint) {
        (true, Some(path)) => format!(
            "interrupted by {} (continue with --resume {})",
            signal.name(),
            path.display()
        ),
        (true, None) => format!("interrupted by {}", signal.name()),
        (false, _) => format!("{} came after the last step", signal.name()),
    })
}

/// "1 candidate", "3 candidates".
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
