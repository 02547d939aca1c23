//! A run's settings, decided in one place for every front: what the
//! front was given ([`RunRequest`]), what a checkpoint holds, the front's
//! own defaults and the library's. The program, the Python package and
//! the page call [`RunRequest::resolve`], so the same resume gives the
//! same answer everywhere: which saved value a setting left out takes,
//! which differences the saved state cannot carry (refused, each named
//! with both values), and which only steer the rest of the run (listed,
//! and recorded in the run's metadata by [`Trainer::restore`]).
//!
//! ```
//! use retroprop::train::{RunRequest, Saved};
//! use retroprop::{Checkpoint, Loss, TrainConfig};
//! # use retroprop::{Activation, Mlp};
//! # let mlp = Mlp::new(&[2, 8, 3], Activation::Relu, Activation::Identity)?;
//! # let settings = TrainConfig::default().loss(Loss::CrossEntropy).settings(&mlp);
//! # let checkpoint = Checkpoint { settings: Some(settings), epoch: 4, ..Checkpoint::default() };
//! // A resume that names only a new learning rate and more epochs.
//! let given = RunRequest {
//!     optimizer_options: vec![("lr".into(), "0.0005".into())],
//!     epochs: Some(10),
//!     ..RunRequest::default()
//! };
//! let saved = Saved { checkpoint: &checkpoint, standardized: false, optimizer_name: "adam" };
//! let run = given.resolve(&RunRequest::default(), Some(saved))?;
//! assert_eq!(run.mlp.sizes(), [2, 8, 3]); // the checkpoint's network
//! assert_eq!(run.config.loss, Loss::CrossEntropy);
//! assert_eq!(run.config.epochs, 6); // epochs count from the run's start
//! assert!(run.refused.is_empty());
//! assert_eq!(run.steering[0].to_string(), "lr 0.001 -> 0.0005");
//! # Ok::<(), retroprop::Error>(())
//! ```
//!
//! [`Trainer::restore`]: super::Trainer::restore

use super::config::{Device, DropoutRates, TrainConfig};
use crate::activation::Activation;
use crate::checkpoint::{Checkpoint, EarlyStopping, RunSettings, SettingChange, ValidationSplit};
use crate::data::ShuffleWindow;
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::{EnsembleMean, Init, Mlp, Tabm};
use crate::optim::{Adam, Optimizer};
use crate::real::Precision;
use crate::schedule::LrSchedule;

/// What a front was given for a run, each setting `None` where nothing
/// was said (then the checkpoint's value stands, else the front's
/// default, else the library's). Settings by their library names, which
/// are the Python keywords and, with dashes, the program's flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRequest {
    /// Every layer size, inputs first.
    pub sizes: Option<Vec<usize>>,
    /// One activation for every hidden layer (the output layer identity),
    /// or a comma list with one a layer.
    pub activations: Option<String>,
    /// Residual blocks: the network made residual at the width of the
    /// sizes' one hidden layer ([`Mlp::residual`]). Left out on a resume,
    /// the checkpoint's residual network stands, unless sizes are given.
    pub blocks: Option<Blocks>,
    /// TabM over the network of the sizes ([`Mlp::tabm`]): its members
    /// and architecture; its mean follows the loss ([`EnsembleMean::of`]).
    pub tabm: Option<Tabm>,
    /// The loss.
    pub loss: Option<Loss>,
    /// The optimizer, with the options its text names.
    pub optimizer: Option<Optimizer>,
    /// Options set over the optimizer, by torch's names, as text
    /// (`("lr", "0.01")`, `("betas", "0.9/0.99")`); a front's defaults
    /// set none (a default optimizer's text names its options).
    pub optimizer_options: Vec<(String, String)>,
    /// The learning-rate schedule.
    pub lr_schedule: Option<LrSchedule>,
    /// Rows a step; `Some(None)`: the whole data set.
    pub batch_size: Option<Option<usize>>,
    /// Whether each epoch visits the rows in a new seeded order.
    pub shuffle: Option<bool>,
    /// How far the shuffle moves a row.
    pub shuffle_window: Option<ShuffleWindow>,
    /// The seed of the initialisation, shuffles, dropout and the split.
    pub seed: Option<u64>,
    /// How a fresh run draws its parameters (not compared on resume:
    /// the parameters are the checkpoint's).
    pub init: Option<Init>,
    /// Gradient clipping by global norm.
    pub clip_grad_norm: Option<f64>,
    /// Gradient clipping by value.
    pub clip_grad_value: Option<f64>,
    /// Dropout after every hidden layer.
    pub dropout: Option<f32>,
    /// Early stopping's patience, in epochs.
    pub early_stopping: Option<usize>,
    /// Early stopping's least improvement.
    pub min_delta: Option<f64>,
    /// The fraction of the training rows held out for validation;
    /// `Some(None)`: none (validation data of its own, or none).
    pub validation_split: Option<Option<f64>>,
    /// Whether inputs are scaled by the training rows' mean and deviation.
    pub standardize: Option<bool>,
    /// The precision of the matrix products.
    pub precision: Option<Precision>,
    /// Epochs, counted from the run's start (each invocation's own).
    pub epochs: Option<usize>,
    /// Optimizer steps, counted from the run's start (each invocation's
    /// own).
    pub max_steps: Option<u64>,
    /// The device (each invocation's own).
    pub device: Option<Device>,
    /// Sample per-layer norms every this many steps (each invocation's
    /// own).
    pub norms_every: Option<u64>,
}

/// Residual blocks over a network of one hidden size (the model's).
pub use crate::model::Blocks;

/// The run a checkpoint holds, as [`RunRequest::resolve`] reads it.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a> {
    /// The checkpoint.
    pub checkpoint: &'a Checkpoint,
    /// Whether the run scaled its inputs (the checkpoint's model holds a
    /// standardisation).
    pub standardized: bool,
    /// The optimizer's name in the file (all a checkpoint written before
    /// settings were recorded says of its run).
    pub optimizer_name: &'a str,
}

/// A run's settings, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedRun {
    /// The network.
    pub mlp: Mlp,
    /// Every setting, the bounds of this invocation among them:
    /// `epochs` is what is left of the run's epochs after the
    /// checkpoint's.
    pub config: TrainConfig,
    /// Whether inputs are scaled by the training rows' mean and deviation.
    pub standardize: bool,
    /// The differences from the checkpoint its state cannot carry: the
    /// resume is refused ([`refusal`](Self::refusal)).
    pub refused: Vec<SettingChange>,
    /// The differences from the checkpoint that only steer the rest of
    /// the run: taken, and recorded on restore.
    pub steering: Vec<SettingChange>,
    /// The checkpoint was written before settings were recorded: the
    /// settings given and the defaults stand, unchecked.
    pub unchecked: bool,
}

impl ResolvedRun {
    /// The refusal of the resume, naming every difference its state
    /// cannot carry with its two values; `None` when there is none.
    pub fn refusal(&self) -> Option<Error> {
        refusal(&self.refused)
    }
}

/// The refusal of a resume with `refused`, as every front words it.
pub fn refusal(refused: &[SettingChange]) -> Option<Error> {
    if refused.is_empty() {
        return None;
    }
    let named: Vec<String> = refused
        .iter()
        .map(|c| format!("{} {}, not {}", c.setting, c.from, c.to))
        .collect();
    Some(Error::Config(format!(
        "the checkpoint's run was written with {} (its saved state cannot carry {}; leave {} \
         out to continue the run, or start a new run from its parameters)",
        named.join("; with "),
        if refused.len() == 1 {
            "another"
        } else {
            "others"
        },
        if refused.len() == 1 { "it" } else { "them" },
    )))
}

/// `given`, else `saved`, else `default`.
fn pick<T>(given: Option<T>, saved: Option<T>, default: Option<T>) -> Option<T> {
    given.or(saved).or(default)
}

impl RunRequest {
    /// The settings of the run: each one given here, else the
    /// checkpoint's (`saved`), else `defaults`' (a front's own, such as
    /// the program's split of its bundled data set), else the library's
    /// ([`TrainConfig::default`]). With a checkpoint, every difference is
    /// sorted into [`ResolvedRun::refused`] and
    /// [`ResolvedRun::steering`] (see [`RunSettings::changes`]); a
    /// different standardisation is refused too.
    ///
    /// # Errors
    /// A setting that does not parse or fits no network (activations, an
    /// optimizer option the optimizer lacks, no layer sizes anywhere).
    pub fn resolve(&self, defaults: &RunRequest, saved: Option<Saved<'_>>) -> Result<ResolvedRun> {
        let settings = saved.and_then(|s| s.checkpoint.settings.as_ref());
        let mlp = self.network(defaults, settings)?;
        let optimizer = self.optimizer(defaults, settings)?;
        if let Some(s) = saved
            && settings.is_none()
            && s.optimizer_name != optimizer.name()
        {
            return Err(Error::Config(format!(
                "the checkpoint was written with optimizer {}, not {}",
                s.optimizer_name,
                optimizer.name()
            )));
        }
        let mut config = self.config(defaults, settings, optimizer);
        // TabM as asked for, else the checkpoint's where nothing is said
        // of the network.
        let saved_tabm = settings
            .and_then(|s| s.tabm.as_ref())
            .filter(|_| self.sizes.is_none() && self.blocks.is_none());
        let mlp = match self.tabm.as_ref().or(saved_tabm) {
            Some(spec) => {
                let mean = EnsembleMean::of(config.loss);
                Mlp::tabm(
                    &mlp,
                    Tabm {
                        mean,
                        ..spec.clone()
                    },
                )?
            }
            None => mlp,
        };
        if let Some(s) = saved {
            // Epochs count from the start of the run.
            config.epochs = config.epochs.saturating_sub(s.checkpoint.epoch as usize);
        }
        let saved_standardized = saved.filter(|_| settings.is_some()).map(|s| s.standardized);
        let standardize =
            pick(self.standardize, saved_standardized, defaults.standardize).unwrap_or(false);
        let mut changes = settings.map_or(Vec::new(), |s| s.changes(&config.settings(&mlp)));
        if let Some(was) = saved_standardized
            && was != standardize
        {
            changes.push(SettingChange {
                setting: "standardize",
                from: was.to_string(),
                to: standardize.to_string(),
                refused: true,
            });
        }
        let (refused, steering) = changes.into_iter().partition(|c| c.refused);
        Ok(ResolvedRun {
            mlp,
            config,
            standardize,
            refused,
            steering,
            unchecked: saved.is_some() && settings.is_none(),
        })
    }

    /// The network: sizes and activations, made residual by the blocks
    /// asked for, or the checkpoint's residual network where nothing is
    /// said of sizes or blocks.
    fn network(&self, defaults: &RunRequest, saved: Option<&RunSettings>) -> Result<Mlp> {
        let saved_residual = saved.and_then(|s| s.residual);
        if let (None, None, Some(spec)) = (&self.sizes, self.blocks, saved_residual) {
            return Mlp::residual(spec);
        }
        let plain = self.plain_network(defaults, saved)?;
        match self.blocks {
            Some(blocks) => blocks.apply(&plain),
            None => Ok(plain),
        }
    }

    /// The network of the sizes and activations given, saved or by
    /// default: a residual checkpoint's sizes are its `inputs, width,
    /// outputs`.
    fn plain_network(&self, defaults: &RunRequest, saved: Option<&RunSettings>) -> Result<Mlp> {
        let saved_sizes = saved.map(|s| match s.residual {
            Some(r) => vec![r.inputs, r.width, r.outputs],
            None => s.sizes.clone(),
        });
        let sizes = pick(self.sizes.clone(), saved_sizes, defaults.sizes.clone())
            .ok_or_else(|| Error::Config("the network's layer sizes are needed".into()))?;
        let layers = sizes.len().saturating_sub(1);
        let parse = |text: &str| {
            Activation::parse_list(text, layers).map_err(|message| Error::Setting {
                setting: "activations",
                message,
            })
        };
        let activations = match (&self.activations, saved, &defaults.activations) {
            (Some(text), _, _) => parse(text)?,
            (None, Some(s), _) if s.residual.is_some() && layers == 2 => {
                let hidden = s.residual.map_or(Activation::Relu, |r| r.activation);
                vec![hidden, Activation::Identity]
            }
            (None, Some(s), _) if s.activations.len() == layers => s.activations.clone(),
            (None, _, Some(text)) => parse(text)?,
            (None, _, None) => parse("relu")?,
        };
        Mlp::with_activations(&sizes, &activations)
    }
}

impl RunRequest {
    /// The optimizer named (else the checkpoint's, else the default's,
    /// else Adam) with the options given set over it, checked.
    fn optimizer(&self, defaults: &RunRequest, saved: Option<&RunSettings>) -> Result<Optimizer> {
        let mut optimizer = pick(
            self.optimizer,
            saved.map(|s| s.optimizer),
            defaults.optimizer,
        )
        .unwrap_or(Adam::default().into());
        for (option, value) in &self.optimizer_options {
            optimizer.set_option(option, value)?;
        }
        optimizer.validate()?;
        Ok(optimizer)
    }

    /// Every other setting, by the same rule.
    fn config(
        &self,
        defaults: &RunRequest,
        saved: Option<&RunSettings>,
        optimizer: Optimizer,
    ) -> TrainConfig {
        let library = TrainConfig::default();
        let seed = pick(self.seed, saved.map(|s| s.seed), defaults.seed).unwrap_or(library.seed);
        let saved_rule = saved.and_then(|s| s.early_stopping);
        let patience = pick(
            self.early_stopping,
            saved_rule.map(|e| e.patience),
            defaults.early_stopping,
        );
        let min_delta = pick(
            self.min_delta,
            saved_rule.map(|e| e.min_delta),
            defaults.min_delta,
        )
        .unwrap_or(0.0);
        let saved_split = saved.map(|s| s.validation_split.map(|v| v.fraction));
        // The held-out rows are the run's first: a seed changed on resume
        // does not move rows between the sets.
        let split_seed = saved
            .and_then(|s| s.validation_split)
            .map_or(seed, |v| v.seed);
        let validation_split = pick(
            self.validation_split,
            saved_split,
            defaults.validation_split,
        )
        .flatten()
        .map(|fraction| ValidationSplit {
            fraction,
            seed: split_seed,
        });
        let dropout = match (self.dropout, saved, defaults.dropout) {
            (Some(p), _, _) => DropoutRates::Hidden(p),
            (None, Some(s), _) if s.dropout.iter().any(|&p| p > 0.0) => {
                DropoutRates::PerLayer(s.dropout.clone())
            }
            (None, Some(_), _) => DropoutRates::Off,
            (None, None, Some(p)) => DropoutRates::Hidden(p),
            (None, None, None) => DropoutRates::Off,
        };
        TrainConfig {
            loss: pick(self.loss, saved.map(|s| s.loss), defaults.loss).unwrap_or(library.loss),
            optimizer,
            batch_size: pick(
                self.batch_size,
                saved.map(|s| s.batch_size),
                defaults.batch_size,
            )
            .unwrap_or(library.batch_size),
            epochs: pick(self.epochs, None, defaults.epochs).unwrap_or(library.epochs),
            max_steps: pick(self.max_steps, None, defaults.max_steps),
            shuffle: pick(self.shuffle, saved.map(|s| s.shuffle), defaults.shuffle)
                .unwrap_or(library.shuffle),
            shuffle_window: pick(
                self.shuffle_window,
                saved.map(|s| s.shuffle_window),
                defaults.shuffle_window,
            )
            .unwrap_or(library.shuffle_window),
            seed,
            init: pick(self.init, None, defaults.init).unwrap_or(library.init),
            device: pick(self.device, None, defaults.device).unwrap_or(library.device),
            lr_schedule: pick(
                self.lr_schedule,
                saved.map(|s| s.lr_schedule),
                defaults.lr_schedule,
            )
            .unwrap_or(library.lr_schedule),
            early_stopping: patience.map(|patience| EarlyStopping {
                patience,
                min_delta,
            }),
            grad_clip: crate::optim::GradClip {
                max_norm: pick(
                    self.clip_grad_norm,
                    saved.and_then(|s| s.grad_clip.max_norm),
                    defaults.clip_grad_norm,
                ),
                max_value: pick(
                    self.clip_grad_value,
                    saved.and_then(|s| s.grad_clip.max_value),
                    defaults.clip_grad_value,
                ),
            },
            norms_every: pick(self.norms_every, None, defaults.norms_every),
            dropout,
            validation_split,
            precision: pick(
                self.precision,
                saved.map(|s| s.precision),
                defaults.precision,
            )
            .unwrap_or(library.precision),
            ..library
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Sgd;

    fn checkpoint(settings: RunSettings) -> Checkpoint {
        Checkpoint {
            settings: Some(settings),
            epoch: 2,
            ..Checkpoint::default()
        }
    }

    fn sgd_run() -> (Mlp, TrainConfig) {
        let mlp = Mlp::new(&[2, 8, 3], Activation::Tanh, Activation::Identity).unwrap();
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Sgd::default().lr(0.1).momentum(0.9))
            .batch_size(16)
            .seed(3)
            .dropout(0.25)
            .early_stopping(4, 0.01)
            .clip_grad_norm(2.0);
        (mlp, config)
    }

    fn saved(c: &Checkpoint) -> Saved<'_> {
        Saved {
            checkpoint: c,
            standardized: true,
            optimizer_name: "sgd",
        }
    }

    #[test]
    fn a_resume_naming_nothing_is_the_saved_run() {
        let (mlp, config) = sgd_run();
        let c = checkpoint(config.settings(&mlp));
        let run = RunRequest::default()
            .resolve(&RunRequest::default(), Some(saved(&c)))
            .unwrap();
        assert_eq!(run.config.settings(&run.mlp), config.settings(&mlp));
        assert!(run.standardize, "the saved run standardised");
        assert!(run.refused.is_empty() && run.steering.is_empty());
        assert_eq!(run.config.epochs, TrainConfig::default().epochs - 2);
    }

    #[test]
    fn defaults_stand_only_where_neither_the_front_nor_the_checkpoint_says() {
        let (mlp, config) = sgd_run();
        let c = checkpoint(config.settings(&mlp));
        let defaults = RunRequest {
            sizes: Some(vec![2, 64, 3]),
            validation_split: Some(Some(0.2)),
            seed: Some(9),
            epochs: Some(20),
            ..RunRequest::default()
        };
        let run = RunRequest::default()
            .resolve(&defaults, Some(saved(&c)))
            .unwrap();
        assert_eq!(run.mlp.sizes(), [2, 8, 3]);
        assert_eq!(run.config.validation_split, None, "the saved run had none");
        assert_eq!(run.config.seed, 3);
        assert_eq!(run.config.epochs, 18, "bounds are each invocation's");
        let fresh = RunRequest::default().resolve(&defaults, None).unwrap();
        assert_eq!(fresh.mlp.sizes(), [2, 64, 3]);
        assert_eq!(
            fresh.config.validation_split,
            Some(ValidationSplit {
                fraction: 0.2,
                seed: 9
            })
        );
    }

    #[test]
    fn each_difference_is_refused_or_steers_by_what_the_state_can_carry() {
        let (mlp, config) = sgd_run();
        let c = checkpoint(config.settings(&mlp));
        let given = RunRequest {
            activations: Some("sigmoid".into()),
            optimizer_options: vec![
                ("lr".into(), "0.05".into()),
                ("momentum".into(), "0".into()),
            ],
            seed: Some(7),
            standardize: Some(false),
            ..RunRequest::default()
        };
        let run = given
            .resolve(&RunRequest::default(), Some(saved(&c)))
            .unwrap();
        let refused: Vec<String> = run.refused.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            refused,
            [
                "activations tanh,identity -> sigmoid,identity",
                "momentum 0.9 -> 0",
                "standardize true -> false"
            ]
        );
        let steering: Vec<String> = run.steering.iter().map(|c| c.to_string()).collect();
        assert_eq!(steering, ["lr 0.1 -> 0.05", "seed 3 -> 7"]);
        let message = run.refusal().unwrap().to_string();
        assert!(
            message.contains("activations tanh,identity, not sigmoid,identity")
                && message.contains("momentum 0.9, not 0")
                && message.contains("standardize true, not false"),
            "{message}"
        );
    }

    #[test]
    fn a_checkpoint_without_settings_checks_only_its_optimizers_name() {
        let c = Checkpoint::default();
        let old = Saved {
            checkpoint: &c,
            standardized: false,
            optimizer_name: "sgd",
        };
        let given = RunRequest {
            sizes: Some(vec![2, 3]),
            ..RunRequest::default()
        };
        let error = given
            .resolve(&RunRequest::default(), Some(old))
            .unwrap_err();
        assert!(
            error.to_string().contains("optimizer sgd, not adam"),
            "{error}"
        );
        let given = RunRequest {
            optimizer: Some(Sgd::default().into()),
            ..given
        };
        let run = given.resolve(&RunRequest::default(), Some(old)).unwrap();
        assert!(run.unchecked && run.refused.is_empty());
    }
}
