//! Optimizers with the exact semantics and defaults of `torch.optim`: their
//! configurations, lowered to one `UpdateRule` that both backends apply
//! (`cpu::optimizer_step` and `shaders/optimizer.wgsl`, element for element).
//!
//! Every optimizer updates one flat parameter vector θ from its gradient g at
//! step t = 1, 2, …, keeping per-parameter state in up to three slots laid out
//! slot-major (`state[slot · n + i]`), the layout the GPU buffer shares.
//!
//! ```
//! use retroprop::{Adam, Optimizer, Sgd};
//! let adam: Optimizer = Adam::default().lr(3e-4).weight_decay(1e-4).into();
//! let sgd: Optimizer = Sgd::default().lr(0.1).momentum(0.9).nesterov(true).into();
//! assert_eq!(adam.lr(), 3e-4);
//! assert!(sgd.validate().is_ok());
//! ```
//!
//! Every front names an optimizer the same way, through `FromStr` and
//! `Display`: `adam` (torch's defaults), or with options by torch's names,
//! `adam:lr=0.001,betas=0.9/0.999,amsgrad=true`; and sets one option at a
//! time (a command-line flag, a Python keyword argument) with
//! [`Optimizer::set_option`], which knows which optimizer has which option.
//!
//! ```
//! use retroprop::{Optimizer, Sgd};
//! let sgd: Optimizer = "sgd:lr=0.1,momentum=0.9".parse()?;
//! assert_eq!(sgd, Sgd::default().lr(0.1).momentum(0.9).into());
//! assert_eq!(sgd.to_string(), "sgd:lr=0.1,momentum=0.9");
//! let mut adam: Optimizer = "adam".parse()?;
//! adam.set_option("betas", "0.8/0.99")?;
//! assert_eq!(adam.to_string(), "adam:betas=0.8/0.99");
//! assert!(adam.set_option("momentum", "0.9").is_err()); // Adam has none
//! # Ok::<(), retroprop::Error>(())
//! ```

mod text;

use crate::error::{Error, Result};

/// Stochastic gradient descent, `torch.optim.SGD`.
///
/// ```text
/// g ← g + weight_decay · θ
/// if momentum ≠ 0:
///     b ← g                                   (t = 1)
///     b ← momentum · b + (1 − dampening) · g  (t > 1)
///     g ← g + momentum · b   if nesterov, else g ← b
/// θ ← θ − lr · g
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate (torch default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Dampening for momentum (default 0).
    pub dampening: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum; needs momentum > 0 and dampening = 0.
    pub nesterov: bool,
}

/// Adam, `torch.optim.Adam`, with L2 weight decay added to the gradient.
///
/// ```text
/// g ← g + weight_decay · θ
/// m ← β₁ m + (1 − β₁) g
/// v ← β₂ v + (1 − β₂) g²
/// v̂ ← max(v̂, v) if amsgrad, else v̂ = v
/// θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v̂ / √(1 − β₂ᵗ) + eps)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// (β₁, β₂), default (0.9, 0.999).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Keep the running maximum of v (default false).
    pub amsgrad: bool,
}

/// AdamW, `torch.optim.AdamW`: Adam with decoupled weight decay,
/// θ ← θ · (1 − lr · weight_decay) before the Adam step (which then sees the
/// plain gradient). Default weight decay 0.01.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// (β₁, β₂), default (0.9, 0.999).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (default 0.01).
    pub weight_decay: f64,
    /// Keep the running maximum of v (default false).
    pub amsgrad: bool,
}

/// RMSprop, `torch.optim.RMSprop`.
///
/// ```text
/// g ← g + weight_decay · θ
/// s ← α s + (1 − α) g²
/// if centered: a ← α a + (1 − α) g;  d = √(s − a²) + eps
/// else:        d = √s + eps
/// if momentum > 0: b ← momentum · b + g / d;  θ ← θ − lr · b
/// else:            θ ← θ − lr · g / d
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant α (default 0.99).
    pub alpha: f64,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Normalise by the estimated variance instead of the raw second moment.
    pub centered: bool,
}

/// Adagrad, `torch.optim.Adagrad`.
///
/// ```text
/// g ← g + weight_decay · θ
/// clr = lr / (1 + (t − 1) · lr_decay)
/// s ← s + g²                          (s starts at initial_accumulator_value)
/// θ ← θ − clr · g / (√s + eps)
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adagrad {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay (default 0).
    pub lr_decay: f64,
    /// L2 penalty added to the gradient (default 0).
    pub weight_decay: f64,
    /// Starting value of the sum of squares (default 0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator (default 1e-10).
    pub eps: f64,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}
impl Default for Adam {
    fn default() -> Self {
        Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}
impl Default for AdamW {
    fn default() -> Self {
        AdamW {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}
impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}
impl Default for Adagrad {
    fn default() -> Self {
        Adagrad {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

macro_rules! setters {
    ($t:ty { $($field:ident : $ty:ty),* $(,)? }) => {
        impl $t {
            $(
                #[doc = concat!("Sets `", stringify!($field), "`.")]
                pub fn $field(mut self, $field: $ty) -> Self {
                    self.$field = $field;
                    self
                }
            )*
        }
    };
}
setters!(Sgd {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool
});
setters!(Adam {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool
});
setters!(AdamW {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool
});
setters!(RmsProp {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool
});
setters!(Adagrad {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
});

/// Gradient clipping against exploding gradients, applied to the gradient
/// of every parameter before the optimizer step: first by global norm
/// (torch's `clip_grad_norm_`, norm 2: g ← g · min(1, max_norm / (‖g‖ +
/// 1e-6)) with ‖g‖ over all parameters together), then by value (torch's
/// `clip_grad_value_`: g ← clamp(g, −max_value, max_value)).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GradClip {
    /// Largest global L2 norm of the gradient.
    pub max_norm: Option<f64>,
    /// Largest absolute value of any gradient element.
    pub max_value: Option<f64>,
}

impl GradClip {
    /// Checks the limits, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("clip_grad_norm", self.max_norm),
            ("clip_grad_value", self.max_value),
        ] {
            if let Some(v) = v {
                check(name, v, v > 0.0, "must be a positive number")?;
            }
        }
        Ok(())
    }
}

/// One of the optimizers, as the trainer takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// [`Sgd`].
    Sgd(Sgd),
    /// [`Adam`].
    Adam(Adam),
    /// [`AdamW`].
    AdamW(AdamW),
    /// [`RmsProp`].
    RmsProp(RmsProp),
    /// [`Adagrad`].
    Adagrad(Adagrad),
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Adam(Adam::default())
    }
}

macro_rules! into_optimizer {
    ($($t:ident),*) => {$(
        impl From<$t> for Optimizer {
            fn from(o: $t) -> Self {
                Optimizer::$t(o)
            }
        }
    )*};
}
into_optimizer!(Sgd, Adam, AdamW, RmsProp, Adagrad);

/// The flat description of an update that both backends execute: every
/// optimizer is one set of these numbers (see [`Optimizer::rule`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct UpdateRule {
    pub kind: RuleKind,
    pub lr: f64,
    /// SGD and RMSprop (0: none).
    pub momentum: f64,
    /// SGD.
    pub dampening: f64,
    /// SGD.
    pub nesterov: bool,
    /// Adam and AdamW: β₁ and β₂.
    pub beta1: f64,
    pub beta2: f64,
    /// Adam and AdamW.
    pub amsgrad: bool,
    /// Adam: decoupled (AdamW) weight decay.
    pub decoupled: bool,
    /// RMSprop.
    pub alpha: f64,
    /// RMSprop.
    pub centered: bool,
    /// Adagrad.
    pub lr_decay: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Which update an [`UpdateRule`] makes; the discriminant is the code the
/// optimizer shader switches on (`OPTIMIZER_*`, src/gpu/codes.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Sgd = 0,
    Adam = 1,
    RmsProp = 2,
    Adagrad = 3,
}

impl RuleKind {
    /// Every kind.
    pub(crate) const ALL: [RuleKind; 4] = [
        RuleKind::Sgd,
        RuleKind::Adam,
        RuleKind::RmsProp,
        RuleKind::Adagrad,
    ];
}

fn check(name: &'static str, value: f64, ok: bool, reason: &'static str) -> Result<()> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(Error::Hyperparameter {
            name,
            value,
            reason,
        })
    }
}

impl Optimizer {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adam(o) => o.lr,
            Optimizer::AdamW(o) => o.lr,
            Optimizer::RmsProp(o) => o.lr,
            Optimizer::Adagrad(o) => o.lr,
        }
    }

    /// The short name (`sgd`, `adam`, `adamw`, `rmsprop`, `adagrad`).
    pub fn name(&self) -> &'static str {
        Optimizer::NAMES[match self {
            Optimizer::Sgd(_) => 0,
            Optimizer::Adam(_) => 1,
            Optimizer::AdamW(_) => 2,
            Optimizer::RmsProp(_) => 3,
            Optimizer::Adagrad(_) => 4,
        }]
    }

    /// Checks every hyperparameter, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let r = self.rule();
        check(
            "lr",
            r.lr,
            r.lr > 0.0,
            "the learning rate must be a positive number",
        )?;
        check(
            "weight_decay",
            r.weight_decay,
            r.weight_decay >= 0.0,
            "must be ≥ 0",
        )?;
        match self {
            Optimizer::Sgd(o) => {
                check("momentum", o.momentum, o.momentum >= 0.0, "must be ≥ 0")?;
                check(
                    "dampening",
                    o.dampening,
                    (0.0..=1.0).contains(&o.dampening),
                    "must be in [0, 1]",
                )?;
                if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
                    return Err(Error::Config(
                        "nesterov momentum requires momentum > 0 and dampening = 0".into(),
                    ));
                }
            }
            Optimizer::Adam(Adam { betas, eps, .. })
            | Optimizer::AdamW(AdamW { betas, eps, .. }) => {
                let beta = |b: f64| (0.0..1.0).contains(&b);
                check("betas.0", betas.0, beta(betas.0), "must be in [0, 1)")?;
                check("betas.1", betas.1, beta(betas.1), "must be in [0, 1)")?;
                check("eps", *eps, *eps > 0.0, "must be a positive number")?;
            }
            Optimizer::RmsProp(o) => {
                check(
                    "alpha",
                    o.alpha,
                    (0.0..=1.0).contains(&o.alpha),
                    "must be in [0, 1]",
                )?;
                check("eps", o.eps, o.eps > 0.0, "must be a positive number")?;
                check("momentum", o.momentum, o.momentum >= 0.0, "must be ≥ 0")?;
            }
            Optimizer::Adagrad(o) => {
                check("lr_decay", o.lr_decay, o.lr_decay >= 0.0, "must be ≥ 0")?;
                check(
                    "initial_accumulator_value",
                    o.initial_accumulator_value,
                    o.initial_accumulator_value >= 0.0,
                    "must be ≥ 0",
                )?;
                check("eps", o.eps, o.eps > 0.0, "must be a positive number")?;
            }
        }
        Ok(())
    }

    /// Number of state slots per parameter this configuration needs.
    pub fn state_slots(&self) -> usize {
        match self {
            Optimizer::Sgd(o) => usize::from(o.momentum != 0.0),
            Optimizer::Adam(Adam { amsgrad, .. }) | Optimizer::AdamW(AdamW { amsgrad, .. }) => {
                2 + usize::from(*amsgrad)
            }
            Optimizer::RmsProp(o) => 1 + usize::from(o.momentum > 0.0) + usize::from(o.centered),
            Optimizer::Adagrad(_) => 1,
        }
    }

    /// The names of the state slots, in slot order, as `torch.optim` names
    /// them in an optimizer's `state_dict`: the CPU update
    /// (`cpu::optimizer_step`), `shaders/optimizer.wgsl` and the checkpoint
    /// file use the same names.
    ///
    /// ```
    /// use retroprop::{Adam, Optimizer, RmsProp};
    /// let adam: Optimizer = Adam::default().amsgrad(true).into();
    /// assert_eq!(adam.state_names(), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    /// let rmsprop: Optimizer = RmsProp::default().momentum(0.9).centered(true).into();
    /// assert_eq!(rmsprop.state_names(), ["square_avg", "momentum_buffer", "grad_avg"]);
    /// ```
    pub fn state_names(&self) -> Vec<&'static str> {
        let names: &[&'static str] = match self {
            Optimizer::Sgd(_) => &["momentum_buffer"],
            Optimizer::Adam(_) | Optimizer::AdamW(_) => {
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
            }
            Optimizer::RmsProp(o) if o.momentum > 0.0 => {
                &["square_avg", "momentum_buffer", "grad_avg"]
            }
            Optimizer::RmsProp(_) => &["square_avg", "grad_avg"],
            Optimizer::Adagrad(_) => &["sum"],
        };
        names[..self.state_slots()].to_vec()
    }

    /// The value every state slot starts at (only Adagrad's is not zero).
    pub fn initial_state(&self) -> f64 {
        match self {
            Optimizer::Adagrad(o) => o.initial_accumulator_value,
            _ => 0.0,
        }
    }

    pub(crate) fn rule(&self) -> UpdateRule {
        let base = UpdateRule {
            kind: RuleKind::Sgd,
            lr: self.lr(),
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            beta1: 0.0,
            beta2: 0.0,
            amsgrad: false,
            decoupled: false,
            alpha: 0.0,
            centered: false,
            lr_decay: 0.0,
            eps: 0.0,
            weight_decay: 0.0,
        };
        match *self {
            Optimizer::Sgd(o) => UpdateRule {
                momentum: o.momentum,
                dampening: o.dampening,
                weight_decay: o.weight_decay,
                nesterov: o.nesterov,
                ..base
            },
            Optimizer::Adam(o) => UpdateRule {
                kind: RuleKind::Adam,
                beta1: o.betas.0,
                beta2: o.betas.1,
                eps: o.eps,
                weight_decay: o.weight_decay,
                amsgrad: o.amsgrad,
                ..base
            },
            Optimizer::AdamW(o) => UpdateRule {
                kind: RuleKind::Adam,
                beta1: o.betas.0,
                beta2: o.betas.1,
                eps: o.eps,
                weight_decay: o.weight_decay,
                amsgrad: o.amsgrad,
                decoupled: true,
                ..base
            },
            Optimizer::RmsProp(o) => UpdateRule {
                kind: RuleKind::RmsProp,
                alpha: o.alpha,
                eps: o.eps,
                weight_decay: o.weight_decay,
                centered: o.centered,
                momentum: o.momentum,
                ..base
            },
            Optimizer::Adagrad(o) => UpdateRule {
                kind: RuleKind::Adagrad,
                lr_decay: o.lr_decay,
                eps: o.eps,
                weight_decay: o.weight_decay,
                ..base
            },
        }
    }
}

/// The scalars of step t that torch computes in double precision, once per
/// step: both backends use these (the GPU receives them in `StepUniform`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepScalars {
    pub lr: f64,
    /// Adam: lr / (1 − β₁ᵗ).
    pub step_size: f64,
    /// Adam: √(1 − β₂ᵗ).
    pub bias_correction2_sqrt: f64,
    /// Adagrad: lr / (1 + (t − 1) · lr_decay).
    pub adagrad_lr: f64,
    /// AdamW: 1 − lr · weight_decay.
    pub decay: f64,
}

impl UpdateRule {
    pub(crate) fn scalars(&self, t: u64) -> StepScalars {
        let tf = t as f64;
        StepScalars {
            lr: self.lr,
            step_size: self.lr / (1.0 - self.beta1.powf(tf)),
            bias_correction2_sqrt: (1.0 - self.beta2.powf(tf)).sqrt(),
            adagrad_lr: self.lr / (1.0 + (tf - 1.0) * self.lr_decay),
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }
}
