//! Optimizers with the exact semantics and defaults of `torch.optim`: the CPU
//! formulas that `shaders/optimizer.wgsl` mirrors, element for element.
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

use crate::error::{Error, Result};
use crate::real::Real;

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

    /// Clips `grads` in place (the CPU twin of the GPU's `sum_squares`,
    /// `norm_finish` and the clipping in `update`).
    pub fn apply<T: Real>(&self, grads: &mut [T]) {
        if let Some(max_norm) = self.max_norm {
            let total = grads
                .iter()
                .map(|&g| g * g)
                .fold(T::zero(), |a, b| a + b)
                .sqrt();
            let coef = (T::of(max_norm) / (total + T::of(1e-6))).min(T::one());
            grads.iter_mut().for_each(|g| *g = *g * coef);
        }
        if let Some(max_value) = self.max_value {
            let (lo, hi) = (T::of(-max_value), T::of(max_value));
            grads.iter_mut().for_each(|g| *g = g.max(lo).min(hi));
        }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Sgd = 0,
    Adam = 1,
    RmsProp = 2,
    Adagrad = 3,
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
        match self {
            Optimizer::Sgd(_) => "sgd",
            Optimizer::Adam(_) => "adam",
            Optimizer::AdamW(_) => "adamw",
            Optimizer::RmsProp(_) => "rmsprop",
            Optimizer::Adagrad(_) => "adagrad",
        }
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

    /// One step t (1-based) over every parameter at learning rate `lr`:
    /// `state` holds `state_slots()` slots of `params.len()` values each.
    pub fn step<T: Real>(&self, params: &mut [T], grads: &[T], state: &mut [T], t: u64, lr: f64) {
        let n = params.len();
        assert_eq!(grads.len(), n);
        assert_eq!(state.len(), self.state_slots() * n);
        let rule = UpdateRule { lr, ..self.rule() };
        let k = Coefficients::new(&rule, t);
        let used = self.state_slots();
        // Elementwise and independent: large vectors are split into
        // contiguous ranges (of every slot) on rayon's pool, the one the GEMM
        // uses, so the two never compete for cores.
        let chunk = if n >= 1 << 16 {
            n.div_ceil(rayon::current_num_threads().max(1))
        } else {
            n.max(1)
        };
        let mut slot_chunks: Vec<std::slice::ChunksMut<'_, T>> = state
            .chunks_exact_mut(n.max(1))
            .take(used)
            .map(|s| s.chunks_mut(chunk))
            .collect();
        let mut jobs = Vec::new();
        for (p, g) in params.chunks_mut(chunk).zip(grads.chunks(chunk)) {
            let slots: Vec<&mut [T]> = slot_chunks
                .iter_mut()
                .map(|c| c.next().expect("same length"))
                .collect();
            jobs.push((p, g, slots));
        }
        use rayon::prelude::*;
        jobs.into_par_iter()
            .for_each(|(p, g, slots)| update_range(&rule, &k, p, g, slots));
    }
}

/// Applies the rule to one contiguous range of parameters and their slots,
/// with the optimizer kind fixed at compile time inside the loop.
fn update_range<T: Real>(
    rule: &UpdateRule,
    k: &Coefficients<T>,
    params: &mut [T],
    grads: &[T],
    slots: Vec<&mut [T]>,
) {
    // Every switch the rule makes per parameter is a constant of the loop,
    // so that the compiler vectorises it: with them read at run time it
    // stayed scalar and took four times as long.
    let (p, g, s) = (params, grads, slots);
    let momentum = match rule.kind {
        RuleKind::Sgd => rule.a != 0.0,
        _ => rule.momentum > 0.0,
    };
    match (rule.kind, rule.flag, rule.decoupled || momentum) {
        (RuleKind::Sgd, false, false) => update_kind::<T, 0, false, false>(rule, k, p, g, s),
        (RuleKind::Sgd, false, true) => update_kind::<T, 0, false, true>(rule, k, p, g, s),
        (RuleKind::Sgd, true, _) => update_kind::<T, 0, true, true>(rule, k, p, g, s),
        (RuleKind::Adam, false, false) => update_kind::<T, 1, false, false>(rule, k, p, g, s),
        (RuleKind::Adam, false, true) => update_kind::<T, 1, false, true>(rule, k, p, g, s),
        (RuleKind::Adam, true, false) => update_kind::<T, 1, true, false>(rule, k, p, g, s),
        (RuleKind::Adam, true, true) => update_kind::<T, 1, true, true>(rule, k, p, g, s),
        (RuleKind::RmsProp, false, false) => update_kind::<T, 2, false, false>(rule, k, p, g, s),
        (RuleKind::RmsProp, false, true) => update_kind::<T, 2, false, true>(rule, k, p, g, s),
        (RuleKind::RmsProp, true, false) => update_kind::<T, 2, true, false>(rule, k, p, g, s),
        (RuleKind::RmsProp, true, true) => update_kind::<T, 2, true, true>(rule, k, p, g, s),
        (RuleKind::Adagrad, ..) => update_kind::<T, 3, false, false>(rule, k, p, g, s),
    }
}

fn update_kind<T: Real, const KIND: u8, const FLAG: bool, const EXTRA: bool>(
    rule: &UpdateRule,
    k: &Coefficients<T>,
    params: &mut [T],
    grads: &[T],
    mut slots: Vec<&mut [T]>,
) {
    let mut s = [T::zero(); 3];
    match slots.len() {
        0 => {
            for (p, &g) in params.iter_mut().zip(grads) {
                *p = rule.apply_kind::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
            }
        }
        1 => {
            for ((p, &g), s0) in params.iter_mut().zip(grads).zip(slots[0].iter_mut()) {
                s[0] = *s0;
                *p = rule.apply_kind::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                *s0 = s[0];
            }
        }
        2 => {
            let (first, second) = slots.split_at_mut(1);
            let it = params
                .iter_mut()
                .zip(grads)
                .zip(first[0].iter_mut())
                .zip(second[0].iter_mut());
            for (((p, &g), s0), s1) in it {
                s[0] = *s0;
                s[1] = *s1;
                *p = rule.apply_kind::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                *s0 = s[0];
                *s1 = s[1];
            }
        }
        _ => {
            let (first, rest) = slots.split_at_mut(1);
            let (second, third) = rest.split_at_mut(1);
            let it = params
                .iter_mut()
                .zip(grads)
                .zip(first[0].iter_mut())
                .zip(second[0].iter_mut())
                .zip(third[0].iter_mut());
            for ((((p, &g), s0), s1), s2) in it {
                s = [*s0, *s1, *s2];
                *p = rule.apply_kind::<T, KIND, FLAG, EXTRA>(k, *p, g, &mut s);
                [*s0, *s1, *s2] = s;
            }
        }
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

/// Every number one step's update uses, converted to the working precision
/// once per step rather than once per parameter.
pub(crate) struct Coefficients<T> {
    first_step: bool,
    lr: T,
    a: T,
    b: T,
    eps: T,
    weight_decay: T,
    momentum: T,
    step_size: T,
    bias_correction2_sqrt: T,
    adagrad_lr: T,
    decay: T,
}

impl<T: Real> Coefficients<T> {
    pub(crate) fn new(rule: &UpdateRule, t: u64) -> Self {
        let s = rule.scalars(t);
        Coefficients {
            first_step: t == 1,
            lr: T::of(s.lr),
            a: T::of(rule.a),
            b: T::of(rule.b),
            eps: T::of(rule.eps),
            weight_decay: T::of(rule.weight_decay),
            momentum: T::of(rule.momentum),
            step_size: T::of(s.step_size),
            bias_correction2_sqrt: T::of(s.bias_correction2_sqrt),
            adagrad_lr: T::of(s.adagrad_lr),
            decay: T::of(s.decay),
        }
    }
}

impl UpdateRule {
    /// The update of one parameter θ with gradient g; `s` holds its state
    /// slots and `k` the step's coefficients. `FLAG` is the rule's `flag`
    /// (nesterov, amsgrad, centered) and `EXTRA` is `decoupled` for Adam and
    /// whether there is momentum for SGD and RMSprop, both fixed at compile
    /// time. The WGSL twin is `update` in `shaders/optimizer.wgsl`.
    #[inline(always)]
    fn apply_kind<T: Real, const KIND: u8, const FLAG: bool, const EXTRA: bool>(
        &self,
        k: &Coefficients<T>,
        theta: T,
        g: T,
        s: &mut [T; 3],
    ) -> T {
        let one = T::one();
        let kind = match KIND {
            0 => RuleKind::Sgd,
            1 => RuleKind::Adam,
            2 => RuleKind::RmsProp,
            _ => RuleKind::Adagrad,
        };
        match kind {
            RuleKind::Sgd => {
                let mut g = g + k.weight_decay * theta;
                if EXTRA {
                    s[0] = if k.first_step {
                        g
                    } else {
                        k.a * s[0] + (one - k.b) * g
                    };
                    g = if FLAG { g + k.a * s[0] } else { s[0] };
                }
                theta - k.lr * g
            }
            RuleKind::Adam => {
                let (theta, g) = if EXTRA {
                    (theta * k.decay, g)
                } else {
                    (theta, g + k.weight_decay * theta)
                };
                s[0] = k.a * s[0] + (one - k.a) * g;
                s[1] = k.b * s[1] + (one - k.b) * g * g;
                let v = if FLAG {
                    s[2] = s[2].max(s[1]);
                    s[2]
                } else {
                    s[1]
                };
                let denom = v.sqrt() / k.bias_correction2_sqrt + k.eps;
                theta - k.step_size * (s[0] / denom)
            }
            RuleKind::RmsProp => {
                let g = g + k.weight_decay * theta;
                s[0] = k.a * s[0] + (one - k.a) * g * g;
                // Slot 1 holds the momentum buffer when there is one; the
                // centered mean of g comes after it.
                let with_momentum = EXTRA;
                let avg = if FLAG {
                    let c = 1 + usize::from(with_momentum);
                    s[c] = k.a * s[c] + (one - k.a) * g;
                    (s[0] - s[c] * s[c]).sqrt() + k.eps
                } else {
                    s[0].sqrt() + k.eps
                };
                if with_momentum {
                    s[1] = k.momentum * s[1] + g / avg;
                    theta - k.lr * s[1]
                } else {
                    theta - k.lr * g / avg
                }
            }
            RuleKind::Adagrad => {
                let g = g + k.weight_decay * theta;
                s[0] = s[0] + g * g;
                theta - k.adagrad_lr * g / (s[0].sqrt() + k.eps)
            }
        }
    }
}
