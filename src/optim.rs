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

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

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
    /// SGD/RMSprop momentum, Adam β₁, RMSprop α.
    pub a: f64,
    /// SGD dampening, Adam β₂, Adagrad lr_decay.
    pub b: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// nesterov (SGD), amsgrad (Adam), centered (RMSprop).
    pub flag: bool,
    /// Adam: decoupled (AdamW) weight decay.
    pub decoupled: bool,
    /// RMSprop: momentum.
    pub momentum: f64,
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
            a: 0.0,
            b: 0.0,
            eps: 0.0,
            weight_decay: 0.0,
            flag: false,
            decoupled: false,
            momentum: 0.0,
        };
        match *self {
            Optimizer::Sgd(o) => UpdateRule {
                a: o.momentum,
                b: o.dampening,
                weight_decay: o.weight_decay,
                flag: o.nesterov,
                ..base
            },
            Optimizer::Adam(o) => UpdateRule {
                kind: RuleKind::Adam,
                a: o.betas.0,
                b: o.betas.1,
                eps: o.eps,
                weight_decay: o.weight_decay,
                flag: o.amsgrad,
                ..base
            },
            Optimizer::AdamW(o) => UpdateRule {
                kind: RuleKind::Adam,
                a: o.betas.0,
                b: o.betas.1,
                eps: o.eps,
                weight_decay: o.weight_decay,
                flag: o.amsgrad,
                decoupled: true,
                ..base
            },
            Optimizer::RmsProp(o) => UpdateRule {
                kind: RuleKind::RmsProp,
                a: o.alpha,
                eps: o.eps,
                weight_decay: o.weight_decay,
                flag: o.centered,
                momentum: o.momentum,
                ..base
            },
            Optimizer::Adagrad(o) => UpdateRule {
                kind: RuleKind::Adagrad,
                b: o.lr_decay,
                eps: o.eps,
                weight_decay: o.weight_decay,
                ..base
            },
        }
    }
}

/// Where one option's value lives in an optimizer's configuration: the
/// three kinds of value torch's optimizers take.
enum OptionSlot<'a> {
    Number(&'a mut f64),
    Flag(&'a mut bool),
    Pair(&'a mut (f64, f64)),
}

impl OptionSlot<'_> {
    /// The value as the text form writes it.
    fn text(&self) -> String {
        match self {
            OptionSlot::Number(v) => number(**v),
            OptionSlot::Flag(v) => v.to_string(),
            OptionSlot::Pair((a, b)) => format!("{}/{}", number(*a), number(*b)),
        }
    }

    /// Reads `text` into the slot; on failure, what a value looks like.
    /// A pair may be written `0.9/0.999`, `0.9,0.999` or `(0.9, 0.999)`
    /// (Python's text for a tuple), a flag `true`/`false` in any case.
    fn set(&mut self, text: &str) -> std::result::Result<(), &'static str> {
        const NUMBER: &str = "a number";
        const PAIR: &str = "two numbers like 0.9/0.999";
        let text = text.trim();
        match self {
            OptionSlot::Number(v) => **v = text.parse().map_err(|_| NUMBER)?,
            OptionSlot::Flag(v) => {
                **v = match text.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err("true or false"),
                }
            }
            OptionSlot::Pair(v) => {
                let inner = text
                    .strip_prefix(['(', '['])
                    .and_then(|t| t.strip_suffix([')', ']']))
                    .unwrap_or(text);
                let parts: Vec<&str> = inner.split(['/', ',']).collect();
                let [a, b] = parts[..] else {
                    return Err(PAIR);
                };
                let num = |s: &str| s.trim().parse::<f64>().map_err(|_| PAIR);
                **v = (num(a)?, num(b)?);
            }
        }
        Ok(())
    }
}

/// A number as the text form writes it: the shortest text that reads back
/// as the same `f64`, with an exponent when it is small or large (`1e-8`).
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e16) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// `a, b or c`.
fn in_words(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl Optimizer {
    /// Every optimizer's name, as [`name`](Self::name) gives it and
    /// `FromStr` reads it: what a front lists as the possible values.
    pub const NAMES: [&'static str; 5] = ["sgd", "adam", "adamw", "rmsprop", "adagrad"];

    /// Every optimizer with torch's defaults, in the order of [`NAMES`](Self::NAMES).
    pub fn defaults() -> [Optimizer; 5] {
        [
            Sgd::default().into(),
            Adam::default().into(),
            AdamW::default().into(),
            RmsProp::default().into(),
            Adagrad::default().into(),
        ]
    }

    /// The optimizer called `name` (one of [`NAMES`](Self::NAMES), in any
    /// case: torch's class names `SGD`, `RMSprop` read too) with torch's
    /// defaults.
    ///
    /// ```
    /// use retroprop::{Optimizer, RmsProp};
    /// assert_eq!(Optimizer::with_name("RMSprop")?, RmsProp::default().into());
    /// assert!(Optimizer::with_name("lbfgs").unwrap_err().to_string().contains("`lbfgs`"));
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn with_name(name: &str) -> Result<Optimizer> {
        let wanted = name.trim().to_ascii_lowercase();
        Optimizer::defaults()
            .into_iter()
            .find(|o| o.name() == wanted)
            .ok_or_else(|| Error::UnknownOptimizer {
                name: name.trim().to_string(),
                expected: in_words(&Optimizer::NAMES),
            })
    }

    /// The options, by torch's keyword names, each with where its value
    /// lives: the one table of which optimizer has which option.
    fn slots(&mut self) -> Vec<(&'static str, OptionSlot<'_>)> {
        use OptionSlot::{Flag, Number, Pair};
        match self {
            Optimizer::Sgd(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("momentum", Number(&mut o.momentum)),
                ("dampening", Number(&mut o.dampening)),
                ("weight_decay", Number(&mut o.weight_decay)),
                ("nesterov", Flag(&mut o.nesterov)),
            ],
            Optimizer::Adam(Adam {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            })
            | Optimizer::AdamW(AdamW {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            }) => vec![
                ("lr", Number(lr)),
                ("betas", Pair(betas)),
                ("eps", Number(eps)),
                ("weight_decay", Number(weight_decay)),
                ("amsgrad", Flag(amsgrad)),
            ],
            Optimizer::RmsProp(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("alpha", Number(&mut o.alpha)),
                ("eps", Number(&mut o.eps)),
                ("weight_decay", Number(&mut o.weight_decay)),
                ("momentum", Number(&mut o.momentum)),
                ("centered", Flag(&mut o.centered)),
            ],
            Optimizer::Adagrad(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("lr_decay", Number(&mut o.lr_decay)),
                ("weight_decay", Number(&mut o.weight_decay)),
                (
                    "initial_accumulator_value",
                    Number(&mut o.initial_accumulator_value),
                ),
                ("eps", Number(&mut o.eps)),
            ],
        }
    }

    /// The options this optimizer has, by the names of torch's keyword
    /// arguments, in the order of torch's constructor.
    ///
    /// ```
    /// use retroprop::{Adam, Optimizer};
    /// let adam: Optimizer = Adam::default().into();
    /// assert_eq!(adam.options(), ["lr", "betas", "eps", "weight_decay", "amsgrad"]);
    /// ```
    pub fn options(&self) -> Vec<&'static str> {
        let mut copy = *self;
        copy.slots().into_iter().map(|(name, _)| name).collect()
    }

    /// The value of option `name` as the text form writes it (`0.001`,
    /// `1e-8`, `0.9/0.999`, `true`); `None` when this optimizer has no such
    /// option.
    pub fn option(&self, name: &str) -> Option<String> {
        let mut copy = *self;
        copy.slots()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, slot)| slot.text())
    }

    /// The names of the optimizers that have option `option` (e.g.
    /// `momentum`: sgd and rmsprop).
    pub fn having(option: &str) -> Vec<&'static str> {
        Optimizer::defaults()
            .iter()
            .filter(|o| o.options().contains(&option))
            .map(|o| o.name())
            .collect()
    }

    /// Sets option `name` (torch's keyword name; `-` reads as `_`) from
    /// its text: a number, `true`/`false`, or for `betas` two numbers
    /// (`0.9/0.999`, `0.9,0.999` or `(0.9, 0.999)`).
    ///
    /// Refuses an option this optimizer does not have
    /// ([`Error::UnknownOption`], naming the optimizers that have it) and
    /// text that is not a value of the option's kind
    /// ([`Error::OptionValue`]). Ranges are checked by
    /// [`validate`](Self::validate), once every option is set (nesterov
    /// needs a momentum that may come after it).
    ///
    /// ```
    /// use retroprop::{Error, Optimizer, Sgd};
    /// let mut sgd = Optimizer::with_name("sgd")?;
    /// sgd.set_option("lr", "0.1")?;
    /// sgd.set_option("nesterov", "true")?;
    /// sgd.set_option("momentum", "0.9")?;
    /// sgd.validate()?;
    /// assert_eq!(sgd, Sgd::default().lr(0.1).momentum(0.9).nesterov(true).into());
    /// match sgd.set_option("betas", "0.9/0.999") {
    ///     Err(Error::UnknownOption { owners, .. }) => assert_eq!(owners, ["adam", "adamw"]),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<()> {
        let optimizer = self.name();
        let key = name.trim().replace('-', "_");
        let known = self.options();
        match self.slots().into_iter().find(|(n, _)| *n == key) {
            Some((option, mut slot)) => slot.set(value).map_err(|expected| Error::OptionValue {
                optimizer,
                option,
                value: value.trim().to_string(),
                expected,
            }),
            None => Err(Error::UnknownOption {
                optimizer,
                option: name.trim().to_string(),
                owners: Optimizer::having(&key),
                known,
            }),
        }
    }
}

impl fmt::Display for Optimizer {
    /// The name, then `:option=value,…` for each option that differs from
    /// torch's default (`adam:lr=0.01`); with `{:#}`, every option
    /// (`adam:lr=0.01,betas=0.9/0.999,eps=1e-8,weight_decay=0,amsgrad=false`).
    /// `FromStr` reads both back to the same optimizer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let defaults = Optimizer::with_name(self.name()).map_err(|_| fmt::Error)?;
        let mut separator = ':';
        for name in self.options() {
            let value = self.option(name).unwrap_or_default();
            if f.alternate() || defaults.option(name).as_deref() != Some(value.as_str()) {
                write!(f, "{separator}{name}={value}")?;
                separator = ',';
            }
        }
        Ok(())
    }
}

impl FromStr for Optimizer {
    type Err = Error;

    /// `NAME` with torch's defaults, or `NAME:OPTION=VALUE,…` with options
    /// by torch's names (as [`set_option`](Optimizer::set_option) reads
    /// them; betas may keep their comma, `betas=0.9,0.999`); then
    /// [`validate`](Optimizer::validate)d.
    fn from_str(text: &str) -> Result<Optimizer> {
        let (name, options) = text.split_once(':').unwrap_or((text, ""));
        let mut optimizer = Optimizer::with_name(name)?;
        let malformed = |what: String| {
            Error::Config(format!(
                "optimizer `{}`: {what} (write e.g. adam:lr=0.001,betas=0.9/0.999)",
                text.trim()
            ))
        };
        let mut given: Vec<(String, String)> = Vec::new();
        for piece in options.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match (piece.split_once('='), given.last_mut()) {
                (Some((option, value)), _) => {
                    let option = option.trim().replace('-', "_");
                    if given.iter().any(|(o, _)| *o == option) {
                        return Err(malformed(format!("{option} is given twice")));
                    }
                    given.push((option, value.trim().to_string()));
                }
                // The second number of `betas=0.9,0.999`.
                (None, Some((option, value)))
                    if option == "betas" && !value.contains([',', '/']) =>
                {
                    value.push(',');
                    value.push_str(piece);
                }
                (None, _) => {
                    return Err(malformed(format!("`{piece}` is not OPTION=VALUE")));
                }
            }
        }
        for (option, value) in &given {
            optimizer.set_option(option, value)?;
        }
        optimizer.validate()?;
        Ok(optimizer)
    }
}

/// The scalars of step t that torch computes in double precision, once per
/// step: both backends use these (the GPU receives them as `StepParams`).
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
            step_size: self.lr / (1.0 - self.a.powf(tf)),
            bias_correction2_sqrt: (1.0 - self.b.powf(tf)).sqrt(),
            adagrad_lr: self.lr / (1.0 + (tf - 1.0) * self.b),
            decay: 1.0 - self.lr * self.weight_decay,
        }
    }
}
