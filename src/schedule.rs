//! Learning-rate schedules with the semantics of `torch.optim.lr_scheduler`,
//! stepped once per epoch as torch's examples do (`scheduler.step()` after
//! each epoch): the learning rate of epoch e (0-based) is a function of e
//! and, for reduce-on-plateau, of the metric seen so far.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A learning-rate schedule; `base` below is the optimizer's `lr`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LrSchedule {
    /// lr = base.
    #[default]
    Constant,
    /// `StepLR`: lr = base · γ^⌊e / step_size⌋.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// `ExponentialLR`: lr = base · γ^e.
    Exponential {
        /// Decay factor per epoch.
        gamma: f64,
    },
    /// `CosineAnnealingLR` (closed form):
    /// lr = η_min + (base − η_min) (1 + cos(π e / T_max)) / 2.
    Cosine {
        /// Half period, in epochs.
        t_max: usize,
        /// Lowest learning rate.
        eta_min: f64,
    },
    /// `LinearLR`, used as a linear warm-up: the factor goes from
    /// `start_factor` to 1 over `total_iters` epochs, then stays at 1.
    Warmup {
        /// Factor at epoch 0 (torch's default 1/3).
        start_factor: f64,
        /// Epochs to reach the full learning rate (torch's default 5).
        total_iters: usize,
    },
    /// `ReduceLROnPlateau` (mode `min`, relative threshold): multiply the
    /// learning rate by `factor` when the validation loss (the training loss
    /// without validation data) has not improved by more than `threshold`
    /// (relative) for more than `patience` epochs.
    Plateau {
        /// Multiplier on a plateau (torch's default 0.1).
        factor: f64,
        /// Epochs without improvement tolerated (default 10).
        patience: usize,
        /// Relative improvement that counts (default 1e-4).
        threshold: f64,
        /// Epochs to wait after a reduction (default 0).
        cooldown: usize,
        /// Lower bound on the learning rate (default 0).
        min_lr: f64,
    },
}

impl LrSchedule {
    /// `ReduceLROnPlateau` with torch's defaults.
    pub const PLATEAU: LrSchedule = LrSchedule::Plateau {
        factor: 0.1,
        patience: 10,
        threshold: 1e-4,
        cooldown: 0,
        min_lr: 0.0,
    };

    /// Checks the schedule's numbers, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |name, value: f64, reason| {
            Err(Error::Hyperparameter {
                name,
                value,
                reason,
            })
        };
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { step_size, gamma } => {
                if step_size == 0 {
                    return bad("step_size", 0.0, "must be at least 1");
                }
                if !(gamma > 0.0 && gamma.is_finite()) {
                    return bad("gamma", gamma, "must be a positive number");
                }
                Ok(())
            }
            LrSchedule::Exponential { gamma } if !(gamma > 0.0 && gamma.is_finite()) => {
                bad("gamma", gamma, "must be a positive number")
            }
            LrSchedule::Exponential { .. } => Ok(()),
            LrSchedule::Cosine { t_max, eta_min } => {
                if t_max == 0 {
                    return bad("T_max", 0.0, "must be at least 1");
                }
                if !(eta_min >= 0.0 && eta_min.is_finite()) {
                    return bad("eta_min", eta_min, "must be ≥ 0");
                }
                Ok(())
            }
            LrSchedule::Warmup {
                start_factor,
                total_iters,
            } => {
                if !(start_factor > 0.0 && start_factor <= 1.0) {
                    return bad("start_factor", start_factor, "must be in (0, 1]");
                }
                if total_iters == 0 {
                    return bad("total_iters", 0.0, "must be at least 1");
                }
                Ok(())
            }
            LrSchedule::Plateau {
                factor,
                threshold,
                min_lr,
                ..
            } => {
                if !(factor > 0.0 && factor < 1.0) {
                    return bad("factor", factor, "must be in (0, 1)");
                }
                if !(threshold >= 0.0 && threshold.is_finite()) {
                    return bad("threshold", threshold, "must be ≥ 0");
                }
                if !(min_lr >= 0.0 && min_lr.is_finite()) {
                    return bad("min_lr", min_lr, "must be ≥ 0");
                }
                Ok(())
            }
        }
    }

    /// The learning rate of epoch `epoch` (0-based) for the stateless
    /// schedules; `Plateau` and `Constant` give `base` (see [`Scheduler`]).
    pub fn lr(&self, base: f64, epoch: usize) -> f64 {
        let e = epoch as f64;
        match *self {
            LrSchedule::Constant | LrSchedule::Plateau { .. } => base,
            LrSchedule::Step { step_size, gamma } => base * gamma.powi((epoch / step_size) as i32),
            LrSchedule::Exponential { gamma } => base * gamma.powf(e),
            LrSchedule::Cosine { t_max, eta_min } => {
                eta_min
                    + (base - eta_min) * (1.0 + (std::f64::consts::PI * e / t_max as f64).cos())
                        / 2.0
            }
            LrSchedule::Warmup {
                start_factor,
                total_iters,
            } => {
                let done = (epoch.min(total_iters)) as f64 / total_iters as f64;
                base * (start_factor + (1.0 - start_factor) * done)
            }
        }
    }
}

impl FromStr for LrSchedule {
    type Err = String;

    /// `constant`, `step:STEP_SIZE[:GAMMA]`, `exponential:GAMMA`,
    /// `cosine:T_MAX[:ETA_MIN]`, `warmup:EPOCHS[:START_FACTOR]`,
    /// `plateau[:FACTOR[:PATIENCE[:THRESHOLD[:COOLDOWN[:MIN_LR]]]]]`
    /// (what is left out takes torch's default); what `Display` writes.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut parts = text.trim().split(':');
        let kind = parts.next().unwrap_or_default();
        let args: Vec<&str> = parts.collect();
        let num = |i: usize, what: &str| -> std::result::Result<Option<f64>, String> {
            args.get(i)
                .map(|a| {
                    a.parse::<f64>()
                        .map_err(|_| format!("lr schedule `{text}`: {what} `{a}` is not a number"))
                })
                .transpose()
        };
        let count = |i: usize, what: &str| -> std::result::Result<Option<usize>, String> {
            args.get(i)
                .map(|a| {
                    a.parse::<usize>().map_err(|_| {
                        format!("lr schedule `{text}`: {what} `{a}` is not a whole number")
                    })
                })
                .transpose()
        };
        let need =
            |v: Option<usize>, what: &str| v.ok_or(format!("lr schedule `{text}` needs {what}"));
        let schedule = match kind {
            "constant" => LrSchedule::Constant,
            "step" => LrSchedule::Step {
                step_size: need(count(0, "step size")?, "a step size, e.g. step:10:0.5")?,
                gamma: num(1, "gamma")?.unwrap_or(0.1),
            },
            "exponential" => LrSchedule::Exponential {
                gamma: num(0, "gamma")?.ok_or(format!(
                    "lr schedule `{text}` needs gamma, e.g. exponential:0.95"
                ))?,
            },
            "cosine" => LrSchedule::Cosine {
                t_max: need(count(0, "T_max")?, "T_max, e.g. cosine:50")?,
                eta_min: num(1, "eta_min")?.unwrap_or(0.0),
            },
            "warmup" => LrSchedule::Warmup {
                total_iters: need(count(0, "epochs")?, "the warm-up epochs, e.g. warmup:5")?,
                start_factor: num(1, "start factor")?.unwrap_or(1.0 / 3.0),
            },
            "plateau" => {
                let LrSchedule::Plateau {
                    factor,
                    patience,
                    threshold,
                    cooldown,
                    min_lr,
                } = LrSchedule::PLATEAU
                else {
                    unreachable!()
                };
                LrSchedule::Plateau {
                    factor: num(0, "factor")?.unwrap_or(factor),
                    patience: count(1, "patience")?.unwrap_or(patience),
                    threshold: num(2, "threshold")?.unwrap_or(threshold),
                    cooldown: count(3, "cooldown")?.unwrap_or(cooldown),
                    min_lr: num(4, "min_lr")?.unwrap_or(min_lr),
                }
            }
            _ => {
                return Err(format!(
                    "unknown lr schedule `{text}` (expected constant, step:N[:GAMMA], exponential:GAMMA, cosine:T_MAX[:ETA_MIN], warmup:N[:START], plateau[:FACTOR[:PATIENCE[:THRESHOLD[:COOLDOWN[:MIN_LR]]]]])"
                ));
            }
        };
        schedule
            .validate()
            .map_err(|e| format!("lr schedule `{text}`: {e}"))?;
        Ok(schedule)
    }
}

impl fmt::Display for LrSchedule {
    /// The text `FromStr` reads back to the same schedule: `constant`,
    /// `step:10:0.5`, `exponential:0.95`, `cosine:50` (`:ETA_MIN` when not
    /// 0), `warmup:5` (`:START_FACTOR` when not torch's 1/3), `plateau`
    /// (then factor, patience, threshold, cooldown and min_lr, up to the
    /// last that differs from torch's default).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LrSchedule::Constant => f.write_str("constant"),
            LrSchedule::Step { step_size, gamma } => write!(f, "step:{step_size}:{gamma}"),
            LrSchedule::Exponential { gamma } => write!(f, "exponential:{gamma}"),
            LrSchedule::Cosine {
                t_max,
                eta_min: 0.0,
            } => write!(f, "cosine:{t_max}"),
            LrSchedule::Cosine { t_max, eta_min } => write!(f, "cosine:{t_max}:{eta_min}"),
            LrSchedule::Warmup {
                start_factor,
                total_iters,
            } if start_factor == 1.0 / 3.0 => write!(f, "warmup:{total_iters}"),
            LrSchedule::Warmup {
                start_factor,
                total_iters,
            } => write!(f, "warmup:{total_iters}:{start_factor}"),
            LrSchedule::Plateau {
                factor,
                patience,
                threshold,
                cooldown,
                min_lr,
            } => {
                let LrSchedule::Plateau {
                    factor: torch_factor,
                    patience: torch_patience,
                    threshold: torch_threshold,
                    cooldown: torch_cooldown,
                    min_lr: torch_min_lr,
                } = LrSchedule::PLATEAU
                else {
                    unreachable!()
                };
                let fields = [
                    (factor.to_string(), factor == torch_factor),
                    (patience.to_string(), patience == torch_patience),
                    (threshold.to_string(), threshold == torch_threshold),
                    (cooldown.to_string(), cooldown == torch_cooldown),
                    (min_lr.to_string(), min_lr == torch_min_lr),
                ];
                let written = fields
                    .iter()
                    .rposition(|(_, default)| !default)
                    .map_or(0, |last| last + 1);
                f.write_str("plateau")?;
                for (text, _) in &fields[..written] {
                    write!(f, ":{text}")?;
                }
                Ok(())
            }
        }
    }
}

/// A schedule in progress: the learning rate for the next epoch, and the
/// plateau bookkeeping (torch's `ReduceLROnPlateau` state).
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    schedule: LrSchedule,
    base: f64,
    lr: f64,
    best: f64,
    bad_epochs: usize,
    cooldown_left: usize,
}

impl Scheduler {
    /// Starts `schedule` from the optimizer's learning rate.
    pub fn new(schedule: LrSchedule, base: f64) -> Scheduler {
        Scheduler {
            schedule,
            base,
            lr: schedule.lr(base, 0),
            best: f64::INFINITY,
            bad_epochs: 0,
            cooldown_left: 0,
        }
    }

    /// The learning rate for the coming epoch.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// The mutable part, for checkpoints: (lr, best metric, epochs without
    /// improvement, cooldown epochs left).
    pub fn state(&self) -> (f64, f64, usize, usize) {
        (self.lr, self.best, self.bad_epochs, self.cooldown_left)
    }

    /// Puts back what [`state`](Self::state) returned.
    pub fn set_state(&mut self, (lr, best, bad_epochs, cooldown_left): (f64, f64, usize, usize)) {
        (self.lr, self.best, self.bad_epochs, self.cooldown_left) =
            (lr, best, bad_epochs, cooldown_left);
    }

    /// After a resume that changed the base learning rate or the
    /// schedule, with `epochs_done` epochs done: the rate the schedule now
    /// gives there (a plateau schedule starts again from the base rate,
    /// its bookkeeping kept).
    pub fn restart_at(&mut self, epochs_done: usize) {
        self.lr = match self.schedule {
            LrSchedule::Plateau { .. } => self.base,
            schedule => schedule.lr(self.base, epochs_done),
        };
    }

    /// Called after epoch `epoch` (0-based) with its metric; sets the
    /// learning rate of the next epoch.
    pub fn step(&mut self, epoch: usize, metric: f64) {
        match self.schedule {
            LrSchedule::Plateau {
                factor,
                patience,
                threshold,
                cooldown,
                min_lr,
            } => {
                if metric < self.best * (1.0 - threshold) {
                    self.best = metric;
                    self.bad_epochs = 0;
                } else {
                    self.bad_epochs += 1;
                }
                if self.cooldown_left > 0 {
                    self.cooldown_left -= 1;
                    self.bad_epochs = 0;
                }
                if self.bad_epochs > patience {
                    let new_lr = (self.lr * factor).max(min_lr);
                    if self.lr - new_lr > 1e-8 {
                        self.lr = new_lr;
                    }
                    self.cooldown_left = cooldown;
                    self.bad_epochs = 0;
                }
            }
            schedule => self.lr = schedule.lr(self.base, epoch + 1),
        }
    }
}
