//! A run's settings from the flags: what the user named (`RunRequest`),
//! the program's defaults, resolved by the library with a checkpoint's
//! (`--blocks` making the network residual); errors by their flag.

use crate::cli::{TrainArgs, parse_arch};
use crate::ranks::Ranks;
use crate::resume;
use crate::train::{DataShape, Result, Resume, describe, join, text};
use retroprop::NormKind;
use retroprop::io::load_model;
use retroprop::train::{Blocks, ResolvedRun, RunRequest};

/// What the flags say, each setting `None` where no flag was given.
fn request(args: &TrainArgs) -> Result<RunRequest> {
    Ok(RunRequest {
        sizes: args.arch.as_deref().map(parse_arch).transpose()?,
        activations: args.activations.clone(),
        blocks: blocks(args)?,
        tabm: retroprop::model::Tabm::parse_model(&args.model)
            .map_err(|e| format!("--model: {e}"))?,
        loss: args.loss,
        optimizer: args.optimizer,
        optimizer_options: args
            .optimizer_options()
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect(),
        lr_schedule: args.lr_schedule.as_ref().and_then(|v| v.single()).copied(),
        batch_size: args.batch_size.map(|rows| (rows > 0).then_some(rows)),
        shuffle: args.no_shuffle.then_some(false),
        shuffle_window: args.shuffle_window,
        // A list's first seeds what the run shares: the split, the folds.
        seed: args.seed.as_ref().and_then(|v| v.0.first()).copied(),
        init: Some(args.weight_init),
        clip_grad_norm: args.clip_grad_norm,
        clip_grad_value: args.clip_grad_value,
        dropout: args.dropout.as_ref().and_then(|v| v.single()).copied(),
        early_stopping: args.early_stopping,
        min_delta: args.min_delta,
        // Validation data of its own holds out nothing.
        validation_split: match (&args.val, args.val_split) {
            (Some(_), _) => Some(None),
            (None, fraction) => fraction.map(Some),
        },
        standardize: args.standardize.then_some(true),
        precision: args.precision,
        epochs: args.epochs,
        max_steps: args.steps,
        device: Some(args.device),
        norms_every: args.norms_every,
    })
}

/// The program's own defaults, where neither a flag nor the checkpoint
/// says: the network `FEATURES,64,OUTPUTS` (or `--init`'s), the loss the
/// targets suggest, 20 epochs (no bound with `--steps`), and for the
/// bundled digits standardisation (they are pixel counts 0..16) and,
/// without `--folds`, a 20 % validation split.
fn program_defaults(args: &TrainArgs, data: &DataShape) -> Result<RunRequest> {
    let init = args
        .init
        .as_deref()
        .map(load_model)
        .transpose()
        .map_err(text)?;
    let bundled = args.data.is_none();
    Ok(RunRequest {
        // A residual file's network is its blocks over `inputs,width,outputs`.
        sizes: Some(init.as_ref().map_or_else(
            || vec![data.features, 64, data.outputs],
            |m| {
                m.residual
                    .map_or_else(|| m.sizes.clone(), |r| vec![r.inputs, r.width, r.outputs])
            },
        )),
        activations: init
            .and_then(|m| match m.residual {
                Some(r) => Some(vec![r.activation, retroprop::Activation::Identity]),
                None => m.activations,
            })
            .map(|a| join(&a))
            .filter(|_| args.arch.is_none()),
        loss: Some(data.loss),
        epochs: Some(if args.steps.is_some() { usize::MAX } else { 20 }),
        validation_split: (bundled && args.folds.is_none()).then_some(Some(0.2)),
        standardize: bundled.then_some(true),
        ..RunRequest::default()
    })
}

/// The run's settings, resolved by the library from the flags, the
/// checkpoint and the program's defaults; a resume that changes what
/// its state cannot carry is refused here, naming each flag.
pub(crate) fn resolve_settings(
    args: &TrainArgs,
    data: &DataShape,
    resume: Option<&Resume>,
    ranks: &Ranks,
) -> Result<ResolvedRun> {
    let defaults = program_defaults(args, data)?;
    let run = request(args)?
        .resolve(&defaults, resume.map(Resume::saved))
        .map_err(flag_error)?;
    if let Some(resume) = resume {
        if let Some(refused) = resume::refusal(&resume.path, &run.refused) {
            return Err(refused);
        }
        if run.unchecked && ranks.writes() {
            eprintln!(
                "note: {} was written before checkpoints recorded their run's settings: the \
                 flags given and the defaults stand, unchecked, and early stopping counts again",
                resume.path.display()
            );
        }
    }
    let features = data.features;
    let sizes = run.mlp.sizes();
    if sizes[0] != features {
        return Err(format!(
            "--arch starts with {} inputs, but {} has {features} feature columns",
            sizes[0],
            describe(args.data.as_deref())
        ));
    }
    Ok(run)
}

/// `--blocks N --norm … --block-multiplier M`: the run's network made
/// residual (`Mlp::residual`) at the width of `--arch`'s one hidden size.
fn blocks(args: &TrainArgs) -> Result<Option<Blocks>> {
    let Some(blocks) = args.blocks else {
        for (given, flag) in [
            (args.norm.is_some(), "--norm"),
            (args.block_multiplier.is_some(), "--block-multiplier"),
        ] {
            if given {
                return Err(format!("{flag} needs --blocks (it shapes residual blocks)"));
            }
        }
        return Ok(None);
    };
    let defaults = Blocks::new(blocks);
    let norm = match args.norm.as_deref() {
        Some(text) => NormKind::parse_option(text).map_err(|e| format!("--norm {e}"))?,
        None => defaults.norm,
    };
    Ok(Some(Blocks {
        norm,
        multiplier: args.block_multiplier.unwrap_or(defaults.multiplier),
        ..defaults
    }))
}

/// A resolution error in the program's words: a setting by its flag.
pub(crate) fn flag_error(error: retroprop::Error) -> String {
    match error {
        retroprop::Error::UnknownOption {
            optimizer,
            option,
            owners,
            ..
        } => format!(
            "{} does not apply to --optimizer {optimizer} (only to {})",
            resume::flag(&option),
            owners.join(", ")
        ),
        retroprop::Error::Setting { setting, message } => {
            format!("{} {message}", resume::flag(setting))
        }
        e @ (retroprop::Error::ZeroSizedLayer { .. } | retroprop::Error::Shape { .. }) => {
            format!("--arch: {e}")
        }
        e => e.to_string(),
    }
}
